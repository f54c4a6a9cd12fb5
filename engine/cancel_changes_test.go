package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// cancelingStore's mailboxes cancel the run (as a SIGINT does) right after
// a Commit: the copies of the batch are made, the flag changes and removals
// that come after them are not.
type cancelingStore struct {
	*memStore
	mu     sync.Mutex
	cancel context.CancelFunc
}

func (s *cancelingStore) OpenMailbox(ctx context.Context, name string, readOnly bool) (Mailbox, error) {
	mb, err := s.memStore.OpenMailbox(ctx, name, readOnly)
	if err != nil {
		return nil, err
	}
	return &cancelingMailbox{mb, s}, nil
}

type cancelingMailbox struct {
	Mailbox
	s *cancelingStore
}

func (m *cancelingMailbox) Commit(ctx context.Context, staged []Staged) ([]CommitResult, error) {
	res, err := m.Mailbox.Commit(ctx, staged)
	m.s.mu.Lock()
	if m.s.cancel != nil {
		m.s.cancel()
		m.s.cancel = nil
	}
	m.s.mu.Unlock()
	return res, err
}

// A run interrupted after its copies, before its flag changes and removals,
// leaves the pairs of those changes as they were: the next run makes them.
// Saved as if made, a flag set on one side would later read as taken away
// on the other (and be taken off both), and a pair dropped for a removal not
// made would leave its message unpaired below the high-water mark, kept on
// one side for good.
func TestInterruptedBeforeChangesKeepsTheirPairs(t *testing.T) {
	far, mem := newMemStore("far"), newMemStore("near")
	mem.reserve, mem.modseq = true, false
	near := &cancelingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	addMsg(t, far, "INBOX", "b", 0)
	mustSync(t, spec, RunOptions{})

	setFlagsBySubject(t, far, "INBOX", "a", FlagSeen, 0)    // to carry to near
	setFlagsBySubject(t, far, "INBOX", "b", FlagDeleted, 0) // to remove on both
	addMsg(t, far, "INBOX", "c", 0)                         // copied first, then the stop
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	near.mu.Lock()
	near.cancel = cancel
	near.mu.Unlock()
	res := SyncChannel(ctx, spec, RunOptions{})
	if !errors.Is(res.Err, ErrStopped) {
		t.Fatalf("run not stopped: %v %+v", res.Err, res.Mailboxes)
	}
	if got := view(t, mem, "INBOX"); got != "a: b: c:" {
		t.Fatalf("near after the stopped run: %q, want a: b: c: (c copied, nothing else done)", got)
	}

	mustSync(t, spec, RunOptions{})
	if f, n := view(t, far, "INBOX"), view(t, mem, "INBOX"); f != "a:S c:" || n != "a:S c:" {
		t.Fatalf("after the next run: far %q, near %q, want a:S c: on both", f, n)
	}
}

// A mailbox with an error of its own that the interruption then cut short
// is reported as both: its error, and Stopped. Reported as failed alone, it
// was left out of the summary's "N mailboxes not finished" (README: "one line
// says how many mailboxes were cut short"), though its flag change was not
// made.
func TestInterruptedAfterAnErrorSaysStopped(t *testing.T) {
	far, mem := newMemStore("far"), newMemStore("near")
	mem.reserve, mem.modseq = true, false
	near := &cancelingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})

	setFlagsBySubject(t, far, "INBOX", "a", FlagSeen, 0) // not made: the stop comes first
	addMsg(t, far, "INBOX", "bad", 0)                    // refused by the near side
	addMsg(t, far, "INBOX", "c", 0)                      // copied, then the stop
	mem.failStage = "Subject: bad\n"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	near.mu.Lock()
	near.cancel = cancel
	near.mu.Unlock()
	res := SyncChannel(ctx, spec, RunOptions{})
	if len(res.Mailboxes) != 1 {
		t.Fatalf("results: %+v", res.Mailboxes)
	}
	mr := res.Mailboxes[0]
	if mr.Err == nil || Interrupted(mr.Err) || !strings.Contains(mr.Err.Error(), "injected failure") {
		t.Errorf("mailbox error %v: want the refused copy's", mr.Err)
	}
	if !mr.Stopped {
		t.Errorf("a mailbox cut short after an error is not marked Stopped: %+v", mr)
	}
	if got := view(t, mem, "INBOX"); got != "a: c:" {
		t.Fatalf("near after the stopped run: %q, want a: c: (c copied, the flag not carried)", got)
	}
}
