package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// coarseFolder makes an INBOX of n messages in cur/ with long names (so that
// a listing needs several getdents calls) and returns the store, the folder
// and the names in the order a listing reads them.
func coarseFolder(t *testing.T, n int) (*Store, string, []string) {
	t.Helper()
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, uidFile), fmt.Sprintf("42\n%d\n", n))
	pad := strings.Repeat("x", 180)
	for i := 1; i <= n; i++ {
		writeFile(t, filepath.Join(dir, "cur", fmt.Sprintf("1600000000.%d_%s.host,U=%d:2,S", i, pad, i)), "x")
	}
	var order []string
	if err := readNamesBuf(filepath.Join(dir, "cur"), make([]byte, readBufSize), func(name []byte) { order = append(order, string(name)) }, nil); err != nil {
		t.Fatal(err)
	}
	if len(order) != n {
		t.Fatalf("%d names, want %d", len(order), n)
	}
	return s, dir, order
}

// renameDuringListing arms s.listHook to act once, when the listing of cur/
// has read its first name (so its first getdents call is done): it renames
// the files read last (in later calls) to carry one more flag. On a file
// system that reads a directory in hash order (ext4), a name whose hash
// falls before the listing's position is not read: the listing misses that
// message. It returns how many it renamed, once the hook has acted.
func renameDuringListing(t *testing.T, s *Store, dir string, order []string, k int) func() int {
	renamed := 0
	s.listHook = func(sub string, name []byte) {
		if sub != "cur" || renamed > 0 {
			return
		}
		for _, old := range order[len(order)-k:] {
			if err := os.Rename(filepath.Join(dir, "cur", old), filepath.Join(dir, "cur", old+"F")); err != nil {
				t.Error(err)
			}
			renamed++
		}
	}
	return func() int { return renamed }
}

