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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/dovecottest"
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

// privatePairing is an IMAP↔Maildir pairing with a Dovecot of its own,
// started with extraConf added to its configuration (plugins the shared test
// server does not load: ACLs, quotas).
func privatePairing(t *testing.T, extraConf string) (*pairing, *dovecottest.Server) {
	t.Helper()
	needDovecot(t)
	s, err := dovecottest.Start(dovecottest.Options{ExtraConf: extraConf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	ci := conninfo{host: s.Host, port: s.Port, caFile: s.CAFile,
		pass: map[string]string{"alice": s.Password("alice"), "bob": s.Password("bob")}}
	return openPairing(t, imapMaildir, t.TempDir(), func() conninfo { return ci }), s
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

// TestAppendAnswerLost: the connection drops after the server stored the
// APPENDed messages and before their tagged OK reaches us (the proxy cuts
// it at that line). The messages are on the server, the run does not know
// their UIDs. Either the run finds them itself (by size and hash among the
// UIDs from the UIDNEXT it saw) or, when it cannot reach the server again
// in that run, it keeps the journal and the next run does. Either way each
// message is there once and paired, and a flag change later lands on it.
func TestAppendAnswerLost(t *testing.T) {
	for _, tc := range []struct {
		name     string
		subjects []string
		cutOff   bool // no connection works after the drop, for the rest of the run
	}{
		{"one", []string{"n1"}, false},
		{"batch", []string{"n1", "n2", "n3"}, false},
		{"batch-unreachable", []string{"n1", "n2", "n3"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, fp := proxiedPairing(t)
			addMany(t, p.spec.Near, "INBOX", engine.FlagSeen, tc.subjects...)
			var dropped atomic.Int64 // the connection cut
			fp.set(nil, func(conn int, line []byte) ([]byte, bool) {
				if d := dropped.Load(); d != 0 {
					return line, tc.cutOff && int64(conn) > d
				}
				if hasWord(line, " OK [APPENDUID ") {
					dropped.Store(int64(conn))
					return nil, true
				}
				return line, false
			})
			res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
			fp.set(nil, nil)
			if dropped.Load() == 0 {
				t.Fatal("no APPEND answer was cut off")
			}
			err := mailboxErr(res)
			t.Logf("run with the answer lost: %+v, %v", res.Counts, err)
			if !tc.cutOff && (err != nil || res.Copied != [2]int{len(tc.subjects), 0}) {
				t.Fatalf("the run did not find its copies: %+v, %v", res.Counts, err)
			}
			want := ""
			for i, s := range tc.subjects {
				if i > 0 {
					want += " "
				}
				want += s + ":S"
			}
			if f := engine.ViewBox(t, p.raw[0], "INBOX"); f != want {
				t.Fatalf("server after the drop: %s, want %s", f, want)
			}
			sync1(t, p, engine.RunOptions{})
			p.check(t, "INBOX", want)
			engine.SetFlagsBySubject(t, p.spec.Near, "INBOX", tc.subjects[0], engine.FlagFlagged, 0)
			sync1(t, p, engine.RunOptions{})
			want = tc.subjects[0] + ":FS" + want[len(tc.subjects[0])+2:]
			p.check(t, "INBOX", want)
			if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
				t.Fatalf("not idempotent: %+v", res.Counts)
			}
		})
	}
}

// TestConnectionDropsInStoreOrExpunge: the connection drops in the middle
// of the run's flag change or removal on the server — before the command
// reached the server, or after the server made it and before its answer
// came back; for a removal also between the STORE of \Deleted and the UID
// EXPUNGE. The run reports the failure; the next run makes whatever was not
// made, and nothing else is lost (a message that was not to go stays on both
// sides).
func TestConnectionDropsInStoreOrExpunge(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cmd   string // the command at which the connection drops
		reply bool   // at its tagged answer rather than the command itself
	}{
		{"store-unsent", "UID STORE", false},
		{"store-unanswered", "UID STORE", true},
		{"expunge-unsent", "UID EXPUNGE", false},
		{"expunge-unanswered", "UID EXPUNGE", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, fp := proxiedPairing(t)
			near := p.spec.Near
			addMany(t, near, "INBOX", 0, "n1", "n2", "n3", "n4")
			sync1(t, p, engine.RunOptions{})
			engine.SetFlagsBySubject(t, near, "INBOX", "n1", engine.FlagFlagged, 0)
			engine.SetFlagsBySubject(t, near, "INBOX", "n3", engine.FlagSeen, 0)
			engine.ExpungeBySubject(t, near, "INBOX", "n2")
			var mu sync.Mutex
			tags := map[string]bool{} // tags of the command to fail at
			var dropped atomic.Bool
			fp.set(func(_ int, line []byte) ([]byte, bool) {
				if dropped.Load() || !hasWord(line, " "+tc.cmd+" ") {
					return line, false
				}
				if !tc.reply {
					dropped.Store(true)
					return nil, true
				}
				mu.Lock()
				tags[string(bytes.Fields(line)[0])] = true
				mu.Unlock()
				return line, false
			}, func(_ int, line []byte) ([]byte, bool) {
				if f := bytes.Fields(line); len(f) > 1 && !dropped.Load() {
					mu.Lock()
					hit := tags[string(f[0])]
					mu.Unlock()
					if hit {
						dropped.Store(true)
						return nil, true
					}
				}
				return line, false
			})
			res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
			fp.set(nil, nil)
			if !dropped.Load() {
				t.Fatalf("no %s to drop the connection at", tc.cmd)
			}
			t.Logf("run with the drop: %+v, %v", res.Counts, mailboxErr(res))
			if mailboxErr(res) == nil {
				t.Error("the drop was not reported")
			}
			sync1(t, p, engine.RunOptions{})
			p.check(t, "INBOX", "n1:F n3:S n4:")
			if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
				t.Fatalf("not idempotent: %+v", res.Counts)
			}
			p.check(t, "INBOX", "n1:F n3:S n4:")
		})
	}
}

