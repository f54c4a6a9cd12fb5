package maildir

import (
	"errors"
	"fmt"
	"io"
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

// uidSync is what a .uidvalidity write left for its caller to make durable
// (see writeUIDState).
type uidSync uint8

const (
	uidOverwritten uidSync = 1 << iota // the file's bytes: fsync it
	uidRenamed                         // a rename: fsync the folder
)

// writeUIDState writes .uidvalidity (caller holds the lock). Where the file
// is there with exactly the new content's length (a reservation that kept
// the last UID's number of digits: nearly all of them), its bytes are
// overwritten in place, as mbsync does: one write of a few bytes within one
// sector, either old or new after a crash, and the number only grows, so
// a write cut short leaves a number between the two (the caller hands out
// no UID then). Else a new file is written, made durable and renamed over
// it. With sync, the result is durable on return (an fdatasync of the
// overwritten file, which needs no journal commit, or an fsync of the
// folder after the rename); without it, what is left says what the caller
// must make durable before any file carrying one of the new UIDs is (a
// syncfs covers either).
func (s *Store) writeUIDState(dir string, st uidState, sync bool) (left uidSync, err error) {
	content := fmt.Sprintf("%d\n%d\n", st.Validity, st.Last)
	path := filepath.Join(dir, uidFile)
	done, err := s.overwriteUIDState(path, content, sync)
	if err != nil {
		return 0, fmt.Errorf("maildir %s: write %s: %w", dir, uidFile, err)
	}
	if done {
		if !sync && s.opt.Fsync {
			left = uidOverwritten
		}
		return left, nil
	}
	tmp := filepath.Join(dir, uidTemp)
	f, err := sysfile.Open(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("maildir %s: %w", tmp, err)
	}
	_, err = f.WriteString(content)
	if err == nil && s.opt.Fsync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil && s.opt.Fsync && sync {
		err = s.syncPath(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("maildir %s: write %s: %w", dir, uidFile, err)
	}
	if !sync && s.opt.Fsync {
		left = uidRenamed
	}
	return left, nil
}

// overwriteUIDState writes content over the bytes of path, a regular file
// of exactly content's length and with no other name (a hard-linked copy,
// as `cp -al` makes for a backup, must keep its own); done is false, with
// nothing written, for any other file or none.
func (s *Store) overwriteUIDState(path, content string, sync bool) (done bool, err error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, nil
	}
	defer unix.Close(fd)
	var sb unix.Stat_t
	if unix.Fstat(fd, &sb) != nil || sb.Mode&unix.S_IFMT != unix.S_IFREG || sb.Nlink != 1 || sb.Size != int64(len(content)) {
		return false, nil
	}
	if err := s.hook("overwrite", path); err != nil {
		return true, err
	}
	n, err := unix.Pwrite(fd, []byte(content), 0)
	if err == nil && n != len(content) {
		err = io.ErrShortWrite
	}
	if err == nil && sync && s.opt.Fsync {
		if err = s.hook("fsync", path); err == nil {
			err = unix.Fdatasync(fd)
		}
	}
	if err != nil {
		return true, &os.PathError{Op: "write", Path: path, Err: err}
	}
	return true, nil
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
	_, err = s.writeUIDState(dir, st, true)
	return st, err
}

// reserveUIDs hands out n fresh UIDs (first..first+n-1) from the folder's
// .uidvalidity, creating it if needed: durably with sync, else left says
// what the caller must make durable first (see writeUIDState).
func (s *Store) reserveUIDs(dir string, n int, sync bool) (st uidState, first engine.UID, left uidSync, err error) {
	unlock, err := lockFolder(dir)
	if err != nil {
		return st, 0, 0, err
	}
	defer unlock()
	st, ok, err := readUIDState(dir)
	if err != nil {
		return st, 0, 0, err
	}
	if !ok {
		st = uidState{Validity: newValidity()}
	}
	if uint64(st.Last)+uint64(n) > math.MaxUint32 {
		return st, 0, 0, fmt.Errorf("maildir %s: UIDs exhausted (last %d)", dir, st.Last)
	}
	first = st.Last + 1
	st.Last += engine.UID(n)
	if left, err = s.writeUIDState(dir, st, sync); err != nil {
		return st, 0, 0, err
	}
	return st, first, left, nil
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
	_, err = s.writeUIDState(dir, st, true)
	return st, err
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
