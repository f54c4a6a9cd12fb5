package engine

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// releaseRun syncs once with an event log on both stores and returns the
// events of that run.
func releaseRun(t *testing.T, spec ChannelSpec, far, near *memStore) []string {
	t.Helper()
	log := &eventLog{}
	far.events, near.events = log, log
	defer func() { far.events, near.events = nil, nil }()
	mustSync(t, spec, RunOptions{})
	if n := far.Calls("afterClose") + near.Calls("afterClose"); n != 0 {
		t.Fatalf("%d operations on a released mailbox", n)
	}
	if n := far.Calls("doubleClose") + near.Calls("doubleClose"); n != 0 {
		t.Fatalf("%d mailboxes closed twice", n)
	}
	return log.all()
}

// at returns the index of the first event ev, failing when there is none.
func at(t *testing.T, evs []string, ev string) int {
	t.Helper()
	i := slices.Index(evs, ev)
	if i < 0 {
		t.Fatalf("no %q in %s", ev, strings.Join(evs, ", "))
	}
	return i
}

func lastAt(t *testing.T, evs []string, ev string) int {
	t.Helper()
	at(t, evs, ev)
	for i := len(evs) - 1; ; i-- {
		if evs[i] == ev {
			return i
		}
	}
}

// A mailbox is released as soon as the plan is done with it: the far side
// of a pull right after its messages are fetched, before the near side
// commits them; the far side of flag changes and removals right after
// them, before the near side's; a side the plan does not touch before any
// work. What it holds (an IMAP connection) then serves the next mailbox
// while this one finishes locally. A released mailbox is never used again
// (the mem store fails any operation after Close).
func TestReleaseWhenThePlanIsDoneWithASide(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	for i := range 4 {
		addMsg(t, far, "INBOX", fmt.Sprint("m", i), 0)
	}
	// Pulls only: the far mailbox goes before the near commit.
	evs := releaseRun(t, spec, far, near)
	if c, f := at(t, evs, "far Close"), lastAt(t, evs, "far Fetch"); c < f || c > at(t, evs, "near Commit") {
		t.Errorf("pull: far closed at %d, last fetch %d, near commit %d: %s", c, f, at(t, evs, "near Commit"), strings.Join(evs, ", "))
	}

	// Flags and removals both ways: far ones, far released, then near ones.
	setFlagsBySubject(t, far, "INBOX", "m0", FlagSeen, 0)     // -> near SetFlags
	setFlagsBySubject(t, near, "INBOX", "m1", FlagFlagged, 0) // -> far SetFlags
	expungeBySubject(t, near, "INBOX", "m2")                  // -> far Expunge
	evs = releaseRun(t, spec, far, near)
	c := at(t, evs, "far Close")
	if c < at(t, evs, "far SetFlags") || c < at(t, evs, "far Expunge") || c > at(t, evs, "near SetFlags") {
		t.Errorf("flags: far released out of order: %s", strings.Join(evs, ", "))
	}

	// Only the near side changes: the far side goes before any of it.
	setFlagsBySubject(t, far, "INBOX", "m3", FlagFlagged, 0)
	evs = releaseRun(t, spec, far, near)
	if c := at(t, evs, "far Close"); c > at(t, evs, "near SetFlags") {
		t.Errorf("near-only: far released after the near work: %s", strings.Join(evs, ", "))
	}

	// Pushes: the far side is a copy's target and goes after its commit.
	addMsg(t, near, "INBOX", "n0", 0)
	evs = releaseRun(t, spec, far, near)
	if c := at(t, evs, "far Close"); c < at(t, evs, "far Commit") {
		t.Errorf("push: far released before its commit: %s", strings.Join(evs, ", "))
	}
	checkEqual(t, spec, "INBOX", "")
}

// scalingStore records what the engine reports to a Scaler.
type scalingStore struct {
	*memStore
	mu              sync.Mutex
	messages, bytes int64
	calls           int
}

func (s *scalingStore) PlannedCopies(messages int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages += int64(messages)
	s.bytes += bytes
	s.calls++
}

// Both stores hear of every plan's copies, both directions together, and
// of nothing when a plan copies nothing.
func TestScalerHearsThePlannedCopies(t *testing.T) {
	far, near := &scalingStore{memStore: newMemStore("far")}, &scalingStore{memStore: newMemStore("near")}
	spec := testSpec(t.TempDir(), far, near)
	var size int64
	for i := range 3 {
		addMsg(t, far.memStore, "INBOX", fmt.Sprint("f", i), 0)
		size += int64(len(msgBody(fmt.Sprint("f", i))))
	}
	addMsg(t, near.memStore, "INBOX", "n0", 0)
	size += int64(len(msgBody("n0")))
	addMsg(t, far.memStore, "Other", "o0", 0)
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{}) // nothing to copy: nothing reported
	for _, s := range []*scalingStore{far, near} {
		// INBOX: 3 pulled, 1 pushed; Other: 1 pulled.
		if s.messages != 5 || s.calls != 2 {
			t.Errorf("%s heard of %d messages in %d calls, want 5 in 2", s.name, s.messages, s.calls)
		}
		if s.bytes < size {
			t.Errorf("%s heard of %d bytes, want at least %d", s.name, s.bytes, size)
		}
	}
}
