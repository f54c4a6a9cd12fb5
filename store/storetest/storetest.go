// Package storetest is the contract every engine.Store must honour, as one
// test suite. A store's package runs it from a test:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) engine.Store { return newStore(t) }, storetest.Caps{UIDPlus: true})
//	}
//
// Every subtest works in mailboxes with fresh unique names, so one account
// or directory tree may be shared by all of them (and by other tests).
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// Caps says what the store under test can do; the suite skips or relaxes the
// checks that need what it lacks.
type Caps struct {
	// CondStore: Status().HighestModSeq is set and List honours ChangedSince.
	CondStore bool
	// UIDPlus: Commit reports the UID of every committed message.
	UIDPlus bool
	// NoDotNames: the store refuses '.' in mailbox names (Maildir++).
	NoDotNames bool
	// NoReadOnly: OpenMailbox(readOnly=true) is not supported at all.
	NoReadOnly bool
	// StampDelay is how long after a change the store may still report an
	// empty Stamp (Maildir: its clock granularity guard, 1s). The Stamp test
	// waits this long before each look so it compares real stamps.
	StampDelay time.Duration
}

// Opener returns the store to test. It may hand out one shared store or a
// new one per call; closing it is the opener's business (t.Cleanup). A new
// call stands for "a later run" (the UIDVALIDITY check reopens through it).
type Opener func(t *testing.T) engine.Store

// subtestTimeout bounds each subtest, so a hung store fails instead of
// stalling the whole test binary.
const subtestTimeout = 2 * time.Minute

// Run runs the whole contract suite against the stores open returns.
func Run(t *testing.T, open Opener, caps Caps) {
	s := &suite{open: open, caps: caps, run: uniq()}
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context)
	}{
		{"ListAndInbox", s.listAndInbox},
		{"CreateListDelete", s.createListDelete},
		{"DeleteNonEmpty", s.deleteNonEmpty},
		{"OpenMissing", s.openMissing},
		{"StageCommitRoundTrip", s.roundTrip},
		{"LargeMessage", s.largeMessage},
		{"Discard", s.discard},
		{"SetFlags", s.setFlags},
		{"Expunge", s.expunge},
		{"UIDValidityStable", s.uidValidityStable},
		{"Stamp", s.stamp},
		{"ListFromChangedSince", s.listFromChangedSince},
		{"ReadOnly", s.readOnly},
		{"FetchErrors", s.fetchErrors},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), subtestTimeout)
			defer cancel()
			tc.fn(t, ctx)
		})
	}
}

type suite struct {
	open Opener
	caps Caps
	run  string // unique per Run, so stores can be shared across runs too
	seq  int
}

func uniq() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return hex.EncodeToString(b[:])
}

// box returns a fresh top-level mailbox name for one subtest.
func (s *suite) box(t *testing.T, what string) string {
	s.seq++
	return fmt.Sprintf("st-%s-%d-%s", s.run, s.seq, what)
}

// ---- helpers ---------------------------------------------------------------

type msg struct {
	flags engine.Flag
	date  time.Time
	body  []byte
}

// message builds a plain message with a unique Message-ID.
func message(subject, body string) []byte {
	return []byte(fmt.Sprintf("From: Sender <sender@example.org>\nTo: rcpt@example.org\nSubject: %s\n"+
		"Message-ID: <%s@storetest.example>\nDate: Thu, 04 Mar 2021 05:06:07 +0000\n\n%s",
		subject, uniq(), body))
}

func mustCreate(t *testing.T, ctx context.Context, st engine.Store, name string) {
	t.Helper()
	if err := st.CreateMailbox(ctx, name); err != nil {
		t.Fatalf("CreateMailbox(%q): %v", name, err)
	}
}

func mustOpen(t *testing.T, ctx context.Context, st engine.Store, name string, readOnly bool) engine.Mailbox {
	t.Helper()
	mb, err := st.OpenMailbox(ctx, name, readOnly)
	if err != nil {
		t.Fatalf("OpenMailbox(%q, readOnly=%v): %v", name, readOnly, err)
	}
	t.Cleanup(func() { mb.Close() })
	return mb
}

func closeBox(t *testing.T, mb engine.Mailbox) {
	t.Helper()
	if err := mb.Close(); err != nil {
		t.Fatalf("Mailbox.Close: %v", err)
	}
}

// listAll returns every message, sorted by UID, and checks complete.
func listAll(t *testing.T, ctx context.Context, mb engine.Mailbox) []engine.Message {
	t.Helper()
	msgs, complete, err := mb.List(ctx, engine.ListQuery{All: true})
	if err != nil {
		t.Fatalf("List(All): %v", err)
	}
	if !complete {
		t.Errorf("List(All) reported complete=false")
	}
	sortMsgs(msgs)
	for i := 1; i < len(msgs); i++ {
		if msgs[i].UID == msgs[i-1].UID {
			t.Errorf("List(All) reports UID %d twice", msgs[i].UID)
		}
	}
	return msgs
}

func sortMsgs(msgs []engine.Message) {
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].UID < msgs[j].UID })
}

