package engine_test

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// TestForwardedOnServerWithoutKeywords: against a server whose
// PERMANENTFLAGS allow neither $Forwarded nor new keywords (Dovecot behind a
// proxy that says so), a Maildir's P flag is never sent, and it stays on
// the Maildir side run after run instead of being taken back because the
// server does not show it. Other flags still sync both ways.
func TestForwardedOnServerWithoutKeywords(t *testing.T) {
	needDovecot(t)
	resetAccounts(t, imapMaildir)
	ci := serverInfo()
	port, sent := noKeywordsProxy(t, ci.host, ci.port)
	ci.port, ci.tls = port, "none"
	p := openPairing(t, imapMaildir, t.TempDir(), func() conninfo { return ci })
	far, near := p.spec.Far, p.spec.Near
	addMany(t, far, "INBOX", 0, "f1")
	addMany(t, near, "INBOX", engine.FlagPassed|engine.FlagSeen, "n1")
	sync1(t, p, engine.RunOptions{})
	engine.SetFlagsBySubject(t, near, "INBOX", "f1", engine.FlagPassed, 0)
	sync1(t, p, engine.RunOptions{})
	engine.SetFlagsBySubject(t, far, "INBOX", "n1", engine.FlagFlagged, 0)
	sync1(t, p, engine.RunOptions{})
	for i := range 2 {
		if f, n := engine.ViewBox(t, far, "INBOX"), engine.ViewBox(t, near, "INBOX"); f != "f1: n1:FS" || n != "f1:P n1:FPS" {
			t.Fatalf("run %d:\nfar:  %s\nnear: %s", i, f, n)
		}
		if res := sync1(t, p, engine.RunOptions{}); i > 0 && !zeroCounts(res.Counts) {
			t.Fatalf("not idempotent: %+v", res.Counts)
		}
	}
	if sent.Load() {
		t.Error("$Forwarded was sent to a server that does not keep it")
	}
}

// noKeywordsProxy relays connections to host:port (plain IMAP), replacing
// the server's PERMANENTFLAGS with the system flags alone, and records
// whether any line from the client named $Forwarded. Lines are relayed
// whole; a literal's bytes pass unchanged.
func noKeywordsProxy(t *testing.T, host string, port int) (int, *atomic.Bool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sent := new(atomic.Bool)
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
			go relayLines(s, c, func(l []byte) []byte {
				if bytes.HasPrefix(l, []byte("* OK [PERMANENTFLAGS ")) {
					return []byte("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)] Limited\r\n")
				}
				return l
			})
			go relayLines(c, s, func(l []byte) []byte {
				if bytes.Contains(bytes.ToLower(l), []byte("$forwarded")) {
					sent.Store(true)
				}
				return l
			})
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, sent
}

func relayLines(from, to net.Conn, edit func([]byte) []byte) {
	defer to.Close()
	defer from.Close()
	r := bufio.NewReader(from)
	for {
		l, err := r.ReadBytes('\n')
		if len(l) > 0 {
			if _, werr := to.Write(edit(l)); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
