package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// watchedFolder makes a folder with n files that carry no UID yet (the
// first listing renames each to give it one) and opens it for writing.
func watchedFolder(t *testing.T, n int, opt func(*Store)) (*Store, *Mailbox, string) {
	t.Helper()
	root := t.TempDir()
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	if opt != nil {
		opt(s)
	}
	if err := s.CreateMailbox(t.Context(), "INBOX"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "INBOX")
	for i := range n {
		writeFile(t, filepath.Join(dir, "cur", fmt.Sprintf("1700000000.p%d.host:2,", i)), fmt.Sprintf("Subject: %d\n\nbody\n", i))
	}
	mb := open(t, s, "INBOX", false)
	t.Cleanup(func() { mb.Close() })
	if mb.w == nil {
		t.Skip("no inotify watch on this file system")
	}
	return s, mb, dir
}

// ownWork lists the folder (giving its files UIDs), copies two messages
// in, changes one message's flags and removes another, with between(step)
// called after each step.
func ownWork(t *testing.T, mb *Mailbox, between func(step string)) {
	t.Helper()
	ctx := t.Context()
	msgs := list(t, mb)
	between("listed")
	var st []engine.Staged
	for i := range 2 {
		x, err := mb.Stage(ctx, engine.NewMessage{Body: strings.NewReader(fmt.Sprintf("Subject: new %d\n\nx\n", i))})
		if err != nil {
			t.Fatal(err)
		}
		st = append(st, x)
	}
	if _, err := mb.Commit(ctx, st); err != nil {
		t.Fatal(err)
	}
	between("committed")
	var uids []engine.UID
	for u := range msgs {
		uids = append(uids, u)
	}
	if err := mb.SetFlags(ctx, uids[:1], engine.FlagSeen|engine.FlagFlagged, 0); err != nil {
		t.Fatal(err)
	}
	between("flagged")
	if err := mb.Expunge(ctx, uids[1:2]); err != nil {
		t.Fatal(err)
	}
	between("expunged")
}

