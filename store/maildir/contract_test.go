package maildir_test

import (
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
	"github.com/quixysync/quixysync/store/storetest"
)

// TestContract runs the store contract on both layouts. Each opener call
// returns a new Store on the same tree, as a later run would see it.
func TestContract(t *testing.T) {
	for _, tc := range []struct {
		layout maildir.Layout
		caps   storetest.Caps
	}{
		{maildir.LayoutVerbatim, storetest.Caps{UIDPlus: true, StampDelay: 1100 * time.Millisecond}},
		{maildir.LayoutMaildirPP, storetest.Caps{UIDPlus: true, NoDotNames: true, StampDelay: 1100 * time.Millisecond}},
	} {
		t.Run(tc.layout.String(), func(t *testing.T) {
			t.Parallel() // the Stamp subtest mostly sleeps
			root := t.TempDir()
			storetest.Run(t, func(t *testing.T) engine.Store {
				s, err := maildir.New("maildir.test", root, "", tc.layout, maildir.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}, tc.caps)
		})
	}
}
