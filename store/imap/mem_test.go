package imap

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/quixysync/quixysync/engine"
)

type strLit struct{ *strings.Reader }

func (l strLit) Size() int64 { return int64(l.Len()) }

type discardLog struct{}

func (discardLog) Printf(string, ...any) {}

// memServer starts go-imap's in-memory server (no CONDSTORE) with user
// alice/secret and the given extra capabilities.
func memServer(t *testing.T, caps ...imap.Cap) (host string, port int, user *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "secret")
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	cs := imap.CapSet{imap.CapIMAP4rev1: {}}
	for _, c := range caps {
		cs[c] = struct{}{}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         cs,
		InsecureAuth: true,
		Logger:       discardLog{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port, u
}

func seed(t *testing.T, u *imapmemserver.User, mbox string, msgs ...string) {
	t.Helper()
	for i, m := range msgs {
		opts := &imap.AppendOptions{Time: time.Date(2024, 1, 1, 0, 0, i, 0, time.UTC)}
		if _, err := u.Append(mbox, strLit{strings.NewReader(m)}, opts); err != nil {
			t.Fatal(err)
		}
	}
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func pw(s string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return s, nil }
}

func newMemStore(t *testing.T, host string, port int, mod func(*Config)) *Store {
	t.Helper()
	cfg := Config{Name: "imap.test", Host: host, Port: port, TLS: "none", User: "alice",
		Password: pw("secret"), Timeout: 5 * time.Second, SpoolDir: t.TempDir()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func names(infos []engine.MailboxInfo) []string {
	var out []string
	for _, i := range infos {
		out = append(out, i.Name)
	}
	return out
}

func fetchAll(t *testing.T, ctx context.Context, mb engine.Mailbox, uids []engine.UID) map[engine.UID]string {
	t.Helper()
	out := map[engine.UID]string{}
	err := mb.Fetch(ctx, uids, func(uid engine.UID, r io.Reader) error {
		b, err := io.ReadAll(r)
		out[uid] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func stageCommit(t *testing.T, ctx context.Context, mb engine.Mailbox, body string, f engine.Flag, date time.Time) engine.CommitResult {
	t.Helper()
	st, err := mb.Stage(ctx, engine.NewMessage{Flags: f, Date: date, Body: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != int64(len(body)) {
		t.Fatalf("staged size %d, want %d (canonical LF form)", st.Size(), len(body))
	}
	res, err := mb.Commit(ctx, []engine.Staged{st})
	if err != nil || res[0].Err != nil {
		t.Fatalf("commit: %v %v", err, res[0].Err)
	}
	return res[0]
}

func TestMemBasicRoundTrip(t *testing.T) {
	host, port, u := memServer(t, imap.CapUIDPlus, imap.CapESearch, imap.CapListStatus, imap.CapMove)
	seed(t, u, "INBOX", "Subject: one\r\n\r\nbody 1\r\n", "Subject: two\r\n\r\nbody 2\r\nlone\rcr\r\n")
	s := newMemStore(t, host, port, func(c *Config) { c.ListStatus = true })
	ctx := ctxT(t)

	caps, err := s.Capabilities(ctx)
	if err != nil || !strings.Contains(strings.Join(caps, " "), "UIDPLUS") {
		t.Fatalf("caps %v %v", caps, err)
	}
	if err := s.CreateMailbox(ctx, "Archive/2024"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(ctx, "Archive/2024"); err != nil {
		t.Fatalf("creating an existing mailbox: %v", err)
	}
	infos, err := s.ListMailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(names(infos), ",")
	if !strings.Contains(got, "INBOX") || !strings.Contains(got, "Archive/2024") {
		t.Fatalf("mailboxes %s", got)
	}
	for _, i := range infos {
		if i.Status == nil {
			t.Fatalf("LIST-STATUS offered but no status for %s", i.Name)
		}
		if i.Status.Stamp != "" {
			t.Fatalf("stamp %q without CONDSTORE", i.Status.Stamp)
		}
		if i.Name == "INBOX" && i.Status.Messages != 2 {
			t.Fatalf("INBOX status %+v", *i.Status)
		}
	}

	mb, err := s.OpenMailbox(ctx, "inbox", false) // INBOX is case-insensitive
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	st := mb.Status()
	if st.UIDNext != 3 || st.Messages != 2 || st.Stamp != "" || st.UIDValidity == 0 {
		t.Fatalf("status %+v", st)
	}
	msgs, complete, err := mb.List(ctx, engine.ListQuery{From: 2, ChangedSince: 5})
	if err != nil {
		t.Fatal(err)
	}
	if !complete || len(msgs) != 2 {
		t.Fatalf("without CONDSTORE List must return all messages, complete: %v %v", msgs, complete)
	}
	if !msgs[0].SizeIsCRLF || msgs[0].Size != int64(len("Subject: one\r\n\r\nbody 1\r\n")) {
		t.Fatalf("size %+v", msgs[0])
	}
	if !msgs[0].Date.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("date %v", msgs[0].Date)
	}
	bodies := fetchAll(t, ctx, mb, []engine.UID{1, 2, 99})
	if bodies[1] != "Subject: one\n\nbody 1\n" || bodies[2] != "Subject: two\n\nbody 2\nlone\rcr\n" {
		t.Fatalf("bodies %v", bodies)
	}
	if _, ok := bodies[99]; ok {
		t.Fatal("fn called for a UID that does not exist")
	}

	date := time.Date(2023, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	r := stageCommit(t, ctx, mb, "Subject: new\n\nhello\nworld\n", engine.FlagSeen|engine.FlagFlagged|engine.FlagPassed, date)
	if r.UID != 3 {
		t.Fatalf("APPENDUID: uid %d", r.UID)
	}
	mb.Close()

	// A fresh open sees the appended message with flags, date and CRLF body.
	mb2, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb2.Close()
	msgs, _, err = mb2.List(ctx, engine.ListQuery{All: true})
	if err != nil || len(msgs) != 3 {
		t.Fatalf("%v %v", msgs, err)
	}
	m3 := msgs[2]
	if m3.Flags != engine.FlagSeen|engine.FlagFlagged|engine.FlagPassed || !m3.Date.Equal(date) ||
		m3.Size != int64(len("Subject: new\r\n\r\nhello\r\nworld\r\n")) {
		t.Fatalf("appended %+v", m3)
	}
	if b := fetchAll(t, ctx, mb2, []engine.UID{3}); b[3] != "Subject: new\n\nhello\nworld\n" {
		t.Fatalf("body %q", b[3])
	}

	if err := mb2.SetFlags(ctx, []engine.UID{1, 2, 3}, engine.FlagReplied|engine.FlagDraft, engine.FlagSeen); err != nil {
		t.Fatal(err)
	}
	msgs, _, _ = mb2.List(ctx, engine.ListQuery{All: true})
	for _, m := range msgs {
		if !m.Flags.Has(engine.FlagReplied|engine.FlagDraft) || m.Flags.Has(engine.FlagSeen) {
			t.Fatalf("flags after SetFlags: %+v", m)
		}
	}
	uids, err := mb2.UIDs(ctx, 3)
	if err != nil || len(uids) != 2 || uids[0] != 1 || uids[1] != 2 {
		t.Fatalf("UIDs(3) = %v %v", uids, err)
	}
	if err := mb2.Expunge(ctx, []engine.UID{2}); err != nil {
		t.Fatal(err)
	}
	uids, err = mb2.UIDs(ctx, 100)
	if err != nil || len(uids) != 2 || uids[0] != 1 || uids[1] != 3 {
		t.Fatalf("after expunge UIDs = %v %v", uids, err)
	}
	if err := mb2.SetFlags(ctx, nil, engine.FlagSeen, 0); err != nil {
		t.Fatalf("empty UID set must be a no-op: %v", err)
	}
	if err := mb2.Fetch(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	// The connection still works after all that (no encoder error killed it).
	if _, _, err := mb2.List(ctx, engine.ListQuery{All: true}); err != nil {
		t.Fatal(err)
	}

	if err := s.DeleteMailbox(ctx, "Archive/2024"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, "Nope"); !errors.Is(err, engine.ErrNoMailbox) {
		t.Fatalf("delete missing: %v", err)
	}
	if err := s.DeleteMailbox(ctx, "INBOX"); err == nil {
		t.Fatal("deleting INBOX must fail")
	}
	if _, err := s.OpenMailbox(ctx, "Nope", false); !errors.Is(err, engine.ErrNoMailbox) {
		t.Fatalf("open missing: %v", err)
	}
	if _, err := s.OpenMailbox(ctx, "a/../b", false); !errors.Is(err, engine.ErrBadName) {
		t.Fatalf("bad name: %v", err)
	}
}

func TestMemDeleteNotEmpty(t *testing.T) {
	host, port, u := memServer(t, imap.CapUIDPlus)
	if err := u.Create("Full", nil); err != nil {
		t.Fatal(err)
	}
	seed(t, u, "Full", "Subject: x\r\n\r\nx\r\n")
	s := newMemStore(t, host, port, nil)
	if err := s.DeleteMailbox(ctxT(t), "Full"); !errors.Is(err, engine.ErrNotEmpty) {
		t.Fatalf("got %v", err)
	}
}

func TestMemNoListStatusAndStatusAll(t *testing.T) {
	host, port, u := memServer(t) // rev1 only: no UIDPLUS, ESEARCH, LIST-STATUS
	seed(t, u, "INBOX", "a\r\n", "b\r\n")
	s := newMemStore(t, host, port, nil)
	ctx := ctxT(t)
	infos, err := s.ListMailboxes(ctx)
	if err != nil || len(infos) != 1 || infos[0].Status != nil {
		t.Fatalf("%+v %v", infos, err)
	}
	m, err := s.StatusAll(ctx, []string{"INBOX", "Missing"})
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := m["INBOX"]; !ok || st.Messages != 2 || st.UIDNext != 3 {
		t.Fatalf("%+v", m)
	}
	if _, ok := m["Missing"]; ok {
		t.Fatal("missing mailbox in StatusAll result")
	}
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	// No UIDPLUS: APPEND reports UID 0; plain SEARCH for UIDs.
	r := stageCommit(t, ctx, mb, "c\n", 0, time.Time{})
	if r.UID != 0 {
		t.Fatalf("uid %d without UIDPLUS", r.UID)
	}
	uids, err := mb.UIDs(ctx, 100)
	if err != nil || len(uids) != 3 {
		t.Fatalf("%v %v", uids, err)
	}
	// Without UIDPLUS Expunge must still remove only the given UIDs: another
	// \Deleted message survives, keeping its flag.
	if err := mb.SetFlags(ctx, []engine.UID{2}, engine.FlagDeleted, 0); err != nil {
		t.Fatal(err)
	}
	if err := mb.Expunge(ctx, []engine.UID{1}); err != nil {
		t.Fatal(err)
	}
	if uids, _ := mb.UIDs(ctx, 100); len(uids) != 2 || uids[0] != 2 {
		t.Fatalf("%v", uids)
	}
	msgs, _, err := mb.List(ctx, engine.ListQuery{All: true})
	if err != nil || len(msgs) != 2 || !msgs[0].Flags.Has(engine.FlagDeleted) {
		t.Fatalf("%+v %v", msgs, err)
	}
}

func TestMemReadOnly(t *testing.T) {
	host, port, u := memServer(t, imap.CapUIDPlus)
	seed(t, u, "INBOX", "a\r\n")
	s := newMemStore(t, host, port, nil)
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", true)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if err := mb.SetFlags(ctx, []engine.UID{1}, engine.FlagSeen, 0); !errors.Is(err, engine.ErrReadOnly) {
		t.Fatalf("SetFlags: %v", err)
	}
	if err := mb.Expunge(ctx, []engine.UID{1}); !errors.Is(err, engine.ErrReadOnly) {
		t.Fatalf("Expunge: %v", err)
	}
	if _, err := mb.Stage(ctx, engine.NewMessage{Body: strings.NewReader("x")}); !errors.Is(err, engine.ErrReadOnly) {
		t.Fatalf("Stage: %v", err)
	}
}

// syncBuf is a goroutine-safe buffer for the trace.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestMemTraceRedactsAndCaps(t *testing.T) {
	for _, auth := range [][]string{{"login"}, {"plain"}} {
		t.Run(auth[0], func(t *testing.T) {
			host, port, u := memServer(t, imap.CapUIDPlus)
			big := "Subject: big\r\n\r\n" + strings.Repeat("SECRETBODY ", 2000) + "\r\n"
			seed(t, u, "INBOX", big)
			var buf syncBuf
			const password = "secret"
			s := newMemStore(t, host, port, func(c *Config) { c.Debug = &buf; c.Auth = auth })
			ctx := ctxT(t)
			mb, err := s.OpenMailbox(ctx, "INBOX", false)
			if err != nil {
				t.Fatal(err)
			}
			fetchAll(t, ctx, mb, []engine.UID{1})
			stageCommit(t, ctx, mb, strings.Repeat("UPLOADED ", 1000), 0, time.Time{})
			mb.Close()
			tr := buf.String()
			if strings.Contains(tr, password) {
				t.Fatalf("password in trace:\n%s", tr)
			}
			// base64 of "\x00alice\x00secret" (AUTHENTICATE PLAIN)
			if strings.Contains(tr, "AGFsaWNlAHNlY3JldA") {
				t.Fatalf("PLAIN payload in trace:\n%s", tr)
			}
			if !strings.Contains(tr, "redacted") || !strings.Contains(tr, "SELECT") {
				t.Fatalf("trace lacks expected lines:\n%s", tr)
			}
			if n := strings.Count(tr, "SECRETBODY"); n > 20 {
				t.Fatalf("message body dumped into the trace (%d times)", n)
			}
			if n := strings.Count(tr, "UPLOADED"); n > 20 {
				t.Fatalf("APPEND body dumped into the trace (%d times)", n)
			}
			if len(tr) > 8000 {
				t.Fatalf("trace too long (%d bytes):\n%s", len(tr), tr)
			}
		})
	}
}

// A server advertising IMAP4rev1 and IMAP4rev2 stays in IMAP4rev1 mode
// until ENABLE: names must still go out in modified UTF-7.
func TestMemRev2NamesStayUTF7(t *testing.T) {
	host, port, _ := memServer(t, imap.CapIMAP4rev2, imap.CapUIDPlus)
	var buf syncBuf
	s := newMemStore(t, host, port, func(c *Config) { c.Debug = &buf })
	ctx := ctxT(t)
	caps, err := s.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range caps {
		if c == "IMAP4rev2" {
			t.Fatalf("IMAP4rev2 not filtered from %v", caps)
		}
	}
	if err := s.CreateMailbox(ctx, "Entwürfe & Co"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `CREATE "Entw&APw-rfe &- Co"`) {
		t.Fatalf("name not sent as modified UTF-7:\n%s", buf.String())
	}
	infos, err := s.ListMailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(names(infos), "|"), "Entwürfe & Co") {
		t.Fatalf("round trip: %v", names(infos))
	}
}

func TestMemPoolLimit(t *testing.T) {
	host, port, u := memServer(t, imap.CapUIDPlus)
	if err := u.Create("B", nil); err != nil {
		t.Fatal(err)
	}
	s := newMemStore(t, host, port, func(c *Config) { c.Connections = 1 })
	ctx := ctxT(t)
	calls := 0
	s.cfg.Password = func(context.Context) (string, error) { calls++; return "secret", nil }
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	// The only connection is taken: a second open waits until ctx ends.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = s.OpenMailbox(short, "B", false)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expected to wait for a connection, got %v", err)
	}
	mb.Close()
	mb2, err := s.OpenMailbox(ctx, "B", false)
	if err != nil {
		t.Fatal(err)
	}
	mb2.Close()
	if calls != 1 {
		t.Fatalf("password fetched %d times", calls)
	}
	// Close's UNSELECT left the connection reusable (one connection in all).
	if n := s.dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled, want 1", n)
	}
	_ = strconv.Itoa
}

func TestMemBadPassword(t *testing.T) {
	host, port, _ := memServer(t)
	s := newMemStore(t, host, port, func(c *Config) { c.Password = pw("wrong-pass") })
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "authentication failed for alice at 127.0.0.1 (mechanism PLAIN): server said") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "wrong-pass") {
		t.Fatalf("secret in error: %v", err)
	}
}

func slogTo(w interface{ Write([]byte) (int, error) }) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
