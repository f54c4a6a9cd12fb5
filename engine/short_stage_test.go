package engine

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
)

// shortStore's mailboxes stage only the first bytes of each message while
// told to, as a store that lost the rest of a body on the way would (a
// short write it did not report).
type shortStore struct {
	*memStore
	short atomic.Bool
}

func (s *shortStore) OpenMailbox(ctx context.Context, name string, readOnly bool) (Mailbox, error) {
	mb, err := s.memStore.OpenMailbox(ctx, name, readOnly)
	if err != nil {
		return nil, err
	}
	return &shortMailbox{mb, s}, nil
}

type shortMailbox struct {
	Mailbox
	s *shortStore
}

func (m *shortMailbox) Stage(ctx context.Context, nm NewMessage) (Staged, error) {
	if m.s.short.Load() {
		nm.Body = io.LimitReader(nm.Body, 20)
	}
	return m.Mailbox.Stage(ctx, nm)
}

// A copy whose target staged fewer bytes than the source sent is not made:
// committed and paired, the cut message would stand for the whole one for
// good (its source is never copied again).
func TestShortStagedCopyIsNotMade(t *testing.T) {
	far, mem := newMemStore("far"), newMemStore("near")
	mem.reserve, mem.modseq = true, false
	near := &shortStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	addMsg(t, far, "INBOX", "b", 0)
	near.short.Store(true)
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if len(res.Mailboxes) != 1 || res.Mailboxes[0].Err == nil {
		t.Errorf("the cut copy was not reported: %+v", res.Mailboxes)
	}
	if got := view(t, mem, "INBOX"); got != "a:" {
		t.Errorf("near after the cut copy: %q, want a: alone", got)
	}
	near.short.Store(false)
	mustSync(t, spec, RunOptions{})
	if f, n := view(t, far, "INBOX"), view(t, mem, "INBOX"); f != "a: b:" || n != "a: b:" {
		t.Fatalf("after the next run: far %q, near %q, want a: b: on both", f, n)
	}
}