// StatusAfter vouches for the folder's stamp after the Mailbox's own
// changes, and never after anybody else's, whenever it happened.
func TestStatusAfter(t *testing.T) {
	type change func(t *testing.T, dir string)
	deliver := func(t *testing.T, dir string) {
		writeFile(t, filepath.Join(dir, "new", "1700000001.other.host"), "Subject: delivered\n\nx\n")
	}
	renameOne := func(t *testing.T, dir string) {
		names := files(t, dir, "cur")
		old := filepath.Join(dir, "cur", names[len(names)-1])
		if err := os.Rename(old, strings.TrimSuffix(old, "T")+"T"); err != nil {
			t.Fatal(err)
		}
	}
	removeOne := func(t *testing.T, dir string) {
		names := files(t, dir, "cur")
		if err := os.Remove(filepath.Join(dir, "cur", names[len(names)-1])); err != nil {
			t.Fatal(err)
		}
	}
	moveToCur := func(t *testing.T, dir string) {
		// What a mail client does with a message it has shown.
		p := filepath.Join(dir, "new", "1700000002.other.host")
		writeFile(t, p, "Subject: seen\n\nx\n")
		time.Sleep(time.Millisecond)
		if err := os.Rename(p, filepath.Join(dir, "cur", "1700000002.other.host:2,S")); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		at    string // the step after which somebody else changes the folder
		other change
	}{
		{"nobody else", "", nil},
		{"a delivery after the listing", "listed", deliver},
		{"a delivery after the copies", "committed", deliver},
		{"a flag change by a mail client", "flagged", renameOne},
		{"a removal by a mail client", "expunged", removeOne},
		{"a file renamed into cur/", "committed", moveToCur},
		{"one of our own copies renamed", "expunged", func(t *testing.T, dir string) {
			names := files(t, dir, "new")
			if len(names) == 0 {
				names = files(t, dir, "cur")
			}
			sub := "new"
			if len(files(t, dir, "new")) == 0 {
				sub = "cur"
			}
			old := filepath.Join(dir, sub, names[0])
			if err := os.Rename(old, filepath.Join(dir, "cur", names[0]+"x")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, mb, dir := watchedFolder(t, 4, nil)
			ownWork(t, mb, func(step string) {
				if step == tc.at {
					tc.other(t, dir)
				}
			})
			if tc.other == nil && !s.freshStamps(dir) {
				t.Skip("this file system may keep a mtime for a change right after a stat (before Linux 6.13): no vouching right after a change")
			}
			st, ok := mb.StatusAfter()
			if want := tc.other == nil; ok != want {
				t.Fatalf("StatusAfter vouched %v, want %v", ok, want)
			}
			if !ok {
				return
			}
			now, err := s.dirStamp(dir)
			if err != nil {
				t.Fatal(err)
			}
			if st.Stamp != now.key() || st.UIDValidity != mb.status.UIDValidity {
				t.Fatalf("StatusAfter = %+v, folder's stamp now %s", st, now.key())
			}
			uidState, _, _ := readUIDState(dir)
			if st.UIDNext != uidState.Last+1 || st.UIDNext <= mb.status.UIDNext {
				t.Fatalf("UIDNext %d after copies, %d at open, .uidvalidity's last %d", st.UIDNext, mb.status.UIDNext, uidState.Last)
			}
		})
	}
}

// StatusAfter ends the watch, vouching or not: the kernel reaps its marks
// while the engine saves the state, instead of the store's Close waiting
// for that at the end of the run. A second call cannot vouch any more.
func TestStatusAfterEndsWatch(t *testing.T) {
	for _, other := range []bool{false, true} {
		t.Run(fmt.Sprintf("changed by somebody else %v", other), func(t *testing.T) {
			before := inotifyWatches(t)
			_, mb, dir := watchedFolder(t, 4, nil)
			if n := inotifyWatches(t) - before; n != 2 {
				t.Fatalf("%d watches for an open folder, want 2", n)
			}
			ownWork(t, mb, func(string) {})
			if other {
				writeFile(t, filepath.Join(dir, "new", "1700000001.other.host"), "Subject: delivered\n\nx\n")
			} else {
				time.Sleep(scanGuard + 5*time.Millisecond) // vouching, with or without fresh timestamps
			}
			if _, ok := mb.StatusAfter(); ok == other {
				t.Fatalf("StatusAfter vouched %v", ok)
			}
			if n := inotifyWatches(t) - before; n != 0 {
				t.Errorf("%d watches left after StatusAfter, want 0", n)
			}
			if _, ok := mb.StatusAfter(); ok {
				t.Error("a second StatusAfter vouched without a watch")
			}
		})
	}
}

// By default a folder whose cur/ is smaller than watchMin goes without a
// watch (the next run lists it instead, which costs less than the kernel's
// reaping of the watch at the end of the run); a larger one is watched, and
// so is an empty one.
func TestSmallFolderUnwatched(t *testing.T) {
	root := t.TempDir()
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	before := inotifyWatches(t)
	for _, name := range []string{"Small", "Big", "Empty"} {
		if err := s.CreateMailbox(t.Context(), name); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(root, "Small", "cur", "1700000000.a.host:2,S"), "Subject: a\n\nx\n")
	big := filepath.Join(root, "Big", "cur")
	for i := 0; ; i++ {
		if i%100 == 0 {
			fi, err := os.Stat(big)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() >= watchMin {
				break
			}
		}
		if err := os.WriteFile(filepath.Join(big, fmt.Sprintf("1700000000.P1Q%dR00000000.somehost,U=%d:2,S", i, i+1)), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	small := open(t, s, "Small", false)
	defer small.Close()
	if small.w != nil || inotifyWatches(t) != before {
		t.Errorf("a folder of one message is watched (%d watches more)", inotifyWatches(t)-before)
	}
	if _, ok := small.StatusAfter(); ok {
		t.Error("StatusAfter vouched without a watch")
	}
	bigMb := open(t, s, "Big", false)
	defer bigMb.Close()
	if bigMb.w == nil {
		t.Skip("no inotify watch on this file system")
	}
	if n := inotifyWatches(t) - before; n != 2 {
		t.Errorf("%d watches for the large folder, want 2", n)
	}
	// A folder with no message at all is about to be filled, maybe by a
	// first pull of any size: watched, so that the run can vouch for it.
	empty := open(t, s, "Empty", false)
	defer empty.Close()
	if empty.w == nil || inotifyWatches(t)-before != 4 {
		t.Errorf("an empty folder is not watched (%d watches in all)", inotifyWatches(t)-before)
	}
}

// More changes than the watch keeps before it reads the kernel's queue:
// still all its own.
func TestStatusAfterManyChanges(t *testing.T) {
	s, mb, dir := watchedFolder(t, drainEvery+500, nil)
	if n := len(list(t, mb)); n != drainEvery+500 {
		t.Fatalf("listed %d", n)
	}
	if !s.freshStamps(dir) {
		time.Sleep(scanGuard + 5*time.Millisecond) // see TestStatusAfterCoarseClock
	}
	if _, ok := mb.StatusAfter(); !ok {
		t.Fatal("StatusAfter does not vouch after the listing's own renames")
	}
}

// A change that fails may have been half made: no vouching after it.
func TestStatusAfterFailedChange(t *testing.T) {
	_, mb, dir := watchedFolder(t, 3, nil)
	msgs := list(t, mb)
	var u engine.UID
	for u = range msgs {
		break
	}
	// The file is gone before the Mailbox renames it: that is somebody
	// else's change, and the rename fails.
	for _, sub := range []string{"new", "cur"} {
		for _, n := range files(t, dir, sub) {
			if strings.Contains(n, fmt.Sprintf(",U=%d:", u)) {
				os.Remove(filepath.Join(dir, sub, n))
			}
		}
	}
	_ = mb.SetFlags(t.Context(), []engine.UID{u}, engine.FlagSeen, 0)
	if _, ok := mb.StatusAfter(); ok {
		t.Fatal("StatusAfter vouched after a failed rename")
	}
}

// Where a change right after a stat may keep the mtime the stat saw (before
// Linux 6.13, or here a test's coarse clock), StatusAfter vouches only once
// the clock has moved past the last change.
func TestStatusAfterCoarseClock(t *testing.T) {
	coarse := func(s *Store) { s.mtimeRes = 10 * time.Microsecond }
	_, mb, _ := watchedFolder(t, 3, coarse)
	ownWork(t, mb, func(string) {})
	if _, ok := mb.StatusAfter(); ok {
		t.Fatal("StatusAfter vouched right after a change, without fresh timestamps")
	}
	_, mb, _ = watchedFolder(t, 3, coarse)
	ownWork(t, mb, func(string) {})
	time.Sleep(scanGuard + 5*time.Millisecond)
	if _, ok := mb.StatusAfter(); !ok {
		t.Fatal("StatusAfter did not vouch once the clock had moved on")
	}
}

// A read-only Mailbox changes nothing and watches nothing.
func TestStatusAfterReadOnly(t *testing.T) {
	s, mb, _ := watchedFolder(t, 1, nil)
	mb.Close()
	ro := open(t, s, "INBOX", true)
	defer ro.Close()
	if _, ok := ro.StatusAfter(); ok {
		t.Fatal("a read-only Mailbox vouched")
	}
}

// inotifyFDList lists this process's inotify instances, by fd number.
func inotifyFDList(t *testing.T) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var out []string
	for _, e := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.Contains(l, "inotify") {
			out = append(out, e.Name())
		}
	}
	return out
}

// inotifyFDs counts this process's open inotify instances.
func inotifyFDs(t *testing.T) int { return len(inotifyFDList(t)) }

// inotifyWatches counts the watches of this process's inotify instances
// (the "inotify wd:" lines of their fdinfo).
func inotifyWatches(t *testing.T) int {
	n := 0
	for _, fd := range inotifyFDList(t) {
		if b, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", fd)); err == nil {
			n += strings.Count(string(b), "inotify wd:")
		}
	}
	return n
}