// waitMidSecond returns at least 40 ms into a wall-clock second and leaves
// 200 ms of it, then touches cur/ and new/: with whole-second mtimes, their
// stamp is then this second's start, old enough for scanGuard, and renames
// within the rest of the second leave it unchanged.
func waitMidSecond(t *testing.T, dir string) {
	t.Helper()
	for {
		frac := time.Duration(time.Now().Nanosecond())
		if frac >= 40*time.Millisecond && frac < 800*time.Millisecond {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, sub := range []string{"new", "cur"} {
		p := filepath.Join(dir, sub, ".touch")
		writeFile(t, p, "")
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

// On a file system with whole-second mtimes, files renamed while a folder is
// listed, in the same second, leave new/ and cur/ with the mtimes they had:
// the stability check alone would trust a listing that missed them (and the
// engine would propagate the missing messages as deletions). A coarse stamp
// gets a 2 s guard instead of 20 ms, within which listings are compared, so
// the scan never returns one that misses a file.
func TestCoarseMtimesListingMissesNothing(t *testing.T) {
	const n, k = 1600, 300
	// Control: the raw lister, with the same hook, does miss files here;
	// where the file system never does (a tmpfs appends renamed names), the
	// test below would prove nothing.
	s, dir, order := coarseFolder(t, n)
	renamed := renameDuringListing(t, s, dir, order, k)
	l := lister{buf: make([]byte, readBufSize), listHook: s.listHook}
	if err := l.read(filepath.Join(dir, "cur"), "cur"); err != nil {
		t.Fatal(err)
	}
	if renamed() != k {
		t.Fatalf("hook renamed %d files, want %d", renamed(), k)
	}
	uids := map[int]bool{}
	for _, e := range l.entries() {
		uids[int(e.uid)] = true
	}
	if len(uids) == n {
		t.Skip("this file system's listing does not miss files renamed behind its position")
	}
	t.Logf("a raw listing misses %d of %d renamed files", n-len(uids), k)
	for _, old := range order[n-k:] { // as it was
		if err := os.Rename(filepath.Join(dir, "cur", old+"F"), filepath.Join(dir, "cur", old)); err != nil {
			t.Fatal(err)
		}
	}

	s.mtimeRes = time.Second
	renamed = renameDuringListing(t, s, dir, order, k)
	waitMidSecond(t, dir)
	mb := open(t, s, "INBOX", true)
	msgs := list(t, mb)
	if renamed() != k {
		t.Fatalf("hook renamed %d files, want %d", renamed(), k)
	}
	if len(msgs) != n {
		t.Errorf("listed %d messages, want %d", len(msgs), n)
	}
	flagged := 0
	for u, m := range msgs {
		if u < 1 || u > n {
			t.Errorf("UID %d listed", u)
		}
		if m.Flags&engine.FlagFlagged != 0 {
			flagged++
		}
	}
	if flagged != k {
		t.Errorf("%d messages carry the flag set meanwhile, want %d", flagged, k)
	}
}

// The guard: fine-grained stamps keep scanGuard; a stamp with a time of
// whole seconds (either directory) gets coarseGuard, for the scan and for
// the Status stamp, which stays empty for as long.
func TestCoarseStampGuard(t *testing.T) {
	now := time.Unix(1700000010, 500_000_000)
	fine := stamp{New: time.Unix(1700000008, 123), Cur: time.Unix(1700000009, 456)}
	coarseCur := stamp{New: time.Unix(1700000008, 123), Cur: time.Unix(1700000009, 0)}
	coarseNew := stamp{New: time.Unix(1700000009, 0), Cur: time.Unix(1700000005, 456)}
	noNew := stamp{Cur: time.Unix(1700000005, 456)}
	for _, c := range []struct {
		name   string
		st     stamp
		guard  time.Duration
		status bool
	}{
		{"fine", fine, scanGuard, true},
		{"coarse cur", coarseCur, coarseGuard, false},
		{"coarse new", coarseNew, coarseGuard, false},
		{"no new/", noNew, scanGuard, true},
	} {
		if g := c.st.guard(); g != c.guard {
			t.Errorf("%s: guard %v, want %v", c.name, g, c.guard)
		}
		if got := c.st.String(now) != ""; got != c.status {
			t.Errorf("%s: stamp %q at %v", c.name, c.st.String(now), now)
		}
	}
	if (stamp{Cur: time.Unix(1700000007, 0)}).String(now) == "" {
		t.Error("a coarse stamp older than coarseGuard is no stamp")
	}
}

// SetFlags meets a file a mail client renames after the listing (marked
// read) and again after the rescan that found it (answered): it goes on
// looking, and sets the flag. One renamed after every look is an error —
// never a success the engine would record while the flag is not there
// (it would then read as removed here and be removed on the other side).
func TestSetFlagsOnFileRenamedAgain(t *testing.T) {
	for _, tc := range []struct {
		name    string
		renames int // how many listings of the rescans rename it (0: all)
	}{{"twice", 1}, {"every time", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newTestStore(t, LayoutVerbatim)
			dir := filepath.Join(root, "INBOX")
			mkMaildir(t, dir)
			writeFile(t, filepath.Join(dir, uidFile), "42\n1\n")
			cur := filepath.Join(dir, "cur", "1600000000.1.host,U=1:2,")
			writeFile(t, cur, "x\n")
			mb := open(t, s, "INBOX", false)
			defer mb.Close()
			if len(list(t, mb)) != 1 {
				t.Fatal("want one message")
			}
			s.mtimeRes = time.Second // renames within a second leave the stamps as they are
			waitMidSecond(t, dir)
			next := cur + "S"
			if err := os.Rename(cur, next); err != nil { // after the listing
				t.Fatal(err)
			}
			cur = next
			// The rename comes when the name has been read by two listings
			// in a row (the rescan's, which agree and are used), just after.
			letters, renamed, seen := "RPD", 0, 0
			s.listHook = func(sub string, name []byte) {
				if sub != "cur" || string(name) != filepath.Base(cur) || (tc.renames > 0 && renamed >= tc.renames) || renamed >= len(letters) {
					return
				}
				if seen++; seen < 2 {
					return
				}
				next := cur + letters[renamed:renamed+1]
				if err := os.Rename(cur, next); err != nil {
					t.Error(err)
				}
				cur, renamed, seen = next, renamed+1, 0
			}
			err := mb.SetFlags(context.Background(), []engine.UID{1}, engine.FlagFlagged, 0)
			s.listHook = nil
			got := files(t, dir, "cur")
			flagged := len(got) == 1 && strings.Contains(got[0][strings.LastIndexByte(got[0], ':'):], "F")
			switch {
			case tc.renames > 0 && (err != nil || !flagged):
				t.Fatalf("SetFlags: %v; files %v: want the flag set", err, got)
			case tc.renames == 0 && err == nil && !flagged:
				t.Fatalf("SetFlags reported success, but the message is %v", got)
			}
		})
	}
}