func uidsOf(msgs []engine.Message) []engine.UID {
	out := make([]engine.UID, len(msgs))
	for i, m := range msgs {
		out[i] = m.UID
	}
	return out
}

// add stages and commits msgs in one Commit and returns their UIDs in order.
// Without UIDPLUS the UIDs are learnt from a List: the new ones, ascending,
// belong to msgs in commit order.
func (s *suite) add(t *testing.T, ctx context.Context, mb engine.Mailbox, msgs ...msg) []engine.UID {
	t.Helper()
	var before map[engine.UID]bool
	if !s.caps.UIDPlus {
		before = map[engine.UID]bool{}
		for _, m := range listAll(t, ctx, mb) {
			before[m.UID] = true
		}
	}
	staged := make([]engine.Staged, 0, len(msgs))
	for i, m := range msgs {
		sm, err := mb.Stage(ctx, engine.NewMessage{Flags: m.flags, Date: m.date, Body: bytes.NewReader(m.body)})
		if err != nil {
			mb.Discard(staged)
			t.Fatalf("Stage #%d: %v", i, err)
		}
		if sm.Size() != int64(len(m.body)) {
			t.Errorf("Stage #%d: Size() = %d, want %d", i, sm.Size(), len(m.body))
		}
		staged = append(staged, sm)
	}
	res, err := mb.Commit(ctx, staged)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if len(res) != len(staged) {
		t.Fatalf("Commit returned %d results for %d staged messages", len(res), len(staged))
	}
	uids := make([]engine.UID, len(res))
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("Commit #%d: %v", i, r.Err)
		}
		if pre := staged[i].UID(); pre != 0 && r.UID != 0 && pre != r.UID {
			t.Errorf("Commit #%d: staged with UID %d, committed as %d", i, pre, r.UID)
		}
		uids[i] = r.UID
		if s.caps.UIDPlus && r.UID == 0 {
			t.Fatalf("Commit #%d: UID 0 from a store with UIDPLUS", i)
		}
	}
	if !s.caps.UIDPlus {
		var fresh []engine.UID
		for _, m := range listAll(t, ctx, mb) {
			if !before[m.UID] {
				fresh = append(fresh, m.UID)
			}
		}
		if len(fresh) != len(msgs) {
			t.Fatalf("after committing %d messages, %d new ones are listed", len(msgs), len(fresh))
		}
		for i, u := range uids {
			if u != 0 && u != fresh[i] {
				t.Errorf("Commit #%d reported UID %d, List shows %d", i, u, fresh[i])
			}
		}
		uids = fresh
	}
	for i := 1; i < len(uids); i++ {
		if uids[i] <= uids[i-1] {
			t.Errorf("UIDs of one Commit not ascending in commit order: %v", uids)
			break
		}
	}
	return uids
}

// fetchAll fetches uids and returns the bytes per UID, failing on a UID
// reported twice or one not asked for.
func fetchAll(t *testing.T, ctx context.Context, mb engine.Mailbox, uids []engine.UID) map[engine.UID][]byte {
	t.Helper()
	want := map[engine.UID]bool{}
	for _, u := range uids {
		want[u] = true
	}
	got := map[engine.UID][]byte{}
	err := mb.Fetch(ctx, uids, func(uid engine.UID, r io.Reader) error {
		if !want[uid] {
			return fmt.Errorf("Fetch reported UID %d, not asked for", uid)
		}
		if _, dup := got[uid]; dup {
			return fmt.Errorf("Fetch reported UID %d twice", uid)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("reading UID %d: %w", uid, err)
		}
		got[uid] = b
		return nil
	})
	if err != nil {
		t.Fatalf("Fetch(%v): %v", uids, err)
	}
	return got
}

// within runs f and fails the test if it has not returned after d. f keeps
// running (it may be stuck for good); the test goroutine moves on.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v: the store hangs", what, d)
		return nil
	}
}

// sameBytes compares without dumping megabytes into the log.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	snip := func(b []byte) string {
		lo, hi := max(0, i-20), min(len(b), i+20)
		return fmt.Sprintf("%q", b[lo:hi])
	}
	t.Errorf("%s: bytes differ (got %d bytes, want %d); first difference at offset %d: got %s, want %s",
		what, len(got), len(want), i, snip(got), snip(want))
}

func checkSize(t *testing.T, what string, m engine.Message, body []byte) {
	t.Helper()
	lf := int64(len(body))
	crlf := lf + int64(bytes.Count(body, []byte("\n")))
	switch {
	case m.Size == -1:
	case m.SizeIsCRLF && m.Size != crlf:
		t.Errorf("%s: Size %d (CRLF form), want %d", what, m.Size, crlf)
	case !m.SizeIsCRLF && m.Size != lf:
		t.Errorf("%s: Size %d, want %d", what, m.Size, lf)
	}
}

func checkDate(t *testing.T, what string, got, want time.Time, slack time.Duration) {
	t.Helper()
	if d := got.Sub(want); d > slack || d < -slack {
		t.Errorf("%s: Date %v, want %v (±%v)", what, got, want, slack)
	}
}

