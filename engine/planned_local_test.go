package engine_test

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
)

// A plan's progress event says how many of its copies go into a store on
// this machine: cmd's processor governor gives a run its second processor
// on them. Far is in memory (not local), near a Maildir (local): the three
// pulled messages count, the two pushed do not.
func TestPlannedLocalCountsCopiesIntoALocalStore(t *testing.T) {
	dir := t.TempDir()
	near, err := maildir.New("near", filepath.Join(dir, "near"), "", maildir.LayoutVerbatim, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	far := engine.NewMemStore("far")
	spec := engine.TestSpecFor(dir, far, near)
	for i := range 3 {
		engine.AddMsg(t, far, "INBOX", fmt.Sprintf("far%d", i), 0)
	}
	for i := range 2 {
		engine.AddMsg(t, near, "INBOX", fmt.Sprintf("near%d", i), 0)
	}
	var mu sync.Mutex
	var planned, local int64
	engine.MustSync(t, spec, engine.RunOptions{Progress: func(ev engine.ProgressEvent) {
		if ev.Kind == engine.ProgressPlanned {
			mu.Lock()
			planned += ev.PlannedMessages
			local += ev.PlannedLocal
			mu.Unlock()
		}
	}})
	if planned != 5 || local != 3 {
		t.Fatalf("planned %d copies, %d into the local store; want 5 and 3", planned, local)
	}
}
