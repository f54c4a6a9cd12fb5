package imap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/quixysync/quixysync/engine"
)

// On Dovecot (MULTIAPPEND, LITERAL+, UIDPLUS) a batch goes out as one
// APPEND command, and every message arrives once, with its flags and date,
// under the UID its result names.
func TestDoveCommitMultiAppend(t *testing.T) {
	s, mb, trace := doveTracedInbox(t, "alice")
	ctx := ctxT(t)
	trace.commands()
	const n = 60
	res, in, err := commitBatch(t, mb, n)
	if err != nil {
		t.Fatal(err)
	}
	appends := 0
	for _, l := range trace.commands() {
		if strings.Contains(l, " APPEND ") {
			appends++
		}
	}
	if appends != 1 {
		t.Fatalf("%d APPEND commands for one batch, want 1 (MULTIAPPEND)", appends)
	}
	bySubj, byUID := serverView(t, s, "INBOX")
	if len(byUID) != n {
		t.Fatalf("%d messages on the server, want %d", len(byUID), n)
	}
	checkCommitted(t, res, in, bySubj, byUID)
	// The connection carries on normally after the raw command.
	if _, _, err := mb.List(ctx, engine.ListQuery{All: true}); err != nil {
		t.Fatal(err)
	}
	// A one-message batch goes the same way: one command, with a
	// non-synchronizing literal, and no LIST first (one round trip, not 3).
	trace.commands()
	res, _, err = commitBatch(t, mb, 1)
	if err != nil || res[0].Err != nil || res[0].UID == 0 {
		t.Fatalf("single commit: %v %+v", err, res)
	}
	cmds := slices.DeleteFunc(trace.commands(), func(c string) bool { return strings.TrimSpace(c) == "" })
	if len(cmds) != 1 || !strings.Contains(cmds[0], " APPEND ") || !strings.Contains(cmds[0], "+}") {
		t.Fatalf("a one-message commit sent %q; want one APPEND with a non-synchronizing literal", cmds)
	}
	if _, byUID = serverView(t, s, "INBOX"); len(byUID) != n+1 {
		t.Fatalf("%d messages on the server after the single commit, want %d", len(byUID), n+1)
	}
	if _, ok := byUID[res[0].UID]; !ok {
		t.Fatalf("the single commit reported UID %d, which the server does not have", res[0].UID)
	}
}

// A connection that dies in the middle of a MULTIAPPEND leaves every message
// of the batch failed (never sent again: the outcome is unknown) and, the
// command being all or nothing, none of them on the server.
func TestDoveMultiAppendConnectionKilled(t *testing.T) {
	s, mb := doveInbox(t, "alice")
	s.testAppend = func(cn *conn, idx int, afterLiteral, own bool) {
		if idx == 10 {
			cn.dc.Conn.Close()
		}
	}
	res, _, err := commitBatch(t, mb, 20)
	s.testAppend = nil
	if err != nil {
		t.Fatalf("commit stopped: %v", err)
	}
	for i, r := range res {
		if r.Err == nil || r.UID != 0 {
			t.Fatalf("message %d: %+v, want an error", i, r)
		}
	}
	if _, byUID := serverView(t, s, "INBOX"); len(byUID) != 0 {
		t.Fatalf("%d messages of the broken MULTIAPPEND on the server", len(byUID))
	}
	// The mailbox reconnects for the next batch.
	if res, _, err := commitBatch(t, mb, 3); err != nil || res[2].Err != nil {
		t.Fatalf("after reconnect: %v %+v", err, res)
	}
}