// quotaConf is a Dovecot configuration with the quota plugin and the given
// settings of it.
func quotaConf(settings string) string {
	return `mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins quota imap_quota
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  ` + settings + `
}`
}

// TestAppendOverQuota: a Dovecot of its own with a storage quota that the
// first message fills. Pushing another message to it: the APPEND is refused
// with NO [OVERQUOTA] (Dovecot refuses a synchronizing literal before its
// continuation). The run says so, naming the mailbox and the server's
// reason; nothing is recorded as copied, another mailbox's copy in the same
// run goes through, the next run tries again, and once the user made room
// the message is copied, once.
func TestAppendOverQuota(t *testing.T) {
	p, s := privatePairing(t, quotaConf(`quota_rule = *:storage=6K
  quota_rule2 = Roomy:ignore`))
	near := p.spec.Near
	// 5K: a second one is over. Over 4 KiB, go-imap waits for the
	// literal's continuation when it sends it alone, and Dovecot refuses
	// before that: the refusal must still count as the quota's.
	big := strings.Repeat("filler line\n", 420)
	addBody := func(box, subj string) {
		t.Helper()
		if err := near.CreateMailbox(context.Background(), box); err != nil {
			t.Fatal(err)
		}
		mb, err := near.OpenMailbox(context.Background(), box, false)
		if err != nil {
			t.Fatal(err)
		}
		defer mb.Close()
		st, err := mb.Stage(context.Background(), engine.NewMessage{Body: strings.NewReader(testBody(subj) + big)})
		if err != nil {
			t.Fatal(err)
		}
		if res, err := mb.Commit(context.Background(), []engine.Staged{st}); err != nil || res[0].Err != nil {
			t.Fatal(err, res)
		}
	}
	addBody("INBOX", "q1")
	sync1(t, p, engine.RunOptions{})
	addBody("INBOX", "q2")
	addBody("Roomy", "r1")
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	err := mailboxErr(res)
	t.Logf("run over quota: %+v, %v", res.Counts, err)
	if err == nil || !strings.Contains(err.Error(), "INBOX") || !strings.Contains(err.Error(), "OVERQUOTA") ||
		!strings.Contains(err.Error(), "the other copies to the far side wait for the next run") {
		t.Errorf("error should name the mailbox and the quota, and say the rest waits: %v", err)
	}
	if res.Copied != [2]int{1, 0} || res.Failed != [2]int{1, 0} {
		t.Errorf("counts %+v: want Roomy's copy made and one failed", res.Counts)
	}
	if f := engine.ViewBox(t, p.raw[0], "INBOX"); f != "q1:" {
		t.Fatalf("server INBOX over quota: %s", f)
	}
	if f := engine.ViewBox(t, p.raw[0], "Roomy"); f != "r1:" {
		t.Fatalf("server Roomy: %s", f)
	}
	// Still over quota: refused again, nothing recorded meanwhile.
	res = engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	if res.Failed != [2]int{1, 0} || res.Copied != [2]int{} {
		t.Errorf("second run over quota: %+v, %v", res.Counts, mailboxErr(res))
	}
	// The user makes room: the refused messages go over, once.
	engine.ExpungeBySubject(t, p.raw[0], "INBOX", "q1")
	engine.ExpungeBySubject(t, near, "INBOX", "q1")
	if _, err := s.Doveadm("quota", "recalc", "-u", "alice"); err != nil {
		t.Logf("quota recalc: %v", err)
	}
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", "q2:")
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("not idempotent: %+v", res.Counts)
	}
}

