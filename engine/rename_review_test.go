package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// A far mailbox of the new name with the old one's UIDVALIDITY that holds
// none of the state's far UIDs (made anew, empty, on a server that gives
// every mailbox the same UIDVALIDITY) gives samePairs no pair to compare:
// that is no evidence of a rename. Taken over, the state's pairs all look
// removed on the far side, and the folder's messages are removed here.
func TestMailboxRenamedOnBothSidesNeedsEvidence(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	spec.Remove = [2]bool{true, true}
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, spec.Far, "Foo", "f2", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	renameBox(t, dir, "near", "Foo", "Bar")
	validity, err := os.ReadFile(filepath.Join(dir, "far", "Foo", ".uidvalidity"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "far", "Foo")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, "far", "Bar", sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "far", "Bar", ".uidvalidity"), validity, 0o600); err != nil {
		t.Fatal(err)
	}
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	var barErr error
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Bar" {
			barErr = m.Err
		}
	}
	if n := engine.ViewBox(t, spec.Near, "Bar"); n != "f1: f2:" {
		t.Fatalf("near Bar: %q, want f1: f2: (err %v)", n, barErr)
	}
	if !errors.Is(barErr, engine.ErrForeignState) {
		t.Fatalf("Bar: got %v, want the state refused", barErr)
	}
}
