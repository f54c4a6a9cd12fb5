package engine

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// refusingStore's mailboxes refuse removals or flag changes while told to,
// as a server does for a folder without the right, or over a dropped
// connection; or, once, answer a removal as a store does whose user took
// the \Deleted back meanwhile: the flag comes off and the messages stay
// (KeptError).
type refusingStore struct {
	*memStore
	expunge, setFlags, keepOnce atomic.Bool
}

func (s *refusingStore) OpenMailbox(ctx context.Context, name string, readOnly bool) (Mailbox, error) {
	mb, err := s.memStore.OpenMailbox(ctx, name, readOnly)
	if err != nil {
		return nil, err
	}
	return &refusingMailbox{mb, s}, nil
}

type refusingMailbox struct {
	Mailbox
	s *refusingStore
}

func (m *refusingMailbox) Expunge(ctx context.Context, uids []UID) error {
	if m.s.expunge.Load() {
		return fmt.Errorf("NO [NOPERM] expunge refused (test)")
	}
	if m.s.keepOnce.Swap(false) {
		if err := m.Mailbox.SetFlags(ctx, uids, 0, FlagDeleted); err != nil {
			return err
		}
		return &KeptError{UIDs: uids}
	}
	return m.Mailbox.Expunge(ctx, uids)
}

func (m *refusingMailbox) SetFlags(ctx context.Context, uids []UID, add, remove Flag) error {
	if m.s.setFlags.Load() {
		return fmt.Errorf("NO store refused (test)")
	}
	return m.Mailbox.SetFlags(ctx, uids, add, remove)
}

// A far removal that failed holds back its near partner's: removed anyway,
// a \Deleted taken back on the far side afterwards would be lost with the
// message on both sides (the next run would carry the near removal over).
func TestFailedFarExpungeKeepsNearPartner(t *testing.T) {
	mem, near := newMemStore("far"), newMemStore("near")
	near.reserve, near.modseq = true, false
	far := &refusingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, mem, "INBOX", "a", 0)
	addMsg(t, mem, "INBOX", "b", 0)
	mustSync(t, spec, RunOptions{})
	setFlagsBySubject(t, mem, "INBOX", "a", FlagDeleted, 0)
	far.expunge.Store(true)
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if len(res.Mailboxes) != 1 || res.Mailboxes[0].Err == nil {
		t.Fatalf("the refused removal was not reported: %+v", res.Mailboxes)
	}
	if got := view(t, near, "INBOX"); got != "a: b:" {
		t.Errorf("near after the far removal failed: %q, want a: b: (its partner kept)", got)
	}
	far.expunge.Store(false)
	setFlagsBySubject(t, mem, "INBOX", "a", 0, FlagDeleted) // taken back
	mustSync(t, spec, RunOptions{})
	if f, n := view(t, mem, "INBOX"), view(t, near, "INBOX"); f != "a: b:" || n != "a: b:" {
		t.Fatalf("after the undelete: far %q, near %q, want a: b: on both", f, n)
	}
	// Not taken back: the next run removes both.
	setFlagsBySubject(t, mem, "INBOX", "a", FlagDeleted, 0)
	mustSync(t, spec, RunOptions{})
	if f, n := view(t, mem, "INBOX"), view(t, near, "INBOX"); f != "b:" || n != "b:" {
		t.Fatalf("after the removal: far %q, near %q, want b: on both", f, n)
	}
}

