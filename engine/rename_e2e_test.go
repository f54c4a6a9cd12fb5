package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
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

// Only the local folder renamed (mv), the far mailbox still there, and the
// run may not carry the rename there (here: pull only): its state is not
// taken over (its far UIDs are those of the far mailbox of the old name,
// which the run downloads again, as mbsync does), and the message says
// what happened and what to do instead of speaking of two channels.
func TestMailboxRenamedOnNearSideOnly(t *testing.T) {
	dir, spec := fooSynced(t, "f1")
	renameBox(t, dir, "near", "Foo", "Bar")
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{Mode: engine.ModePull})
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
	dir, spec := fooSynced(t, "f1", "f2")
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

// A webmail's RENAME of Foo to Bar where the run does not follow it (here
// because it may not create near mailboxes, which is what it would do with
// Bar otherwise): Foo stops with the guard (its state lists messages the far
// side no longer has under that name), and the guard's message says that
// Foo was most likely renamed to Bar and how to follow the rename by hand;
// done as it says, the next run copies nothing and syncs Bar.
func TestServerRenameGuardSaysHowToFollow(t *testing.T) {
	p := newPairing(t, imapMaildir)
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, p.spec.Near, "Foo", "f2", engine.FlagSeen)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	p.spec.Create[engine.Near] = false
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
	if _, err := os.Stat(nearDir("Bar")); !os.IsNotExist(err) {
		t.Fatalf("near Bar made without create (%v)", err)
	}

	// As the message says.
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

// noCopies fails if a run copied, deleted or created anything.
func noCopies(t *testing.T, res engine.ChannelResult) {
	t.Helper()
	for _, m := range res.Mailboxes {
		if m.Err != nil || m.Copied != [2]int{} || m.Deleted != [2]int{} || m.Created != [2]int{} {
			t.Errorf("%s: copied, deleted or created (or failed): %+v", m.Mailbox, m)
		}
	}
}

// skipped is the Skipped note of mailbox name in res.
func skipped(res engine.ChannelResult, name string) string {
	for _, m := range res.Mailboxes {
		if m.Mailbox == name {
			return m.Skipped
		}
	}
	return ""
}

// stateNames says whether the state in box's near folder names far mailbox box.
func stateNames(t *testing.T, spec engine.ChannelSpec, box string) {
	t.Helper()
	path, err := engine.StatePath(spec, box)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "far-mailbox \""+box+"\"") {
		t.Errorf("%s: the state does not name its mailbox:\n%s", box, b)
	}
}

// A webmail's RENAME of Foo to Bar (Foo/Sub goes along, as IMAP's RENAME
// takes the children). mbsync, and quixysync before, downloaded Bar and
// Bar/Sub whole and stopped Foo and Foo/Sub with the guard at every run
// until the user moved the folders by hand. The run now renames the folders
// here too, with their states (one mv: the subfolder moves with its parent
// in this layout), and syncs on under the new names: only what changed
// since is copied.
func TestServerRenameFollowed(t *testing.T) {
	p := newPairing(t, imapMaildir)
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, p.spec.Near, "Foo", "f2", engine.FlagSeen)
	engine.AddMsg(t, p.spec.Far, "Foo/Sub", "s1", 0)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	engine.SetFlagsBySubject(t, p.spec.Far, "Bar", "f1", engine.FlagFlagged, 0)
	engine.AddMsg(t, p.spec.Far, "Bar/Sub", "s2", 0)
	res := engine.MustSync(t, p.spec, engine.RunOptions{})
	for _, box := range []string{"Foo", "Foo/Sub"} {
		if note := skipped(res, box); !strings.Contains(note, "renamed to Bar") {
			t.Errorf("%s: %q, want it renamed", box, note)
		}
	}
	for _, m := range res.Mailboxes {
		want := [2]int{}
		if m.Mailbox == "Bar/Sub" {
			want[engine.Near] = 1 // s2, new since
		}
		if m.Err != nil || m.Copied != want || m.Deleted != [2]int{} || m.Created != [2]int{} {
			t.Errorf("%s: %+v, want copies %v only", m.Mailbox, m, want)
		}
	}
	if n := p.near.calls.get("RenameMailbox"); n != 1 {
		t.Errorf("%d folder renames, want 1 (Foo/Sub moves with Foo)", n)
	}
	p.check(t, "Bar", "f1:F f2:S")
	p.check(t, "Bar/Sub", "s1: s2:")
	for _, box := range []string{"Foo", "Foo/Sub"} {
		if _, err := os.Stat(nearDirOf(t, p.spec, box)); !os.IsNotExist(err) {
			t.Errorf("near %s still there (%v)", box, err)
		}
	}
	stateNames(t, p.spec, "Bar")
	stateNames(t, p.spec, "Bar/Sub")
	noCopies(t, engine.MustSync(t, p.spec, engine.RunOptions{}))
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
	dir, spec := fooSynced(t, "f1")
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
	dir, spec := fooSynced(t, "f1", "f2")
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
	dir, spec := fooSynced(t, "f1", "f2")
	renameBox(t, dir, "far", "Foo", "Bar")
	spec.Create[engine.Near] = false // else the run follows the rename
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
	spec.Create[engine.Near] = false // else the run follows the rename
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

