package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// An empty folder that once held mail (its state holds no pairs but
// records the UIDs it saw), renamed on both sides: nothing in it can be
// tied wrongly, and it syncs on under its new name as before a73f3ac.
func TestEmptyMailboxRenamedOnBothSides(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	spec.Remove = [2]bool{true, true}
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	engine.ExpungeBySubject(t, spec.Far, "Foo", "f1")
	engine.MustSync(t, spec, engine.RunOptions{})
	checkBoth(t, spec, "Foo", "")
	for _, side := range []string{"far", "near"} {
		renameBox(t, dir, side, "Foo", "Bar")
	}
	engine.MustSync(t, spec, engine.RunOptions{})
	checkBoth(t, spec, "Bar", "")
}

// The same state moved onto a far mailbox made anew with the old
// UIDVALIDITY that holds a message at a UID the state has seen: taken over,
// that message would never be copied. The state stays refused.
func TestEmptyMailboxRenamedOntoOtherMessages(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	engine.ExpungeBySubject(t, spec.Far, "Foo", "f1")
	engine.MustSync(t, spec, engine.RunOptions{})
	validity, err := os.ReadFile(filepath.Join(dir, "far", "Foo", ".uidvalidity"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "far", "Foo")); err != nil {
		t.Fatal(err)
	}
	renameBox(t, dir, "near", "Foo", "Bar")
	engine.AddMsg(t, spec.Far, "Bar", "other1", 0)
	if err := os.WriteFile(filepath.Join(dir, "far", "Bar", ".uidvalidity"), validity, 0o600); err != nil {
		t.Fatal(err)
	}
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Bar" && !errors.Is(m.Err, engine.ErrForeignState) {
			t.Fatalf("Bar: got %v, want the state refused", m.Err)
		}
	}
}
