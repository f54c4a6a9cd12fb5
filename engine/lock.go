package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/internal/sysfile"
)

// Lock is a held advisory lock (flock). The kernel releases it when the
// holding process dies, so a lock left by a killed run is simply taken over.
type Lock struct {
	f    *os.File
	path string
}

// LockFile takes an exclusive, non-blocking lock on path (creating the file and
// its directory) and writes the holder's PID into it. When another process
// holds it, the error wraps ErrLocked and names that process's PID.
func LockFile(path string) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := sysfile.Open(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		if err == unix.EWOULDBLOCK && flock(f, unix.LOCK_SH) == nil {
			// Only shared holders: dry runs, which write no PID (the file
			// names the last real run, long gone, maybe another process's
			// PID by now).
			f.Close()
			return nil, fmt.Errorf("%s is held by a dry run (sync --dry-run): %w", path, ErrLocked)
		}
		f.Close()
		return nil, lockedError(path, err)
	}
	// Record ourselves for the error message of whoever comes next. The PID
	// is written at a fixed width over the previous one: truncating a
	// non-empty file to zero makes ext4 (auto_da_alloc) flush it, which
	// cost milliseconds per lock — most of a run with nothing to do.
	pid := []byte(fmt.Sprintf("%*d\n", pidWidth, os.Getpid()))
	if fi, err := f.Stat(); err == nil && fi.Size() > int64(len(pid)) {
		f.Truncate(int64(len(pid)))
	}
	f.WriteAt(pid, 0)
	return &Lock{f: f, path: path}, nil
}

// LockFileShared takes a shared lock on an existing lock file without creating
// or writing anything (used by dry runs, which must not write files). A missing
// file means no run ever held it: nil, nil.
func LockFileShared(path string) (*Lock, error) {
	f, err := sysfile.Open(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := flock(f, unix.LOCK_SH); err != nil {
		f.Close()
		return nil, lockedError(path, err)
	}
	return &Lock{f: f, path: path}, nil
}

// pidWidth is wider than any PID (Linux caps them at 2^22).
const pidWidth = 10

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err != unix.EINTR {
			return err
		}
	}
}

func lockedError(path string, err error) error {
	if err != unix.EWOULDBLOCK {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	holder := "another process"
	if b, rerr := os.ReadFile(path); rerr == nil {
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
			holder = "process " + strconv.Itoa(pid)
		}
	}
	return fmt.Errorf("%s is held by %s: %w", path, holder, ErrLocked)
}

// Unlock releases the lock. The file stays: removing it would race with a
// process that opened it and is about to lock it.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}

// ChannelLockPath is $XDG_STATE_HOME/quixysync/locks/<channel>-<where>.lock
// unless the spec names a lock directory. <where> is a digest of where the
// channel's states live (the near inbox's folder, or the state directory):
// the lock guards those states, and two configurations that each name a
// channel "mail" over different Maildirs (two timers firing at the same
// minute) must not refuse each other's runs.
func ChannelLockPath(spec ChannelSpec) (string, error) {
	dir := spec.LockDir
	if dir == "" {
		base := os.Getenv("XDG_STATE_HOME")
		if !filepath.IsAbs(base) {
			// As for the state (XDG: a relative value is invalid): else
			// runs started in different directories would not exclude
			// each other.
			base = ""
		}
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("channel %s: where to put the lock: %w", spec.Name, err)
			}
			base = filepath.Join(home, ".local", "state")
		}
		dir = filepath.Join(base, "quixysync", "locks")
	}
	return filepath.Join(dir, escapeBoxName(spec.Name)+"-"+stateWhere(spec)+".lock"), nil
}

// stateWhere names, in 12 hex digits, the directory that holds the channel's
// state of its inbox; runs whose states live apart never share it.
func stateWhere(spec ChannelSpec) string {
	where := ""
	if p, err := StatePath(spec, "INBOX"); err == nil {
		// A relative path (state_dir = "st") means another directory
		// for every working directory, as it does for the states.
		if abs, err := filepath.Abs(filepath.Dir(p)); err == nil {
			where = abs
		}
	}
	sum := sha256.Sum256([]byte(where))
	return hex.EncodeToString(sum[:6])
}
