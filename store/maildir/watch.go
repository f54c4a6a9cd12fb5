package maildir

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
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

// watchMin is the size of a cur/ directory (ext4: about 900 names) below
// which a folder that holds messages goes without a watch (an empty one is
// watched: see watchFolder). A watch costs nothing while it lasts, but the
// store's inotify instance cannot be closed, nor the process exit, before
// the kernel has reaped the last watches removed (an SRCU grace period,
// ~13 ms); the run's last folders remove theirs at its very end, so about
// every other run that wrote to a watched folder waited that long before
// it exited. Without the watch, the next run lists such a folder
// (BenchmarkScan100k: 1.7-2.6 us of CPU per name, about 2 ms for the largest
// such folder), mostly while the server answers its SELECT. Two builds in
// one run, 2 000 messages in 10 folders, 9 reps: server changes 0.101 ->
// 0.084 s, pull-only 0.089 -> 0.084 s, local changes 0.144 -> 0.140 s,
// client CPU the same or lower; the no-op unchanged.
const watchMin = 64 << 10

// maxWatched bounds the folders a store watches at once (two watches each,
// of the kernel's per-user fs.inotify.max_user_watches: 8 192 or more). A
// run syncs at most twice its connections' folders at once (128); a folder
// opened beyond the bound goes without a watch: the next run lists it if
// this one changed it, as on a file system inotify cannot watch.
const maxWatched = 256

// notifier is a store's one inotify instance, shared by the watches of its
// open folders. Closing an inotify instance waits for the kernel to reap
// its marks (an SRCU grace period): 4-25 ms a close, measured on the
// benchmark's machine, paid by every folder a run wrote to, on the
// goroutine whose next folder waited meanwhile. Removing a watch from an
// instance kept open takes microseconds. One instance also leaves the
// user's other programs the kernel's 128 instances per user.
type notifier struct {
	mu sync.Mutex
	fd int // -1 until the first watch
	// byWd: the watches of each watch descriptor. Two Mailboxes of one
	// folder share the kernel's watch of its directories (one instance has
	// one per directory) and see each other's changes as somebody else's.
	byWd map[int32][]*watch
	n    int // folders watched
	// pending counts changes recorded since the queue was last read, by
	// every watch: the kernel's queue (16 384 events) is shared too.
	pending int
	buf     []byte
}

func newNotifier() *notifier { return &notifier{fd: -1, byWd: map[int32][]*watch{}} }

// close gives the instance back (Store.Close). Watches still open are
// spoiled.
func (n *notifier) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ws := range n.byWd {
		for _, w := range ws {
			w.bad = true
		}
	}
	clear(n.byWd)
	if n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
}

type watch struct {
	n      *notifier
	wds    [2]int // new/, cur/
	expect map[ownChange]int
	// early: events read before this Mailbox recorded the change (see
	// match), each waiting for its own().
	early  map[ownChange]int
	bad    bool // something else happened, or it cannot be told
	closed bool
}

// ownChange is a name this Mailbox added to (add) or removed from sub.
type ownChange struct {
	sub  int // 0 new/, 1 cur/
	add  bool
	name string
}