func flagsByUID(msgs []engine.Message) map[engine.UID]engine.Flag {
	m := make(map[engine.UID]engine.Flag, len(msgs))
	for _, x := range msgs {
		m[x.UID] = x.Flags
	}
	return m
}

func hasName(infos []engine.MailboxInfo, name string) bool {
	for _, in := range infos {
		if in.Name == name {
			return true
		}
	}
	return false
}

func names(infos []engine.MailboxInfo) []string {
	out := make([]string, len(infos))
	for i, in := range infos {
		out[i] = in.Name
	}
	return out
}

// ---- subtests --------------------------------------------------------------

func (s *suite) listAndInbox(t *testing.T, ctx context.Context) {
	st := s.open(t)
	if st.Name() == "" {
		t.Error("Name() is empty")
	}
	if _, err := st.ListMailboxes(ctx); err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	// INBOX may or may not exist up front; once created it is listed, and
	// creating it again is fine.
	mustCreate(t, ctx, st, "INBOX")
	mustCreate(t, ctx, st, "INBOX")
	infos, err := st.ListMailboxes(ctx)
	if err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	if !hasName(infos, "INBOX") {
		t.Fatalf("INBOX not listed after CreateMailbox(INBOX): %q", names(infos))
	}
	seen := map[string]bool{}
	for _, in := range infos {
		if seen[in.Name] {
			t.Errorf("ListMailboxes reports %q twice", in.Name)
		}
		seen[in.Name] = true
		if strings.HasPrefix(in.Name, "/") || strings.HasSuffix(in.Name, "/") || strings.Contains(in.Name, "//") {
			t.Errorf("ListMailboxes reports a non-canonical name %q", in.Name)
		}
	}
	mb := mustOpen(t, ctx, st, "INBOX", false)
	if mb.Status().UIDValidity == 0 {
		t.Error("INBOX: UIDValidity 0")
	}
	listAll(t, ctx, mb)
}

func (s *suite) createListDelete(t *testing.T, ctx context.Context) {
	st := s.open(t)
	top := s.box(t, "tree")
	boxes := []string{
		top + "/a/b",
		top + "/Entwürfe & Co",
		top + "/Lists/go.dev",
		top + "/日本語",
	}
	if s.caps.NoDotNames {
		boxes = append(boxes[:2], boxes[3:]...)
	}
	for _, b := range boxes {
		mustCreate(t, ctx, st, b)
		mustCreate(t, ctx, st, b) // existing: not an error
	}
	infos, err := st.ListMailboxes(ctx)
	if err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	for _, b := range boxes {
		if !hasName(infos, b) {
			t.Errorf("%q not listed after CreateMailbox; got %q", b, names(infos))
		}
	}
	for _, in := range infos {
		if in.Status == nil || !strings.HasPrefix(in.Name, top+"/") {
			continue
		}
		if in.Status.Messages > 0 {
			t.Errorf("new mailbox %q: Status.Messages = %d", in.Name, in.Status.Messages)
		}
	}
	for _, b := range boxes {
		mb := mustOpen(t, ctx, st, b, false)
		if n := len(listAll(t, ctx, mb)); n != 0 {
			t.Errorf("new mailbox %q holds %d messages", b, n)
		}
		if mb.Status().UIDValidity == 0 {
			t.Errorf("%q: UIDValidity 0", b)
		}
		closeBox(t, mb)
	}

	for _, b := range boxes {
		if err := st.DeleteMailbox(ctx, b); err != nil {
			t.Fatalf("DeleteMailbox(%q): %v", b, err)
		}
	}
	infos, err = st.ListMailboxes(ctx)
	if err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	for _, b := range boxes {
		if hasName(infos, b) {
			t.Errorf("%q still listed after DeleteMailbox", b)
		}
		if _, err := st.OpenMailbox(ctx, b, false); !errors.Is(err, engine.ErrNoMailbox) {
			t.Errorf("OpenMailbox(%q) after delete: %v, want ErrNoMailbox", b, err)
		}
	}

	// A deleted name can be created again, empty.
	mustCreate(t, ctx, st, boxes[0])
	mb := mustOpen(t, ctx, st, boxes[0], false)
	if n := len(listAll(t, ctx, mb)); n != 0 {
		t.Errorf("re-created %q holds %d messages", boxes[0], n)
	}
}

func (s *suite) deleteNonEmpty(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "full")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	body := message("keep me", "precious\n")
	uids := s.add(t, ctx, mb, msg{flags: engine.FlagSeen, body: body})
	closeBox(t, mb)

	err := st.DeleteMailbox(ctx, name)
	if !errors.Is(err, engine.ErrNotEmpty) {
		t.Fatalf("DeleteMailbox of a non-empty mailbox: %v, want ErrNotEmpty", err)
	}
	infos, err := st.ListMailboxes(ctx)
	if err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	if !hasName(infos, name) {
		t.Fatalf("%q no longer listed after a refused delete", name)
	}
	mb = mustOpen(t, ctx, st, name, false)
	msgs := listAll(t, ctx, mb)
	if len(msgs) != 1 || msgs[0].UID != uids[0] {
		t.Fatalf("after refused delete: messages %v, want UID %d", msgs, uids[0])
	}
	sameBytes(t, "kept message", fetchAll(t, ctx, mb, uids)[uids[0]], body)
}

