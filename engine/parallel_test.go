package engine

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// One slow mailbox does not hold up the others: while its messages are
// stuck in transfer (a large message, a slow server), the other pairs go
// through the remaining slots and finish. Without that, a single stuck
// mailbox would serialize the whole channel behind it.
func TestSlowMailboxDoesNotHoldUpTheOthers(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	spec.MaxParallel = 2
	others := []string{"B1", "B2", "B3", "B4", "B5"}
	for _, box := range append([]string{"A-slow"}, others...) {
		for i := range 2 {
			addMsg(t, far, box, fmt.Sprint(box, "-", i), 0)
		}
	}
	slow := newGate()
	far.gates = map[string]*gate{"A-slow": slow}

	done := make(chan string, 16)
	res := make(chan ChannelResult, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() {
		res <- SyncChannel(ctx, spec, RunOptions{Progress: func(ev ProgressEvent) {
			if ev.Kind == ProgressMailboxDone {
				done <- ev.Mailbox
			}
		}})
	}()

	select {
	case <-slow.started:
	case <-time.After(20 * time.Second):
		t.Fatal("the slow mailbox's fetch never started")
	}
	finished := map[string]bool{}
	for len(finished) < len(others) {
		select {
		case box := <-done:
			if box == "A-slow" {
				t.Fatal("the slow mailbox finished while its fetch was held")
			}
			finished[box] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("with one mailbox stuck in its fetch, only %v of %v finished: the others wait behind it", finished, others)
		}
	}
	close(slow.release)
	r := <-res
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	for _, m := range r.Mailboxes {
		if m.Err != nil {
			t.Errorf("%s: %v", m.Mailbox, m.Err)
		}
	}
	for _, box := range append([]string{"A-slow"}, others...) {
		if got := len(near.boxes[box].msgs); got != 2 {
			t.Errorf("%s: %d messages on the near side, want 2", box, got)
		}
	}
}

// Two stores with connection pools smaller than the number of pairs running
// at once: a pair must not hold one store's connection while it waits for
// the other's in the opposite order of another pair, or both wait for
// ever. The delays make the opposite orders happen: A and B get the near
// side's two connections first, C and D the far side's.
func TestPooledStoresDoNotDeadlock(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	far.reserve, near.reserve = true, true
	boxes := []string{"A", "B", "C", "D"}
	for _, box := range boxes {
		addMsg(t, far, box, box+"1", 0)
		addMsg(t, near, box, box+"2", 0)
	}
	const late = 100 * time.Millisecond
	far.pool, near.pool = make(chan struct{}, 2), make(chan struct{}, 2)
	far.openDelay = map[string]time.Duration{"A": late, "B": late}
	near.openDelay = map[string]time.Duration{"C": late, "D": late}
	spec := testSpec(t.TempDir(), far, near)
	spec.MaxParallel = 4
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := SyncChannel(ctx, spec, RunOptions{})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			t.Fatalf("%s: %v (deadlocked until the timeout?)", m.Mailbox, m.Err)
		}
	}
	for _, box := range boxes {
		checkEqual(t, spec, box, box+"1: "+box+"2:")
	}
}