// TestOthersDeletedSurviveOurExpunge: the run removes from the server a
// message deleted in the Maildir, while another client marks another message
// \Deleted after the run listed the mailbox and before its expunge. Only
// the run's own message goes: with UIDPLUS because UID EXPUNGE names it;
// without (the proxy hides UIDPLUS) because the other \Deleted messages are
// unmarked around the plain EXPUNGE and marked again after it. The other
// client's message keeps its \Deleted, and the next run, which sees it, treats
// it as any message deleted on the server. (Without UIDPLUS a \Deleted set
// after the run's STORE of its own \Deleted is answered and before its
// EXPUNGE — two round trips — may still be expunged: Dovecot's SEARCH
// answers from the session's view, which that STORE refreshed, and IMAP
// offers no way to close the window.)
func TestOthersDeletedSurviveOurExpunge(t *testing.T) {
	for _, uidplus := range []bool{true, false} {
		t.Run(fmt.Sprint("UIDPLUS=", uidplus), func(t *testing.T) {
			p, fp := proxiedPairing(t)
			hide := func(line []byte) []byte {
				if !uidplus && hasWord(line, "CAPABILITY") {
					return bytes.ReplaceAll(line, []byte(" UIDPLUS"), nil)
				}
				return line
			}
			fp.set(nil, func(_ int, line []byte) ([]byte, bool) { return hide(line), false })
			near := p.spec.Near
			addMany(t, near, "INBOX", 0, "n1", "n2", "n3", "n4")
			sync1(t, p, engine.RunOptions{})
			engine.ExpungeBySubject(t, near, "INBOX", "n2")
			// Right before the run's own command: with UIDPLUS its UID
			// EXPUNGE; without, its STORE of \Deleted, which the emulation
			// follows with UID SEARCH DELETED and EXPUNGE.
			at := "UID EXPUNGE"
			if !uidplus {
				at = "UID STORE"
			}
			var fired atomic.Bool
			fp.set(func(_ int, line []byte) ([]byte, bool) {
				if hasWord(line, at) && (uidplus || hasWord(line, "DELETED")) && !fired.Swap(true) {
					doveadm(t, "flags", "add", "-u", "alice", `\Deleted`, "mailbox", "INBOX", "header", "Subject", "n3")
				}
				if !uidplus && hasWord(line, " UID EXPUNGE ") {
					t.Errorf("UID EXPUNGE sent to a server without UIDPLUS: %q", line)
				}
				return line, false
			}, func(_ int, line []byte) ([]byte, bool) { return hide(line), false })
			res := sync1(t, p, engine.RunOptions{})
			if !fired.Load() {
				t.Fatalf("no %s of \\Deleted seen", at)
			}
			if res.Deleted != [2]int{1, 0} {
				t.Errorf("deleted %v, want [1 0]", res.Deleted)
			}
			if f, n := engine.ViewBox(t, p.raw[0], "INBOX"), engine.ViewBox(t, near, "INBOX"); f != "n1: n3:T n4:" || n != "n1: n3: n4:" {
				t.Fatalf("after the run:\nfar:  %s (want n1: n3:T n4:)\nnear: %s (want n1: n3: n4:)", f, n)
			}
			sync1(t, p, engine.RunOptions{})
			p.check(t, "INBOX", "n1: n4:")
		})
	}
}

