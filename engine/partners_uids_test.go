package engine

import (
	"context"
	"testing"
)

// TestFailedFarExpungeKeepsNearPartner with UIDs that differ between the
// sides: the near message held back is the one paired with the far message
// whose removal failed, found through the pairs, not one that happens to
// carry the same number.
func TestFailedFarExpungeKeepsNearPartnerOtherUIDs(t *testing.T) {
	mem, near := newMemStore("far"), newMemStore("near")
	near.reserve, near.modseq = true, false
	far := &refusingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, near, "INBOX", "z", 0) // near UID 1: a and b are 2 and 3 there
	addMsg(t, mem, "INBOX", "a", 0)  // far UID 1
	addMsg(t, mem, "INBOX", "b", 0)
	mustSync(t, spec, RunOptions{})
	if a, z := findUID(t, near, "INBOX", "a"), findUID(t, mem, "INBOX", "z"); a == 1 || z == 1 {
		t.Fatalf("near a has UID %d, far z %d: the test needs other numbers on each side", a, z)
	}
	setFlagsBySubject(t, mem, "INBOX", "a", FlagDeleted, 0)
	far.expunge.Store(true)
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if len(res.Mailboxes) != 1 || res.Mailboxes[0].Err == nil {
		t.Fatalf("the refused removal was not reported: %+v", res.Mailboxes)
	}
	if got := view(t, near, "INBOX"); got != "a: b: z:" {
		t.Errorf("near after the far removal failed: %q, want a: b: z: (its partner kept)", got)
	}
	far.expunge.Store(false)
	setFlagsBySubject(t, mem, "INBOX", "a", 0, FlagDeleted) // taken back
	mustSync(t, spec, RunOptions{})
	if f, n := view(t, mem, "INBOX"), view(t, near, "INBOX"); f != "a: b: z:" || n != "a: b: z:" {
		t.Fatalf("after the undelete: far %q, near %q, want a: b: z: on both", f, n)
	}
}