// A batch for a mailbox deleted meanwhile: the MULTIAPPEND is refused
// (no existence check is made before it), the check before the one-by-one
// path then says the mailbox is gone, and the connection stays usable.
func TestDoveMultiAppendMailboxDeleted(t *testing.T) {
	s := doveStore(t, "alice", nil)
	ctx := ctxT(t)
	if err := s.CreateMailbox(ctx, "Gone"); err != nil {
		t.Fatal(err)
	}
	mb, err := s.OpenMailbox(ctx, "Gone", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if err := doveStoreNoReset(t, "alice").DeleteMailbox(ctx, "Gone"); err != nil {
		t.Fatal(err)
	}
	res, _, err := commitBatch(t, mb, 3)
	if !errors.Is(err, engine.ErrNoMailbox) || !errors.Is(res[0].Err, engine.ErrNoMailbox) {
		t.Fatalf("got %v, %+v", err, res)
	}
	if _, err := s.ListMailboxes(ctx); err != nil {
		t.Fatalf("store unusable afterwards: %v", err)
	}
}

// multiAppendServer is a scripted server offering MULTIAPPEND. For an APPEND
// it reads the literals (LITERAL+) and answers with reply(tag, messages).
func multiAppendServer(t *testing.T, reply func(tag string, msgs []string) string) (string, int) {
	selected := "* 0 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 1] n\r\n"
	return selectedServer(t, "IMAP4rev1 LITERAL+ UIDPLUS MULTIAPPEND", selected, func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
		if !strings.HasPrefix(strings.ToUpper(cmd), "APPEND ") {
			return false
		}
		var msgs []string
		line := cmd
		for {
			n, ok := literalSize([]byte(line))
			if !ok {
				break
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(r, buf); err != nil {
				return true
			}
			msgs = append(msgs, string(buf))
			l, err := r.ReadString('\n')
			if err != nil {
				return true
			}
			line = strings.TrimRight(l, "\r\n")
		}
		say(reply(tag, msgs))
		return true
	})
}

// openFakeInbox opens INBOX on a fake server; the test's cleanup closes it.
func openFakeInbox(t *testing.T, host string, port int) engine.Mailbox {
	t.Helper()
	mb, err := fakeStore(t, host, port, nil).OpenMailbox(ctxT(t), "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mb.Close() })
	return mb
}

func stageN(t *testing.T, mb engine.Mailbox, n int) []engine.Staged {
	t.Helper()
	var st []engine.Staged
	for i := range n {
		x, err := mb.Stage(ctxT(t), engine.NewMessage{Flags: engine.FlagSeen, Body: strings.NewReader(fmt.Sprintf("Subject: m%d\n\nbody\n", i))})
		if err != nil {
			t.Fatal(err)
		}
		st = append(st, x)
	}
	return st
}

// A refused MULTIAPPEND (all or nothing: nothing was appended) is sent again
// one message at a time, so only the bad message fails.
func TestFakeMultiAppendRefusedFallsBack(t *testing.T) {
	var calls [][]string
	uid := 0
	host, port := multiAppendServer(t, func(tag string, msgs []string) string {
		calls = append(calls, msgs)
		if len(msgs) > 1 {
			return tag + " NO [LIMIT] too much at once\r\n"
		}
		if strings.Contains(msgs[0], "m1\r\n") {
			return tag + " NO message rejected\r\n"
		}
		uid++
		return fmt.Sprintf("%s OK [APPENDUID 42 %d] ok\r\n", tag, uid)
	})
	mb := openFakeInbox(t, host, port)
	res, err := mb.Commit(ctxT(t), stageN(t, mb, 3))
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 4 || len(calls[0]) != 3 {
		t.Fatalf("APPEND calls %d (first with %d messages), want one MULTIAPPEND of 3 then 3 single", len(calls), len(calls[0]))
	}
	if res[0].Err != nil || res[0].UID != 1 || res[1].Err == nil || res[2].Err != nil || res[2].UID != 2 {
		t.Fatalf("results %+v", res)
	}
	if !strings.Contains(calls[0][0], "Subject: m0\r\n") {
		t.Fatalf("literal not in CRLF form: %q", calls[0][0])
	}
}

// The UIDs of the reply are given to the messages in order; a UIDVALIDITY
// other than the mailbox's stops the commit.
func TestFakeMultiAppendUIDs(t *testing.T) {
	validity := 42
	host, port := multiAppendServer(t, func(tag string, msgs []string) string {
		return fmt.Sprintf("%s OK [APPENDUID %d 7,9:10] ok\r\n", tag, validity)
	})
	mb := openFakeInbox(t, host, port)
	res, err := mb.Commit(ctxT(t), stageN(t, mb, 3))
	if err != nil {
		t.Fatal(err)
	}
	var got []engine.UID
	for _, r := range res {
		got = append(got, r.UID)
	}
	if !slices.Equal(got, []engine.UID{7, 9, 10}) {
		t.Fatalf("UIDs %v", got)
	}
	validity = 43
	res, err = mb.Commit(ctxT(t), stageN(t, mb, 2))
	if !errors.Is(err, engine.ErrValidity) || !errors.Is(res[0].Err, engine.ErrValidity) {
		t.Fatalf("got %v, %+v", err, res)
	}
}

func TestParseMultiAppendReply(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int
		want []engine.UID
		no   bool
		err  bool
	}{
		{"QX1 OK [APPENDUID 5 3:5] done\r\n", 3, []engine.UID{3, 4, 5}, false, false},
		{"QX1 OK [APPENDUID 5 5:3] done\r\n", 3, []engine.UID{3, 4, 5}, false, false},
		{"QX1 OK [APPENDUID 5 1,4,9:10] done\r\n", 4, []engine.UID{1, 4, 9, 10}, false, false},
		{"QX1 OK done\r\n", 2, []engine.UID{0, 0}, false, false},                   // no UIDPLUS answer: unknown
		{"QX1 OK [APPENDUID 5 1:9] done\r\n", 2, []engine.UID{0, 0}, false, false}, // count mismatch: unknown
		{"QX1 OK [APPENDUID 5 x] done\r\n", 1, []engine.UID{0}, false, false},
		{"QX1 OK [APPENDUID 5 5,5] done\r\n", 2, []engine.UID{0, 0}, false, false}, // a UID twice: unknown
		{"QX1 OK [APPENDUID 5 4:5,5] done\r\n", 3, []engine.UID{0, 0, 0}, false, false},
		{"QX1 NO [OVERQUOTA] full\r\n", 2, nil, true, false},
		{"QX1 BAD what\r\n", 2, nil, true, false},
		{"QX1 OK [APPENDUID 6 1:2] done\r\n", 2, nil, false, true}, // other UIDVALIDITY
		{"QX2 OK done\r\n", 1, nil, false, true},
		{"QX1 MAYBE\r\n", 1, nil, false, true},
	} {
		got, err := parseMultiAppendReply([]byte(tc.line), "QX1", tc.n, 5)
		var ie *imap.Error
		switch {
		case tc.no:
			if !errors.As(err, &ie) {
				t.Errorf("%q: got %v, want a server refusal", tc.line, err)
			}
		case tc.err:
			if err == nil || errors.As(err, &ie) {
				t.Errorf("%q: got %v %v, want an error", tc.line, got, err)
			}
		default:
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("%q: got %v %v, want %v", tc.line, got, err, tc.want)
			}
		}
	}
}