// Many folders open for writing at once (a run with many connections syncs
// twice as many folders at once) share one inotify instance: the kernel's
// default of 128 instances per user is shared with every other program of
// the user, and closing an instance waits for the kernel (4-25 ms each,
// which held up every folder a run wrote to). A folder closed removes its
// watches, which takes microseconds; the store's Close gives the instance
// back.
func TestWatchesShareOneInstance(t *testing.T) {
	root := t.TempDir()
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	before, watchesBefore := inotifyFDs(t), inotifyWatches(t)
	var mbs []*Mailbox
	watched := 0
	for i := range 40 {
		name := fmt.Sprintf("F%02d", i)
		if err := s.CreateMailbox(t.Context(), name); err != nil {
			t.Fatal(err)
		}
		mb := open(t, s, name, false)
		mbs = append(mbs, mb)
		if mb.w != nil {
			watched++
		}
	}
	if watched == 0 {
		t.Skip("no inotify watch on this file system")
	}
	if n := inotifyFDs(t) - before; n != 1 || watched != 40 {
		t.Errorf("%d inotify instances held by 40 open folders, %d of them watched; want 1 instance, all watched", n, watched)
	}
	if n := inotifyWatches(t) - watchesBefore; n != 80 {
		t.Errorf("%d watches for 40 folders, want 80 (new/ and cur/)", n)
	}
	start := time.Now()
	for _, mb := range mbs {
		mb.Close()
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Logf("closing 40 folders took %v", d)
	}
	if n := inotifyWatches(t) - watchesBefore; n != 0 {
		t.Errorf("%d watches left after closing every folder", n)
	}
	mb := open(t, s, "F00", false)
	if mb.w == nil {
		t.Error("no watch for a folder opened after the others were closed")
	}
	mb.Close()
	s.Close()
	if n := inotifyFDs(t) - before; n != 0 {
		t.Errorf("%d inotify instances left after the store closed", n)
	}
}