// TestUnsolicitedResponsesMidCommand: another client is active on the
// mailbox, and the server tells about it in the middle of the run's
// commands, before their own answers: the proxy puts an untagged FETCH of
// the flags another client set (with the UID) and a FETCH without a UID
// (naming a message by sequence number only, with flags it does not have)
// in front of the answers to the listing and to the body FETCH. Nothing is
// taken for another message's flags or body: every message is copied once
// with its own flags. go-imap hands the first FETCH response naming a UID
// to the pending UID FETCH and drops the real answer behind it, so the
// store asks again for a body it did not get: the run succeeds at once.
func TestUnsolicitedResponsesMidCommand(t *testing.T) {
	p, fp := proxiedPairing(t)
	addMany(t, p.raw[0], "INBOX", 0, "f1", "f2", "f3", "f4")
	sync1(t, p, engine.RunOptions{}) // f1 to f4 get UIDs 1 to 4 there
	engine.ExpungeBySubject(t, p.raw[0], "INBOX", "f4")
	addMany(t, p.raw[0], "INBOX", 0, "g5", "g6") // UIDs 5 and 6: new
	doveadm(t, "flags", "add", "-u", "alice", `\Flagged`, "mailbox", "INBOX", "header", "Subject", "g6")
	// In front of the first answer to the listing and to the first body
	// FETCH (not to later ones: the other client acts once).
	var injected, sent atomic.Int64
	fp.set(func(_ int, line []byte) ([]byte, bool) {
		if hasWord(line, "UID FETCH") && (hasWord(line, "BODY.PEEK[]") || hasWord(line, "RFC822.SIZE")) && sent.Add(1) <= 2 {
			injected.Add(1)
		}
		return line, false
	}, func(_ int, line []byte) ([]byte, bool) {
		if n := injected.Load(); n > 0 && bytes.HasPrefix(line, []byte("* ")) && hasWord(line, " FETCH (") {
			injected.Add(-n)
			pre := "* 5 FETCH (UID 6 FLAGS (\\Flagged))\r\n* 2 FETCH (FLAGS (\\Seen \\Answered))\r\n"
			return append([]byte(pre), line...), false
		}
		return line, false
	})
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	fp.set(nil, nil)
	if err := mailboxErr(res); err != nil || res.Copied != [2]int{0, 2} {
		t.Errorf("run with unsolicited answers: %+v, %v", res.Counts, err)
	}
	want := "f1: f2: f3: g5: g6:F"
	if f, n := engine.ViewBox(t, p.raw[0], "INBOX"), engine.ViewBox(t, p.spec.Near, "INBOX"); f != want || n != want {
		t.Fatalf("after the run:\nfar:  %s\nnear: %s\nwant: %s", f, n, want)
	}
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", want)
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("not idempotent: %+v", res.Counts)
	}
}

// unsolicitedOnce has the server send line (another client's flag change)
// once, ahead of the first answer to the first UID FETCH that asks for item.
// It returns how many such FETCHes were sent.
func unsolicitedOnce(fp *faultProxy, item, line string) *atomic.Int32 {
	var armed atomic.Bool
	var asked atomic.Int32
	fp.set(func(_ int, l []byte) ([]byte, bool) {
		if hasWord(l, "UID FETCH") && hasWord(l, item) && asked.Add(1) == 1 {
			armed.Store(true)
		}
		return l, false
	}, func(_ int, l []byte) ([]byte, bool) {
		if bytes.HasPrefix(l, []byte("* ")) && hasWord(l, " FETCH (") && armed.CompareAndSwap(true, false) {
			return append([]byte(line+"\r\n"), l...), false
		}
		return l, false
	})
	return &asked
}

// Another client's flag change, sent by the server ahead of the answer to
// the listing of new messages, takes that message's place in go-imap: the
// listing then has its flags but neither its size nor its arrival date. The
// store asks for those again, so the copy keeps its date and max_size holds.
func TestUnsolicitedFetchInListingKeepsDetails(t *testing.T) {
	date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tooBig := range []bool{false, true} {
		t.Run(fmt.Sprintf("max_size=%v", tooBig), func(t *testing.T) {
			p, fp := proxiedPairing(t)
			p.spec.CopyArrivalDate = true
			addMany(t, p.raw[0], "INBOX", 0, "f1")
			sync1(t, p, engine.RunOptions{})
			addManyAt(t, p.raw[0], "INBOX", 0, date, "g2") // UID 2, sequence number 2
			if tooBig {
				p.spec.MaxSize = 10
			}
			unsolicitedOnce(fp, "RFC822.SIZE", "* 2 FETCH (UID 2 FLAGS (\\Seen))")
			res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
			fp.set(nil, nil)
			if err := mailboxErr(res); err != nil {
				t.Fatal(err)
			}
			if tooBig {
				if res.Copied != [2]int{} || engine.ViewBox(t, p.spec.Near, "INBOX") != "f1:" {
					t.Fatalf("max_size not held: %+v, near %s", res.Counts, engine.ViewBox(t, p.spec.Near, "INBOX"))
				}
				return
			}
			if res.Copied != [2]int{0, 1} {
				t.Fatalf("copies: %+v", res.Counts)
			}
			mb, err := p.spec.Near.OpenMailbox(context.Background(), "INBOX", true)
			if err != nil {
				t.Fatal(err)
			}
			defer mb.Close()
			msgs, _, err := mb.List(context.Background(), engine.ListQuery{All: true, NeedDetails: func(engine.UID) bool { return true }})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 2 || !msgs[1].Date.Equal(date) {
				t.Fatalf("near copy's date: %v, want %v", msgs, date)
			}
		})
	}
}