// watchFolder starts watching new/ and cur/ of dir, or returns nil where a
// watch could not see every change: a file system other hosts can change
// (inotify only sees this kernel's changes), no inotify instance or watch
// left, or a missing directory; and where it is not worth it: a cur/
// smaller than min bytes (see watchMin), unless the folder holds no message
// at all — then this is likely its first fill (a first pull), which can
// make it any size, and the next run would list all of it.
func watchFolder(dir string, n *notifier, min int64) *watch {
	if min > 0 {
		if fi, err := os.Stat(filepath.Join(dir, "cur")); err != nil || fi.Size() < min && !noMessages(dir) {
			return nil
		}
	}
	for _, sub := range [2]string{"new", "cur"} {
		var sfs unix.Statfs_t
		if unix.Statfs(filepath.Join(dir, sub), &sfs) != nil || !syncfsTrusted(int64(sfs.Type)) {
			return nil
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.n >= maxWatched {
		return nil
	}
	if n.fd < 0 {
		fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		if err != nil {
			return nil
		}
		n.fd = fd
	}
	w := &watch{n: n, wds: [2]int{-1, -1}}
	for i, sub := range [2]string{"new", "cur"} {
		wd, err := unix.InotifyAddWatch(n.fd, filepath.Join(dir, sub), watchMask)
		if err != nil || (i == 1 && wd == w.wds[0]) {
			// (A watch already shared with another Mailbox stays.)
			if i == 1 && wd != w.wds[0] && err == nil && len(n.byWd[int32(wd)]) == 0 {
				unix.InotifyRmWatch(n.fd, uint32(wd))
			}
			if w.wds[0] >= 0 && len(n.byWd[int32(w.wds[0])]) == 0 {
				unix.InotifyRmWatch(n.fd, uint32(w.wds[0]))
			}
			return nil
		}
		w.wds[i] = wd
	}
	// Events queued by now were for the watches there were: the changes
	// they tell of are in the stamp this Mailbox reads at open.
	n.drainLocked()
	for _, wd := range w.wds {
		n.byWd[int32(wd)] = append(n.byWd[int32(wd)], w)
	}
	n.n++
	w.expect, w.early = map[ownChange]int{}, map[ownChange]int{}
	return w
}

// noMessages says whether new/ and cur/ of dir hold no file at all (a
// subdirectory that cannot be read counts as holding some).
func noMessages(dir string) bool {
	for _, sub := range [2]string{"new", "cur"} {
		f, err := os.Open(filepath.Join(dir, sub))
		if err != nil {
			return false
		}
		names, err := f.Readdirnames(1)
		f.Close()
		if len(names) > 0 || err != io.EOF {
			return false
		}
	}
	return true
}

// close stops the watch: its two watches are removed from the store's
// instance, which stays open.
func (w *watch) close() {
	if w == nil {
		return
	}
	n := w.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if w.closed {
		return
	}
	w.closed, w.bad = true, true
	for _, wd := range w.wds {
		ws := n.byWd[int32(wd)]
		for i, o := range ws {
			if o == w {
				ws = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(n.byWd, int32(wd))
			if n.fd >= 0 {
				unix.InotifyRmWatch(n.fd, uint32(wd))
			}
		} else {
			n.byWd[int32(wd)] = ws
		}
	}
	n.n--
}

// spoil says a change of ours could not be accounted for (it failed, maybe
// half done): the watch can no longer vouch for anything.
func (w *watch) spoil() {
	if w != nil {
		w.n.mu.Lock()
		w.bad = true
		w.expect, w.early = nil, nil
		w.n.mu.Unlock()
	}
}

// own records that this Mailbox added or removed name in sub ("new" or
// "cur"), after the change happened.
func (w *watch) own(sub string, add bool, name string) {
	if w == nil {
		return
	}
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	w.ownLocked(sub, add, name)
}

func (w *watch) ownLocked(sub string, add bool, name string) {
	if w.bad {
		return
	}
	i := 1
	if sub == "new" {
		i = 0
	}
	if k := (ownChange{i, add, name}); !take(w.early, k) {
		w.expect[k]++
	}
	n := w.n
	n.pending++
	if n.pending >= drainEvery {
		n.drainLocked()
	}
}

// renamed records a rename of ours from (sub, name) to (nsub, nname).
func (w *watch) renamed(sub, name, nsub, nname string) {
	if w == nil {
		return
	}
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	w.ownLocked(sub, false, name)
	w.ownLocked(nsub, true, nname)
}

// drain reads the events queued so far and matches each with a change of
// ours; any other event (or a lost one) spoils the watch.
func (w *watch) drain() {
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	w.n.drainLocked()
}

// drainLocked reads every event queued in the instance and hands each to
// the watch of its directory. Events of a watch removed since (its last
// ones, IN_IGNORED) have none. A lost event (the queue overflowed) could
// have been any folder's: it spoils them all.
func (n *notifier) drainLocked() {
	n.pending = 0
	if n.fd < 0 {
		return
	}
	if n.buf == nil {
		n.buf = make([]byte, 64<<10)
	}
	for {
		k, err := unix.Read(n.fd, n.buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || k <= 0 {
			if !errors.Is(err, unix.EAGAIN) {
				n.spoilAll()
			}
			return
		}
		n.match(n.buf[:k])
	}
}

func (n *notifier) spoilAll() {
	for _, ws := range n.byWd {
		for _, w := range ws {
			w.bad = true
			w.expect, w.early = nil, nil
		}
	}
}

// match matches the events in b (whole inotify_event records) with the
// changes of the watches they are for.
func (n *notifier) match(b []byte) {
	const head = unix.SizeofInotifyEvent
	for len(b) >= head {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		size := head + int(ev.Len)
		if size > len(b) {
			n.spoilAll()
			return
		}
		name := b[head:size]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		b = b[size:]
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			n.spoilAll()
			continue
		}
		for _, w := range n.byWd[ev.Wd] {
			w.match(ev.Wd, ev.Mask, name)
		}
	}
}

// match matches one event of the watch's directories with a change of
// ours; any other spoils the watch.
func (w *watch) match(wd int32, m uint32, name []byte) {
	if w.bad {
		return
	}
	sub := -1
	for i, d := range w.wds {
		if int(wd) == d {
			sub = i
		}
	}
	const add = unix.IN_CREATE | unix.IN_MOVED_TO
	const remove = unix.IN_DELETE | unix.IN_MOVED_FROM
	if sub < 0 || m&(add|remove) == 0 || m&unix.IN_ISDIR != 0 || m&^(add|remove) != 0 {
		// A directory removed or moved, a subdirectory: nothing this
		// Mailbox does.
		w.bad, w.expect, w.early = true, nil, nil
		return
	}
	k := ownChange{sub, m&add != 0, string(name)}
	if !take(w.expect, k) {
		// Not (yet) recorded: another folder's drain can read this
		// folder's event between its change and its own(). Matched when
		// own() comes; left over at the end, it was somebody else's.
		w.early[k]++
		if len(w.early) > drainEvery {
			w.bad, w.expect, w.early = true, nil, nil
		}
	}
}

// take removes one k from the multiset m, if there is one.
func take(m map[ownChange]int, k ownChange) bool {
	switch c := m[k]; {
	case c == 0:
		return false
	case c == 1:
		delete(m, k)
	default:
		m[k] = c - 1
	}
	return true
}

// StatusAfter is engine.Restamper: the status now, when every change to
// new/ and cur/ since the Mailbox was opened was its own, and a change after
// this call will give the folder another stamp.
//
// It ends the watch, whatever it answers: the engine asks once, after the
// Mailbox's last change, and a watch removed now is one the kernel can reap
// while the engine saves the state. The store's inotify instance cannot be
// closed before the kernel has reaped every watch removed from it (an SRCU
// grace period, ~13 ms here), so a watch removed when the Mailbox closes,
// at the end of a run, held up the run's exit by that much in half the
// runs.
func (m *Mailbox) StatusAfter() (engine.Status, bool) {
	w := m.w
	if w == nil {
		return engine.Status{}, false
	}
	defer w.close()
	w.n.mu.Lock()
	bad := w.bad
	w.n.mu.Unlock()
	if bad {
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
	w.n.mu.Lock()
	bad = w.bad || len(w.expect) != 0 || len(w.early) != 0
	w.n.mu.Unlock()
	if bad {
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