// The same with a Maildir far side, a dry run first: it says what the run
// would do and changes nothing; the run then renames the folder here.
func TestServerRenameFollowedDryRun(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, spec.Near, "Foo", "f2", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	renameBox(t, dir, "far", "Foo", "Bar")
	res := engine.MustSync(t, spec, engine.RunOptions{DryRun: true})
	if note := skipped(res, "Foo"); !strings.HasPrefix(note, "would be renamed to Bar") {
		t.Errorf("dry run, Foo: %q", note)
	}
	if note := skipped(res, "Bar"); !strings.HasPrefix(note, "would take over the folder of Foo") {
		t.Errorf("dry run, Bar: %q", note)
	}
	if v := engine.ViewBox(t, spec.Near, "Foo"); v != "f1: f2:" {
		t.Errorf("the dry run changed near Foo: %q", v)
	}
	if _, err := os.Stat(nearDirOf(t, spec, "Bar")); !os.IsNotExist(err) {
		t.Errorf("the dry run made near Bar (%v)", err)
	}
	noCopies(t, engine.MustSync(t, spec, engine.RunOptions{}))
	checkBoth(t, spec, "Bar", "f1: f2:")
	stateNames(t, spec, "Bar")
}

// Where the evidence is not clear, or the run may not change the near side,
// the rename is not followed: Foo stops with the guard as before, its folder
// left where it is.
func TestServerRenameNotFollowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change, after the far rename of Foo to Bar; returns the run's options.
		change func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions
	}{
		{"two far mailboxes with its messages", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			// A copy of the renamed one, UIDVALIDITY and all: which one
			// the folder is cannot be told.
			if err := os.CopyFS(filepath.Join(dir, "far", "Baz"), os.DirFS(filepath.Join(dir, "far", "Bar"))); err != nil {
				t.Fatal(err)
			}
			return engine.RunOptions{}
		}},
		{"a folder of this side only inside it", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			engine.AddMsg(t, spec.Near, "Foo/Local", "l1", 0)
			spec.Create[engine.Far] = false
			return engine.RunOptions{}
		}},
		{"push only", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			return engine.RunOptions{Mode: engine.ModePush}
		}},
		{"a channel that pulls nothing", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			// pull = []: nothing goes far → near, a server's change
			// included; the local folders are the user's to arrange.
			spec.Pull = 0
			return engine.RunOptions{}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, spec := fooSynced(t, "f1", "f2")
			renameBox(t, dir, "far", "Foo", "Bar")
			opt := tc.change(t, dir, &spec)
			res := engine.SyncChannel(context.Background(), spec, opt)
			if err := boxErr(res, "Foo"); !errors.Is(err, engine.ErrGuard) {
				t.Errorf("Foo: got %v (%q), want the guard", err, skipped(res, "Foo"))
			}
			if v := engine.ViewBox(t, spec.Near, "Foo"); v != "f1: f2:" {
				t.Errorf("near Foo: %q", v)
			}
		})
	}
}

