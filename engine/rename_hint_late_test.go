package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// A far mailbox new to the run that has the vanished one's UIDVALIDITY but
// none of its messages (a server that gives every mailbox the same
// UIDVALIDITY; the old mailbox deleted, another made) is no rename: the
// guard must not tell the user to delete the new folder here and move the
// old one onto it (the state would then be refused as foreign, the folder
// stuck).
func TestRenameHintNeedsTheMessages(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, spec.Far, "Foo", "f2", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	validity, err := os.ReadFile(filepath.Join(dir, "far", "Foo", ".uidvalidity"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "far", "Foo")); err != nil {
		t.Fatal(err)
	}
	engine.AddMsg(t, spec.Far, "Bar", "other1", 0)
	engine.AddMsg(t, spec.Far, "Bar", "other2", 0)
	if err := os.WriteFile(filepath.Join(dir, "far", "Bar", ".uidvalidity"), validity, 0o600); err != nil {
		t.Fatal(err)
	}
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	var fooErr error
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Foo" {
			fooErr = m.Err
		}
	}
	if !errors.Is(fooErr, engine.ErrGuard) {
		t.Fatalf("Foo: got %v, want the guard", fooErr)
	}
	if msg := fooErr.Error(); strings.Contains(msg, "renamed") || strings.Contains(msg, "mv ") {
		t.Errorf("the guard takes a mailbox made anew for the renamed one: %s", msg)
	}
}

// The same folder renamed on the far side (its messages there): the hint
// is still given on a Maildir far side.
func TestRenameHintMaildir(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, spec.Far, "Foo", "f2", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	renameBox(t, dir, "far", "Foo", "Bar")
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	var fooErr error
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Foo" {
			fooErr = m.Err
		}
	}
	if !errors.Is(fooErr, engine.ErrGuard) {
		t.Fatalf("Foo: got %v, want the guard", fooErr)
	}
	if msg := fooErr.Error(); !strings.Contains(msg, "renamed") || !strings.Contains(msg, `"Bar"`) {
		t.Errorf("no hint for a renamed mailbox: %s", msg)
	}
}
