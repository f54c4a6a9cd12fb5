package engine

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
)

// droppingStore's mailboxes leave one UID out of their listings while told
// to, as an IMAP listing does whose answer for a message the client could
// not use (go-imap misroutes or drops it); the message is still there.
type droppingStore struct {
	*memStore
	drop atomic.Uint32
}

func (s *droppingStore) OpenMailbox(ctx context.Context, name string, readOnly bool) (Mailbox, error) {
	mb, err := s.memStore.OpenMailbox(ctx, name, readOnly)
	if err != nil {
		return nil, err
	}
	return &droppingMailbox{mb, s}, nil
}

type droppingMailbox struct {
	Mailbox
	s *droppingStore
}

func (m *droppingMailbox) List(ctx context.Context, q ListQuery) ([]Message, bool, error) {
	msgs, complete, err := m.Mailbox.List(ctx, q)
	if u := UID(m.s.drop.Load()); u != 0 && !complete {
		msgs = slices.DeleteFunc(msgs, func(msg Message) bool { return msg.UID == u })
	}
	return msgs, complete, err
}

// A message the last run copied to a side, at or above the UIDNEXT that run
// recorded there, that an incremental listing leaves out is not taken for
// removed: the UIDs asked for (there were removals) reach up to it. Taken
// for gone, its original on the other side would be removed.
func TestIncrementalListingLeavesOutLastRunsCopy(t *testing.T) {
	mem, near := newMemStore("far"), newMemStore("near")
	mem.modseq = true
	near.reserve, near.modseq = true, false
	far := &droppingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, mem, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	addMsg(t, near, "INBOX", "b", 0)
	mustSync(t, spec, RunOptions{}) // b copied to far, at the UIDNEXT of far's open
	b := findUID(t, mem, "INBOX", "b")
	expungeBySubject(t, mem, "INBOX", "a") // a removal: the run asks which UIDs remain
	far.drop.Store(uint32(b))
	mustSync(t, spec, RunOptions{})
	far.drop.Store(0)
	if f, n := view(t, mem, "INBOX"), view(t, near, "INBOX"); f != "b:" || n != "b:" {
		t.Fatalf("far %q, near %q, want b: on both (a removed, b kept)", f, n)
	}
	mustSync(t, spec, RunOptions{})
	if f, n := view(t, mem, "INBOX"), view(t, near, "INBOX"); f != "b:" || n != "b:" {
		t.Fatalf("after the next run: far %q, near %q, want b: on both", f, n)
	}
}
