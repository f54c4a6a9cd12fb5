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

// renameBox renames mailbox from to to on side ("far" or "near") of a
// maildirSpec pair, as mv or a server's RENAME does: the folder keeps its
// files, its .uidvalidity and (near) its state.
func renameBox(t *testing.T, dir, side, from, to string) {
	t.Helper()
	if err := os.Rename(filepath.Join(dir, side, from), filepath.Join(dir, side, to)); err != nil {
		t.Fatal(err)
	}
}

// The way an mbsync user renames a folder: RENAME on the server (webmail)
// and mv of the local folder, children included. mbsync carries on with the
// state the folder took along (the far UIDVALIDITY is the same). quixysync
// stopped each renamed mailbox, at every run, with "two channels must not
// share a near folder", until the state files were edited by hand.
func TestMailboxRenamedOnBothSides(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	spec.Remove = [2]bool{true, true}
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, spec.Near, "Foo", "f2", engine.FlagSeen)
	engine.AddMsg(t, spec.Far, "Foo/Sub", "s1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	for _, side := range []string{"far", "near"} {
		renameBox(t, dir, side, "Foo", "Bar")
	}
	engine.SetFlagsBySubject(t, spec.Far, "Bar", "f1", engine.FlagFlagged, 0)
	res := engine.MustSync(t, spec, engine.RunOptions{})
	for _, m := range res.Mailboxes {
		if m.Copied != [2]int{} || m.Deleted != [2]int{} || m.Created != [2]int{} {
			t.Errorf("%s: the rename made the run copy, delete or create: %+v", m.Mailbox, m)
		}
	}
	checkBoth(t, spec, "Bar", "f1:F f2:S")
	checkBoth(t, spec, "Bar/Sub", "s1:")
	for _, box := range []string{"Bar", "Bar/Sub"} {
		path, err := engine.StatePath(spec, box)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "far-mailbox \""+box+"\"") {
			t.Errorf("%s: the state still names the old mailbox:\n%s", box, b)
		}
	}
	checkIdle(t, spec)
	if _, err := os.Stat(filepath.Join(dir, "near", "Foo")); !os.IsNotExist(err) {
		t.Errorf("near Foo was made again (%v)", err)
	}
}

// Only the local folder renamed (mv), the far mailbox still there: its
// state is not taken over (its far UIDs are those of the far mailbox of the
// old name, which the run downloads again, as mbsync does), and the message
// says what happened and what to do instead of speaking of two channels.
func TestMailboxRenamedOnNearSideOnly(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	renameBox(t, dir, "near", "Foo", "Bar")
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	var barErr error
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Bar" {
			barErr = m.Err
		}
	}
	if !errors.Is(barErr, engine.ErrForeignState) {
		t.Fatalf("near Bar: got %v, want the state refused", barErr)
	}
	msg := barErr.Error()
	if strings.Contains(msg, "Two channels") || !strings.Contains(msg, "renamed") || !strings.Contains(msg, `"Foo"`) {
		t.Errorf("the message does not say the folder was renamed from Foo: %s", msg)
	}
	checkBoth(t, spec, "Foo", "f1:")
	if v := engine.ViewBox(t, spec.Near, "Bar"); v != "f1:" {
		t.Errorf("near Bar: %q", v)
	}
}

// The same against Dovecot: a webmail's RENAME of Foo (and Foo/Sub with it)
// to Bar keeps the mailboxes' UIDVALIDITY, and the folders renamed here by mv
// sync on with their states, copying nothing.
func TestMailboxRenamedOnBothSidesDovecot(t *testing.T) {
	p := newPairing(t, imapMaildir)
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, p.spec.Near, "Foo", "f2", engine.FlagSeen)
	engine.AddMsg(t, p.spec.Far, "Foo/Sub", "s1", 0)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	renameBox(t, p.dir, "near", "Foo", "Bar")
	engine.SetFlagsBySubject(t, p.spec.Far, "Bar", "f1", engine.FlagFlagged, 0)
	res := engine.MustSync(t, p.spec, engine.RunOptions{})
	for _, m := range res.Mailboxes {
		if m.Copied != [2]int{} || m.Deleted != [2]int{} || m.Created != [2]int{} {
			t.Errorf("%s: the rename made the run copy, delete or create: %+v", m.Mailbox, m)
		}
	}
	p.check(t, "Bar", "f1:F f2:S")
	p.check(t, "Bar/Sub", "s1:")
}

// A far mailbox of the new name with the old one's UIDVALIDITY but other
// messages (a server that gives every mailbox the same UIDVALIDITY, or the
// old mailbox deleted and another made) is not taken for the renamed one:
// its UIDs would tie its messages to the folder's unrelated ones, silently,
// and carry removals between them. The state stays refused.
func TestMailboxRenamedOnBothSidesNeedsItsMessages(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
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
	engine.AddMsg(t, spec.Far, "Bar", "other1", 0)
	engine.AddMsg(t, spec.Far, "Bar", "other2", 0)
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
	if !errors.Is(barErr, engine.ErrForeignState) {
		t.Fatalf("Bar: got %v, want the state refused", barErr)
	}
	if f, n := engine.ViewBox(t, spec.Far, "Bar"), engine.ViewBox(t, spec.Near, "Bar"); f != "other1: other2:" || n != "f1: f2:" {
		t.Fatalf("Bar changed: far %q, near %q", f, n)
	}
}

// A webmail's RENAME of Foo to Bar, the folder left as it was here: as in
// mbsync, Bar is copied here whole and Foo stops with the guard (its state
// lists messages the far side no longer has under that name). The guard's
// message says that Foo was most likely renamed to Bar and how to follow
// the rename; done as it says, the next run copies nothing and syncs Bar.
func TestServerRenameGuardSaysHowToFollow(t *testing.T) {
	p := newPairing(t, imapMaildir)
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, p.spec.Near, "Foo", "f2", engine.FlagSeen)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	var fooErr error
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Foo" {
			fooErr = m.Err
		}
	}
	if !errors.Is(fooErr, engine.ErrGuard) {
		t.Fatalf("Foo: got %v, want the guard", fooErr)
	}
	nearDir := func(box string) string {
		d, err := p.spec.Near.(engine.LocalStore).MailboxDir(box)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	msg := fooErr.Error()
	for _, want := range []string{`"Bar"`, "renamed", "mv " + nearDir("Foo") + " " + nearDir("Bar")} {
		if !strings.Contains(msg, want) {
			t.Errorf("the guard's message lacks %q: %s", want, msg)
		}
	}
	p.check(t, "Bar", "f1: f2:S")

	// As the message says.
	if err := os.RemoveAll(nearDir("Bar")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(nearDir("Foo"), nearDir("Bar")); err != nil {
		t.Fatal(err)
	}
	res = engine.MustSync(t, p.spec, engine.RunOptions{})
	for _, m := range res.Mailboxes {
		if m.Copied != [2]int{} || m.Deleted != [2]int{} || m.Created != [2]int{} {
			t.Errorf("%s: following the rename made the run copy, delete or create: %+v", m.Mailbox, m)
		}
	}
	p.check(t, "Bar", "f1: f2:S")
}
