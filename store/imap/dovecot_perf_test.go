package imap

import (
	"fmt"
	"io"
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
	s, mb := doveInbox(t, "alice")
	ctx := ctxT(t)
	var uids []engine.UID
	for i := 0; i < 3; i++ {
		uids = append(uids, stageCommit(t, ctx, mb, benchBody(i, 100), 0, time.Time{}).UID)
	}
	mb.Close()
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
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
	s := doveStore(t, "alice", func(c *Config) { c.Debug = &trace; c.ListStatus = true })
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

// commitBatch stages n distinct messages (flags and dates varying) and
// commits them in one Commit.
func commitBatch(t *testing.T, mb engine.Mailbox, n int) ([]engine.CommitResult, []engine.NewMessage, error) {
	t.Helper()
	ctx := ctxT(t)
	flagSets := []engine.Flag{0, engine.FlagSeen, engine.FlagSeen | engine.FlagFlagged, engine.FlagReplied | engine.FlagSeen, engine.FlagDraft}
	base := time.Date(2023, 5, 6, 7, 8, 9, 0, time.UTC)
	var in []engine.NewMessage
	var st []engine.Staged
	for i := range n {
		size := 300
		if i%3 == 0 {
			size = 6000 // synchronizing literal
		}
		nm := engine.NewMessage{Flags: flagSets[i%len(flagSets)], Date: base.Add(time.Duration(i) * time.Hour), Body: strings.NewReader(benchBody(i, size))}
		s, err := mb.Stage(ctx, nm)
		if err != nil {
			t.Fatal(err)
		}
		nm.Body = strings.NewReader(benchBody(i, size))
		in = append(in, nm)
		st = append(st, s)
	}
	res, err := mb.Commit(ctx, st)
	if len(res) != n {
		t.Fatalf("%d results for %d messages", len(res), n)
	}
	return res, in, err
}

// serverView lists the mailbox from a fresh connection: subject index ->
// UIDs carrying it, and the listed messages by UID.
func serverView(t *testing.T, s *Store, name string) (map[int][]engine.UID, map[engine.UID]engine.Message) {
	t.Helper()
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, name, true)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	msgs, _, err := mb.List(ctx, engine.ListQuery{All: true})
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[engine.UID]engine.Message{}
	var uids []engine.UID
	for _, m := range msgs {
		byUID[m.UID] = m
		uids = append(uids, m.UID)
	}
	bySubj := map[int][]engine.UID{}
	err = mb.Fetch(ctx, uids, func(uid engine.UID, r io.Reader) error {
		b, err := io.ReadAll(r)
		var k int
		if _, serr := fmt.Sscanf(string(b[strings.Index(string(b), "Subject: message ")+len("Subject: message "):]), "%d", &k); serr != nil {
			return serr
		}
		bySubj[k] = append(bySubj[k], uid)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return bySubj, byUID
}

// checkCommitted fails unless every message of in arrived once, under the
// UID its result names, with its flags and date.
func checkCommitted(t *testing.T, res []engine.CommitResult, in []engine.NewMessage, bySubj map[int][]engine.UID, byUID map[engine.UID]engine.Message) {
	t.Helper()
	for i, r := range res {
		if r.Err != nil || r.UID == 0 {
			t.Fatalf("message %d: %+v", i, r)
		}
		if got := bySubj[i]; len(got) != 1 || got[0] != r.UID {
			t.Fatalf("message %d: result UID %d, server has it as %v", i, r.UID, got)
		}
		m := byUID[r.UID]
		if m.Flags != in[i].Flags || !m.Date.Equal(in[i].Date) {
			t.Fatalf("message %d: flags %v date %v, want %v %v", i, m.Flags, m.Date, in[i].Flags, in[i].Date)
		}
	}
}

func TestDoveCommitParallel(t *testing.T) {
	var trace countingWriter
	s := doveStore(t, "alice", func(c *Config) { c.Connections = 4; c.CommitConnections = 4; c.Debug = &trace })
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	dials := s.dials.Load()
	trace.commands()
	const n = 200
	s.PlannedCopies(n, 200<<20) // as the engine does: the pool may grow
	res, in, err := commitBatch(t, mb, n)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.dials.Load() - dials; got != 3 {
		t.Errorf("dialled %d extra connections, want 3", got)
	}
	// The extra connections only APPEND: no SELECT or EXAMINE.
	for _, l := range strings.Split(trace.text.String(), "\n") {
		if strings.Contains(l, " C: ") && (strings.Contains(l, " SELECT ") || strings.Contains(l, " EXAMINE ")) {
			t.Errorf("a commit connection selected a mailbox: %s", l)
		}
	}
	bySubj, byUID := serverView(t, s, "INBOX")
	if len(byUID) != n {
		t.Fatalf("%d messages on the server, want %d", len(byUID), n)
	}
	checkCommitted(t, res, in, bySubj, byUID)
	ordered := true
	for i, r := range res {
		if i > 0 && r.UID < res[i-1].UID {
			ordered = false
		}
	}
	if ordered {
		t.Log("UIDs happen to ascend in staged order")
	}
	// The extra connections went back to the pool: a second batch reuses them.
	dials = s.dials.Load()
	if _, _, err := commitBatch(t, mb, 40); err != nil {
		t.Fatal(err)
	}
	if got := s.dials.Load() - dials; got != 0 {
		t.Errorf("second commit dialled %d connections", got)
	}
}

// TestDoveCommitConnectionKilled closes the socket of one extra connection
// and of the mailbox's own connection in the middle of a batch, once while
// a literal is being sent and once right after. The results must name the
// failed messages; nothing is appended twice (the store never retries an
// APPEND whose outcome is unknown), and everything else arrives once.
func TestDoveCommitConnectionKilled(t *testing.T) {
	for _, after := range []bool{false, true} {
		t.Run(fmt.Sprintf("afterLiteral=%v", after), func(t *testing.T) {
			s := doveStore(t, "alice", func(c *Config) { c.Connections = 4; c.CommitConnections = 4 })
			ctx := ctxT(t)
			mb, err := s.OpenMailbox(ctx, "INBOX", false)
			if err != nil {
				t.Fatal(err)
			}
			defer mb.Close()
			var mu sync.Mutex
			killedExtra, killedOwn := -1, -1
			count := 0
			s.testAppend = func(cn *conn, idx int, afterLiteral, own bool) {
				mu.Lock()
				defer mu.Unlock()
				if afterLiteral != after {
					return
				}
				count++
				switch {
				case own && killedOwn < 0 && count > 60:
					killedOwn = idx
				case !own && killedExtra < 0 && count > 20:
					killedExtra = idx
				default:
					return
				}
				cn.dc.Conn.Close()
			}
			const n = 120
			res, _, err := commitBatch(t, mb, n)
			s.testAppend = nil
			if err != nil {
				t.Fatalf("commit stopped: %v", err)
			}
			if killedExtra < 0 || killedOwn < 0 {
				t.Fatalf("hook did not fire on both kinds of connection (extra %d, own %d)", killedExtra, killedOwn)
			}
			bySubj, _ := serverView(t, s, "INBOX")
			failed := 0
			for i, r := range res {
				got := bySubj[i]
				if len(got) > 1 {
					t.Fatalf("message %d appended %d times", i, len(got))
				}
				if r.Err != nil {
					failed++
					if r.UID != 0 {
						t.Fatalf("message %d: error and UID %d", i, r.UID)
					}
					// Only a message whose literal was cut short is surely
					// absent; others in flight may have arrived.
					if !after && (i == killedExtra || i == killedOwn) && len(got) != 0 {
						t.Fatalf("message %d: literal cut short, yet the server has it", i)
					}
					continue
				}
				if len(got) != 1 || got[0] != r.UID {
					t.Fatalf("message %d: UID %d reported, server has %v", i, r.UID, got)
				}
			}
			for _, k := range []int{killedExtra, killedOwn} {
				if res[k].Err == nil {
					t.Fatalf("message %d was on a killed connection but reports success", k)
				}
			}
			if failed > 2*appendWindow {
				t.Fatalf("%d messages failed; at most %d were in flight on the two killed connections", failed, 2*appendWindow)
			}
			t.Logf("%d of %d failed: %v", failed, n, res[killedExtra].Err)
		})
	}
}
