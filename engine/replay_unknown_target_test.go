package engine

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A journal's "ok ID 0" (docs/state-format.md: committed, the store could
// not say under which UID) is a copy that happened: replay looks for it on
// the target and pairs it. Left out, the source is still new to the next
// plan and is copied a second time.
func TestReplayFindsCopyOfUnknownUID(t *testing.T) {
	dir := t.TempDir()
	far, near := newMemStore("far"), newMemStore("near") // near: no UIDPLUS
	spec := testSpec(dir, far, near)
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	addMsg(t, far, "INBOX", "b", 0)
	SyncChannel(t.Context(), spec, RunOptions{CrashAfter: 2}) // copy intent, its result

	var path string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".journal") {
			path = p
		}
		return nil
	})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no journal left by the crash: %v", err)
	}
	ok := regexp.MustCompile(`(?m)^ok 1 [1-9][0-9]*$`)
	if !ok.Match(data) {
		t.Fatalf("journal without the copy's result:\n%s", data)
	}
	if err := os.WriteFile(path, ok.ReplaceAll(data, []byte("ok 1 0")), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := view(t, near, "INBOX"); got != "a: b:" {
		t.Fatalf("near after the crash: %q, want a: b: (the copy made)", got)
	}

	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{})
	if f, n := view(t, far, "INBOX"), view(t, near, "INBOX"); f != "a: b:" || n != "a: b:" {
		t.Fatalf("after the replay: far %q, near %q, want a: b: on both (one copy of b)", f, n)
	}
}
