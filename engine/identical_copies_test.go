package engine

import "testing"

// Two byte-identical messages copied in one batch to a target that does not
// say which UIDs it gave them (no UIDPLUS) are found there one to one: each
// copy is paired with a message of its own. Both paired with the first, the
// second copy would stand unpaired on the target (and be copied back as new
// mail) while its source, never paired, is left behind for good.
func TestIdenticalCopiesInOneBatchFoundOneToOne(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addMsg(t, far, "INBOX", "a", 0)
		mustSync(t, spec, RunOptions{})
		addMsg(t, near, "INBOX", "same", 0)
		addMsg(t, near, "INBOX", "same", 0)
		mustSync(t, spec, RunOptions{})
		mustSync(t, spec, RunOptions{})
		checkEqual(t, spec, "INBOX", "a: same: same:")
	})
}