// A far rename the run follows whose folder had changes here since the last
// run, beside another folder with changes: both start before the far side
// is listed (see syncAhead), so Foo's run is under way, opened here, when
// the listing shows the rename. The folder is renamed only once that run has
// ended, and its new message then goes to the far mailbox under its new
// name.
func TestServerRenameFollowedStartedAhead(t *testing.T) {
	p := newPairing(t, imapMaildir)
	// The Maildir store itself: the counting wrapper answers STATUS, which
	// turns the early start off.
	p.spec.Near = p.raw[engine.Near]
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, p.spec.Far, "Other", "o1", 0)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	engine.MustSync(t, p.spec, engine.RunOptions{}) // records the stamps the copies left
	engine.AddMsg(t, p.spec.Near, "Foo", "n1", 0)
	engine.AddMsg(t, p.spec.Near, "Other", "o2", 0)
	// Folders changed a moment ago have no stamp yet (their mtimes may
	// still move within the clock's grain), and without one no early start.
	old := time.Now().Add(-time.Hour)
	for _, box := range []string{"Foo", "Other"} {
		for _, sub := range []string{"new", "cur"} {
			if err := os.Chtimes(filepath.Join(nearDirOf(t, p.spec, box), sub), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	res := engine.MustSync(t, p.spec, engine.RunOptions{})
	if note := skipped(res, "Foo"); !strings.Contains(note, "renamed to Bar") {
		t.Errorf("Foo: %q, want it renamed", note)
	}
	p.check(t, "Bar", "f1: n1:")
	p.check(t, "Other", "o1: o2:")
	noCopies(t, engine.MustSync(t, p.spec, engine.RunOptions{}))
}

// A rename that fails here (the new place is taken by a file) fails both
// names, copying nothing: synced, the new name would be created and copied
// whole, and the folder could no longer follow. Once the way is clear, the
// next run follows the rename.
func TestServerRenameFollowFails(t *testing.T) {
	dir, spec := fooSynced(t, "f1")
	if err := os.MkdirAll(filepath.Join(dir, "far", "New"), 0o700); err != nil {
		t.Fatal(err)
	}
	renameBox(t, dir, "far", "Foo", "New/Foo")
	blocker := filepath.Join(dir, "near", "New")
	if err := os.WriteFile(blocker, []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	for _, box := range []string{"Foo", "New/Foo"} {
		if err := boxErr(res, box); err == nil || !strings.Contains(err.Error(), "renam") {
			t.Errorf("%s: got %v, want the rename's failure", box, err)
		}
	}
	for _, m := range res.Mailboxes {
		if m.Copied != [2]int{} || m.Created != [2]int{} || m.Deleted != [2]int{} {
			t.Errorf("%s: %+v", m.Mailbox, m)
		}
	}
	if v := engine.ViewBox(t, spec.Near, "Foo"); v != "f1:" {
		t.Errorf("near Foo: %q", v)
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	noCopies(t, engine.MustSync(t, spec, engine.RunOptions{}))
	checkBoth(t, spec, "New/Foo", "f1:")
}

// The year's archive renamed on the server and a fresh one made under the
// old name: Foo renamed to Bar, a new Foo made with new mail. Before, Foo
// stopped at every run (its far UIDVALIDITY changed and none of its
// messages were in the new one) and Bar was downloaded whole. The folder
// here follows the rename to Bar, copying nothing, and Foo is made anew
// here for the new far mailbox.
func TestServerRenameThenOldNameRemade(t *testing.T) {
	p := newPairing(t, imapMaildir)
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, p.spec.Near, "Foo", "f2", engine.FlagSeen)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	engine.AddMsg(t, p.spec.Far, "Foo", "new1", 0)

	res := engine.MustSync(t, p.spec, engine.RunOptions{DryRun: true})
	if note := skipped(res, "Foo"); !strings.Contains(note, "would be renamed to Bar") || !strings.Contains(note, "made anew") {
		t.Errorf("dry run, Foo: %q", note)
	}

	res = engine.MustSync(t, p.spec, engine.RunOptions{})
	for _, m := range res.Mailboxes {
		var copied, created [2]int
		if m.Mailbox == "Foo" {
			copied[engine.Near], created[engine.Near] = 1, 1
		}
		if m.Err != nil || m.Copied != copied || m.Created != created || m.Deleted != [2]int{} {
			t.Errorf("%s: %+v, want copied %v, created %v", m.Mailbox, m, copied, created)
		}
	}
	p.check(t, "Bar", "f1: f2:S")
	p.check(t, "Foo", "new1:")
	stateNames(t, p.spec, "Bar")
	noCopies(t, engine.MustSync(t, p.spec, engine.RunOptions{}))
}

// The same renamed by hand on both sides, the old name made anew on the
// far side before the run: the folder's state is taken over (the old far
// mailbox it recorded is not the new one of that name), where it was
// refused as another mailbox's. A run that dies between following the
// rename and rewriting the state's owner lines leaves this too.
func TestMailboxRenamedOnBothSidesOldNameRemade(t *testing.T) {
	dir, spec := fooSynced(t, "f1", "f2")
	for _, side := range []string{"far", "near"} {
		renameBox(t, dir, side, "Foo", "Bar")
	}
	// Made anew with another UIDVALIDITY (a Maildir's is the clock's
	// second, which a test would share).
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, "far", "Foo", sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "far", "Foo", ".uidvalidity"), []byte("12345\n0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	engine.AddMsg(t, spec.Far, "Foo", "new1", 0)
	res := engine.MustSync(t, spec, engine.RunOptions{})
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Bar" && (m.Copied != [2]int{} || m.Deleted != [2]int{}) {
			t.Errorf("Bar: %+v", m)
		}
	}
	checkBoth(t, spec, "Bar", "f1: f2:")
	checkBoth(t, spec, "Foo", "new1:")
	stateNames(t, spec, "Bar")
}

// In the Maildir++ layout a subfolder is a folder of its own (.Foo.Sub
// beside .Foo): each follows the far rename by a rename of its own.
func TestServerRenameFollowedMaildirPP(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	near, err := maildir.New("near", filepath.Join(dir, "near"), "", maildir.LayoutMaildirPP, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	spec.Near = near
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, spec.Far, "Foo/Sub", "s1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	renameBox(t, dir, "far", "Foo", "Bar")
	res := engine.MustSync(t, spec, engine.RunOptions{})
	for _, box := range []string{"Foo", "Foo/Sub"} {
		if note := skipped(res, box); !strings.Contains(note, "renamed to Bar") {
			t.Errorf("%s: %q, want it renamed", box, note)
		}
	}
	noCopies(t, res)
	checkBoth(t, spec, "Bar", "f1:")
	checkBoth(t, spec, "Bar/Sub", "s1:")
	for _, d := range []string{".Bar", ".Bar.Sub"} {
		if _, err := os.Stat(filepath.Join(dir, "near", d, "cur")); err != nil {
			t.Errorf("near %s: %v", d, err)
		}
	}
	noCopies(t, engine.MustSync(t, spec, engine.RunOptions{}))
}

// Another far mailbox new to the run with the same UIDVALIDITY (a server
// that gives every mailbox the same one) but other messages: the messages
// tell which one the folder is, and the rename is followed.
func TestServerRenameSameUIDValidityToldByMessages(t *testing.T) {
	dir, spec := fooSynced(t, "f1", "f2")
	renameBox(t, dir, "far", "Foo", "Bar")
	engine.AddMsg(t, spec.Far, "Baz", "b1", 0)
	engine.AddMsg(t, spec.Far, "Baz", "b2", 0)
	v, err := os.ReadFile(filepath.Join(dir, "far", "Bar", ".uidvalidity"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "far", "Baz", ".uidvalidity"), v, 0o600); err != nil {
		t.Fatal(err)
	}
	res := engine.MustSync(t, spec, engine.RunOptions{})
	if note := skipped(res, "Foo"); !strings.Contains(note, "renamed to Bar") {
		t.Errorf("Foo: %q, want it renamed", note)
	}
	checkBoth(t, spec, "Bar", "f1: f2:")
	checkBoth(t, spec, "Baz", "b1: b2:")
}

// A folder renamed here (mv, a mail client's rename): mbsync downloads the
// server's Foo again and uploads Bar's messages as new mail, every message
// twice on the server; quixysync before downloaded Foo again and stopped
// Bar at every run. The run now renames the far mailbox too (Foo/Sub goes
// along, on the server as here) and syncs on under the new name: nothing
// copied, the change made here since carried over.
func TestNearRenameCarried(t *testing.T) {
	p := newPairing(t, imapMaildir)
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, p.spec.Near, "Foo", "f2", engine.FlagSeen)
	engine.AddMsg(t, p.spec.Far, "Foo/Sub", "s1", 0)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	renameBox(t, p.dir, "near", "Foo", "Bar")
	engine.AddMsg(t, p.spec.Near, "Bar", "n1", 0)

	res := engine.MustSync(t, p.spec, engine.RunOptions{DryRun: true})
	if note := skipped(res, "Foo"); !strings.HasPrefix(note, "would be renamed to Bar on the far side") {
		t.Errorf("dry run, Foo: %q", note)
	}
	if n := p.far.calls.get("RenameMailbox"); n != 0 {
		t.Fatalf("the dry run renamed %d far mailboxes", n)
	}

	res = engine.MustSync(t, p.spec, engine.RunOptions{})
	for _, box := range []string{"Foo", "Foo/Sub"} {
		if note := skipped(res, box); !strings.Contains(note, "renamed to Bar") {
			t.Errorf("%s: %q, want it renamed", box, note)
		}
	}
	for _, m := range res.Mailboxes {
		want := [2]int{}
		if m.Mailbox == "Bar" {
			want[engine.Far] = 1 // n1, new since
		}
		if m.Err != nil || m.Copied != want || m.Deleted != [2]int{} || m.Created != [2]int{} {
			t.Errorf("%s: %+v, want copies %v only", m.Mailbox, m, want)
		}
	}
	if n := p.far.calls.get("RenameMailbox"); n != 1 {
		t.Errorf("%d far renames, want 1 (Foo/Sub moves with Foo)", n)
	}
	p.check(t, "Bar", "f1: f2:S n1:")
	p.check(t, "Bar/Sub", "s1:")
	for _, box := range []string{"Foo", "Foo/Sub"} {
		if _, err := p.spec.Far.OpenMailbox(context.Background(), box, true); !errors.Is(err, engine.ErrNoMailbox) {
			t.Errorf("far %s: %v, want it gone", box, err)
		}
	}
	stateNames(t, p.spec, "Bar")
	stateNames(t, p.spec, "Bar/Sub")
	noCopies(t, engine.MustSync(t, p.spec, engine.RunOptions{}))
}

// Where a folder renamed here is not clearly the far mailbox renamed, or
// the far side may not be changed, nothing is renamed there: the old
// behaviour (the far mailbox downloaded again, the folder stopped as
// holding another mailbox's state).
func TestNearRenameNotCarried(t *testing.T) {
	for _, tc := range []struct {
		name string
		// change, after the near mv of Foo to Bar; returns the run's options.
		change func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions
	}{
		{"pull only", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			return engine.RunOptions{Mode: engine.ModePull}
		}},
		{"a channel that pushes nothing", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			// push = []: a read-only mirror of the server; a folder
			// rearranged here must not rename the server's mailbox.
			spec.Push = 0
			return engine.RunOptions{}
		}},
		{"no create on the far side", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			spec.Create[engine.Far] = false
			return engine.RunOptions{}
		}},
		{"copied twice, the original removed", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			// Bar and Baz both claim Foo: which one is the folder moved
			// cannot be told.
			if err := os.CopyFS(filepath.Join(dir, "near", "Baz"), os.DirFS(filepath.Join(dir, "near", "Bar"))); err != nil {
				t.Fatal(err)
			}
			return engine.RunOptions{}
		}},
		{"copied, not moved", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			if err := os.CopyFS(filepath.Join(dir, "near", "Foo"), os.DirFS(filepath.Join(dir, "near", "Bar"))); err != nil {
				t.Fatal(err)
			}
			return engine.RunOptions{}
		}},
		{"a far subfolder the channel leaves out", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			engine.AddMsg(t, spec.Far, "Foo/Other", "x1", 0)
			spec.Match = func(n string) bool { return n != "Foo/Other" }
			return engine.RunOptions{}
		}},
		{"only the state file moved", func(t *testing.T, dir string, spec *engine.ChannelSpec) engine.RunOptions {
			// Bar made anew (another .uidvalidity), Foo's state put in it.
			st, err := os.ReadFile(filepath.Join(dir, "near", "Bar", engine.StateFileName))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(filepath.Join(dir, "near", "Bar")); err != nil {
				t.Fatal(err)
			}
			engine.AddMsg(t, spec.Near, "Bar", "f1", 0)
			if err := os.WriteFile(filepath.Join(dir, "near", "Bar", ".uidvalidity"), []byte("12345\n1\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "near", "Bar", engine.StateFileName), st, 0o600); err != nil {
				t.Fatal(err)
			}
			return engine.RunOptions{}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, spec := fooSynced(t, "f1")
			renameBox(t, dir, "near", "Foo", "Bar")
			opt := tc.change(t, dir, &spec)
			res := engine.SyncChannel(context.Background(), spec, opt)
			if err := boxErr(res, "Bar"); !errors.Is(err, engine.ErrForeignState) {
				t.Errorf("Bar: got %v (%q), want the state refused", err, skipped(res, "Bar"))
			}
			if v := engine.ViewBox(t, spec.Far, "Foo"); v != "f1:" {
				t.Errorf("far Foo: %q", v)
			}
		})
	}
}