// The same in a first sync's pairing: the unsolicited FETCH stands in for
// the answer with the Message-ID, and a message left unidentified would be
// copied to the side that holds it already. The store asks for it again.
func TestUnsolicitedFetchInFirstPairing(t *testing.T) {
	p, fp := proxiedPairing(t)
	var both []rawMsg
	for _, subj := range names("both", 3) {
		both = append(both, rawMsg{testBody(subj), 0})
	}
	putMessages(t, p.raw[0], "INBOX", both) // UIDs 1 to 3
	putMessages(t, p.raw[1], "INBOX", both)
	asked := unsolicitedOnce(fp, "HEADER.FIELDS", "* 2 FETCH (UID 2 FLAGS (\\Seen))")
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	fp.set(nil, nil)
	if err := mailboxErr(res); err != nil {
		t.Fatal(err)
	}
	if asked.Load() == 0 {
		t.Fatal("no header fetch: the first sync did not pair over IMAP")
	}
	if res.Copied != [2]int{} {
		t.Fatalf("copies in a first sync of equal sides: %+v", res.Counts)
	}
	p.check(t, "INBOX", "both00: both01: both02:")
}

// A message larger than the server takes (Dovecot's quota_max_mail_size:
// "NO [LIMIT] Mail size is larger than ...") is reported once and not sent
// again at each run; the others are copied. One of them is sent as a
// literal go-imap waits for the continuation of (over 4 KiB, one by one
// after the refused MULTIAPPEND): Dovecot refuses it before that, which
// costs the connection but is still the message's answer.
func TestServerRefusesTooBig(t *testing.T) {
	p, _ := privatePairing(t, quotaConf("quota_max_mail_size = 2k"))
	addMany(t, p.spec.Near, "INBOX", 0, "small")
	putMessages(t, p.spec.Near, "INBOX", []rawMsg{
		{testBody("big") + strings.Repeat("filler line\n", 300), 0},
		{testBody("huge") + strings.Repeat("filler line\n", 600), 0},
	})
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	err := mailboxErr(res)
	if err == nil || !strings.Contains(err.Error(), "is larger than the far side takes") || !strings.Contains(err.Error(), "not tried again") {
		t.Fatalf("first run: %+v, %v", res.Counts, err)
	}
	if res.Failed != [2]int{2, 0} {
		t.Errorf("first run failed %v, want both large messages", res.Failed)
	}
	if res.Copied != [2]int{1, 0} {
		t.Fatalf("first run copied %v, want the small message", res.Copied)
	}
	appends := p.far.calls.get("Commit")
	res = sync1(t, p, engine.RunOptions{})
	if !zeroCounts(res.Counts) || p.far.calls.get("Commit") != appends {
		t.Fatalf("second run tried again: %+v, %d commits", res.Counts, p.far.calls.get("Commit")-appends)
	}
	if f := engine.ViewBox(t, p.raw[0], "INBOX"); f != "small:" {
		t.Fatalf("server INBOX: %s", f)
	}
}

