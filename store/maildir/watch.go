package maildir

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/engine"
)

// A folder's stamp is the mtimes of new/ and cur/. A run that writes there
// changes them, and a stamp read at open then makes the next run list the
// whole folder (0.2-0.3 s for 100 000 files) only because of this run's own
// changes. A watch lets the Mailbox tell its own changes from anybody
// else's, so that it can vouch for the stamp after the run
// (engine.Restamper): an inotify instance watching new/ and cur/ from
// before the stamp is read at open, and the changes this Mailbox made
// itself, which must account for every event.

// watchMask is every event that changes a directory's mtime (names added or
// removed) or that ends the watch.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

// drainEvery bounds the events left in the kernel's queue (16 384 by
// default, then it drops them and says so) and the changes remembered.
const drainEvery = 2048

// bigFolder is the size of a cur/ directory (ext4: about 7 000 names) above
// which waiting out the file system's clock tick (at most scanGuard) costs
// less than the listing the next run would otherwise make.
const bigFolder = 512 << 10

// maxWatches bounds the inotify instances a store holds at once (one per
// folder open for writing). The kernel allows a user 128 instances by
// default (fs.inotify.max_user_instances), for all of the user's programs:
// a run with connections = 64 syncs 128 folders at once and took 118 of
// them, so that the user's other programs (a mail client, an editor, tail
// -f) could get none meanwhile. A folder opened beyond the bound goes
// without a watch: the next run lists it if this one changed it, as on a
// file system inotify cannot watch.
const maxWatches = 16

type watch struct {
	fd     int
	wds    [2]int // new/, cur/
	expect map[ownChange]int
	n      int  // changes in expect
	bad    bool // something else happened, or it cannot be told
	buf    []byte
	slots  chan struct{} // the store's: holds a token while fd is open
}

// ownChange is a name this Mailbox added to (add) or removed from sub.
type ownChange struct {
	sub  int // 0 new/, 1 cur/
	add  bool
	name string
}

// watchFolder starts watching new/ and cur/ of dir, or returns nil where a
// watch could not see every change: a file system other hosts can change
// (inotify only sees this kernel's changes), no inotify instance left, or
// a missing directory.
// slots bounds the instances open at once (maxWatches): nil when none is
// free.
func watchFolder(dir string, slots chan struct{}) *watch {
	w := &watch{fd: -1, wds: [2]int{-1, -1}, slots: slots}
	for i, sub := range [2]string{"new", "cur"} {
		var sfs unix.Statfs_t
		if unix.Statfs(filepath.Join(dir, sub), &sfs) != nil || !syncfsTrusted(int64(sfs.Type)) {
			w.close()
			return nil
		}
		if w.fd < 0 {
			select {
			case slots <- struct{}{}:
			default:
				return nil
			}
			fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
			if err != nil {
				<-slots
				return nil
			}
			w.fd = fd
		}
		wd, err := unix.InotifyAddWatch(w.fd, filepath.Join(dir, sub), watchMask)
		if err != nil || (i == 1 && wd == w.wds[0]) {
			w.close()
			return nil
		}
		w.wds[i] = wd
	}
	w.expect = map[ownChange]int{}
	return w
}

func (w *watch) close() {
	if w != nil && w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
		w.bad = true
		<-w.slots
	}
}

// spoil says a change of ours could not be accounted for (it failed, maybe
// half done): the watch can no longer vouch for anything.
func (w *watch) spoil() {
	if w != nil {
		w.bad = true
		w.expect = nil
	}
}

// own records that this Mailbox added or removed name in sub ("new" or
// "cur"), after the change happened.
func (w *watch) own(sub string, add bool, name string) {
	if w == nil || w.bad {
		return
	}
	i := 1
	if sub == "new" {
		i = 0
	}
	w.expect[ownChange{i, add, name}]++
	w.n++
	if w.n >= drainEvery {
		w.drain()
	}
}

// renamed records a rename of ours from (sub, name) to (nsub, nname).
func (w *watch) renamed(sub, name, nsub, nname string) {
	w.own(sub, false, name)
	w.own(nsub, true, nname)
}

