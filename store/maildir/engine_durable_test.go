package maildir

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// The engine and this store together, when a copy's rename into new/ or cur/
// is visible but not durable: the state must not name the message before its
// directory has been fsynced, or a power loss would make the next run
// propagate its loss as a deletion.

// durableSpec is a channel between two Maildir trees; the far one holds one
// message, the near one nothing yet.
func durableSpec(t *testing.T) (spec engine.ChannelSpec, near *Store, nearBox string) {
	t.Helper()
	dir := t.TempDir()
	far, err := New("far", filepath.Join(dir, "far"), "", LayoutVerbatim, Options{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	near, err = New("near", filepath.Join(dir, "near"), "", LayoutVerbatim, Options{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{far, near} {
		if err := s.CreateMailbox(context.Background(), "INBOX"); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "far", "INBOX", "new", "1700000000.1.host"), "Subject: hi\nMessage-ID: <a@b>\n\nbody\n")
	spec = engine.ChannelSpec{Name: "durable", Far: far, Near: near,
		Pull: engine.OpAll, Push: engine.OpAll, Expunge: [2]bool{true, true}, Create: [2]bool{true, true},
		StateDir: filepath.Join(dir, "state"), LockDir: filepath.Join(dir, "locks")}
	return spec, near, filepath.Join(dir, "near", "INBOX")
}

func isMessageDir(p string) bool { b := filepath.Base(p); return b == "new" || b == "cur" }

// nearPairs returns the near UIDs the state records.
func nearPairs(t *testing.T, spec engine.ChannelSpec) []engine.UID {
	t.Helper()
	p, err := engine.StatePath(spec, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	st, err := engine.LoadState(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []engine.UID
	for _, pr := range st.Pairs {
		if pr.Near != 0 {
			out = append(out, pr.Near)
		}
	}
	return out
}

// The fsync of new/ after the rename fails: the run reports it and records
// no pair; once the directory can be fsynced, the next run finds the copy,
// makes it durable and records it, without copying it again.
func TestCopyRecordedOnlyOnceItsDirectoryIsDurable(t *testing.T) {
	spec, near, nearBox := durableSpec(t)
	near.testHook = func(op, path string) error {
		if op == "fsyncdir" && isMessageDir(path) {
			return syscall.EIO
		}
		return nil
	}
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	if res.Err == nil && (len(res.Mailboxes) == 0 || res.Mailboxes[0].Err == nil) {
		t.Errorf("a run whose fsync of new/ failed reported success: %+v", res)
	}
	if got := nearPairs(t, spec); len(got) != 0 {
		t.Fatalf("the state records near UIDs %v although new/ was never fsynced", got)
	}

	var mu sync.Mutex
	var ops []string
	near.testHook = func(op, path string) error {
		mu.Lock()
		defer mu.Unlock()
		ops = append(ops, op+" "+filepath.Base(path))
		return nil
	}
	res = engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	if res.Err != nil || len(res.Mailboxes) == 0 || res.Mailboxes[0].Err != nil {
		t.Fatalf("second run: %+v", res)
	}
	if !slices.Contains(ops, "fsyncdir new") {
		t.Errorf("the copy was recorded without an fsync of new/: %v", ops)
	}
	if got := nearPairs(t, spec); len(got) != 1 {
		t.Errorf("after the second run the state records near UIDs %v, want one", got)
	}
	if n := len(files(t, nearBox, "new")) + len(files(t, nearBox, "cur")); n != 1 {
		t.Errorf("the near folder holds %d messages, want 1", n)
	}
}

// A run killed between a copy's rename and the fsync of new/ (modelled: its
// journal as it was at that fsync, no state): the next run sees the file in
// the listing and must fsync new/ before its state names it.
func TestReplaySettlesTheCopiesItFinds(t *testing.T) {
	spec, near, nearBox := durableSpec(t)
	statePath, err := engine.StatePath(spec, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var journal []byte
	var snapped bool
	near.testHook = func(op, path string) error {
		if op == "fsyncdir" && isMessageDir(path) && !snapped {
			snapped = true
			journal, _ = os.ReadFile(statePath + ".journal")
		}
		return nil
	}
	engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	if len(journal) == 0 {
		t.Fatal("no journal at the fsync of new/")
	}
	os.Remove(statePath)
	if err := os.WriteFile(statePath+".journal", journal, 0o600); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	settledBeforeState := false
	near.testHook = func(op, path string) error {
		mu.Lock()
		defer mu.Unlock()
		if op == "fsyncdir" && isMessageDir(path) {
			if _, err := os.Stat(statePath); err != nil {
				settledBeforeState = true
			}
		}
		return nil
	}
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	if res.Err != nil || len(res.Mailboxes) == 0 || res.Mailboxes[0].Err != nil {
		t.Fatalf("replay run: %+v", res)
	}
	if !settledBeforeState {
		t.Error("the replay wrote a state naming the copy before any fsync of new/ or cur/")
	}
	if got := nearPairs(t, spec); len(got) != 1 {
		t.Errorf("the state records near UIDs %v, want one", got)
	}
	if n := len(files(t, nearBox, "new")) + len(files(t, nearBox, "cur")); n != 1 {
		t.Errorf("the near folder holds %d messages, want 1", n)
	}
}

// A run killed after a flag rename on the near side and before the fsync of
// its directory (modelled: the previous state and the journal as it was at
// that fsync): the next run's replay records the flag as agreed, so it must
// make the rename durable before it saves that state — else a power loss
// would bring the file back without the flag, which would then read as the
// flag taken away on the near side.
func TestReplaySettlesTheFlagsItRecords(t *testing.T) {
	spec, near, nearBox := durableSpec(t)
	syncOK(t, spec)
	statePath, err := engine.StatePath(spec, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	farBox := filepath.Join(filepath.Dir(filepath.Dir(nearBox)), "far", "INBOX")
	ents, err := os.ReadDir(filepath.Join(farBox, "new"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("far new/: %v %v", ents, err)
	}
	// The far user reads it.
	if err := os.Rename(filepath.Join(farBox, "new", ents[0].Name()), filepath.Join(farBox, "cur", ents[0].Name()+":2,S")); err != nil {
		t.Fatal(err)
	}
	var journal []byte
	near.testHook = func(op, path string) error {
		if op == "fsyncdir" && filepath.Base(path) == "cur" && journal == nil {
			journal, _ = os.ReadFile(statePath + ".journal")
		}
		return nil
	}
	syncOK(t, spec)
	if !strings.Contains(string(journal), "flags") {
		t.Fatalf("no flag change in the journal at the fsync of cur/: %q", journal)
	}
	if err := os.WriteFile(statePath, before, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(statePath+".journal", journal, 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	settledBeforeState := false
	near.testHook = func(op, path string) error {
		mu.Lock()
		defer mu.Unlock()
		if op == "fsyncdir" && filepath.Base(path) == "cur" {
			if now, _ := os.ReadFile(statePath); string(now) == string(before) {
				settledBeforeState = true
			}
		}
		return nil
	}
	syncOK(t, spec)
	if !settledBeforeState {
		t.Error("the replay recorded the flag in a state before any fsync of the near cur/")
	}
}

func syncOK(t *testing.T, spec engine.ChannelSpec) {
	t.Helper()
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			t.Fatalf("%s: %v", m.Mailbox, m.Err)
		}
	}
}

// When the copies are made durable one fsync at a time (a small batch, or
// the syncfs fails, as here: a syncfs would cover the directory), the engine's new journal must be fsynced with its directory before
// any message is renamed into place: a power loss that took the journal's
// name would leave copies the next run finds as new messages and copies back.
func TestCommitMakesTheJournalsNameDurable(t *testing.T) {
	spec, near, _ := durableSpec(t)
	statePath, err := engine.StatePath(spec, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var ops []string
	near.testHook = func(op, path string) error {
		mu.Lock()
		defer mu.Unlock()
		ops = append(ops, op+" "+path)
		if op == "syncfs" {
			return syscall.EIO
		}
		return nil
	}
	syncOK(t, spec)
	journal := statePath + ".journal"
	first := func(match func(string) bool) int {
		return slices.IndexFunc(ops, match)
	}
	named := first(func(s string) bool { return s == "fsync "+filepath.Dir(statePath) })
	intents := first(func(s string) bool { return s == "fsync "+journal })
	placed := first(func(s string) bool { return strings.HasPrefix(s, "fsyncdir ") && isMessageDir(s) })
	if intents < 0 || named < 0 || placed < 0 || named > placed || intents > placed {
		t.Fatalf("the journal (%d) and its directory (%d) must be fsynced before the first message directory (%d): %q",
			intents, named, placed, ops)
	}
}