func (s *suite) openMissing(t *testing.T, ctx context.Context) {
	st := s.open(t)
	for _, name := range []string{s.box(t, "missing"), s.box(t, "missing") + "/child"} {
		for _, ro := range []bool{false, true} {
			mb, err := st.OpenMailbox(ctx, name, ro)
			if err == nil {
				mb.Close()
				t.Errorf("OpenMailbox(%q, readOnly=%v) of a missing mailbox succeeded", name, ro)
				continue
			}
			if !errors.Is(err, engine.ErrNoMailbox) {
				t.Errorf("OpenMailbox(%q, readOnly=%v): %v, want ErrNoMailbox", name, ro, err)
			}
		}
	}
	// Opening must not have created it.
	infos, err := st.ListMailboxes(ctx)
	if err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	for _, in := range infos {
		if strings.Contains(in.Name, "-missing") && strings.HasPrefix(in.Name, "st-"+s.run) {
			t.Errorf("OpenMailbox of a missing mailbox created %q", in.Name)
		}
	}
}

// binaryish is a body of every byte value except NUL and CR (which IMAP
// cannot carry in a plain literal or folds into line endings), with a line of
// 20 000 characters.
func binaryish() []byte {
	var b bytes.Buffer
	b.WriteString("From: bin@example.org\nSubject: binary-ish\nContent-Type: application/octet-stream\n" +
		"Content-Transfer-Encoding: 8bit\nMessage-ID: <" + uniq() + "@storetest.example>\n\n")
	for i := 1; i < 256; i++ {
		if i == '\r' {
			continue
		}
		b.WriteByte(byte(i))
	}
	b.WriteString("\n")
	b.WriteString(strings.Repeat("long line äöü € ", 20000/20))
	b.WriteString("\n\n\n.\nFrom the start of a line\n")
	return b.Bytes()
}

func (s *suite) roundTrip(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "roundtrip")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	date1 := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	date2 := time.Date(2019, 12, 31, 23, 59, 58, 0, time.FixedZone("X", -7*3600))
	msgs := []msg{
		{flags: engine.FlagSeen | engine.FlagFlagged, date: date1, body: message("one", "Hello,\nworld.\n")},
		{flags: engine.FlagDraft | engine.FlagReplied | engine.FlagPassed, date: date2, body: message("two", "second\n")},
		{flags: 0, date: date1, body: binaryish()},
		{flags: engine.FlagSeen, date: date2, body: message("no final newline", "ends here")},
		{flags: engine.FlagSeen | engine.FlagDeleted, date: date1, body: message("trashed", "marked deleted\n")},
		{flags: engine.FlagSeen, body: message("dated now", "zero date: the store picks now\n")},
	}

	// Staged messages are invisible until committed.
	sm, err := mb.Stage(ctx, engine.NewMessage{Body: bytes.NewReader(message("staged", "x\n"))})
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	if n := len(listAll(t, ctx, mb)); n != 0 {
		t.Errorf("a staged message is visible before Commit (%d listed)", n)
	}
	mb.Discard([]engine.Staged{sm})

	start := time.Now()
	uids := s.add(t, ctx, mb, msgs...)
	end := time.Now()

	check := func(mb engine.Mailbox, when string) {
		t.Helper()
		listed := listAll(t, ctx, mb)
		if len(listed) != len(msgs) {
			t.Fatalf("%s: %d messages listed, want %d", when, len(listed), len(msgs))
		}
		for i, m := range listed {
			if m.UID != uids[i] {
				t.Fatalf("%s: listed UIDs %v, committed %v", when, uidsOf(listed), uids)
			}
			what := fmt.Sprintf("%s: message %d (UID %d)", when, i, m.UID)
			if m.Flags != msgs[i].flags {
				t.Errorf("%s: flags %q, want %q", what, m.Flags, msgs[i].flags)
			}
			checkSize(t, what, m, msgs[i].body)
			if msgs[i].date.IsZero() {
				checkDate(t, what, m.Date, start.Add(end.Sub(start)/2), end.Sub(start)/2+5*time.Second)
			} else {
				checkDate(t, what, m.Date, msgs[i].date, time.Second)
			}
		}
		got := fetchAll(t, ctx, mb, uids)
		if len(got) != len(uids) {
			t.Errorf("%s: Fetch returned %d of %d messages", when, len(got), len(uids))
		}
		for i, u := range uids {
			sameBytes(t, fmt.Sprintf("%s: Fetch UID %d", when, u), got[u], msgs[i].body)
		}
		all, err := mb.UIDs(ctx, uids[len(uids)-1]+1)
		if err != nil {
			t.Fatalf("%s: UIDs: %v", when, err)
		}
		if fmt.Sprint(all) != fmt.Sprint(uids) {
			t.Errorf("%s: UIDs(below=%d) = %v, want %v", when, uids[len(uids)-1]+1, all, uids)
		}
		some, err := mb.UIDs(ctx, uids[2])
		if err != nil {
			t.Fatalf("%s: UIDs: %v", when, err)
		}
		if fmt.Sprint(some) != fmt.Sprint(uids[:2]) {
			t.Errorf("%s: UIDs(below=%d) = %v, want %v", when, uids[2], some, uids[:2])
		}
	}
	check(mb, "same session")
	closeBox(t, mb)

	mb = mustOpen(t, ctx, st, name, false)
	stat := mb.Status()
	if stat.UIDNext <= uids[len(uids)-1] {
		t.Errorf("Status.UIDNext %d not above the highest UID %d", stat.UIDNext, uids[len(uids)-1])
	}
	if stat.Messages != -1 && stat.Messages != int64(len(msgs)) {
		t.Errorf("Status.Messages %d, want %d", stat.Messages, len(msgs))
	}
	if s.caps.CondStore && stat.HighestModSeq == 0 {
		t.Errorf("Status.HighestModSeq 0 from a CONDSTORE store")
	}
	check(mb, "reopened")

	// A new message gets a UID above all earlier ones.
	more := s.add(t, ctx, mb, msg{body: message("later", "later\n")})
	if more[0] <= uids[len(uids)-1] || more[0] < stat.UIDNext {
		t.Errorf("later message got UID %d; earlier max %d, UIDNext was %d", more[0], uids[len(uids)-1], stat.UIDNext)
	}
}