// A folder renamed here that also got mail, beside another folder with
// changes: its run starts before the far side is listed (see syncAhead)
// and ends refusing its state as another mailbox's. Once the rename is
// carried to the far side, the folder runs again, in the same run.
func TestNearRenameCarriedStartedAhead(t *testing.T) {
	p := newPairing(t, imapMaildir)
	p.spec.Near = p.raw[engine.Near] // the counting wrapper turns the early start off
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, p.spec.Far, "Other", "o1", 0)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	engine.MustSync(t, p.spec, engine.RunOptions{})
	renameBox(t, p.dir, "near", "Foo", "Bar")
	engine.AddMsg(t, p.spec.Near, "Bar", "n1", 0)
	engine.AddMsg(t, p.spec.Near, "Other", "o2", 0)
	old := time.Now().Add(-time.Hour)
	for _, box := range []string{"Bar", "Other"} {
		for _, sub := range []string{"new", "cur"} {
			if err := os.Chtimes(filepath.Join(nearDirOf(t, p.spec, box), sub), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	res := engine.MustSync(t, p.spec, engine.RunOptions{})
	if note := skipped(res, "Foo"); !strings.Contains(note, "renamed to Bar") {
		t.Errorf("Foo: %q, want it renamed", note)
	}
	p.check(t, "Bar", "f1: n1:")
	p.check(t, "Other", "o1: o2:")
	noCopies(t, engine.MustSync(t, p.spec, engine.RunOptions{}))
}

// Two far renames between runs where one lands inside the other's old or
// new place. A moved into Foo (as Foo/A), then Foo renamed to Zed (so A is
// now Zed/A): followed here in the order of the old names, A's rename made
// Zed a plain directory first, and Foo's rename onto it then failed at
// every run, Foo and Zed never synced again. Foo renamed to Zed, then A
// to Foo/A: A's folder must move into a Foo of its own here, not into the
// Foo folder that is leaving for Zed.
func TestServerRenameFollowedIntoAnotherRenamed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		renames [][2]string
		want    map[string]string
	}{
		{"into the new place", [][2]string{{"A", "Foo/A"}, {"Foo", "Zed"}}, map[string]string{"Zed": "f1: f2:S", "Zed/A": "a1:"}},
		{"into the old place", [][2]string{{"Foo", "Zed"}, {"A", "Foo/A"}}, map[string]string{"Zed": "f1: f2:S", "Foo/A": "a1:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec := maildirSpec(t, dir)
			engine.AddMsg(t, spec.Far, "A", "a1", 0)
			engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
			engine.AddMsg(t, spec.Near, "Foo", "f2", engine.FlagSeen)
			// Made in the same second, A and Foo have the same UIDVALIDITY
			// here: A's is made another, as a server's would be.
			uv := filepath.Join(dir, "far", "A", ".uidvalidity")
			b, err := os.ReadFile(uv)
			if err != nil {
				t.Fatal(err)
			}
			v, last, _ := strings.Cut(string(b), "\n")
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(uv, []byte(strconv.FormatUint(n-7, 10)+"\n"+last), 0o600); err != nil {
				t.Fatal(err)
			}
			engine.MustSync(t, spec, engine.RunOptions{})
			for _, r := range tc.renames {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, "far", r[1])), 0o700); err != nil {
					t.Fatal(err)
				}
				renameBox(t, dir, "far", r[0], r[1])
			}
			res := engine.MustSync(t, spec, engine.RunOptions{})
			noCopies(t, res)
			for _, box := range []string{"A", "Foo"} {
				if note := skipped(res, box); !strings.HasPrefix(note, "renamed to ") {
					t.Errorf("%s: %q, want it renamed", box, note)
				}
			}
			for box, want := range tc.want {
				checkBoth(t, spec, box, want)
				stateNames(t, spec, box)
			}
			noCopies(t, engine.MustSync(t, spec, engine.RunOptions{}))
		})
	}
}

