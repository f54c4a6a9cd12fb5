package engine_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
)

// restampSpec is a Maildir↔Maildir channel whose near store is wrapped (for
// its hooks and call counts), with a message on each side to copy across.
func restampSpec(t *testing.T) (engine.ChannelSpec, *wrapStore, string) {
	t.Helper()
	dir := t.TempDir()
	far, err := maildir.New("far", filepath.Join(dir, "far"), "", maildir.LayoutVerbatim, maildir.Options{WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	near, err := maildir.New("near", filepath.Join(dir, "near"), "", maildir.LayoutVerbatim, maildir.Options{WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	w := wrap(near)
	w.keepOpen = true
	spec := engine.TestSpecFor(dir, far, w.store())
	addMany(t, far, "INBOX", 0, "f1", "f2")
	addMany(t, near, "INBOX", engine.FlagSeen, "n1")
	nearDir, err := near.MailboxDir("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return spec, w, nearDir
}

// stampsSettle waits until a run opening the folders gets valid stamps
// (their mtimes more than a second old).
func stampsSettle() { time.Sleep(1100 * time.Millisecond) }

// A run that wrote to a Maildir folder leaves a stamp the next run can
// trust, so that run skips the pair as unchanged instead of listing the
// folders again only because of the first run's own writes.
func TestOwnWritesLeaveAValidStamp(t *testing.T) {
	t.Parallel() // mostly sleeps
	spec, w, nearDir := restampSpec(t)
	if _, ok := any(mustOpen(t, spec.Near, "INBOX")).(engine.Restamper); !ok {
		t.Fatal("the wrapped Maildir mailbox is not a Restamper")
	}
	res := engine.MustSync(t, spec, engine.RunOptions{})
	if got := res.Mailboxes[0].Copied; got != [2]int{1, 2} {
		t.Fatalf("first run copied %v, want 1 to far and 2 to near", got)
	}
	checkSame(t, spec, "INBOX", "f1: f2: n1:S")
	if !watchable(t, nearDir) {
		t.Skip("no fresh directory timestamps or no inotify here: nothing to vouch with")
	}
	stampsSettle()
	listed := w.calls.get("ListAll")
	res = engine.MustSync(t, spec, engine.RunOptions{})
	if r := res.Mailboxes[0]; r.Skipped != "unchanged" {
		t.Fatalf("the run after one that wrote both folders: skipped %q, want \"unchanged\"", r.Skipped)
	}
	if n := w.calls.get("ListAll") - listed; n != 0 {
		t.Fatalf("the near folder was listed %d times", n)
	}

	// Somebody else's change is still seen.
	writeNew(t, nearDir, "Subject: n2\n\nx\n")
	stampsSettle()
	res = engine.MustSync(t, spec, engine.RunOptions{})
	if got := res.Mailboxes[0].Copied; got != [2]int{1, 0} {
		t.Fatalf("after a delivery to the near folder: copied %v", got)
	}
	checkSame(t, spec, "INBOX", "f1: f2: n1:S n2:")
}

// A change somebody else makes in the near folder while a run writes to it
// is seen by the next run, whenever during the run it happened.
func TestChangeDuringAWritingRunIsSeen(t *testing.T) {
	for _, at := range []string{"before the copies", "after the copies"} {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			spec, w, nearDir := restampSpec(t)
			other := func() {
				// A mail client marks the near message flagged.
				for _, sub := range []string{"cur", "new"} {
					for _, n := range dirNames(t, filepath.Join(nearDir, sub)) {
						if strings.Contains(n, ":2,S") {
							old := filepath.Join(nearDir, sub, n)
							if err := os.Rename(old, strings.Replace(old, ":2,S", ":2,FS", 1)); err != nil {
								t.Fatal(err)
							}
							return
						}
					}
				}
				t.Fatal("no near message with flags S")
			}
			once := false
			hook := func(int) {
				if !once {
					once = true
					other()
				}
			}
			if at == "before the copies" {
				w.beforeStage = hook
			} else {
				w.afterCommit = hook
			}
			engine.MustSync(t, spec, engine.RunOptions{})
			if !once {
				t.Fatal("the hook did not run")
			}
			stampsSettle()
			res := engine.MustSync(t, spec, engine.RunOptions{})
			if r := res.Mailboxes[0]; r.Skipped != "" || r.Flagged != [2]int{1, 0} {
				t.Fatalf("the run after: %+v, want the flag change taken to far", r)
			}
			checkSame(t, spec, "INBOX", "f1: f2: n1:FS")
		})
	}
}

func mustOpen(t *testing.T, s engine.Store, box string) engine.Mailbox {
	t.Helper()
	mb, err := s.OpenMailbox(t.Context(), box, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mb.Close() })
	return mb
}

// watchable says whether a Maildir folder in dir can vouch for its own
// writes here (inotify, and fresh timestamps after a stat).
func watchable(t *testing.T, dir string) bool {
	t.Helper()
	s, err := maildir.New("probe", t.TempDir(), "", maildir.LayoutVerbatim, maildir.Options{WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	addMany(t, s, "INBOX", 0, "x")
	mb := mustOpen(t, s, "INBOX")
	_, ok := mb.(engine.Restamper).StatusAfter()
	return ok
}

func writeNew(t *testing.T, dir, body string) {
	t.Helper()
	p := filepath.Join(dir, "new", fmt.Sprintf("%d.test.host", time.Now().UnixNano()))
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range des {
		out = append(out, d.Name())
	}
	return out
}

// A near folder the plan does not write to (its new messages are copied to
// the far side, nothing comes back) is vouched for before the copies are
// made: a Maildir ends its watch then, and the kernel reaps it meanwhile
// instead of at the end of the run. The stamp it vouched for is still the
// one the next run finds.
func TestUnwrittenNearVouchedBeforeCopies(t *testing.T) {
	t.Parallel()
	spec, w, nearDir := restampSpec(t)
	far := wrap(spec.Far)
	far.keepOpen = true
	spec.Far = far.store()
	engine.MustSync(t, spec, engine.RunOptions{})
	if !watchable(t, nearDir) {
		t.Skip("no fresh directory timestamps or no inotify here: nothing to vouch with")
	}
	stampsSettle()
	writeNew(t, nearDir, "Subject: n2\n\nx\n")
	stampsSettle()
	asked := -1
	far.beforeCommit = func(int) { asked = w.calls.get("StatusAfter") }
	before := w.calls.get("StatusAfter")
	res := engine.MustSync(t, spec, engine.RunOptions{})
	if got := res.Mailboxes[0].Copied; got != [2]int{1, 0} {
		t.Fatalf("copied %v, want n2 to far", got)
	}
	if asked-before != 1 {
		t.Errorf("the near side was asked to vouch %d times before the copy to far, want 1", asked-before)
	}
	if n := w.calls.get("StatusAfter") - before; n != 1 {
		t.Errorf("the near side was asked to vouch %d times in the run, want 1", n)
	}
	stampsSettle()
	listed := w.calls.get("ListAll") + w.calls.get("List")
	res = engine.MustSync(t, spec, engine.RunOptions{})
	if r := res.Mailboxes[0]; r.Skipped != "unchanged" {
		t.Fatalf("the run after: skipped %q, want \"unchanged\"", r.Skipped)
	}
	if n := w.calls.get("ListAll") + w.calls.get("List") - listed; n != 0 {
		t.Errorf("the near folder was listed %d times in the run after", n)
	}
	checkSame(t, spec, "INBOX", "f1: f2: n1:S n2:")
}

// A pull-only run that copies into the near folder leaves the messages new
// there for a later run: it must not vouch for the folder's stamp, or the
// next sync would skip the folder and never push them.
func TestPullOnlyRunKeepsLocalNewsVisible(t *testing.T) {
	t.Parallel()
	spec, _, nearDir := restampSpec(t)
	engine.MustSync(t, spec, engine.RunOptions{})
	writeNew(t, nearDir, "Subject: n2\n\nx\n")
	addMany(t, spec.Far, "INBOX", 0, "f3")
	stampsSettle()
	res := engine.MustSync(t, spec, engine.RunOptions{Mode: engine.ModePull})
	if got := res.Mailboxes[0].Copied; got != [2]int{0, 1} {
		t.Fatalf("pull-only run copied %v, want f3 to near", got)
	}
	stampsSettle()
	res = engine.MustSync(t, spec, engine.RunOptions{})
	if got := res.Mailboxes[0].Copied; got != [2]int{1, 0} {
		t.Fatalf("the sync after the pull copied %v, want n2 to far", got)
	}
	checkSame(t, spec, "INBOX", "f1: f2: f3: n1:S n2:")
}

// vouchedNear is restampSpec synced until the near folder's stamp is
// vouched for, then changed on the far side only: f3 new, f1 flagged.
func vouchedNear(t *testing.T) (engine.ChannelSpec, *wrapStore) {
	t.Helper()
	spec, w, nearDir := restampSpec(t)
	engine.MustSync(t, spec, engine.RunOptions{})
	if !watchable(t, nearDir) {
		t.Skip("no fresh directory timestamps or no inotify here: nothing to vouch with")
	}
	stampsSettle()
	engine.MustSync(t, spec, engine.RunOptions{}) // the first run's own writes are vouched for
	stampsSettle()
	addMany(t, spec.Far, "INBOX", 0, "f3")
	engine.SetFlagsBySubject(t, spec.Far, "INBOX", "f1", engine.FlagFlagged, 0)
	return spec, w
}

// A near folder unchanged since the run before, whose far side changed, is
// not listed: the state says what a listing would, and the files the plan
// touches are found among names read in the background. The far side's
// changes land all the same.
func TestUnchangedNearLeftUnlisted(t *testing.T) {
	t.Parallel()
	spec, w := vouchedNear(t)
	engine.ExpungeBySubject(t, spec.Far, "INBOX", "n1")
	listed, named := w.calls.get("List"), w.calls.get("PrefetchNames")
	res := engine.MustSync(t, spec, engine.RunOptions{})
	if n := w.calls.get("List") - listed; n != 0 {
		t.Errorf("the unchanged near folder was listed %d times", n)
	}
	if n := w.calls.get("PrefetchNames") - named; n != 1 {
		t.Errorf("its names were read ahead %d times, want 1", n)
	}
	if r := res.Mailboxes[0]; r.Copied != [2]int{0, 1} || r.Flagged != [2]int{0, 1} || r.Deleted != [2]int{0, 1} {
		t.Fatalf("the run after far changes: %+v", r)
	}
	checkSame(t, spec, "INBOX", "f1:F f2: f3:")
}

// A mail client that renames a near file the run is about to rename too,
// after the run read the folder's names: the names are not used (the watch
// saw somebody else's change), the file is found under its new name, and
// both changes stay.
func TestUnlistedNearChangedDuringTheRun(t *testing.T) {
	t.Parallel()
	spec, w := vouchedNear(t)
	once := false
	w.beforeStage = func(int) {
		// Before the copy of f3, so after the names were read: the user
		// reads f1 here.
		if once {
			return
		}
		once = true
		engine.SetFlagsBySubject(t, spec.Near, "INBOX", "f1", engine.FlagSeen, 0)
	}
	engine.MustSync(t, spec, engine.RunOptions{})
	if !once {
		t.Fatal("the hook did not run")
	}
	if v := engine.ViewBox(t, spec.Near, "INBOX"); v != "f1:FS f2: f3: n1:S" {
		t.Fatalf("near after the run: %s", v)
	}
	stampsSettle()
	engine.MustSync(t, spec, engine.RunOptions{})
	checkSame(t, spec, "INBOX", "f1:FS f2: f3: n1:S")
}