func (s *suite) largeMessage(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "large")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	var b bytes.Buffer
	b.Write(message("5 MB", ""))
	line := []byte(strings.Repeat("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 2)[:76])
	for i := 0; b.Len() < 5<<20; i++ {
		line[i%76] = byte('0' + i%10) // no two lines alike: a lost or repeated chunk shows
		b.Write(line)
		b.WriteByte('\n')
	}
	body := b.Bytes()
	uids := s.add(t, ctx, mb, msg{flags: engine.FlagSeen, body: body})
	closeBox(t, mb)
	mb = mustOpen(t, ctx, st, name, true)
	listed := listAll(t, ctx, mb)
	if len(listed) != 1 {
		t.Fatalf("%d messages listed, want 1", len(listed))
	}
	checkSize(t, "5 MB message", listed[0], body)
	sameBytes(t, "5 MB message", fetchAll(t, ctx, mb, uids)[uids[0]], body)
}

func (s *suite) discard(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "discard")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	var staged []engine.Staged
	for i := 0; i < 3; i++ {
		sm, err := mb.Stage(ctx, engine.NewMessage{Flags: engine.FlagSeen, Body: bytes.NewReader(message("discarded", "gone\n"))})
		if err != nil {
			t.Fatalf("Stage: %v", err)
		}
		staged = append(staged, sm)
	}
	mb.Discard(staged)
	mb.Discard(nil)
	if n := len(listAll(t, ctx, mb)); n != 0 {
		t.Fatalf("%d messages visible after Discard", n)
	}
	// The mailbox still works, and only the committed message shows.
	keep := message("kept", "kept\n")
	uids := s.add(t, ctx, mb, msg{body: keep})
	closeBox(t, mb)
	mb = mustOpen(t, ctx, st, name, false)
	listed := listAll(t, ctx, mb)
	if len(listed) != 1 || listed[0].UID != uids[0] {
		t.Fatalf("after Discard and one Commit: listed %v, want only UID %d", uidsOf(listed), uids[0])
	}
	sameBytes(t, "kept message", fetchAll(t, ctx, mb, uids)[uids[0]], keep)
}

func (s *suite) setFlags(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "flags")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	var in []msg
	for i := 0; i < 8; i++ {
		in = append(in, msg{body: message(fmt.Sprintf("flags %d", i), "x\n")})
	}
	in[7].flags = engine.FlagDraft
	uids := s.add(t, ctx, mb, in...)
	want := map[engine.UID]engine.Flag{}
	for i, u := range uids {
		want[u] = in[i].flags
	}
	expect := func(mb engine.Mailbox, when string) {
		t.Helper()
		got := flagsByUID(listAll(t, ctx, mb))
		if len(got) != len(want) {
			t.Errorf("%s: %d messages, want %d", when, len(got), len(want))
		}
		for _, u := range uids {
			if got[u] != want[u] {
				t.Errorf("%s: UID %d flags %q, want %q", when, u, got[u], want[u])
			}
		}
	}
	set := func(which []engine.UID, add, remove engine.Flag) {
		t.Helper()
		if err := mb.SetFlags(ctx, which, add, remove); err != nil {
			t.Fatalf("SetFlags(%v, +%q, -%q): %v", which, add, remove, err)
		}
		for _, u := range which {
			if _, ok := want[u]; ok {
				want[u] = want[u]&^remove | add
			}
		}
	}

	set(uids, engine.FlagSeen|engine.FlagFlagged, 0)
	expect(mb, "after adding SF to all")
	set(uids[2:5], 0, engine.FlagFlagged)
	expect(mb, "after removing F from three")
	set(uids[:4], engine.FlagSeen, 0) // no-op: already seen
	set(uids[5:6], 0, engine.FlagReplied)
	set(nil, engine.FlagSeen, 0)
	expect(mb, "after no-op changes")
	set([]engine.UID{uids[0], uids[6]}, engine.FlagReplied|engine.FlagPassed, engine.FlagSeen)
	set(uids[7:], engine.FlagDeleted, engine.FlagDraft)
	expect(mb, "after mixed add and remove")

	// A vanished UID (expunged, or never there) is skipped silently.
	if err := mb.Expunge(ctx, uids[1:2]); err != nil {
		t.Fatalf("Expunge: %v", err)
	}
	delete(want, uids[1])
	gone := uids[len(uids)-1] + 1000
	set([]engine.UID{uids[0], uids[1], uids[3], gone}, engine.FlagDraft, 0)
	expect(mb, "after SetFlags with vanished UIDs")
	closeBox(t, mb)

	// Flags persist, and closing did not expunge the \Deleted message.
	mb = mustOpen(t, ctx, st, name, false)
	expect(mb, "reopened")
}