// Two renames here between runs where one lands inside the other's old or
// new place, carried to the server: A moved into Foo and Foo renamed to
// Zed (A is Zed/A here), or Foo renamed to Zed and then A moved into a new
// Foo. In the order of the old names, A's RENAME to Zed/A made Zed on the
// server first, and Foo's onto it then failed at every run.
func TestNearRenameCarriedIntoAnotherRenamed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		moves [][2]string // near folders moved, in this order
		want  map[string]string
	}{
		{"into the new place", [][2]string{{"A", "Foo/A"}, {"Foo", "Zed"}}, map[string]string{"Zed": "f1:", "Zed/A": "a1:"}},
		{"into the old place", [][2]string{{"Foo", "Zed"}, {"A", "Foo/A"}}, map[string]string{"Zed": "f1:", "Foo/A": "a1:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPairing(t, imapMaildir)
			engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
			engine.AddMsg(t, p.spec.Far, "A", "a1", 0)
			engine.MustSync(t, p.spec, engine.RunOptions{})
			for _, m := range tc.moves {
				to := nearDirOf(t, p.spec, m[1])
				if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(nearDirOf(t, p.spec, m[0]), to); err != nil {
					t.Fatal(err)
				}
			}
			res := engine.MustSync(t, p.spec, engine.RunOptions{})
			noCopies(t, res)
			for box, want := range tc.want {
				p.check(t, box, want)
			}
			noCopies(t, engine.MustSync(t, p.spec, engine.RunOptions{}))
		})
	}
}

