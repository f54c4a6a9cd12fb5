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

func dirStamp(dir string) (stamp, error) {
	var st stamp
	fi, err := os.Stat(filepath.Join(dir, "cur"))
	if err != nil {
		return st, err
	}
	st.Cur = fi.ModTime()
	fi, err = os.Stat(filepath.Join(dir, "new"))
	switch {
	case err == nil:
		st.New = fi.ModTime()
	case !errors.Is(err, fs.ErrNotExist):
		return st, err
	}
	return st, nil
}

// recent says whether either directory was modified within d of now (or
// claims a time in the future).
func (s stamp) recent(now time.Time, d time.Duration) bool {
	edge := now.Add(-d)
	return s.Cur.After(edge) || (!s.New.IsZero() && s.New.After(edge))
}

// String is the Status stamp: "" when a directory was modified within a
// second of now, because a change in the same clock tick would leave the
// mtime unchanged (mbsync sleeps a second instead; we let the next run look).
func (s stamp) String(now time.Time) string {
	if s.recent(now, time.Second) {
		return ""
	}
	var n int64
	if !s.New.IsZero() {
		n = s.New.UnixNano()
	}
	return fmt.Sprintf("%d.%d", n, s.Cur.UnixNano())
}
