package imap

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// countingWriter counts the commands a trace shows the client sending.
type countingWriter struct {
	mu   sync.Mutex
	text strings.Builder
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.text.Write(p)
}

// commands returns the client lines (not literal data) traced since the last
// call.
func (w *countingWriter) commands() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range strings.Split(w.text.String(), "\n") {
		if _, rest, ok := strings.Cut(l, " C: "); ok && !strings.HasPrefix(rest, "[literal") {
			out = append(out, rest)
		}
	}
	w.text.Reset()
	return out
}

// TestDoveListIncrementalHighestMessageChanged: the highest message's flag
// change must be reported by an incremental List (From above every UID).
func TestDoveListIncrementalHighestMessageChanged(t *testing.T) {
	s := doveStore(t, "alice", nil)
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	var uids []engine.UID
	for i := 0; i < 3; i++ {
		uids = append(uids, stageCommit(t, ctx, mb, benchBody(i, 100), 0, time.Time{}).UID)
	}
	mb.Close()
	mb, err = s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	st := mb.Status()
	q := engine.ListQuery{From: st.UIDNext, ChangedSince: st.HighestModSeq}
	if msgs, _, err := mb.List(ctx, q); err != nil || len(msgs) != 0 {
		t.Fatalf("nothing changed yet: %+v %v", msgs, err)
	}
	if err := mb.SetFlags(ctx, uids[2:], engine.FlagFlagged, 0); err != nil {
		t.Fatal(err)
	}
	msgs, complete, err := mb.List(ctx, q)
	if err != nil || complete || len(msgs) != 1 || msgs[0].UID != uids[2] || msgs[0].Flags != engine.FlagFlagged {
		t.Fatalf("highest message's change: complete=%v %+v %v", complete, msgs, err)
	}
}

// TestDoveListStatusStampMatchesSelect: ListMailboxes is one command for the
// whole account, and its LIST-STATUS stamp equals what SELECT reports for an
// unchanged mailbox, and differs after another client's flag change, new
// message or expunge. (The engine skips SELECTing a mailbox whose LIST-STATUS
// stamp equals the one recorded after the previous run's SELECT.)
func TestDoveListStatusStampMatchesSelect(t *testing.T) {
	var trace countingWriter
	s := doveStore(t, "alice", func(c *Config) { c.Debug = &trace })
	ctx := ctxT(t)
	for _, name := range []string{"A", "B", "C/D"} {
		if err := s.CreateMailbox(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	// Another client's store on the same account makes the changes.
	other := doveStoreNoReset(t, "alice")
	omb, err := other.OpenMailbox(ctx, "A", false)
	if err != nil {
		t.Fatal(err)
	}
	defer omb.Close()
	var uids []engine.UID
	for i := 0; i < 4; i++ {
		uids = append(uids, stageCommit(t, ctx, omb, benchBody(i, 200), 0, time.Time{}).UID)
	}

	listStamp := func(name string) string {
		t.Helper()
		trace.commands()
		infos, err := s.ListMailboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cmds := trace.commands(); len(cmds) != 1 || !strings.Contains(cmds[0], "RETURN (STATUS") {
			t.Fatalf("ListMailboxes sent %d commands, want one LIST-STATUS: %q", len(cmds), cmds)
		}
		for _, mi := range infos {
			if mi.Name == name {
				if mi.Status == nil || mi.Status.Stamp == "" {
					t.Fatalf("%s: no LIST-STATUS stamp: %+v", name, mi.Status)
				}
				return mi.Status.Stamp
			}
		}
		t.Fatalf("%s not listed", name)
		return ""
	}
	selectStamp := func(name string) string {
		t.Helper()
		mb, err := s.OpenMailbox(ctx, name, false)
		if err != nil {
			t.Fatal(err)
		}
		defer mb.Close()
		if mb.Status().Stamp == "" {
			t.Fatalf("%s: no SELECT stamp", name)
		}
		return mb.Status().Stamp
	}
	// Warm the pool so the listing below needs no login.
	listStamp("A")

	check := func(what string) {
		t.Helper()
		before := selectStamp("A")
		if got := listStamp("A"); got != before {
			t.Fatalf("%s: unchanged mailbox: LIST-STATUS stamp %q, SELECT stamp %q", what, got, before)
		}
		if got := selectStamp("A"); got != before {
			t.Fatalf("%s: a second SELECT changed the stamp: %q then %q", what, before, got)
		}
		for _, empty := range []string{"B", "C/D", "INBOX"} {
			if l, sel := listStamp(empty), selectStamp(empty); l != sel {
				t.Fatalf("%s: %s: LIST-STATUS stamp %q, SELECT stamp %q", what, empty, l, sel)
			}
		}
	}
	check("after appends")

	changes := []struct {
		what string
		do   func() error
	}{
		{"flag change", func() error { return omb.SetFlags(ctx, uids[1:2], engine.FlagSeen, 0) }},
		{"flag removal", func() error { return omb.SetFlags(ctx, uids[1:2], 0, engine.FlagSeen) }},
		{"new message", func() error {
			st, err := omb.Stage(ctx, engine.NewMessage{Body: strings.NewReader(benchBody(9, 300))})
			if err != nil {
				return err
			}
			res, err := omb.Commit(ctx, []engine.Staged{st})
			if err == nil {
				err = res[0].Err
			}
			return err
		}},
		{"expunge", func() error { return omb.Expunge(ctx, uids[2:3]) }},
	}
	for _, c := range changes {
		before := selectStamp("A")
		if err := c.do(); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if got := listStamp("A"); got == before {
			t.Fatalf("%s by another client: LIST-STATUS stamp still %q", c.what, got)
		}
		if got := selectStamp("A"); got == before {
			t.Fatalf("%s by another client: SELECT stamp still %q", c.what, got)
		}
		check("after " + c.what)
	}
}

// doveStoreNoReset is a second store on user's account, leaving the mail as
// it is (another client).
func doveStoreNoReset(t *testing.T, user string) *Store {
	t.Helper()
	d := needDovecot(t)
	cfg := Config{Name: "imap.other", Host: d.Host, Port: d.Port, TLS: "none", User: user,
		Password: pw(d.Password(user)), Timeout: 20 * time.Second, SpoolDir: t.TempDir()}
	s, err := New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
