package maildir

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/sysfile"
)

// uidFile is mbsync's per-folder UID state: "<uidvalidity>\n<last uid>\n".
const uidFile = ".uidvalidity"

// uidTemp is where a new .uidvalidity is written before the rename; it starts
// with statePrefix so DeleteMailbox knows it as ours.
const uidTemp = statePrefix + "uidvalidity.tmp"

type uidState struct {
	Validity uint32
	Last     engine.UID
}

// readUIDState reads a folder's .uidvalidity; ok is false when it does not
// exist. A malformed file is an error (never silently replaced: that would
// renumber every message).
func readUIDState(dir string) (st uidState, ok bool, err error) {
	path := filepath.Join(dir, uidFile)
	b, err := sysfile.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("maildir %s: %w", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 {
		return st, false, fmt.Errorf("maildir %s: malformed (want \"<uidvalidity>\\n<last uid>\\n\")", path)
	}
	v, err1 := strconv.ParseUint(strings.TrimSpace(lines[0]), 10, 32)
	l, err2 := strconv.ParseUint(strings.TrimSpace(lines[1]), 10, 32)
	if err1 != nil || err2 != nil || v == 0 {
		return st, false, fmt.Errorf("maildir %s: malformed (want \"<uidvalidity>\\n<last uid>\\n\")", path)
	}
	return uidState{Validity: uint32(v), Last: engine.UID(l)}, true, nil
}

// lockFolder takes an exclusive flock on the folder directory. flock locks
// belong to the open file description, so two goroutines of one process
// exclude each other as well as two processes do.
func lockFolder(dir string) (unlock func(), err error) {
	fd, err := openRaw(dir)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: lock: %w", dir, err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("maildir %s: lock: %w", dir, err)
	}
	return func() {
		_ = unix.Flock(fd, unix.LOCK_UN)
		unix.Close(fd)
	}, nil
}

// writeUIDState replaces .uidvalidity atomically (caller holds the lock).
// The new file's content is durable before the rename; the rename itself
// only when syncDir (else the caller makes it durable before any file
// carrying one of its UIDs is).
func (s *Store) writeUIDState(dir string, st uidState, syncDir bool) error {
	tmp := filepath.Join(dir, uidTemp)
	f, err := sysfile.Open(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("maildir %s: %w", tmp, err)
	}
	_, err = fmt.Fprintf(f, "%d\n%d\n", st.Validity, st.Last)
	if err == nil && s.opt.Fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, uidFile))
	}
	if err == nil && s.opt.Fsync && syncDir {
		err = s.syncPath(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("maildir %s: write %s: %w", dir, uidFile, err)
	}
	return nil
}

// newValidity is the UIDVALIDITY of a folder that has none yet.
func newValidity() uint32 {
	v := time.Now().Unix()
	if v <= 0 || v > math.MaxUint32 {
		v = 1
	}
	return uint32(v)
}

// ensureUIDState returns the folder's UID state, creating .uidvalidity when
// it is missing.
func (s *Store) ensureUIDState(dir string) (uidState, error) {
	if st, ok, err := readUIDState(dir); err != nil || ok {
		return st, err
	}
	unlock, err := lockFolder(dir)
	if err != nil {
		return uidState{}, err
	}
	defer unlock()
	st, ok, err := readUIDState(dir)
	if err != nil || ok {
		return st, err
	}
	st = uidState{Validity: newValidity()}
	return st, s.writeUIDState(dir, st, true)
}

// reserveUIDs durably hands out n fresh UIDs (first..first+n-1) from the
// folder's .uidvalidity, creating it if needed.
func (s *Store) reserveUIDs(dir string, n int, syncDir bool) (st uidState, first engine.UID, err error) {
	unlock, err := lockFolder(dir)
	if err != nil {
		return st, 0, err
	}
	defer unlock()
	st, ok, err := readUIDState(dir)
	if err != nil {
		return st, 0, err
	}
	if !ok {
		st = uidState{Validity: newValidity()}
	}
	if uint64(st.Last)+uint64(n) > math.MaxUint32 {
		return st, 0, fmt.Errorf("maildir %s: UIDs exhausted (last %d)", dir, st.Last)
	}
	first = st.Last + 1
	st.Last += engine.UID(n)
	if err := s.writeUIDState(dir, st, syncDir); err != nil {
		return st, 0, err
	}
	return st, first, nil
}

// raiseLastUID makes the folder's last assigned UID at least atLeast,
// durably (a no-op when it is already).
func (s *Store) raiseLastUID(dir string, atLeast engine.UID) (uidState, error) {
	unlock, err := lockFolder(dir)
	if err != nil {
		return uidState{}, err
	}
	defer unlock()
	st, ok, err := readUIDState(dir)
	if err != nil {
		return st, err
	}
	if !ok {
		return st, fmt.Errorf("maildir %s: %s vanished: %w", dir, uidFile, engine.ErrValidity)
	}
	if st.Last >= atLeast {
		return st, nil
	}
	st.Last = atLeast
	return st, s.writeUIDState(dir, st, true)
}

// syncPath fsyncs a file or a directory.
func syncPath(path string) error {
	fd, err := openRaw(path)
	if err != nil {
		return err
	}
	for {
		err = unix.Fsync(fd)
		if err != unix.EINTR {
			break
		}
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return &os.PathError{Op: "fsync", Path: path, Err: err}
	}
	return nil
}
