package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/dovecottest"
)

var dove *dovecottest.Server

func TestMain(m *testing.M) {
	dovecottest.Main(m, dovecottest.Options{}, func(s *dovecottest.Server) { dove = s })
}

func needDovecot(t *testing.T) *dovecottest.Server {
	t.Helper()
	if dove == nil {
		t.Skip("no Dovecot in -short mode")
	}
	return dove
}

// doveInbox is doveStore for user with its INBOX open (closed at the end of
// the test).
func doveInbox(t *testing.T, user string) (*Store, engine.Mailbox) {
	t.Helper()
	s := doveStore(t, user, nil)
	mb, err := s.OpenMailbox(ctxT(t), "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mb.Close() })
	return s, mb
}

// doveTracedInbox is doveInbox with the store's protocol trace.
func doveTracedInbox(t *testing.T, user string) (*Store, engine.Mailbox, *countingWriter) {
	t.Helper()
	trace := &countingWriter{}
	s := doveStore(t, user, func(c *Config) { c.Debug = trace })
	mb, err := s.OpenMailbox(ctxT(t), "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mb.Close() })
	return s, mb, trace
}

// doveGatedStore is doveStore over plain IMAP through an answerGate.
func doveGatedStore(t *testing.T, user string, trace *countingWriter) (*Store, *answerGate) {
	t.Helper()
	d := needDovecot(t)
	gate, host, port := newAnswerGate(t, net.JoinHostPort(d.Host, strconv.Itoa(d.Port)), 3*time.Second)
	s := doveStore(t, user, func(c *Config) {
		c.Debug = trace
		c.Host, c.Port, c.TLS, c.CAFile = host, port, "none", ""
	})
	return s, gate
}

// doveStore returns a store for user on the shared Dovecot, wiping the
// user's mail first (tests using the same user must not run in parallel).
func doveStore(t *testing.T, user string, mod func(*Config)) *Store {
	t.Helper()
	d := needDovecot(t)
	if err := d.ResetUser(user); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: "imap.dove", Host: d.Host, Port: d.TLSPort, TLS: "implicit", User: user,
		Password: pw(d.Password(user)), CAFile: d.CAFile, Timeout: 20 * time.Second, SpoolDir: t.TempDir()}
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

func TestDoveCondStoreListAndUIDs(t *testing.T) {
	s, mb := doveInbox(t, "alice")
	ctx := ctxT(t)
	var uids []engine.UID
	for i := 0; i < 5; i++ {
		r := stageCommit(t, ctx, mb, "Subject: m\n\nbody\n", 0, time.Time{})
		if r.UID == 0 {
			t.Fatal("no APPENDUID from Dovecot")
		}
		uids = append(uids, r.UID)
	}
	mb.Close()

	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	st := mb.Status()
	if st.HighestModSeq == 0 || st.Stamp == "" || st.UIDNext != uids[4]+1 || st.Messages != 5 {
		t.Fatalf("status %+v", st)
	}
	infos, err := s.ListMailboxes(ctx)
	if err != nil || len(infos) != 1 || infos[0].Status != nil {
		t.Fatalf("ListMailboxes without ListStatus: %+v %v (want no status: STATUS is cheaper on Dovecot)", infos, err)
	}
	sts, err := s.StatusAll(ctx, []string{"INBOX"})
	if err != nil || sts["INBOX"].Stamp != st.Stamp {
		t.Fatalf("STATUS stamp differs from SELECT's: %+v %v (select %q)", sts, err, st.Stamp)
	}
	// Change flags on UID 2, then ask for new messages from UID 5 plus
	// changes since the modseq seen at open.
	if err := mb.SetFlags(ctx, uids[1:2], engine.FlagSeen, 0); err != nil {
		t.Fatal(err)
	}
	msgs, complete, err := mb.List(ctx, engine.ListQuery{From: uids[4], ChangedSince: st.HighestModSeq})
	if err != nil {
		t.Fatal(err)
	}
	if complete || len(msgs) != 2 || msgs[0].UID != uids[1] || msgs[0].Flags != engine.FlagSeen || msgs[1].UID != uids[4] {
		t.Fatalf("incremental list: complete=%v %+v", complete, msgs)
	}
	if msgs[1].Size <= 0 || !msgs[1].SizeIsCRLF || msgs[1].Date.IsZero() {
		t.Fatalf("new message lacks size/date: %+v", msgs[1])
	}
	// From above every UID: "UID FETCH n:*" returns the last message anyway;
	// it must be filtered out.
	msgs, _, err = mb.List(ctx, engine.ListQuery{From: uids[4] + 10})
	if err != nil || len(msgs) != 0 {
		t.Fatalf("From beyond UIDNEXT: %+v %v", msgs, err)
	}
	// The stamp changes with a flag change (seen by a fresh open).
	mb2, err := s.OpenMailbox(ctx, "INBOX", true)
	if err != nil {
		t.Fatal(err)
	}
	if mb2.Status().Stamp == st.Stamp {
		t.Fatal("stamp unchanged after a flag change")
	}
	mb2.Close()
	// ESEARCH UIDs.
	got, err := mb.UIDs(ctx, uids[3])
	if err != nil || len(got) != 3 || got[2] != uids[2] {
		t.Fatalf("UIDs: %v %v", got, err)
	}
	if err := mb.Expunge(ctx, uids[0:1]); err != nil {
		t.Fatal(err)
	}
	if got, _ = mb.UIDs(ctx, 1000); len(got) != 4 || got[0] != uids[1] {
		t.Fatalf("after expunge: %v", got)
	}
}

func TestDoveStartTLSAndNonASCIINames(t *testing.T) {
	d := needDovecot(t)
	var buf syncBuf
	s := doveStore(t, "bob", func(c *Config) { c.TLS = "starttls"; c.Port = d.Port; c.Debug = &buf })
	ctx := ctxT(t)
	names := []string{"Entwürfe & Co", "Entwürfe & Co/Unter ordner", "日本語", "Tom & Jerry"}
	for _, n := range names {
		if err := s.CreateMailbox(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	infos, err := s.ListMailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(namesOf(infos), "|")
	for _, n := range names {
		if !strings.Contains("|"+got+"|", "|"+n+"|") {
			t.Fatalf("%q missing from %q", n, got)
		}
	}
	if !strings.Contains(buf.String(), "Entw&APw-rfe &- Co") {
		t.Fatal("names not sent as modified UTF-7")
	}
	mb, err := s.OpenMailbox(ctx, "Entwürfe & Co/Unter ordner", false)
	if err != nil {
		t.Fatal(err)
	}
	stageCommit(t, ctx, mb, "Subject: ü\n\nx\n", 0, time.Time{})
	mb.Close()
	if err := s.DeleteMailbox(ctx, "Entwürfe & Co/Unter ordner"); !errors.Is(err, engine.ErrNotEmpty) {
		t.Fatalf("delete non-empty: %v", err)
	}
	if err := s.DeleteMailbox(ctx, "日本語"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), d.Password("bob")) {
		t.Fatal("password in trace")
	}
}

func namesOf(infos []engine.MailboxInfo) []string { return names(infos) }

func TestDoveTLSErrors(t *testing.T) {
	d := needDovecot(t)
	ctx := ctxT(t)
	// No ca_file: the self-signed certificate is unknown.
	s := doveStore(t, "alice", func(c *Config) { c.CAFile = "" })
	_, err := s.ListMailboxes(ctx)
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority: set ca_file") {
		t.Fatalf("got %v", err)
	}
	// Implicit TLS against the plain port.
	s = doveStore(t, "alice", func(c *Config) { c.Port = d.Port })
	_, err = s.ListMailboxes(ctx)
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("got %v", err)
	}
	// Plain TCP to loopback is allowed.
	s = doveStore(t, "alice", func(c *Config) { c.TLS = "none"; c.Port = d.Port })
	if _, err := s.ListMailboxes(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDoveBadPassword(t *testing.T) {
	s := doveStore(t, "alice", func(c *Config) { c.Password = pw("not-the-password") })
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "authentication failed for alice at 127.0.0.1 (mechanism PLAIN): server said: NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "not-the-password") {
		t.Fatal("secret in error")
	}
	// Dovecot's text ends with a period; the hint follows without ".;".
	if !strings.HasSuffix(err.Error(), `Authentication failed; check user ("alice") and the password`) {
		t.Errorf("the refusal does not end with what to check: %v", err)
	}
	// The failure is remembered: no second login attempt.
	n := s.dials.Load()
	if _, err2 := s.ListMailboxes(ctxT(t)); err2 == nil || s.dials.Load() != n {
		t.Fatalf("retried a refused login: %v", err2)
	}
}

func TestDoveLoginMechanism(t *testing.T) {
	s := doveStore(t, "alice", func(c *Config) { c.Auth = []string{"xoauth2", "login"}; c.Token = pw("tok") })
	if _, err := s.ListMailboxes(ctxT(t)); err != nil {
		t.Fatalf("LOGIN (xoauth2 not offered): %v", err)
	}
}

// bigReader yields n bytes of LF text without holding them in memory.
type bigReader struct{ n, off int64 }

func (r *bigReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	line := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678\n")
	k := 0
	for k < len(p) && r.off < r.n {
		p[k] = line[r.off%int64(len(line))]
		k++
		r.off++
	}
	return k, nil
}

func TestDoveLargeMessageStreamed(t *testing.T) {
	_, mb := doveInbox(t, "bob")
	ctx := ctxT(t)
	const size = 20 << 20
	hdr := "Subject: big\n\n"
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	st, err := mb.Stage(ctx, engine.NewMessage{Body: io.MultiReader(strings.NewReader(hdr), &bigReader{n: size})})
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size+int64(len(hdr)) {
		t.Fatalf("staged %d", st.Size())
	}
	res, err := mb.Commit(ctx, []engine.Staged{st})
	if err != nil || res[0].Err != nil || res[0].UID == 0 {
		t.Fatalf("%v %+v", err, res)
	}
	var n int64
	sum := bytes.Buffer{}
	err = mb.Fetch(ctx, []engine.UID{res[0].UID}, func(uid engine.UID, r io.Reader) error {
		var err error
		head := make([]byte, len(hdr))
		if _, err = io.ReadFull(r, head); err != nil {
			return err
		}
		sum.Write(head)
		m, err := io.Copy(io.Discard, r)
		n = m + int64(len(hdr))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms)
	alloc := ms.TotalAlloc - before
	if n != size+int64(len(hdr)) || sum.String() != hdr {
		t.Fatalf("fetched %d bytes, head %q", n, sum.String())
	}
	if alloc > size/4 {
		t.Fatalf("allocated %d bytes for a %d-byte message: not streamed", alloc, size)
	}
	t.Logf("20 MB up and down with %d KiB allocated", alloc>>10)
}

// PrefetchUIDs: the UID SEARCH goes out with List's FETCHes, before their
// answers are read, and UIDs then answers from it — the removals of a
// mailbox are known without a round trip of their own. A UIDs with another
// bound, or after a List that did not carry it, asks the server.
func TestDovePrefetchUIDs(t *testing.T) {
	trace := &countingWriter{}
	s, gate := doveGatedStore(t, "alice", trace)
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	var uids []engine.UID
	for range 6 {
		uids = append(uids, stageCommit(t, ctx, mb, "Subject: m\n\nbody\n", 0, time.Time{}).UID)
	}
	st := mb.Status()
	mb.Close()
	// Another session removes two known messages and adds one.
	other, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Expunge(ctx, []engine.UID{uids[1], uids[3]}); err != nil {
		t.Fatal(err)
	}
	other.Close()

	mb, err = s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	below := uids[5] + 1
	trace.mu.Lock()
	trace.text.Reset()
	trace.mu.Unlock()
	gate.arm(" UID FETCH ", " UID SEARCH ")
	mb.(engine.UIDPrefetcher).PrefetchUIDs(below)
	if _, _, err := mb.List(ctx, engine.ListQuery{From: below, ChangedSince: st.HighestModSeq}); err != nil {
		t.Fatal(err)
	}
	got, err := mb.UIDs(ctx, below)
	want := []engine.UID{uids[0], uids[2], uids[4], uids[5]}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("UIDs: %v %v, want %v", got, err, want)
	}
	// Sent with the listing's FETCHes, before they are answered.
	searches, fetches := 0, 0
	for _, l := range strings.Split(trace.text.String(), "\n") {
		switch {
		case strings.Contains(l, " C: ") && strings.Contains(l, "UID SEARCH"):
			searches++
		case strings.Contains(l, " C: ") && strings.Contains(l, "UID FETCH"):
			fetches++
		}
	}
	held, byClient := gate.result()
	if searches != 1 || fetches != 2 || !held || !byClient {
		t.Errorf("%d UID SEARCH commands (want 1) with %d FETCHes (want 2), sent before the listing was answered: %v\n%s", searches, fetches, held && byClient, trace.text.String())
	}
	// Used once: the next UIDs asks the server again, as does another bound.
	for _, b := range []engine.UID{below, uids[3]} {
		if got, err := mb.UIDs(ctx, b); err != nil || len(got) == 0 {
			t.Fatalf("UIDs(%d) after the prefetched one: %v %v", b, got, err)
		}
	}
	if n := strings.Count(trace.text.String(), "UID SEARCH"); n != 3 {
		t.Errorf("%d UID SEARCH in all, want 3", n)
	}
}

// StatusThenList: the LIST goes out right behind the pipelined STATUS
// commands, before they are answered, and still comes back after them. What
// it returns is what StatusAll and ListMailboxes return one after the other;
// a mailbox the server refuses is left out of the statuses.
func TestDoveStatusThenList(t *testing.T) {
	var trace countingWriter
	s, gate := doveGatedStore(t, "alice", &trace)
	ctx := ctxT(t)
	names := []string{"INBOX", "Archive/2025", "Lists/go.dev", "Sent"}
	for _, name := range names[1:] {
		if err := s.CreateMailbox(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	asked := append(slices.Clone(names), "Missing")
	wantSt, err := s.StatusAll(ctx, asked)
	if err != nil {
		t.Fatal(err)
	}
	wantList, err := s.ListMailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trace.mu.Lock()
	trace.text.Reset()
	trace.mu.Unlock()
	gate.arm(" STATUS ", ` LIST "" "*"`)
	st, list, err := s.StatusThenList(ctx, asked)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(st, wantSt) || len(st) != len(names) {
		t.Errorf("statuses %v, want %v (without Missing)", st, wantSt)
	}
	if !slices.Equal(list, wantList) {
		t.Errorf("listing %v, want %v", list, wantList)
	}
	if held, byClient := gate.result(); !held || !byClient {
		t.Errorf("the LIST waited for the STATUS answers (held %v, sent while held %v):\n%s", held, byClient, trace.text.String())
	}
	var lastStatusAt, firstListAt = -1, -1
	for i, l := range strings.Split(trace.text.String(), "\n") {
		switch {
		case strings.Contains(l, " S: ") && strings.Contains(l, "Status completed"),
			strings.Contains(l, " S: ") && strings.Contains(l, " NO "):
			lastStatusAt = i
		case strings.Contains(l, " S: * LIST") && firstListAt < 0:
			firstListAt = i
		}
	}
	if firstListAt < lastStatusAt {
		t.Errorf("the listing came back before the last STATUS:\n%s", trace.text.String())
	}
	// As a fresh store's first command, before the delimiter is known.
	fresh, err := New(s.cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	st, list, err = fresh.StatusThenList(ctx, asked)
	if err != nil || !maps.Equal(st, wantSt) || !slices.Equal(list, wantList) {
		t.Errorf("first command of a fresh store: %v %v %v; want %v %v", st, list, err, wantSt, wantList)
	}
}

// OpenMailboxListing: the listing's FETCHes and UID SEARCH go out behind the
// SELECT, before it is answered, and List and UIDs then answer from them
// without a command of their own, with what a plain open and List return.
// Opened under another UIDVALIDITY, or left unused, the listing is dropped
// and the mailbox works as ever.
func TestDoveOpenMailboxListing(t *testing.T) {
	trace := &countingWriter{}
	s, gate := doveGatedStore(t, "alice", trace)
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	var uids []engine.UID
	for i := range 6 {
		uids = append(uids, stageCommit(t, ctx, mb, fmt.Sprintf("Subject: m%d\n\nbody\n", i), 0, time.Time{}).UID)
	}
	mb.Close()
	if mb, err = s.OpenMailbox(ctx, "INBOX", false); err != nil {
		t.Fatal(err)
	}
	before := mb.Status()
	// Changes since: a flag, a removal, a new message.
	if err := mb.SetFlags(ctx, uids[1:2], engine.FlagSeen, 0); err != nil {
		t.Fatal(err)
	}
	if err := mb.Expunge(ctx, uids[3:4]); err != nil {
		t.Fatal(err)
	}
	stageCommit(t, ctx, mb, "Subject: new\n\nbody\n", 0, time.Time{})
	mb.Close()

	q := engine.ListQuery{From: before.UIDNext, ChangedSince: before.HighestModSeq}
	plain, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	plain.(engine.UIDPrefetcher).PrefetchUIDs(before.UIDNext)
	wantMsgs, _, err := plain.List(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	wantUIDs, err := plain.UIDs(ctx, before.UIDNext)
	if err != nil {
		t.Fatal(err)
	}
	plain.Close()

	ahead := engine.ListAhead{UIDValidity: before.UIDValidity, From: q.From, ChangedSince: q.ChangedSince, UIDsBelow: before.UIDNext}
	trace.commands()
	trace.mu.Lock()
	trace.text.Reset()
	trace.mu.Unlock()
	gate.arm(" SELECT ", " UID FETCH ")
	la, err := s.OpenMailboxListing(ctx, "INBOX", false, ahead)
	if err != nil {
		t.Fatal(err)
	}
	la.(engine.UIDPrefetcher).PrefetchUIDs(before.UIDNext)
	gotMsgs, complete, err := la.List(ctx, q)
	if err != nil || complete {
		t.Fatalf("List: %v, complete %v", err, complete)
	}
	gotUIDs, err := la.UIDs(ctx, before.UIDNext)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotMsgs, wantMsgs) || !slices.Equal(gotUIDs, wantUIDs) {
		t.Errorf("listing ahead: %+v %v; plain: %+v %v", gotMsgs, gotUIDs, wantMsgs, wantUIDs)
	}
	if len(wantMsgs) != 2 || len(wantUIDs) != 5 {
		t.Errorf("plain listing %+v, UIDs %v: want the flag change and the new message, 5 UIDs left", wantMsgs, wantUIDs)
	}
	// The first FETCH is written right behind the SELECT, before its
	// answer (the SEARCH may follow it a little later on a slow client).
	fetches, searches := 0, 0
	for _, l := range strings.Split(trace.text.String(), "\n") {
		switch {
		case strings.Contains(l, " C: ") && strings.Contains(l, "UID FETCH"):
			fetches++
		case strings.Contains(l, " C: ") && strings.Contains(l, "UID SEARCH"):
			searches++
		}
	}
	held, byClient := gate.result()
	if fetches != 2 || searches != 1 || !held || !byClient {
		t.Errorf("%d UID FETCH, %d UID SEARCH (want 2 and 1; the first sent before SELECT was answered: %v):\n%s",
			fetches, searches, held && byClient, trace.text.String())
	}
	la.Close()

	// Under another UIDVALIDITY, and when something else comes first.
	for _, tc := range []struct {
		name  string
		ahead engine.ListAhead
		first func(engine.Mailbox) error
	}{
		{"other validity", engine.ListAhead{UIDValidity: before.UIDValidity + 1, From: q.From, ChangedSince: q.ChangedSince}, nil},
		{"fetch first", ahead, func(mb engine.Mailbox) error {
			return mb.Fetch(ctx, uids[:1], func(engine.UID, io.Reader) error { return nil })
		}},
		{"other query", engine.ListAhead{UIDValidity: before.UIDValidity, From: q.From - 1, ChangedSince: q.ChangedSince}, nil},
	} {
		mb, err := s.OpenMailboxListing(ctx, "INBOX", false, tc.ahead)
		if err != nil {
			t.Fatal(err)
		}
		if tc.first != nil {
			if err := tc.first(mb); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		got, _, err := mb.List(ctx, q)
		if err != nil || !reflect.DeepEqual(got, wantMsgs) {
			t.Errorf("%s: %+v %v, want %+v", tc.name, got, err, wantMsgs)
		}
		got2, err := mb.UIDs(ctx, before.UIDNext)
		if err != nil || !slices.Equal(got2, wantUIDs) {
			t.Errorf("%s: UIDs %v %v, want %v", tc.name, got2, err, wantUIDs)
		}
		mb.Close()
	}
	// Left unused: closing reads it, and the connection serves the next open.
	mb, err = s.OpenMailboxListing(ctx, "INBOX", false, ahead)
	if err != nil {
		t.Fatal(err)
	}
	mb.Close()
	plain, err = s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if got, _, err := plain.List(ctx, q); err != nil || !reflect.DeepEqual(got, wantMsgs) {
		t.Errorf("after an unused listing: %+v %v", got, err)
	}
}

// Opening or deleting a mailbox below another is a fresh store's first
// act when the engine starts mailboxes before it lists them: the name's
// wire form needs the hierarchy delimiter, learnt at login.
func TestDoveHierarchyNameAsFirstCommand(t *testing.T) {
	setup := doveStore(t, "alice", nil)
	ctx := ctxT(t)
	for _, name := range []string{"Archive/2025", "Old/Gone"} {
		if err := setup.CreateMailbox(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	fresh := func() *Store {
		s, err := New(setup.cfg, testLog(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	mb, err := fresh().OpenMailbox(ctx, "Archive/2025", false)
	if err != nil {
		t.Fatalf("opening Archive/2025 first: %v", err)
	}
	mb.Close()
	if err := fresh().DeleteMailbox(ctx, "Old/Gone"); err != nil {
		t.Fatalf("deleting Old/Gone first: %v", err)
	}
	infos, err := setup.ListMailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(infos); slices.Contains(got, "Old/Gone") || !slices.Contains(got, "Archive/2025") {
		t.Fatalf("mailboxes after: %v", got)
	}
}

// With CONDSTORE, Expunge removes only messages nobody changed since the
// mailbox was opened (their flags as the caller listed them): one another
// client undeleted meanwhile, or read, stays and is reported kept; the
// others go, and so do messages changed through this Mailbox itself.
func TestDoveExpungeKeepsChangedMeanwhile(t *testing.T) {
	s, mb := doveInbox(t, "alice")
	ctx := ctxT(t)
	var uids []engine.UID
	for i := range 5 {
		f := engine.FlagDeleted
		if i >= 3 {
			f = 0
		}
		uids = append(uids, stageCommit(t, ctx, mb, fmt.Sprintf("Subject: m%d\n\nbody\n", i), f, time.Time{}).UID)
	}
	mb.Close()
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	// Another client (its own session) takes the \Deleted of uids[1] back,
	// and reads uids[3], after our open.
	d := needDovecot(t)
	other, err := New(Config{Name: "imap.other", Host: d.Host, Port: d.TLSPort, TLS: "implicit", User: "alice",
		Password: pw(d.Password("alice")), CAFile: d.CAFile, Timeout: 20 * time.Second}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	omb, err := other.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := omb.SetFlags(ctx, uids[1:2], 0, engine.FlagDeleted); err != nil {
		t.Fatal(err)
	}
	if err := omb.SetFlags(ctx, uids[3:4], engine.FlagSeen, 0); err != nil {
		t.Fatal(err)
	}
	omb.Close()
	// uids[4] changed through mb itself: still removed.
	if err := mb.SetFlags(ctx, uids[4:5], engine.FlagFlagged, 0); err != nil {
		t.Fatal(err)
	}
	err = mb.Expunge(ctx, uids)
	var kept *engine.KeptError
	if !errors.As(err, &kept) || !slices.Equal(kept.UIDs, []engine.UID{uids[1], uids[3]}) {
		t.Fatalf("Expunge: %v, want %v kept", err, []engine.UID{uids[1], uids[3]})
	}
	if got, err := mb.UIDs(ctx, uids[4]+1); err != nil || !slices.Equal(got, []engine.UID{uids[1], uids[3]}) {
		t.Fatalf("left: %v %v, want %v", got, err, []engine.UID{uids[1], uids[3]})
	}
}