func (s *suite) expunge(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "expunge")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	var in []msg
	for i := 0; i < 5; i++ {
		in = append(in, msg{flags: engine.FlagSeen, body: message(fmt.Sprintf("expunge %d", i), "x\n")})
	}
	uids := s.add(t, ctx, mb, in...)
	if err := mb.Expunge(ctx, []engine.UID{uids[1], uids[3]}); err != nil {
		t.Fatalf("Expunge: %v", err)
	}
	left := []engine.UID{uids[0], uids[2], uids[4]}
	check := func(mb engine.Mailbox, when string) {
		t.Helper()
		if got := uidsOf(listAll(t, ctx, mb)); fmt.Sprint(got) != fmt.Sprint(left) {
			t.Errorf("%s: listed %v, want %v", when, got, left)
		}
		got, err := mb.UIDs(ctx, uids[4]+1)
		if err != nil {
			t.Fatalf("%s: UIDs: %v", when, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(left) {
			t.Errorf("%s: UIDs %v, want %v", when, got, left)
		}
		fetched := fetchAll(t, ctx, mb, uids)
		if len(fetched) != len(left) {
			t.Errorf("%s: Fetch of all five returned %d messages, want the %d left", when, len(fetched), len(left))
		}
		for i, u := range uids {
			if b, ok := fetched[u]; ok {
				sameBytes(t, fmt.Sprintf("%s: UID %d", when, u), b, in[i].body)
			}
		}
	}
	check(mb, "same session")
	// Already gone, nothing, and never there: all fine.
	if err := mb.Expunge(ctx, []engine.UID{uids[1], uids[3], uids[4] + 1000}); err != nil {
		t.Errorf("Expunge of vanished UIDs: %v", err)
	}
	if err := mb.Expunge(ctx, nil); err != nil {
		t.Errorf("Expunge(nil): %v", err)
	}
	closeBox(t, mb)
	mb = mustOpen(t, ctx, st, name, false)
	check(mb, "reopened")
	if mb.Status().UIDNext <= uids[4] {
		t.Errorf("UIDNext %d not above the highest UID ever used %d", mb.Status().UIDNext, uids[4])
	}
	if err := mb.Expunge(ctx, left); err != nil {
		t.Fatalf("Expunge rest: %v", err)
	}
	if n := len(listAll(t, ctx, mb)); n != 0 {
		t.Errorf("%d messages after expunging all", n)
	}
	// UIDs are never reused.
	again := s.add(t, ctx, mb, msg{body: message("after expunge", "x\n")})
	if again[0] <= uids[4] {
		t.Errorf("new message got UID %d, not above the expunged %d", again[0], uids[4])
	}
	closeBox(t, mb)
	if err := st.DeleteMailbox(ctx, name); !errors.Is(err, engine.ErrNotEmpty) {
		t.Errorf("DeleteMailbox with one message: %v, want ErrNotEmpty", err)
	}
	mb = mustOpen(t, ctx, st, name, false)
	if err := mb.Expunge(ctx, again); err != nil {
		t.Fatalf("Expunge: %v", err)
	}
	closeBox(t, mb)
	if err := st.DeleteMailbox(ctx, name); err != nil {
		t.Errorf("DeleteMailbox of the emptied mailbox: %v", err)
	}
}

func (s *suite) uidValidityStable(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "validity")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	v := mb.Status().UIDValidity
	if v == 0 {
		t.Fatal("UIDValidity 0")
	}
	uids := s.add(t, ctx, mb, msg{body: message("v1", "x\n")}, msg{body: message("v2", "y\n")})
	closeBox(t, mb)

	for round, st := range []engine.Store{st, s.open(t)} {
		mb := mustOpen(t, ctx, st, name, round == 1)
		if got := mb.Status().UIDValidity; got != v {
			t.Errorf("reopen %d: UIDValidity %d, was %d", round, got, v)
		}
		if got := uidsOf(listAll(t, ctx, mb)); fmt.Sprint(got) != fmt.Sprint(uids) {
			t.Errorf("reopen %d: UIDs %v, were %v", round, got, uids)
		}
		closeBox(t, mb)
	}
	infos, err := st.ListMailboxes(ctx)
	if err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	for _, in := range infos {
		if in.Name == name && in.Status != nil {
			if in.Status.UIDValidity != v {
				t.Errorf("ListMailboxes Status.UIDValidity %d, open says %d", in.Status.UIDValidity, v)
			}
			if in.Status.Messages != -1 && in.Status.Messages != int64(len(uids)) {
				t.Errorf("ListMailboxes Status.Messages %d, want %d", in.Status.Messages, len(uids))
			}
			if in.Status.UIDNext != 0 && in.Status.UIDNext <= uids[len(uids)-1] {
				t.Errorf("ListMailboxes Status.UIDNext %d not above %d", in.Status.UIDNext, uids[len(uids)-1])
			}
		}
	}
}