// drain reads the events queued so far and matches each with a change of
// ours; any other event (or a lost one) spoils the watch.
func (w *watch) drain() {
	if w.buf == nil {
		w.buf = make([]byte, 64<<10)
	}
	for !w.bad {
		n, err := unix.Read(w.fd, w.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 {
			if !errors.Is(err, unix.EAGAIN) {
				w.spoil()
			}
			return
		}
		w.match(w.buf[:n])
	}
}

// match matches the events in b (whole inotify_event records).
func (w *watch) match(b []byte) {
	const head = unix.SizeofInotifyEvent
	for len(b) >= head && !w.bad {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		size := head + int(ev.Len)
		if size > len(b) {
			w.spoil()
			return
		}
		name := b[head:size]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		b = b[size:]
		sub := -1
		for i, wd := range w.wds {
			if int(ev.Wd) == wd {
				sub = i
			}
		}
		const add = unix.IN_CREATE | unix.IN_MOVED_TO
		const remove = unix.IN_DELETE | unix.IN_MOVED_FROM
		m := ev.Mask
		if sub < 0 || m&(add|remove) == 0 || m&unix.IN_ISDIR != 0 || m&^(add|remove) != 0 {
			// Lost events (IN_Q_OVERFLOW), a directory removed or moved,
			// a subdirectory: nothing this Mailbox does.
			w.spoil()
			return
		}
		k := ownChange{sub, m&add != 0, string(name)}
		switch c := w.expect[k]; {
		case c == 0:
			w.spoil()
			return
		case c == 1:
			delete(w.expect, k)
		default:
			w.expect[k] = c - 1
		}
		w.n--
	}
}

// StatusAfter is engine.Restamper: the status now, when every change to
// new/ and cur/ since the Mailbox was opened was its own, and a change after
// this call will give the folder another stamp.
func (m *Mailbox) StatusAfter() (engine.Status, bool) {
	w := m.w
	if w == nil || w.bad {
		return engine.Status{}, false
	}
	s1, err := m.s.dirStamp(m.dir)
	if err != nil || s1.New.IsZero() || s1.coarse() {
		return engine.Status{}, false
	}
	// A change after the drain below must not leave a mtime equal to s1.
	// On file systems that give a change after a stat a later timestamp
	// than the one the stat saw (Linux 6.13's multigrain timestamps) it
	// cannot; else the clock must have moved past s1's tick first.
	// (The probe for that changes tmp/: only when it matters.)
	if wait := time.Until(s1.newest().Add(scanGuard)); wait > 0 && !m.s.freshStamps(m.dir) {
		if fi, err := os.Stat(filepath.Join(m.dir, "cur")); err != nil || fi.Size() < bigFolder {
			return engine.Status{}, false
		}
		time.Sleep(wait)
	}
	// A change made by somebody else before s1 was read has its event queued
	// by the time that change releases the directory's lock, which reading
	// the directory takes: only then are the events complete.
	for _, sub := range [2]string{"new", "cur"} {
		if !lockStep(filepath.Join(m.dir, sub)) {
			return engine.Status{}, false
		}
	}
	w.drain()
	if w.bad || len(w.expect) != 0 {
		return engine.Status{}, false
	}
	s2, err := m.s.dirStamp(m.dir)
	if err != nil || s2 != s1 {
		return engine.Status{}, false
	}
	st, ok, err := readUIDState(m.dir)
	if err != nil || !ok || st.Validity != m.status.UIDValidity {
		return engine.Status{}, false
	}
	return engine.Status{UIDValidity: st.Validity, UIDNext: st.Last + 1, Messages: -1, Stamp: s1.key()}, true
}

// lockStep reads the first entries of dir, which takes the directory's lock
// as every change of its names holds it until its event is queued.
func lockStep(dir string) bool {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var buf [4096]byte
	_, err = unix.Getdents(fd, buf[:])
	return err == nil
}

// freshStamps says whether the file system of dir gives a directory changed
// after a stat of it a later mtime than the stat saw, even within one tick
// of the kernel's clock (Linux 6.13+ multigrain timestamps on ext4, XFS,
// btrfs, tmpfs). It finds out once per file system, in the folder's tmp/:
// three times a stat, a file made and removed, a stat; without fresh
// timestamps, at least one pair of stats falls within one tick (4 ms at
// 250 Hz against a few microseconds between them) and sees the same mtime.
func (s *Store) freshStamps(dir string) bool {
	if s.mtimeRes > 0 {
		return false // a test's coarse file system
	}
	tmp := filepath.Join(dir, "tmp")
	var st unix.Stat_t
	if unix.Stat(tmp, &st) != nil {
		return false
	}
	s.freshMu.Lock()
	defer s.freshMu.Unlock()
	if v, ok := s.fresh[st.Dev]; ok {
		return v
	}
	v := probeFresh(tmp)
	if s.fresh == nil {
		s.fresh = map[uint64]bool{}
	}
	s.fresh[st.Dev] = v
	return v
}

func probeFresh(tmp string) bool {
	probe := filepath.Join(tmp, ".quixysync-probe-"+strconv.Itoa(os.Getpid()))
	touch := func() bool {
		fd, err := unix.Open(probe, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return false
		}
		unix.Close(fd)
		return unix.Unlink(probe) == nil
	}
	for range 3 {
		// The first change makes the mtime current, so that a and b can
		// only differ by the second one's timestamp.
		var a, b unix.Stat_t
		if !touch() || unix.Stat(tmp, &a) != nil || !touch() || unix.Stat(tmp, &b) != nil {
			return false
		}
		if b.Mtim.Nano() <= a.Mtim.Nano() {
			return false
		}
	}
	return true
}
