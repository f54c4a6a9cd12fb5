package engine_test

// Faults from the server's side in the middle of a run: another client
// expunging or flagging what the run is about to touch, connections dropped
// at chosen points of a command, refusals. Dovecot does the mail; a proxy in
// front of it (faultProxy) sees every line and can cut the connection or
// say something Dovecot would not, exactly where a test wants it.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// proxyHook is called for each line (literal bytes excluded) going one way
// through a faultProxy connection. It returns what to send on instead of the
// line (the line itself to relay it, nil to drop it), or kill to close both
// sides of the connection without sending anything.
type proxyHook func(conn int, line []byte) (out []byte, kill bool)

// faultProxy relays plain IMAP connections to a Dovecot, line by line, each
// literal passed on whole without being shown to the hooks (a message's
// text must not look like a command or a reply).
type faultProxy struct {
	port int
	mu   sync.Mutex
	// fromClient and fromServer see the lines of each direction; nil relays.
	fromClient, fromServer proxyHook
	conns                  int
}

func newFaultProxy(t *testing.T, host string, port int) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	fp := &faultProxy{port: ln.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				c.Close()
				continue
			}
			fp.mu.Lock()
			fp.conns++
			id := fp.conns
			fp.mu.Unlock()
			kill := func() { c.Close(); s.Close() }
			go fp.relay(id, c, s, kill, func() proxyHook { fp.mu.Lock(); defer fp.mu.Unlock(); return fp.fromClient })
			go fp.relay(id, s, c, kill, func() proxyHook { fp.mu.Lock(); defer fp.mu.Unlock(); return fp.fromServer })
		}
	}()
	return fp
}

// set replaces the hooks (nil: relay unchanged).
func (fp *faultProxy) set(fromClient, fromServer proxyHook) {
	fp.mu.Lock()
	fp.fromClient, fp.fromServer = fromClient, fromServer
	fp.mu.Unlock()
}

var literalAtEnd = regexp.MustCompile(`\{(\d+)\+?\}\r?\n$`)

func (fp *faultProxy) relay(id int, from, to net.Conn, kill func(), hook func() proxyHook) {
	defer kill()
	r := bufio.NewReader(from)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			out := line
			if h := hook(); h != nil {
				var k bool
				out, k = h(id, line)
				if k {
					return
				}
			}
			if len(out) > 0 {
				if _, werr := to.Write(out); werr != nil {
					return
				}
			}
			if m := literalAtEnd.FindSubmatch(line); m != nil {
				n, _ := strconv.ParseInt(string(m[1]), 10, 64)
				if _, cerr := io.CopyN(to, r, n); cerr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// proxiedPairing is an IMAP↔Maildir pairing whose IMAP side goes through a
// fresh faultProxy, with the Dovecot account emptied.
func proxiedPairing(t *testing.T) (*pairing, *faultProxy) {
	t.Helper()
	needDovecot(t)
	resetAccounts(t, imapMaildir)
	ci := serverInfo()
	fp := newFaultProxy(t, ci.host, ci.port)
	ci.port, ci.tls = fp.port, "none"
	p := openPairing(t, imapMaildir, t.TempDir(), func() conninfo { return ci })
	return p, fp
}

// doveadm runs doveadm on the test server as another client of alice's
// account would act (its own session, outside the run's connections).
func doveadm(t *testing.T, args ...string) {
	t.Helper()
	if out, err := srv.Doveadm(args...); err != nil {
		t.Errorf("%v (%s)", err, out)
	}
}

func hasWord(line []byte, w string) bool { return bytes.Contains(bytes.ToUpper(line), []byte(w)) }

// TestFarExpungedBeforeFetch: another client expunges a new message on the
// server after the run listed it and before the run's UID FETCH of its body.
// The message is simply not there to copy: no error, nothing made up in the
// Maildir, the others copied; the pending pair the state keeps for it is
// dropped by the next run, which then has nothing left to do. Dovecot
// answers such a FETCH with OK [EXPUNGEISSUED]; RFC 5530's own example of
// the code is a NO, which a server may send as well (the proxy makes one).
func TestFarExpungedBeforeFetch(t *testing.T) {
	for _, no := range []bool{false, true} {
		t.Run(fmt.Sprint("NO=", no), func(t *testing.T) {
			p, fp := proxiedPairing(t)
			addMany(t, p.raw[0], "INBOX", 0, "keep1", "gone2", "keep3")
			var fired atomic.Bool
			fp.set(func(_ int, line []byte) ([]byte, bool) {
				if hasWord(line, "UID FETCH") && hasWord(line, "BODY.PEEK[]") && !fired.Swap(true) {
					doveadm(t, "expunge", "-u", "alice", "mailbox", "INBOX", "header", "Subject", "gone2")
				}
				return line, false
			}, func(_ int, line []byte) ([]byte, bool) {
				if no {
					return bytes.Replace(line, []byte(" OK [EXPUNGEISSUED]"), []byte(" NO [EXPUNGEISSUED]"), 1), false
				}
				return line, false
			})
			res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
			fp.set(nil, nil)
			if !fired.Load() {
				t.Fatal("the run fetched no body")
			}
			if err := mailboxErr(res); err != nil {
				t.Errorf("run with the message expunged under it: %v", err)
			}
			if res.Copied != [2]int{0, 2} {
				t.Errorf("copied %v, want [0 2]", res.Copied)
			}
			p.check(t, "INBOX", "keep1: keep3:")
			for i := range 2 {
				res := sync1(t, p, engine.RunOptions{})
				p.check(t, "INBOX", "keep1: keep3:")
				if !zeroCounts(res.Counts) {
					t.Fatalf("run %d after: %+v", i, res.Counts)
				}
			}
		})
	}
}