func TestQuoteMailbox(t *testing.T) {
	for in, want := range map[string]string{`INBOX`: `"INBOX"`, `a "b"\c`: `"a \"b\"\\c"`, "Entw&APw-rfe": `"Entw&APw-rfe"`} {
		if got, ok := quoteMailbox(in); !ok || got != want {
			t.Errorf("%q: got %q %v", in, got, ok)
		}
	}
	for _, bad := range []string{"a\r\nb", "caf\xc3\xa9", "x\x00"} {
		if _, ok := quoteMailbox(bad); ok {
			t.Errorf("%q quoted", bad)
		}
	}
}

// Where APPENDLIMIT comes without a value, each mailbox has its own (RFC
// 7889): it is asked once, with STATUS, at the first message staged, and a
// message above it is held back before any upload as with a server-wide
// limit. A NIL limit, or a STATUS the server refuses, leaves the size to
// the APPEND.
func TestFakeAppendLimitPerMailbox(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		bigHeld      bool
	}{
		{"limit", "* STATUS INBOX (APPENDLIMIT 100)\r\n%s OK done\r\n", true},
		{"NIL", "* STATUS INBOX (APPENDLIMIT NIL)\r\n%s OK done\r\n", false},
		{"refused", "%s BAD unknown status item\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var statuses []string
			selected := "* 0 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 1] n\r\n"
			host, port := selectedServer(t, "IMAP4rev1 LITERAL+ UIDPLUS APPENDLIMIT", selected, func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
				if !strings.HasPrefix(strings.ToUpper(cmd), "STATUS ") {
					return false
				}
				mu.Lock()
				statuses = append(statuses, cmd)
				mu.Unlock()
				say(fmt.Sprintf(tc.answer, tag))
				return true
			})
			mb := openFakeInbox(t, host, port)
			stage := func(body string) error {
				_, err := mb.Stage(ctxT(t), engine.NewMessage{Body: strings.NewReader(body)})
				return err
			}
			if err := stage("Subject: small\n\nx\n"); err != nil {
				t.Fatalf("small message: %v", err)
			}
			err := stage("Subject: big\n\n" + strings.Repeat("line\n", 40))
			if held := errors.Is(err, engine.ErrTooBig); held != tc.bigHeld || (!held && err != nil) {
				t.Fatalf("big message: %v, want held back: %v", err, tc.bigHeld)
			}
			if tc.bigHeld && !strings.Contains(err.Error(), "at most 100 (APPENDLIMIT)") {
				t.Errorf("error does not say the limit: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(statuses) != 1 || !strings.Contains(strings.ToUpper(statuses[0]), "(APPENDLIMIT)") {
				t.Fatalf("STATUS commands %q, want one asking APPENDLIMIT", statuses)
			}
		})
	}
}

// A MULTIAPPEND reply is a server's text: whatever it says, the reading
// never panics, and an accepted reply gives exactly one UID per message,
// either all unknown (0) or all distinct and non-zero.
func FuzzParseMultiAppendReply(f *testing.F) {
	f.Add([]byte("QX1 OK [APPENDUID 5 7,9:11] done\r\n"), uint8(4))
	f.Add([]byte("QX1 OK [APPENDUID 5 11:9] done\r\n"), uint8(3))
	f.Add([]byte("QX1 OK [APPENDUID 5 3,4]\r\n"), uint8(2))
	f.Add([]byte("QX1 NO [TRYCREATE] no\r\n"), uint8(1))
	f.Add([]byte("QX1 OK done\r\n"), uint8(2))
	f.Add([]byte("QX1 OK [APPENDUID 6 1] other validity\r\n"), uint8(1))
	f.Add([]byte("QX1 OK [APPENDUID 5 1:4294967295]\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, line []byte, n8 uint8) {
		n := int(n8 % 65)
		uids, err := parseMultiAppendReply(line, "QX1", n, 5)
		if err != nil {
			return
		}
		if len(uids) != n {
			t.Fatalf("%q: %d UIDs for %d messages", line, len(uids), n)
		}
		seen := map[engine.UID]bool{}
		zero := 0
		for _, u := range uids {
			if u == 0 {
				zero++
				continue
			}
			if seen[u] {
				t.Fatalf("%q: UID %d twice", line, u)
			}
			seen[u] = true
		}
		if zero != 0 && zero != n {
			t.Fatalf("%q: %d of %d UIDs unknown", line, zero, n)
		}
	})
}