func (s *suite) stamp(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "stamp")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	uids := s.add(t, ctx, mb, msg{body: message("s1", "x\n")}, msg{body: message("s2", "y\n")})
	closeBox(t, mb)

	var stamps []string
	observe := func(when string) engine.Mailbox {
		t.Helper()
		time.Sleep(s.caps.StampDelay)
		mb := mustOpen(t, ctx, st, name, false)
		stamps = append(stamps, mb.Status().Stamp)
		t.Logf("%s: stamp %q", when, mb.Status().Stamp)
		return mb
	}
	changes := []struct {
		what string
		do   func(mb engine.Mailbox) error
	}{
		{"new message", func(mb engine.Mailbox) error {
			uids = append(uids, s.add(t, ctx, mb, msg{body: message("s3", "z\n")})...)
			return nil
		}},
		{"flag change", func(mb engine.Mailbox) error { return mb.SetFlags(ctx, uids[:1], engine.FlagSeen, 0) }},
		{"flag removal", func(mb engine.Mailbox) error { return mb.SetFlags(ctx, uids[:1], 0, engine.FlagSeen) }},
		{"expunge", func(mb engine.Mailbox) error { return mb.Expunge(ctx, uids[1:2]) }},
	}
	mb = observe("start")
	for _, c := range changes {
		if err := c.do(mb); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		closeBox(t, mb)
		mb = observe("after " + c.what)
		before, after := stamps[len(stamps)-2], stamps[len(stamps)-1]
		if before != "" && after != "" && before == after {
			t.Errorf("stamp %q unchanged across a %s", after, c.what)
		}
	}
	closeBox(t, mb)
	nonEmpty := 0
	for _, s := range stamps {
		if s != "" {
			nonEmpty++
		}
	}
	if nonEmpty == 0 {
		t.Logf("store never vouched for a stamp: nothing to compare (set Caps.StampDelay?)")
	}
}

func (s *suite) listFromChangedSince(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "incremental")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	var in []msg
	for i := 0; i < 4; i++ {
		in = append(in, msg{body: message(fmt.Sprintf("old %d", i), "x\n")})
	}
	old := s.add(t, ctx, mb, in...)
	closeBox(t, mb)

	mb = mustOpen(t, ctx, st, name, false)
	base := mb.Status()
	if base.UIDNext <= old[len(old)-1] {
		t.Fatalf("UIDNext %d not above %d", base.UIDNext, old[len(old)-1])
	}
	if err := mb.SetFlags(ctx, old[1:2], engine.FlagFlagged, 0); err != nil {
		t.Fatalf("SetFlags: %v", err)
	}
	fresh := s.add(t, ctx, mb,
		msg{flags: engine.FlagSeen, body: message("new 1", "x\n")},
		msg{body: message("new 2", "x\n")})
	closeBox(t, mb)
	total := len(old) + len(fresh)
	wantFlags := map[engine.UID]engine.Flag{old[0]: 0, old[1]: engine.FlagFlagged, old[2]: 0, old[3]: 0,
		fresh[0]: engine.FlagSeen, fresh[1]: 0}

	mb = mustOpen(t, ctx, st, name, true)
	queries := []struct {
		q           engine.ListQuery
		mustInclude []engine.UID
	}{
		{engine.ListQuery{From: base.UIDNext}, fresh},
		{engine.ListQuery{From: base.UIDNext, ChangedSince: base.HighestModSeq}, fresh},
		{engine.ListQuery{From: fresh[1]}, fresh[1:]},
	}
	if s.caps.CondStore && base.HighestModSeq > 0 {
		queries[1].mustInclude = append([]engine.UID{old[1]}, fresh...)
	}
	for _, qc := range queries {
		got, complete, err := mb.List(ctx, qc.q)
		if err != nil {
			t.Fatalf("List(%+v): %v", qc.q, err)
		}
		sortMsgs(got)
		seen := map[engine.UID]bool{}
		for _, m := range got {
			if seen[m.UID] {
				t.Errorf("List(%+v) reports UID %d twice", qc.q, m.UID)
			}
			seen[m.UID] = true
			if f, ok := wantFlags[m.UID]; !ok {
				t.Errorf("List(%+v) reports unknown UID %d", qc.q, m.UID)
			} else if m.Flags != f {
				t.Errorf("List(%+v): UID %d flags %q, want %q", qc.q, m.UID, m.Flags, f)
			}
		}
		for _, u := range qc.mustInclude {
			if !seen[u] {
				t.Errorf("List(%+v) = %v lacks UID %d", qc.q, uidsOf(got), u)
			}
		}
		if complete && len(seen) != total {
			t.Errorf("List(%+v) says complete but has %d of %d messages", qc.q, len(seen), total)
		}
		if !complete && len(seen) == total {
			t.Errorf("List(%+v) returned every message but says complete=false", qc.q)
		}
		if qc.q.ChangedSince > 0 && !s.caps.CondStore && !complete {
			t.Errorf("List(%+v) on a store without a change counter must report everything, complete", qc.q)
		}
	}
}

