package engine

import (
	"context"
	"errors"
	"testing"
	"time"
)

// gatedLister is a far store whose ListMailboxes waits for gate to close.
type gatedLister struct {
	*statusWarmer
	gate chan struct{}
}

func (g *gatedLister) ListMailboxes(ctx context.Context) ([]MailboxInfo, error) {
	<-g.gate
	return g.statusWarmer.ListMailboxes(ctx)
}

// aheadSetup syncs INBOX, A and B twice, then adds a message to the near
// side of A and B, so that those two are opened whatever the far side says.
func aheadSetup(t *testing.T) (spec ChannelSpec, far *memStore, g *gatedLister) {
	t.Helper()
	far, near := newMemStore("far"), newMemStore("near")
	near.reserve, near.modseq = true, false
	near.listStatus = true // as a Maildir: its listing carries each folder's stamp
	g = &gatedLister{statusWarmer: &statusWarmer{memStore: far}, gate: make(chan struct{})}
	close(g.gate)
	spec = testSpec(t.TempDir(), g, near)
	for _, box := range []string{"INBOX", "A", "B"} {
		addMsg(t, far, box, box+"1", 0)
	}
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{}) // records the stamps the copies left
	addMsg(t, near, "A", "A2", 0)
	addMsg(t, near, "B", "B2", 0)
	g.gate = make(chan struct{})
	return spec, far, g
}

// Mailboxes whose near side changed start while the far side is still being
// listed, and each runs once.
func TestSyncAheadOfTheFarListing(t *testing.T) {
	spec, far, g := aheadSetup(t)
	opened := far.Calls("OpenMailbox")
	done := make(chan ChannelResult)
	go func() { done <- SyncChannel(context.Background(), spec, RunOptions{}) }()
	deadline := time.Now().Add(10 * time.Second)
	for far.Calls("OpenMailbox") < opened+2 {
		if time.Now().After(deadline) {
			close(g.gate)
			t.Fatalf("A and B were not opened on the far side while it was being listed (%d opens)", far.Calls("OpenMailbox")-opened)
		}
		time.Sleep(time.Millisecond)
	}
	close(g.gate)
	res := <-done
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if n := far.Calls("OpenMailbox") - opened; n != 2 {
		t.Errorf("%d far mailboxes opened, want 2 (A and B, once each)", n)
	}
	var got []string
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			t.Errorf("%s: %v", m.Mailbox, m.Err)
		}
		got = append(got, m.Mailbox)
	}
	if len(got) != 3 {
		t.Errorf("results for %v, want INBOX, A and B once each", got)
	}
	checkEqual(t, spec, "A", "")
	checkEqual(t, spec, "B", "")
}

// A mailbox started ahead that the far side no longer has is then handled
// as any mailbox missing on one side (here: the guard, as the state lists
// its far messages), with one result and nothing changed.
func TestSyncAheadOfAMailboxGoneOnTheFarSide(t *testing.T) {
	spec, far, g := aheadSetup(t)
	far.mu.Lock()
	delete(far.boxes, "B")
	far.mu.Unlock()
	close(g.gate)
	opened := far.Calls("OpenMailbox")
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if n := far.Calls("OpenMailbox") - opened; n != 2 {
		t.Errorf("%d far opens, want 2 (A, and B ahead of the listing)", n)
	}
	n := 0
	for _, m := range res.Mailboxes {
		if m.Mailbox != "B" {
			if m.Err != nil {
				t.Errorf("%s: %v", m.Mailbox, m.Err)
			}
			continue
		}
		n++
		if !errors.Is(m.Err, ErrGuard) || errors.Is(m.Err, errNotThereYet) {
			t.Errorf("B: %v, want the guard's error", m.Err)
		}
	}
	if n != 1 {
		t.Errorf("%d results for B, want 1", n)
	}
	if got := len(subjects(t, spec.Near, "B")); got != 2 {
		t.Errorf("near B holds %d messages, want its 2", got)
	}
}

// A single mailbox whose near side changed waits for the far listing: the
// far store has no connection warmed for it, and logging in another one
// beside the listing's costs more than the listing.
func TestSingleChangedMailboxWaitsForTheListing(t *testing.T) {
	spec, far, g := aheadSetup(t) // A and B changed on the near side
	close(g.gate)
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{})
	addMsg(t, spec.Near, "A", "A3", 0)
	g.gate = make(chan struct{})
	opened := far.Calls("OpenMailbox")
	done := make(chan ChannelResult)
	go func() { done <- SyncChannel(context.Background(), spec, RunOptions{}) }()
	time.Sleep(100 * time.Millisecond)
	early := far.Calls("OpenMailbox") - opened
	close(g.gate)
	if res := <-done; res.Err != nil {
		t.Fatal(res.Err)
	}
	if early != 0 {
		t.Fatalf("%d far mailboxes opened before the listing, want 0", early)
	}
	checkEqual(t, spec, "A", "")
}