// A server that announces APPENDLIMIT=N (RFC 7889) is not sent a larger
// message at all: the refusal is known before the upload.
func TestAppendLimitHeldBeforeUpload(t *testing.T) {
	p, fp := proxiedPairing(t)
	var appends atomic.Int32
	fp.set(func(_ int, line []byte) ([]byte, bool) {
		if hasWord(line, "APPEND") {
			appends.Add(1)
		}
		return line, false
	}, func(_ int, line []byte) ([]byte, bool) {
		// The limit goes into every capability list the server sends.
		if i := bytes.Index(line, []byte("CAPABILITY IMAP4rev1")); i >= 0 {
			at := i + len("CAPABILITY IMAP4rev1")
			return append(append(append([]byte{}, line[:at]...), " APPENDLIMIT=2048"...), line[at:]...), false
		}
		return line, false
	})
	addMany(t, p.spec.Near, "INBOX", 0, "small")
	putMessages(t, p.spec.Near, "INBOX", []rawMsg{{testBody("big") + strings.Repeat("filler line\n", 300), 0}})
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	fp.set(nil, nil)
	err := mailboxErr(res)
	if err == nil || !strings.Contains(err.Error(), "APPENDLIMIT") || !strings.Contains(err.Error(), "not tried again") {
		t.Fatalf("run: %+v, %v", res.Counts, err)
	}
	if res.Copied != [2]int{1, 0} || appends.Load() != 1 {
		t.Fatalf("copied %v with %d APPENDs, want the small message alone sent", res.Copied, appends.Load())
	}
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("second run: %+v", res.Counts)
	}
	// Flagged since, it is tried once more (the limit refuses it again,
	// before the upload), and then not at every run.
	engine.SetFlagsBySubject(t, p.spec.Near, "INBOX", "big", engine.FlagFlagged, 0)
	res = engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	if err := mailboxErr(res); err == nil || !strings.Contains(err.Error(), "APPENDLIMIT") {
		t.Fatalf("run after flagging: %+v, %v; want it tried and refused again", res.Counts, err)
	}
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("run after that: %+v", res.Counts)
	}
	if appends.Load() != 1 {
		t.Errorf("%d APPENDs, want the small message's alone", appends.Load())
	}
}

// TestFarUndeleteDuringRun: the user flags a message \Deleted on the server
// (webmail), a run lists it, and the user takes the \Deleted back before the
// run's removal reaches the server. The message stays on both sides: the
// removal's STORE \Deleted goes UNCHANGEDSINCE the open, so it leaves the
// message alone, UID EXPUNGE then passes it by, and its Maildir partner is
// kept. (Unconditional, the STORE put the \Deleted back, and the message was
// gone from both sides.) A removal not taken back goes through.
func TestFarUndeleteDuringRun(t *testing.T) {
	p, fp := proxiedPairing(t)
	addMany(t, p.raw[0], "INBOX", 0, "precious", "junk")
	sync1(t, p, engine.RunOptions{})
	engine.SetFlagsBySubject(t, p.raw[0], "INBOX", "precious", engine.FlagDeleted, 0)
	var fired atomic.Bool
	fp.set(func(_ int, line []byte) ([]byte, bool) {
		if hasWord(line, "UID STORE") && hasWord(line, `+FLAGS.SILENT (\DELETED)`) && !fired.Swap(true) {
			doveadm(t, "flags", "remove", "-u", "alice", `\Deleted`, "mailbox", "INBOX", "header", "Subject", "precious")
		}
		return line, false
	}, nil)
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	fp.set(nil, nil)
	if err := mailboxErr(res); err != nil {
		t.Fatal(err)
	}
	if !fired.Load() {
		t.Fatal("the run sent no removal: the test undeleted nothing")
	}
	for range 2 {
		p.check(t, "INBOX", "junk: precious:")
		sync1(t, p, engine.RunOptions{})
	}
	engine.SetFlagsBySubject(t, p.raw[0], "INBOX", "junk", engine.FlagDeleted, 0)
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", "precious:")
}

// TestSelectRacingMailboxCreation: Dovecot answers a SELECT that meets
// another session creating the mailbox at that moment (a new account's
// INBOX, made on first use, while the first run's connections open it and
// ask its STATUS) with NO [ALREADYEXISTS]. That was the first run's error
// for INBOX; the SELECT is asked again and the run goes through.
func TestSelectRacingMailboxCreation(t *testing.T) {
	p, fp := proxiedPairing(t)
	addMany(t, p.raw[0], "INBOX", 0, "f1")
	addMany(t, p.spec.Near, "INBOX", 0, "n1")
	var refused atomic.Int64
	fp.set(nil, func(_ int, line []byte) ([]byte, bool) {
		if bytes.Contains(line, []byte(" OK [READ-WRITE] Select completed")) && refused.CompareAndSwap(0, 1) {
			i := bytes.Index(line, []byte(" OK "))
			line = append(append([]byte(nil), line[:i]...), " NO [ALREADYEXISTS] Mailbox already exists\r\n"...)
		}
		return line, false
	})
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	if refused.Load() != 1 {
		t.Fatal("no SELECT answered")
	}
	if err := mailboxErr(res); err != nil || res.Copied != [2]int{1, 1} {
		t.Fatalf("run with a SELECT refused ALREADYEXISTS: %+v, %v", res.Counts, err)
	}
	p.check(t, "INBOX", "f1: n1:")
}
