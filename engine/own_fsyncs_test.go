package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The engine's own fsyncs, which nothing else shows short of a power loss:
// the journal's, before the acts it records (a copy made on the strength of
// an intent lost in a crash is found on its target as a new message and
// copied back); the state's temporary file's, before its rename (else a
// crash can leave the new name on an empty or partial file); and the
// directory's, after the rename (else a crash can bring the old state
// back, with the journal that recorded the run already removed). Each
// fsync is seen through RunOptions.fsyncs, in order with the stores'
// operations; removing any of them fails this test.
func TestEngineFsyncsItsOwnFiles(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	near.reserve = true
	events := new(eventLog)
	far.events, near.events = events, events
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	addMsg(t, near, "INBOX", "b", 0)
	statePath, err := StatePath(spec, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	journal, tmp, dir := statePath+".journal", statePath+".%tmp", filepath.Dir(statePath)
	fsyncs := func(op, path string) error {
		ev := "engine " + op + " " + path
		switch {
		case op == "fsync" && path == journal:
			data, err := os.ReadFile(journal)
			if err != nil {
				t.Errorf("fsync of the journal: %v", err)
			}
			ev += " (" + journalKinds(string(data)) + ")"
		case op == "fsync" && path == tmp:
			if _, err := os.Stat(tmp); err != nil {
				t.Errorf("fsync of the state's temporary file: %v", err)
			}
			if _, err := os.Stat(statePath); err == nil {
				ev += " (a state file in place)"
			}
		case op == "fsync" && path == statePath:
			// An append: the section must be in the file when it is
			// made durable.
			if data, err := os.ReadFile(statePath); err == nil && strings.Contains(string(data), "\n%delta\n") {
				ev += " (section appended)"
			}
		case op == "fsyncdir" && path == dir:
			_, errTmp := os.Stat(tmp)
			if _, err := os.Stat(statePath); err == nil && errors.Is(errTmp, os.ErrNotExist) {
				ev += " (state in place)"
			}
		}
		events.add(ev)
		return nil
	}
	events.reset() // addMsg's own
	res := SyncChannel(context.Background(), spec, RunOptions{fsyncs: fsyncs})
	evs := events.all()
	if res.Err != nil || len(res.Mailboxes) != 1 || res.Mailboxes[0].Err != nil {
		t.Fatalf("first run: %+v", res)
	}
	checkEqual(t, spec, "INBOX", "a: b:")
	firstCommit := slices.IndexFunc(evs, func(e string) bool { return strings.HasSuffix(e, " Commit") })
	if i := slices.IndexFunc(evs, func(e string) bool { return strings.HasPrefix(e, "engine fsync "+journal+" (copy") }); i < 0 || firstCommit < 0 || i > firstCommit {
		t.Errorf("the journal's copy intents were not fsynced before the first copy was committed:\n%s", strings.Join(evs, "\n"))
	}
	stateSync, dirSync := slices.Index(evs, "engine fsync "+tmp), slices.Index(evs, "engine fsyncdir "+dir+" (state in place)")
	if stateSync < 0 {
		t.Errorf("the state's temporary file was not fsynced before its rename:\n%s", strings.Join(evs, "\n"))
	}
	if dirSync < 0 || dirSync < stateSync {
		t.Errorf("the state's directory was not fsynced after the rename:\n%s", strings.Join(evs, "\n"))
	}

	// A flag change: its intent is fsynced before the store is asked.
	setFlagsBySubject(t, far, "INBOX", "b", FlagSeen, 0)
	events.reset()
	res = SyncChannel(context.Background(), spec, RunOptions{fsyncs: fsyncs})
	evs = events.all()
	if res.Err != nil || res.Flagged[Near] != 1 {
		t.Fatalf("second run: %+v", res)
	}
	setFlags := slices.Index(evs, "near SetFlags")
	if i := slices.IndexFunc(evs, func(e string) bool { return strings.HasPrefix(e, "engine fsync "+journal+" (flag") }); i < 0 || setFlags < 0 || i > setFlags {
		t.Errorf("the journal's flag change was not fsynced before the store set the flag:\n%s", strings.Join(evs, "\n"))
	}
	// Its state is saved by appending what changed: the file itself is
	// fsynced once the section is in it (no temporary file, no rename).
	if i := slices.Index(evs, "engine fsync "+statePath+" (section appended)"); i < 0 || i < setFlags {
		t.Errorf("the state's appended section was not fsynced after the flag change:\n%s", strings.Join(evs, "\n"))
	}
	if slices.Contains(evs, "engine fsync "+tmp) {
		t.Errorf("a state that could take a section was rewritten:\n%s", strings.Join(evs, "\n"))
	}
}

// journalKinds names the kinds of intent a journal's text holds, in the
// order they first appear ("copy", "flags", ...).
func journalKinds(text string) string {
	var kinds []string
	_, body, _ := strings.Cut(text, "\n\n")
	for _, line := range strings.Split(body, "\n") {
		k, _, _ := strings.Cut(line, " ")
		if k != "" && !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	return strings.Join(kinds, " ")
}

func (l *eventLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = nil
}

// A run killed after appending its state's section (before the journal's
// removal) leaves a journal that the next run finds stale and removes — after
// making the state durable: the removal could otherwise reach the disk before
// the appended section, and a power loss bring back the older state without
// the journal that recorded what the run did.
func TestStaleJournalRemovedOnlyAfterStateFsync(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	statePath, err := StatePath(spec, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	journal := statePath + ".journal"
	addMsg(t, far, "INBOX", "b", 0)
	if res := runMailbox(spec, crashAfterState); !errors.Is(res.Err, errCrash) {
		t.Fatalf("no crash after the state save: %v", res.Err)
	}
	if data, err := os.ReadFile(statePath); err != nil || !strings.Contains(string(data), "\n%delta\n") {
		t.Fatalf("the killed run did not append to the state (%v)", err)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("the killed run left no journal: %v", err)
	}
	var evs []string
	fsyncs := func(op, path string) error {
		if op == "fsync" && path == statePath {
			_, err := os.Stat(journal)
			evs = append(evs, fmt.Sprintf("state fsynced, journal there: %v", err == nil))
		}
		return nil
	}
	mustSync(t, spec, RunOptions{fsyncs: fsyncs})
	if _, err := os.Stat(journal); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale journal not removed: %v", err)
	}
	if len(evs) == 0 || evs[0] != "state fsynced, journal there: true" {
		t.Fatalf("the state was not made durable before the stale journal's removal: %q", evs)
	}
	checkEqual(t, spec, "INBOX", "a: b:")
}

// A state moved away (as the error for a damaged one advises) with a killed
// run's journal still beside it: the journal is stale and goes, and the
// mailbox is paired anew — there is no state to make durable first.
func TestStaleJournalWithoutState(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{})
	statePath, err := StatePath(spec, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	addMsg(t, far, "INBOX", "b", 0)
	if res := runMailbox(spec, crashAfterState); !errors.Is(res.Err, errCrash) {
		t.Fatalf("no crash after the state save: %v", res.Err)
	}
	if err := os.Rename(statePath, statePath+".moved"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, spec, RunOptions{})
	if _, err := os.Stat(statePath + ".journal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale journal not removed: %v", err)
	}
	checkEqual(t, spec, "INBOX", "a: b:")
}
