package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// refusingFar is a far store that refuses its first failOpens mailbox
// opens, and its listing when failList is set, with the error a server
// that takes no more connections gives (every mailbox meets the same).
type refusingFar struct {
	*gatedLister
	failOpens atomic.Int32
	failList  bool
}

var errRefused = errors.New("far: login refused: NO [LIMIT] too many connections")

func (r *refusingFar) OpenMailbox(ctx context.Context, name string, readOnly bool) (Mailbox, error) {
	if r.failOpens.Add(-1) >= 0 {
		return nil, errRefused
	}
	return r.gatedLister.OpenMailbox(ctx, name, readOnly)
}

func (r *refusingFar) ListMailboxes(ctx context.Context) ([]MailboxInfo, error) {
	if r.failList {
		return nil, errRefused
	}
	return r.gatedLister.ListMailboxes(ctx)
}

// A far side that refuses every connection fails the channel with one
// error; the mailboxes started ahead of its listing (their near side
// changed) do not each report it again: a cron job's mail held one line
// per changed folder (81 at 1 000 folders), all the same refusal.
func TestAheadMailboxesDoNotRepeatTheChannelsError(t *testing.T) {
	spec, _, g := aheadSetup(t)
	close(g.gate)
	far := &refusingFar{gatedLister: g, failList: true}
	far.failOpens.Store(1 << 20)
	spec.Far = far
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if !errors.Is(res.Err, errRefused) {
		t.Fatalf("channel error %v, want the refusal", res.Err)
	}
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			t.Errorf("%s: %v (the channel's error says it once)", m.Mailbox, m.Err)
		}
	}
}

// A far open refused ahead of the listing, which then succeeds, is tried
// again after it: the mailbox syncs in this run rather than fail.
func TestAheadMailboxRefusedIsTriedAfterTheListing(t *testing.T) {
	spec, _, g := aheadSetup(t)
	close(g.gate)
	far := &refusingFar{gatedLister: g}
	far.failOpens.Store(2) // A and B, ahead
	spec.Far = far
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			t.Errorf("%s: %v", m.Mailbox, m.Err)
		}
	}
	if len(res.Mailboxes) != 3 {
		t.Errorf("%d results, want INBOX, A and B once each", len(res.Mailboxes))
	}
	checkEqual(t, spec, "A", "")
	checkEqual(t, spec, "B", "")
}
