package engine

import (
	"context"
	"testing"
)

// A source that answers a message it listed with a size with no bytes at
// all (an empty literal: Gmail's answer for a message expunged meanwhile,
// or a glitch) does not get an empty message copied and paired with it:
// the copy fails, and a later run copies the real message.
func TestEmptyBodyOfAListedMessageIsNotCopied(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	far.emptyFetch = true
	res := SyncChannel(context.Background(), spec, RunOptions{})
	far.emptyFetch = false
	if res.Copied[Near] != 0 {
		t.Errorf("copied %d message(s) from an empty answer", res.Copied[Near])
	}
	if n := view(t, near, "INBOX"); n != "" {
		t.Errorf("near after the empty answer: %q", n)
	}
	mustSync(t, spec, RunOptions{})
	checkEqual(t, spec, "INBOX", "a:")
	mb, err := near.OpenMailbox(context.Background(), "INBOX", true)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	msgs, _, err := mb.List(context.Background(), ListQuery{All: true})
	if err != nil || len(msgs) != 1 || msgs[0].Size <= 0 {
		t.Fatalf("near copy: %+v, %v", msgs, err)
	}
}
