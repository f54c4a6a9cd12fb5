package engine

import (
	"testing"
)

// A server without UIDPLUS that adds a header to every message it is given
// (so the size changes): the copy is found again by its Message-ID, once,
// instead of counting as failed and being appended again at every run.
func TestRewriteOnAppendWithoutUIDPlus(t *testing.T) {
	far, near := storeKinds[2].mk() // imap-plain: the far side has no UIDPLUS
	if far.uidplus {
		t.Fatal("imap-plain has UIDPLUS")
	}
	far.rewrite = func(b []byte) []byte { return append([]byte("X-Added-By-Server: yes\n"), b...) }
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	addMsg(t, near, "INBOX", "new", 0)
	for i := range 3 {
		res := mustSync(t, spec, RunOptions{})
		if res.Failed != [2]int{} {
			t.Errorf("run %d: failed copies %v", i, res.Failed)
		}
	}
	checkEqual(t, spec, "INBOX", "a: new:")
}