func (s *suite) readOnly(t *testing.T, ctx context.Context) {
	if s.caps.NoReadOnly {
		t.Skip("store has no read-only mode")
	}
	st := s.open(t)
	name := s.box(t, "readonly")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	bodies := [][]byte{message("ro 1", "x\n"), message("ro 2", "y\n")}
	uids := s.add(t, ctx, mb, msg{flags: engine.FlagSeen, body: bodies[0]}, msg{body: bodies[1]})
	closeBox(t, mb)

	ro := mustOpen(t, ctx, st, name, true)
	before := listAll(t, ctx, ro)
	got := fetchAll(t, ctx, ro, uids)
	for i, u := range uids {
		sameBytes(t, fmt.Sprintf("read-only Fetch UID %d", u), got[u], bodies[i])
	}
	refused := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s on a read-only mailbox succeeded", what)
		} else if !errors.Is(err, engine.ErrReadOnly) {
			t.Logf("%s refused with %v (not ErrReadOnly)", what, err)
		}
	}
	sm, err := ro.Stage(ctx, engine.NewMessage{Body: bytes.NewReader(message("ro new", "z\n"))})
	if err == nil {
		res, err := ro.Commit(ctx, []engine.Staged{sm})
		if err == nil && len(res) == 1 {
			err = res[0].Err
		}
		refused("Stage+Commit", err)
		ro.Discard([]engine.Staged{sm})
	}
	refused("SetFlags", ro.SetFlags(ctx, uids, engine.FlagFlagged, engine.FlagSeen))
	refused("Expunge", ro.Expunge(ctx, uids))
	closeBox(t, ro)

	mb = mustOpen(t, ctx, st, name, false)
	after := listAll(t, ctx, mb)
	if fmt.Sprint(uidsOf(after)) != fmt.Sprint(uidsOf(before)) {
		t.Fatalf("read-only session changed the messages: %v, was %v", uidsOf(after), uidsOf(before))
	}
	for i := range after {
		if after[i].Flags != before[i].Flags {
			t.Errorf("read-only session changed flags of UID %d: %q, was %q", after[i].UID, after[i].Flags, before[i].Flags)
		}
	}
}

func (s *suite) fetchErrors(t *testing.T, ctx context.Context) {
	st := s.open(t)
	name := s.box(t, "fetch")
	mustCreate(t, ctx, st, name)
	mb := mustOpen(t, ctx, st, name, false)
	uids := s.add(t, ctx, mb, msg{body: message("f1", "x\n")}, msg{body: message("f2", "y\n")})

	calls := 0
	if err := mb.Fetch(ctx, nil, func(engine.UID, io.Reader) error { calls++; return nil }); err != nil {
		t.Errorf("Fetch(nil): %v", err)
	}
	if calls != 0 {
		t.Errorf("Fetch(nil) called fn %d times", calls)
	}
	// Vanished UIDs are skipped.
	gone := uids[1] + 1000
	got := fetchAll(t, ctx, mb, []engine.UID{gone, uids[0]})
	if _, ok := got[gone]; ok || len(got) != 1 {
		t.Errorf("Fetch with a vanished UID returned %d messages, want only UID %d", len(got), uids[0])
	}
	// An error from fn stops the fetch and comes back.
	stop := errors.New("storetest: stop here")
	calls = 0
	// Abandoning a fetch midway is where stores deadlock (a reader waiting
	// for the literal to be consumed): fail fast instead of stalling go test.
	err := within(t, time.Minute, "Fetch with a failing fn", func() error {
		return mb.Fetch(ctx, uids, func(_ engine.UID, r io.Reader) error {
			calls++
			_, _ = io.Copy(io.Discard, r)
			return stop
		})
	})
	if !errors.Is(err, stop) {
		t.Errorf("Fetch with failing fn: %v, want the fn's error", err)
	}
	if calls != 1 {
		t.Errorf("Fetch went on after fn failed: %d calls", calls)
	}
	// The mailbox is still usable afterwards.
	if n := len(fetchAll(t, ctx, mb, uids)); n != 2 {
		t.Errorf("Fetch after a failed one returned %d messages, want 2", n)
	}
}