// A pair put back because one side's act failed records in its merge base
// the flags the other side's act did set: otherwise they look like a fresh
// change of that side next time and win over the user's later change.
func TestFailedSideKeepsOtherSidesFlagsInBase(t *testing.T) {
	t.Run("flags", func(t *testing.T) {
		far, mem := newMemStore("far"), newMemStore("near")
		mem.reserve, mem.modseq = true, false
		near := &refusingStore{memStore: mem}
		spec := testSpec(t.TempDir(), far, near)
		addMsg(t, far, "INBOX", "a", 0)
		mustSync(t, spec, RunOptions{})
		setFlagsBySubject(t, far, "INBOX", "a", FlagSeen, 0)
		setFlagsBySubject(t, mem, "INBOX", "a", FlagFlagged, 0)
		near.setFlags.Store(true)
		SyncChannel(context.Background(), spec, RunOptions{}) // far +F done, near +S refused
		if got := view(t, far, "INBOX"); got != "a:FS" {
			t.Fatalf("far after the run: %q, want a:FS", got)
		}
		near.setFlags.Store(false)
		setFlagsBySubject(t, mem, "INBOX", "a", 0, FlagFlagged) // the near user unflags
		mustSync(t, spec, RunOptions{})
		if f, n := view(t, far, "INBOX"), view(t, mem, "INBOX"); f != "a:S" || n != "a:S" {
			t.Fatalf("far %q, near %q, want a:S on both (the unflag kept)", f, n)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		far, mem := newMemStore("far"), newMemStore("near")
		mem.reserve, mem.modseq = true, false
		near := &refusingStore{memStore: mem}
		spec := testSpec(t.TempDir(), far, near)
		spec.Expunge = [2]bool{false, true}
		addMsg(t, far, "INBOX", "a", 0)
		addMsg(t, far, "INBOX", "b", 0)
		mustSync(t, spec, RunOptions{})
		setFlagsBySubject(t, mem, "INBOX", "a", FlagDeleted, 0)
		near.expunge.Store(true)
		SyncChannel(context.Background(), spec, RunOptions{}) // far +T done, near removal refused
		near.expunge.Store(false)
		setFlagsBySubject(t, mem, "INBOX", "a", 0, FlagDeleted) // the near user takes it back
		mustSync(t, spec, RunOptions{})
		if f, n := view(t, far, "INBOX"), view(t, mem, "INBOX"); f != "a: b:" || n != "a: b:" {
			t.Fatalf("far %q, near %q, want a: b: on both (the undelete kept)", f, n)
		}
	})
}

// A message new this run, already \Deleted and planned for removal without
// a copy, that its user takes back meanwhile is copied by the next runs: it
// must not stay on its side for good, unpaired below the high-water marks.
func TestKeptNewMessageIsCopied(t *testing.T) {
	mem, near := newMemStore("far"), newMemStore("near")
	near.reserve, near.modseq = true, false
	far := &refusingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, mem, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	addMsg(t, mem, "INBOX", "n", FlagDeleted)
	far.keepOnce.Store(true)
	mustSync(t, spec, RunOptions{})
	if far.keepOnce.Load() {
		t.Fatal("the run removed nothing: the test kept nothing")
	}
	for range 2 {
		mustSync(t, spec, RunOptions{})
	}
	if f, n := view(t, mem, "INBOX"), view(t, near, "INBOX"); f != "a: n:" || n != "a: n:" {
		t.Fatalf("far %q, near %q, want a: n: on both (the rescued message copied)", f, n)
	}
}

// The same when the removal of such a message fails (refused, or the run
// stopped before it): once its user takes the \Deleted back, it is copied,
// not left on its side for good below the high-water mark.
func TestFailedRemovalOfNewMessageStaysPending(t *testing.T) {
	mem, near := newMemStore("far"), newMemStore("near")
	far := &refusingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, mem, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	addMsg(t, mem, "INBOX", "n", FlagDeleted)
	far.expunge.Store(true)
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if len(res.Mailboxes) != 1 || res.Mailboxes[0].Err == nil {
		t.Fatalf("the refused removal went unreported: %+v", res)
	}
	far.expunge.Store(false)
	setFlagsBySubject(t, mem, "INBOX", "n", 0, FlagDeleted)
	for range 2 {
		mustSync(t, spec, RunOptions{})
	}
	if f, n := view(t, mem, "INBOX"), view(t, near, "INBOX"); f != "a: n:" || n != "a: n:" {
		t.Fatalf("far %q, near %q, want a: n: on both (the undeleted message copied)", f, n)
	}
}

// A pair put back because its removal was kept (no error) does not let the
// run record its markers: the next run must still see the other side's
// change made before it (here a far \Flagged, with the near \Deleted taken
// back during the run).
func TestKeptRemovalKeepsOtherSidesChange(t *testing.T) {
	far, mem := newMemStore("far"), newMemStore("near")
	mem.reserve, mem.modseq = true, false
	near := &refusingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	addMsg(t, far, "INBOX", "b", 0)
	mustSync(t, spec, RunOptions{})
	setFlagsBySubject(t, far, "INBOX", "a", FlagFlagged, 0)
	setFlagsBySubject(t, mem, "INBOX", "a", FlagDeleted, 0)
	near.keepOnce.Store(true)
	mustSync(t, spec, RunOptions{})
	if near.keepOnce.Load() {
		t.Fatal("the run removed nothing: the test kept nothing")
	}
	for range 2 {
		mustSync(t, spec, RunOptions{})
	}
	if f, n := view(t, far, "INBOX"), view(t, mem, "INBOX"); f != "a:F b:" || n != "a:F b:" {
		t.Fatalf("far %q, near %q, want a:F b: on both", f, n)
	}
}
