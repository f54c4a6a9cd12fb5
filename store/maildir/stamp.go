package maildir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"
)

func utf8Valid(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// stamp is the modification times of a folder's new/ and cur/.
type stamp struct {
	New, Cur time.Time // New is zero when new/ does not exist
}

// dirStamp reads the stamp of the folder dir. With s.mtimeRes set (tests
// only), it rounds the times down to that, as a file system with coarse
// timestamps would store them.
func (s *Store) dirStamp(dir string) (stamp, error) {
	var st stamp
	fi, err := os.Stat(filepath.Join(dir, "cur"))
	switch {
	case err == nil:
		st.Cur = fi.ModTime()
	case !errors.Is(err, fs.ErrNotExist): // missing: a folder of new/ alone, read only (see isMailbox)
		return st, err
	}
	fi, err = os.Stat(filepath.Join(dir, "new"))
	switch {
	case err == nil:
		st.New = fi.ModTime()
	case !errors.Is(err, fs.ErrNotExist):
		return st, err
	}
	if s.mtimeRes > 0 {
		if !st.Cur.IsZero() {
			st.Cur = st.Cur.Truncate(s.mtimeRes)
		}
		if !st.New.IsZero() {
			st.New = st.New.Truncate(s.mtimeRes)
		}
	}
	return st, nil
}

// coarseGuard is scanGuard for a file system that stores whole seconds
// (ext3, ext4 with 128-byte inodes, HFS+, some NFS, SMB and FUSE mounts) or
// even two (FAT): a file renamed while a folder is listed leaves the
// directory's mtime unchanged when it happens within the same second, so an
// unchanged mtime says nothing until two seconds have passed, plus the lag
// of the kernel's clock for timestamps that scanGuard allows for.
const coarseGuard = 2*time.Second + scanGuard

// coarse says whether the stamp looks like one of a file system with
// whole-second timestamps: a time with no fraction of a second. On one that
// keeps nanoseconds, that is a one in 10^9 chance, and its only cost is a
// longer guard (a second listing of a folder changed in the last 2 s).
func (s stamp) coarse() bool {
	return s.Cur.Nanosecond() == 0 || (!s.New.IsZero() && s.New.Nanosecond() == 0)
}

// guard is how long after its last change the folder's mtimes can be
// trusted to show any further change: scanGuard, or coarseGuard.
func (s stamp) guard() time.Duration {
	if s.coarse() {
		return coarseGuard
	}
	return scanGuard
}

// recent says whether either directory was modified within d of now (or
// claims a time in the future).
func (s stamp) recent(now time.Time, d time.Duration) bool {
	edge := now.Add(-d)
	return s.Cur.After(edge) || (!s.New.IsZero() && s.New.After(edge))
}

// String is the Status stamp: "" when a directory was modified within a
// second of now (coarseGuard on a coarse file system), because a change in
// the same clock tick would leave the mtime unchanged (mbsync sleeps a
// second instead; we let the next run look).
func (s stamp) String(now time.Time) string {
	if s.Cur.IsZero() || s.recent(now, max(time.Second, s.guard())) { // no cur/: see isMailbox
		return ""
	}
	return s.key()
}

// key is the Status stamp of s, whatever its age.
func (s stamp) key() string {
	var n int64
	if !s.New.IsZero() {
		n = s.New.UnixNano()
	}
	return fmt.Sprintf("%d.%d", n, s.Cur.UnixNano())
}

// newest is the later of the two mtimes.
func (s stamp) newest() time.Time {
	if s.New.After(s.Cur) {
		return s.New
	}
	return s.Cur
}
