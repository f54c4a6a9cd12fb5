package engine

import (
	"context"
	"testing"
)

// A near removal kept (its \Deleted taken back during the run) holds back
// its far partner's removal (Plan.ExpungeLast), found through the pairs
// with UIDs that differ between the sides, not by the number the near
// message carries: removed anyway, the far message is lost, and with it the
// near one at the next run.
func TestKeptNearRemovalHoldsFarPartnerOtherUIDs(t *testing.T) {
	far, mem := newMemStore("far"), newMemStore("near")
	mem.reserve, mem.modseq = true, false
	near := &refusingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "z", 0) // far UID 1: a and b are 2 and 3 there
	addMsg(t, mem, "INBOX", "a", 0) // near UID 1
	addMsg(t, mem, "INBOX", "b", 0)
	mustSync(t, spec, RunOptions{})
	if a, z := findUID(t, far, "INBOX", "a"), findUID(t, mem, "INBOX", "z"); a == 1 || z == 1 {
		t.Fatalf("far a has UID %d, near z %d: the test needs other numbers on each side", a, z)
	}
	setFlagsBySubject(t, mem, "INBOX", "a", FlagDeleted, 0)
	near.keepOnce.Store(true)
	mustSync(t, spec, RunOptions{})
	if near.keepOnce.Load() {
		t.Fatal("the run removed nothing: the test kept nothing")
	}
	if got := view(t, far, "INBOX"); got != "a: b: z:" {
		t.Errorf("far after the near removal was kept: %q, want a: b: z: (its partner held back)", got)
	}
	mustSync(t, spec, RunOptions{})
	if f, n := view(t, far, "INBOX"), view(t, mem, "INBOX"); f != "a: b: z:" || n != "a: b: z:" {
		t.Fatalf("after the next run: far %q, near %q, want a: b: z: on both", f, n)
	}
}

// TestFailedSideKeepsOtherSidesFlagsInBase with UIDs that differ between
// the sides: the flags the other side's act did set go into the base of the
// pair put back, looked up by that side's UID.
func TestFailedSideKeepsOtherSidesFlagsInBaseOtherUIDs(t *testing.T) {
	far, mem := newMemStore("far"), newMemStore("near")
	mem.reserve, mem.modseq = true, false
	near := &refusingStore{memStore: mem}
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, mem, "INBOX", "z", 0) // near UID 1: a is 2 there
	addMsg(t, far, "INBOX", "a", 0) // far UID 1
	addMsg(t, far, "INBOX", "b", 0)
	mustSync(t, spec, RunOptions{})
	if a, z := findUID(t, mem, "INBOX", "a"), findUID(t, far, "INBOX", "z"); a == 1 || z == 1 {
		t.Fatalf("near a has UID %d, far z %d: the test needs other numbers on each side", a, z)
	}
	setFlagsBySubject(t, far, "INBOX", "a", FlagSeen, 0)
	setFlagsBySubject(t, mem, "INBOX", "a", FlagFlagged, 0)
	near.setFlags.Store(true)
	SyncChannel(t.Context(), spec, RunOptions{}) // far +F done, near +S refused
	if got := view(t, far, "INBOX"); got != "a:FS b: z:" {
		t.Fatalf("far after the run: %q, want a:FS b: z:", got)
	}
	near.setFlags.Store(false)
	setFlagsBySubject(t, mem, "INBOX", "a", 0, FlagFlagged) // the near user unflags
	mustSync(t, spec, RunOptions{})
	if f, n := view(t, far, "INBOX"), view(t, mem, "INBOX"); f != "a:S b: z:" || n != "a:S b: z:" {
		t.Fatalf("far %q, near %q, want a:S b: z: on both (the unflag kept)", f, n)
	}
}

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