// A far rename whose new place here holds something of the user's (a
// directory with a file in it) is not followed: the old way, the new name
// downloaded and the old folder stopped by the guard, rather than both
// names failing at every run. An empty directory there is taken over.
func TestServerRenameOntoTakenPlace(t *testing.T) {
	for _, tc := range []struct {
		name     string
		file     bool
		followed bool
	}{{"a directory holding a file", true, false}, {"an empty directory", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir, spec := fooSynced(t, "f1")
			renameBox(t, dir, "far", "Foo", "Bar")
			if err := os.MkdirAll(filepath.Join(dir, "near", "Bar"), 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.file {
				if err := os.WriteFile(filepath.Join(dir, "near", "Bar", "notes.txt"), []byte("mine"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
			if err := boxErr(res, "Bar"); err != nil {
				t.Errorf("Bar: %v", err)
			}
			checkBoth(t, spec, "Bar", "f1:")
			fooErr := boxErr(res, "Foo")
			if tc.followed != (fooErr == nil) || !tc.followed && !errors.Is(fooErr, engine.ErrGuard) {
				t.Errorf("Foo: %v (%q), followed %v", fooErr, skipped(res, "Foo"), tc.followed)
			}
			if tc.file {
				if b, err := os.ReadFile(filepath.Join(dir, "near", "Bar", "notes.txt")); err != nil || string(b) != "mine" {
					t.Errorf("the user's file: %q, %v", b, err)
				}
			}
		})
	}
}

// A far rename onto a name whose folder here is a plain directory holding
// other folders (Archive/2024 synced, Archive itself never a mailbox: a
// server's \Noselect parent, then a webmail's RENAME of Foo to Archive).
// The folder cannot be moved there (the directory is not to be replaced),
// so the rename is not followed: Archive is synced as a far mailbox new to
// the run. Followed, both names failed at every run and the mail of far
// Archive never came here.
func TestServerRenameOntoNearDirectory(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, spec.Far, "Archive/2024", "a1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	// The server's RENAME of Foo to Archive: Foo's folder becomes Archive's,
	// beside Archive/2024.
	src, dst := filepath.Join(dir, "far", "Foo"), filepath.Join(dir, "far", "Archive")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(src); err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 2; run++ {
		res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
		for _, box := range []string{"Archive", "Archive/2024"} {
			if err := boxErr(res, box); err != nil {
				t.Errorf("run %d, %s: %v", run, box, err)
			}
		}
	}
	checkBoth(t, spec, "Archive", "f1:")
	checkBoth(t, spec, "Archive/2024", "a1:")
}

// The year's archive renamed on the server and a fresh one made under the
// old name, while the folder had changes here since the last run (a
// message filed into it), beside another folder with changes: Foo's run
// starts before the far side is listed (see syncAhead) and meets the far
// Foo's new UIDVALIDITY. That run must leave the change to be decided
// after the listing: it stopped Foo (too few messages to re-pair) while
// Bar was downloaded whole, and from then on Foo stopped at every run and
// the rename could no longer be followed (Bar was no longer new).
func TestServerRenameThenOldNameRemadeStartedAhead(t *testing.T) {
	p := newPairing(t, imapMaildir)
	p.spec.Near = p.raw[engine.Near] // the counting wrapper turns the early start off
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, p.spec.Far, "Other", "o1", 0)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	engine.MustSync(t, p.spec, engine.RunOptions{})
	engine.AddMsg(t, p.spec.Near, "Foo", "n1", 0)
	engine.AddMsg(t, p.spec.Near, "Other", "o2", 0)
	old := time.Now().Add(-time.Hour)
	for _, box := range []string{"Foo", "Other"} {
		for _, sub := range []string{"new", "cur"} {
			if err := os.Chtimes(filepath.Join(nearDirOf(t, p.spec, box), sub), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	engine.AddMsg(t, p.spec.Far, "Foo", "new1", 0)
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			t.Errorf("%s: %v", m.Mailbox, m.Err)
		}
	}
	if res.Err != nil {
		t.Errorf("channel: %v", res.Err)
	}
	p.check(t, "Bar", "f1: n1:")
	p.check(t, "Foo", "new1:")
	p.check(t, "Other", "o1: o2:")
	stateNames(t, p.spec, "Bar")
	noCopies(t, engine.MustSync(t, p.spec, engine.RunOptions{}))
}

// The same with only that folder changed here (no early start): the far
// side is not asked its status then (its near side changed), and the
// listing gives none, so its UIDVALIDITY is asked by name. Taken for
// unchanged, the rename was not followed: Foo stopped at every run and Bar
// was downloaded whole.
func TestServerRenameThenOldNameRemadeChangedHere(t *testing.T) {
	p := newPairing(t, imapMaildir)
	engine.AddMsg(t, p.spec.Far, "Foo", "f1", 0)
	engine.MustSync(t, p.spec, engine.RunOptions{})
	engine.MustSync(t, p.spec, engine.RunOptions{})
	engine.AddMsg(t, p.spec.Near, "Foo", "n1", 0)
	// Changed a moment ago, the folder would have no stamp yet (its mtimes
	// may still move within the clock's grain) and its far side be asked.
	old := time.Now().Add(-time.Hour)
	for _, sub := range []string{"new", "cur"} {
		if err := os.Chtimes(filepath.Join(nearDirOf(t, p.spec, "Foo"), sub), old, old); err != nil {
			t.Fatal(err)
		}
	}
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	engine.AddMsg(t, p.spec.Far, "Foo", "new1", 0)
	res := engine.MustSync(t, p.spec, engine.RunOptions{})
	if note := skipped(res, "Foo"); note != "" {
		t.Errorf("Foo: %q, want it synced as a mailbox new here", note)
	}
	p.check(t, "Bar", "f1: n1:")
	p.check(t, "Foo", "new1:")
	stateNames(t, p.spec, "Bar")
	noCopies(t, engine.MustSync(t, p.spec, engine.RunOptions{}))
}

// A webmail's RENAME of a folder with many subfolders (here 20, more than
// the mailboxes new to a run that findRenames opens one by one): the far
// listing gives no status, and the new names' UIDVALIDITYs are asked in one
// pipelined STATUS round. Opened one by one up to a bound, none was
// followed: every mailbox of the tree was downloaded whole again and every
// old folder stopped at every run.
func TestServerRenameFollowedManySubfolders(t *testing.T) {
	p := newPairing(t, imapMaildir)
	boxes := []string{"Foo"}
	for i := range 20 {
		boxes = append(boxes, fmt.Sprintf("Foo/S%02d", i))
	}
	for _, b := range boxes {
		engine.AddMsg(t, p.spec.Far, b, "m-"+strings.ReplaceAll(b, "/", "-"), 0)
	}
	engine.MustSync(t, p.spec, engine.RunOptions{})
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	res := engine.MustSync(t, p.spec, engine.RunOptions{})
	for _, b := range boxes {
		if note := skipped(res, b); !strings.Contains(note, "renamed to Bar") {
			t.Errorf("%s: %q, want it renamed", b, note)
		}
	}
	noCopies(t, res)
	if n := p.near.calls.get("RenameMailbox"); n != 1 {
		t.Errorf("%d folder renames, want 1", n)
	}
}

// A chain of renames on the server between runs: A renamed to C, then B to
// A. The first round follows A (its name made anew on the far side, by
// B's rename); B's only then has its new name free here, and a second
// round follows it. In one round, B stopped with the guard and A's mail
// was downloaded into a new A.
func TestServerRenameChainFollowed(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	engine.AddMsg(t, spec.Far, "A", "a1", 0)
	engine.AddMsg(t, spec.Far, "B", "b1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	// Distinct UIDVALIDITYs, as a server gives (a Maildir's is the second).
	if err := os.WriteFile(filepath.Join(dir, "far", "B", ".uidvalidity"), []byte("12345\n1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "near", "B")); err != nil {
		t.Fatal(err)
	}
	engine.MustSync(t, spec, engine.RunOptions{}) // B made again here under the far side's UIDVALIDITY
	renameBox(t, dir, "far", "A", "C")
	renameBox(t, dir, "far", "B", "A")
	res := engine.MustSync(t, spec, engine.RunOptions{})
	noCopies(t, res)
	if note := skipped(res, "B"); !strings.Contains(note, "renamed to A") {
		t.Errorf("B: %q, want it renamed to A", note)
	}
	checkBoth(t, spec, "C", "a1:")
	checkBoth(t, spec, "A", "b1:")
	stateNames(t, spec, "A")
	stateNames(t, spec, "C")
	noCopies(t, engine.MustSync(t, spec, engine.RunOptions{}))
}

// fooSynced is a pair of Maildir stores (in the directory it returns) whose
// far Foo, holding the subjects given, has been synced once: what most
// rename tests start from.
func fooSynced(t *testing.T, subjects ...string) (string, engine.ChannelSpec) {
	t.Helper()
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	for _, subj := range subjects {
		engine.AddMsg(t, spec.Far, "Foo", subj, 0)
	}
	engine.MustSync(t, spec, engine.RunOptions{})
	return dir, spec
}

// TestRenamedBothSidesWithFileMovedIn: before the folder was renamed on
// both sides, a mail client moved a message from INBOX into it keeping its
// file name, whose ",U=" is one the folder's state pairs with another
// message. The evidence that the folder is the far mailbox renamed (the
// newest pairs' Message-IDs on both sides) read the folder's UIDs without
// what the state knows, took the moved-in file for the paired message, saw
// another Message-ID and refused: the folder stopped with "the state
// belongs to another mailbox" at every run (found by the random histories,
// seed 6172272953574719606). The folder is read as a run reads it: taken
// over, the moved-in message copied as new, the deleted one removed there.
func TestRenamedBothSidesWithFileMovedIn(t *testing.T) {
	dir, spec := fooSynced(t, "f1", "f2")
	engine.AddMsg(t, spec.Far, "INBOX", "i1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	uid1 := func(box string) []string {
		var out []string
		for _, sub := range []string{"new", "cur"} {
			m, _ := filepath.Glob(filepath.Join(dir, "near", box, sub, "*,U=1[:,]*"))
			out = append(out, m...)
		}
		return out
	}
	files := uid1("INBOX")
	if len(files) != 1 || len(uid1("Foo")) != 1 {
		t.Fatalf("near INBOX's UID 1: %v, Foo's: %v (the test needs the same UID in both)", files, uid1("Foo"))
	}
	// The folder's own message under that UID deleted here, then the
	// INBOX message filed there, as a mail client files it: the same name,
	// in the same subdirectory.
	if err := os.Remove(uid1("Foo")[0]); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Base(filepath.Dir(files[0]))
	if err := os.Rename(files[0], filepath.Join(dir, "near", "Foo", sub, filepath.Base(files[0]))); err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{"far", "near"} {
		renameBox(t, dir, side, "Foo", "Bar")
	}
	engine.MustSync(t, spec, engine.RunOptions{})
	checkBoth(t, spec, "Bar", "f2: i1:")
	checkBoth(t, spec, "INBOX", "")
	checkIdle(t, spec)
}