// Two folders watched by one instance: each event goes to its folder's
// watch. A mail client's change in one folder keeps that one from
// vouching, not the other. The same folder opened twice shares the
// kernel's watch: each Mailbox vouches for its own changes only, and one's
// Close leaves the other's watch working.
func TestWatchesApart(t *testing.T) {
	root := t.TempDir()
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, name := range []string{"A", "B"} {
		if err := s.CreateMailbox(t.Context(), name); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(root, name, "cur", "1700000000.p1.host:2,"), "Subject: x\n\nbody\n")
	}
	a, b := open(t, s, "A", false), open(t, s, "B", false)
	defer a.Close()
	defer b.Close()
	if a.w == nil || b.w == nil {
		t.Skip("no inotify watch on this file system")
	}
	if !s.freshStamps(filepath.Join(root, "B")) {
		t.Skip("no fresh directory timestamps here")
	}
	again := open(t, s, "A", false)
	if again.w == nil {
		t.Fatal("a second Mailbox of a watched folder has no watch")
	}
	list(t, again) // gives A's message its UID: a rename of again's
	if _, ok := again.StatusAfter(); !ok {
		t.Error("the second Mailbox of A does not vouch after its own rename")
	}
	if _, ok := a.StatusAfter(); ok {
		t.Error("A vouched after another Mailbox's rename in it")
	}
	again.Close()
	other := open(t, s, "B", false)
	if other.w == nil {
		t.Error("a second Mailbox of B has no watch")
	}
	other.Close()
	list(t, b) // B's own renames, seen only if other's Close left the watch
	writeFile(t, filepath.Join(root, "A", "new", "1700000001.p2.host"), "Subject: delivered\n\nbody\n")
	if _, ok := b.StatusAfter(); !ok {
		t.Error("B does not vouch after its own renames, for changes in A")
	}
}

// One folder's event read by another folder's drain between the change
// and its own() (the instance's queue is shared, and Mailboxes of a run
// drain it at their ends): still the folder's own change, matched when its
// own() comes. An event nothing accounts for by the end still spoils.
func TestWatchEventReadBeforeOwn(t *testing.T) {
	root := t.TempDir()
	n := newNotifier()
	t.Cleanup(n.close)
	var ws []*watch
	for _, name := range []string{"A", "B"} {
		for _, sub := range []string{"new", "cur", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, name, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		w := watchFolder(filepath.Join(root, name), n, 0)
		if w == nil {
			t.Skip("no inotify watch on this file system")
		}
		ws = append(ws, w)
	}
	a, b := ws[0], ws[1]
	writeFile(t, filepath.Join(root, "B", "tmp", "x"), "Subject: x\n\nbody\n")
	if err := os.Rename(filepath.Join(root, "B", "tmp", "x"), filepath.Join(root, "B", "new", "x")); err != nil {
		t.Fatal(err)
	}
	a.drain() // reads B's event before B says it was its own
	b.own("new", true, "x")
	b.drain()
	if b.bad || len(b.expect) != 0 || len(b.early) != 0 {
		t.Fatalf("B bad %v, expect %v, early %v: its own change read early spoiled it", b.bad, b.expect, b.early)
	}
	// Somebody else's delivery into A, read by B's drain: left over.
	writeFile(t, filepath.Join(root, "A", "new", "y"), "Subject: y\n\nbody\n")
	b.drain()
	a.drain()
	if !a.bad && len(a.early) == 0 {
		t.Fatal("A can vouch after a delivery nobody of this store made")
	}
}

// A second Mailbox of a folder joins the kernel's watch with the first
// one's events still queued: those changes came before it opened (its
// stamp has them), and must not keep it from vouching.
func TestWatchJoinedAfterChanges(t *testing.T) {
	s, mb, dir := watchedFolder(t, 3, nil)
	if !s.freshStamps(dir) {
		t.Skip("no fresh directory timestamps here")
	}
	list(t, mb) // three renames of mb's, their events not read yet
	again := open(t, s, "INBOX", false)
	defer again.Close()
	if again.w == nil {
		t.Fatal("a second Mailbox of a watched folder has no watch")
	}
	if _, ok := again.StatusAfter(); !ok {
		t.Error("the second Mailbox does not vouch for a folder unchanged since it opened")
	}
	if _, ok := mb.StatusAfter(); !ok {
		t.Error("the first Mailbox does not vouch after its own renames")
	}
}
