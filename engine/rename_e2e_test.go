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

// farMadeAnew deletes the far mailbox from of a maildirSpec pair and makes
// to there with from's UIDVALIDITY, holding the given subjects (none: an
// empty folder): what a server that gives every mailbox the same
// UIDVALIDITY shows after a mailbox was deleted and another made.
func farMadeAnew(t *testing.T, dir string, spec engine.ChannelSpec, from, to string, subjects ...string) {
	t.Helper()
	validity, err := os.ReadFile(filepath.Join(dir, "far", from, ".uidvalidity"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "far", from)); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, "far", to, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, subj := range subjects {
		engine.AddMsg(t, spec.Far, to, subj, 0)
	}
	if err := os.WriteFile(filepath.Join(dir, "far", to, ".uidvalidity"), validity, 0o600); err != nil {
		t.Fatal(err)
	}
}

// boxErr is the error of mailbox name in res (nil if none or not there).
func boxErr(res engine.ChannelResult, name string) error {
	for _, m := range res.Mailboxes {
		if m.Mailbox == name {
			return m.Err
		}
	}
	return nil
}

// nearDirOf is the folder of mailbox box on a Maildir near side.
func nearDirOf(t *testing.T, spec engine.ChannelSpec, box string) string {
	t.Helper()
	d, err := spec.Near.(engine.LocalStore).MailboxDir(box)
	if err != nil {
		t.Fatal(err)
	}
	return d
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
	barErr := boxErr(res, "Bar")
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
	farMadeAnew(t, dir, spec, "Foo", "Bar", "other1", "other2")
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	if barErr := boxErr(res, "Bar"); !errors.Is(barErr, engine.ErrForeignState) {
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
	fooErr := boxErr(res, "Foo")
	if !errors.Is(fooErr, engine.ErrGuard) {
		t.Fatalf("Foo: got %v, want the guard", fooErr)
	}
	nearDir := func(box string) string { return nearDirOf(t, p.spec, box) }
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
	farMadeAnew(t, dir, spec, "Foo", "Bar")
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	barErr := boxErr(res, "Bar")
	if n := engine.ViewBox(t, spec.Near, "Bar"); n != "f1: f2:" {
		t.Fatalf("near Bar: %q, want f1: f2: (err %v)", n, barErr)
	}
	if !errors.Is(barErr, engine.ErrForeignState) {
		t.Fatalf("Bar: got %v, want the state refused", barErr)
	}
}

// An empty folder that once held mail (its state holds no pairs but
// records the UIDs it saw), renamed on both sides: nothing in it can be
// tied wrongly, and it syncs on under its new name.
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
	renameBox(t, dir, "near", "Foo", "Bar")
	farMadeAnew(t, dir, spec, "Foo", "Bar", "other1")
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	if err := boxErr(res, "Bar"); !errors.Is(err, engine.ErrForeignState) {
		t.Fatalf("Bar: got %v, want the state refused", err)
	}
}

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
	farMadeAnew(t, dir, spec, "Foo", "Bar", "other1", "other2")
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	fooErr := boxErr(res, "Foo")
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
	fooErr := boxErr(res, "Foo")
	if !errors.Is(fooErr, engine.ErrGuard) {
		t.Fatalf("Foo: got %v, want the guard", fooErr)
	}
	if msg := fooErr.Error(); !strings.Contains(msg, "renamed") || !strings.Contains(msg, `"Bar"`) {
		t.Errorf("no hint for a renamed mailbox: %s", msg)
	}
}

// A far RENAME of Foo takes Foo/Sub along. Here (a nested layout) the mv of
// Foo's folder that its hint asks for takes Foo/Sub's along too, onto the
// path Foo/Sub's own hint then says to delete "if a run made it": followed
// in that order, the folder deleted is Foo/Sub's own, with its state and
// any mail not yet synced. Foo/Sub's hint must not ask for that.
func TestRenameHintNestedFolder(t *testing.T) {
	p := newPairing(t, imapMaildir)
	spec := p.spec
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, spec.Far, "Foo/Sub", "s1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	msgs := map[string]string{}
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			msgs[m.Mailbox] = m.Err.Error()
		}
	}
	nearDir := func(box string) string { return nearDirOf(t, spec, box) }
	if !strings.Contains(msgs["Foo"], "mv "+nearDir("Foo")+" "+nearDir("Bar")) {
		t.Fatalf("Foo: no hint: %s", msgs["Foo"])
	}
	if sub := msgs["Foo/Sub"]; strings.Contains(sub, "delete the folder "+nearDir("Bar/Sub")) {
		t.Errorf("Foo/Sub's hint asks to delete the folder Foo's mv puts there: %s", sub)
	}
}
