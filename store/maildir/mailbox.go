package maildir

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/sysfile"
)

// entry is one message file as last seen: its name and what a listing needs
// of it. A scan keeps one per file, so the rest of the parsed name (fn) is
// parsed again when needed: at 100 000 files, the 64 bytes it would add per
// entry cost more, as fresh memory, than the parse does where it is needed
// (a first-touched page costs 15 µs on a paravirtualized machine).
//
// The fields are ordered so that the struct has no padding holes: 32 bytes.
type entry struct {
	name  string
	size  int64      // fileName.Size
	uid   engine.UID // fileName.UID
	flags engine.Flag
	inCur bool // in cur/, not new/
}

func newEntry(sub, name string) entry {
	return entryOf(sub, name, parseName(name))
}

// entryOf is the entry of name, which fn is the parse of.
func entryOf(sub, name string, fn fileName) entry {
	return entry{inCur: sub == "cur", name: name, size: fn.Size, uid: fn.UID, flags: fn.Flags}
}

// sub is the entry's directory: "new" or "cur".
func (e *entry) sub() string {
	if e.inCur {
		return "cur"
	}
	return "new"
}

// fn parses the entry's name.
func (e *entry) fn() fileName { return parseName(e.name) }

// base is fn().Base, without the rest of the parse.
func (e *entry) base() string {
	head, _, _ := cutInfo(e.name)
	base, _ := cutBase(head)
	return base
}

// Mailbox is an open Maildir folder. It implements engine.Mailbox,
// engine.UIDKeeper and engine.IdentKeeper.
type Mailbox struct {
	s        *Store
	name     string
	dir      string
	readOnly bool
	status   engine.Status

	known func(engine.UID) bool
	// idents gives the ident (nameIdent) the state recorded for a UID, 0 for
	// none; nil when it recorded none (engine.IdentKeeper).
	idents func(engine.UID) uint32
	// lastSync is when the engine last saved this folder's state (zero:
	// never): see owner.
	lastSync time.Time
	// ours are UIDs this Mailbox handed out itself (fresh assignments,
	// staged and committed messages): never foreign.
	ours map[engine.UID]bool

	idx     *uidIndex
	scanned bool
	// listedDeleted holds the UIDs the last List reported \Deleted: Expunge
	// keeps one whose file has lost the flag since (undeleted meanwhile).
	listedDeleted map[engine.UID]bool

	// want is what the engine said it will touch (engine.TouchHinter);
	// located says idx holds those of them that exist, found by locate
	// without a scan.
	want    map[engine.UID]bool
	located bool
	// aheadUsed says the locate took names PrefetchNames read.
	aheadUsed bool
	// names is a reading of new/'s and cur/'s names started by
	// PrefetchNames, for locate; nil when none was started.
	names *prefetchedNames

	// pre is a listing started by Prefetch: closed when preEntries/preErr
	// are set. Nil when none is pending.
	pre        chan struct{}
	preEntries []*entry
	preErr     error

	dirsReady bool
	pool      []engine.UID // reserved in .uidvalidity, not used yet
	batch     int
	expect    int // messages still announced by ExpectCopies

	// With deferSync (engine.Flusher), SetFlags and Expunge leave the fsync
	// of the directories they changed to Flush; unsynced holds those.
	deferSync bool
	unsynced  map[string]bool

	// uidPending: what a UID reservation's write of .uidvalidity left to
	// make durable (see writeUIDState); Commit makes it so before a file
	// carrying one of its UIDs appears. with holds the engine's files the
	// next Commit makes durable before it renames anything
	// (engine.Barrierer).
	uidPending uidSync
	with       []string

	// failures is the store's count of failed syncfs calls when the
	// mailbox was opened, before it wrote anything (see Store.syncfs).
	failures uint64

	// w watches new/ and cur/ for StatusAfter; nil when it cannot.
	w *watch
}

var (
	_ engine.Mailbox     = (*Mailbox)(nil)
	_ engine.UIDKeeper   = (*Mailbox)(nil)
	_ engine.IdentKeeper = (*Mailbox)(nil)
	_ engine.TouchHinter = (*Mailbox)(nil)
	_ engine.Barrierer   = (*Mailbox)(nil)
	_ engine.Restamper   = (*Mailbox)(nil)
)

// Status is what was seen at open (the Stamp from stat before any read);
// Messages is filled in once the folder has been scanned.
func (m *Mailbox) Status() engine.Status { return m.status }

// SetKnownUIDs sets which ",U=" values this folder's sync state knows; others
// are foreign (a file moved here by a mail client) and get fresh UIDs.
func (m *Mailbox) SetKnownUIDs(known func(engine.UID) bool) { m.known = known }

// SetKnownIdents is engine.IdentKeeper: ident gives, for a UID the state
// knows, the nameIdent of the file it paired (0: not recorded, trust the UID).
func (m *Mailbox) SetKnownIdents(ident func(engine.UID) uint32) { m.idents = ident }

// IdentOf is engine.IdentKeeper: the nameIdent of the file that has uid, when
// this session has indexed it.
func (m *Mailbox) IdentOf(uid engine.UID) (uint32, bool) {
	if m.idx == nil {
		return 0, false
	}
	e := m.idx.get(uid)
	if e == nil {
		return 0, false
	}
	return nameIdent(e.name), true
}

// foreignIdent says e, which carries the UID u the state knows, is not the
// file the state paired under u: the state recorded another file's ident. A
// mail client that moves a file here from another folder keeps its name,
// ",U=" included, and every folder numbers from 1, so a known UID on a file
// is not enough when this folder's own message with that UID went or
// changed in the same interval.
func (m *Mailbox) foreignIdent(u engine.UID, e *entry) bool {
	if m.idents == nil || m.ours[u] {
		return false
	}
	rec := m.idents(u)
	return rec != 0 && !identMatches(rec, e.name)
}

// nameIdent is a file's ident for engine.IdentKeeper: FNV-1a of its name
// before the info (':'), without its ",U=" field — what flag changes and
// UID assignments leave alone, and what differs between messages, also
// between names that differ only after a ',' (a deliverer's "m,1" and
// "m,2"). Never 0 (0 means unknown to the engine).
func nameIdent(name string) uint32 {
	// FNV-1a, 32 bit (hash/fnv's New32a), inline: it runs once per file of
	// a scan, and hash/fnv would allocate twice per call. It starts with
	// identMark, so that it is never baseIdent's value for the same bytes:
	// a name without fields ("m") must not match "m,2" through baseIdent.
	h := uint32(2166136261)
	h ^= identMark
	h *= 16777619
	for i := 0; i < len(name) && name[i] != ':'; i++ {
		if name[i] == ',' && strings.HasPrefix(name[i+1:], "U=") {
			for i+1 < len(name) && name[i+1] != ',' && name[i+1] != ':' {
				i++
			}
			continue
		}
		h ^= uint32(name[i])
		h *= 16777619
	}
	return max(h, 1)
}

// identMark is the byte nameIdent hashes first (see there).
const identMark = 0x01

// baseIdent is the ident states recorded before nameIdent took in the
// name's other fields: of the part before the first ',' or ':'.
func baseIdent(name string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(name) && name[i] != ',' && name[i] != ':'; i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return max(h, 1)
}

// identMatches says whether rec, an ident a state recorded, is the file
// name's: either kind (a state saved before nameIdent changed keeps the
// older idents of pairs it did not rewrite).
func identMatches(rec uint32, name string) bool {
	return rec == nameIdent(name) || rec == baseIdent(name)
}

// SetLastSync sets when the engine last saved this folder's state.
func (m *Mailbox) SetLastSync(t time.Time) { m.lastSync = t }

// Close waits for a prefetch still running and makes deferred changes
// durable; a Maildir holds no other resources.
func (m *Mailbox) Close() error {
	m.dropPrefetched()
	if m.names != nil {
		<-m.names.done
	}
	m.w.close()
	return m.Flush()
}

func (m *Mailbox) errf(format string, args ...any) error {
	return fmt.Errorf("maildir %s: mailbox %q: %s", m.s.name, m.name, fmt.Sprintf(format, args...))
}

func (m *Mailbox) wrap(what string, err error) error {
	return fmt.Errorf("maildir %s: mailbox %q: %s: %w", m.s.name, m.name, what, err)
}

func (m *Mailbox) path(e *entry) string { return filepath.Join(m.dir, e.sub(), e.name) }

// ---- scanning ----

// scanGuard: a directory modified this recently may still change within the
// file system's timestamp granularity, so an unchanged mtime proves nothing.
const scanGuard = 20 * time.Millisecond

// maxScanTries bounds the rescans when the directories keep changing.
const maxScanTries = 8

// readDirs lists new/ then cur/ (a file moves new→cur, never back, so reading
// in this order cannot miss a file that moves meanwhile) until the listing is
// consistent: the directories' mtimes did not change while reading, and
// either they were old enough to trust or two listings in a row agree.
func (m *Mailbox) readDirs(ctx context.Context) ([]*entry, error) {
	var prev []*entry   // the previous listing, sorted by compareFiles
	buf := m.s.dirBuf() // for both directories and every try
	defer m.s.dirBufs.Put(&buf)
	for try := 0; try < maxScanTries; try++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		s1, err := m.s.dirStamp(m.dir)
		if err != nil {
			return nil, m.wrap("scan", err)
		}
		l := lister{buf: buf, skip: m.skipLink, listHook: m.s.listHook}
		for _, sub := range []string{"new", "cur"} {
			if err := l.read(filepath.Join(m.dir, sub), sub); err != nil {
				return nil, m.wrap("scan", err)
			}
		}
		entries := l.entries()
		s2, err := m.s.dirStamp(m.dir)
		if err != nil {
			return nil, m.wrap("scan", err)
		}
		if s1 == s2 && m.s.listHook != nil {
			m.s.listHook("", nil) // a test's moment between a sound listing and dropStale
		}
		if s1 == s2 {
			// A coarse file system's mtimes need a longer guard (see
			// coarseGuard): within it, listings are compared as for a
			// recently modified folder.
			if !s2.recent(t0, s2.guard()) {
				if out, vanished := m.dropStale(entries); !vanished {
					return out, nil
				}
				prev = nil
				continue // a file renamed since: list again (no sleep: the folder is old)
			}
			// Only a recently modified folder needs two listings compared
			// (as sorted entries: no "sub/name" string per file).
			keys := slices.Clone(entries)
			slices.SortFunc(keys, compareFiles)
			if prev != nil && slices.EqualFunc(prev, keys, func(a, b *entry) bool { return compareFiles(a, b) == 0 }) {
				if out, vanished := m.dropStale(entries); !vanished {
					return out, nil
				}
				keys = nil
			}
			prev = keys
		} else {
			prev = nil
		}
		time.Sleep(time.Duration(1<<try) * time.Millisecond)
	}
	return nil, m.errf("new/ and cur/ kept changing while being read; try again later")
}

// compareFiles orders entries by directory, then name.
func compareFiles(a, b *entry) int {
	if c := strings.Compare(a.sub(), b.sub()); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

// readBufSize is the getdents(2) buffer of a directory listing: for a
// folder of 100 000 files, a large one costs half of what os.File.ReadDir
// does (no DirEntry per file, fewer system calls).
const readBufSize = 256 << 10

// dirBuf returns a getdents buffer of readBufSize from the store's pool; the
// caller puts it back (as a *[]byte) when its listing is done.
func (s *Store) dirBuf() []byte {
	if b, ok := s.dirBufs.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, readBufSize)
}

// Chunk sizes of a lister: each chunk is twice the previous one up to the
// maximum, so that a big folder needs few allocations and a small one wastes
// little.
const (
	minNameChunk  = 1 << 10
	maxNameChunk  = 64 << 10
	minEntryChunk = 16
	maxEntryChunk = 1024
)

// lister collects the entries of a listing without an allocation per file:
// names are copied into shared byte chunks and entries into fixed-size
// chunks. Neither kind of chunk is ever reallocated or written again where
// something was stored, so the *entry and the name strings (unsafe.String
// over chunk bytes) stay valid and immutable for as long as they are
// referenced; the garbage collector keeps a chunk alive through any string
// or pointer into it.
type lister struct {
	buf    []byte    // getdents buffer
	names  []byte    // current name chunk: only appended to
	chunk  []entry   // current entry chunk: only appended to, within its capacity
	chunks [][]entry // full chunks
	n      int
	// skip, when set, hears of the symbolic links read leaves out.
	skip func(sub string, name []byte, why error)
	// listHook, when set by a test, is called with each name added.
	listHook func(sub string, name []byte)
}

// add records the file name (whose bytes may be reused once add returns) in
// sub.
func (l *lister) add(sub string, name []byte) {
	if l.listHook != nil {
		l.listHook(sub, name)
	}
	if len(l.names)+len(name) > cap(l.names) {
		size := min(max(2*cap(l.names), minNameChunk), maxNameChunk)
		l.names = make([]byte, 0, max(size, len(name)))
	}
	start := len(l.names)
	l.names = append(l.names, name...)
	s := unsafe.String(&l.names[start], len(name))
	if len(l.chunk) == cap(l.chunk) {
		if l.chunk != nil {
			l.chunks = append(l.chunks, l.chunk)
		}
		l.chunk = make([]entry, 0, min(max(2*cap(l.chunk), minEntryChunk), maxEntryChunk))
	}
	l.chunk = append(l.chunk, newEntry(sub, s))
	l.n++
}

// read adds the message files of dir (no dot-files, no subdirectories); a
// missing directory is empty. Symbolic links that lead to no file go to
// l.skip, when set.
func (l *lister) read(dir, sub string) error {
	var skip func(name []byte, why error)
	if l.skip != nil {
		skip = func(name []byte, why error) { l.skip(sub, name, why) }
	}
	return readNamesBuf(dir, l.buf, func(name []byte) { l.add(sub, name) }, skip)
}

// entries returns everything added, in order.
func (l *lister) entries() []*entry {
	out := make([]*entry, 0, l.n)
	for _, c := range append(l.chunks, l.chunk) {
		for i := range c {
			out = append(out, &c[i])
		}
	}
	return out
}

// readNamesBuf passes each message file name of dir (no dot-files, no
// subdirectories) to add, which must copy it to keep it; a missing
// directory has none. It parses getdents(2) itself, into buf. A symbolic
// link that leads to no file or to a directory is not a message either: it
// goes to skip (when not nil) with the reason, not to add (see badLink).
func readNamesBuf(dir string, buf []byte, add func(name []byte), skip func(name []byte, why error)) error {
	fd, err := openRaw(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "getdents", Path: dir, Err: err}
		}
		if n <= 0 {
			return nil
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name.
			const nameOff = 19
			if len(b) < nameOff {
				return fmt.Errorf("getdents %s: short record", dir)
			}
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < nameOff || reclen > len(b) {
				return fmt.Errorf("getdents %s: bad record length %d", dir, reclen)
			}
			typ := b[18]
			name := b[nameOff:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if len(name) == 0 || name[0] == '.' {
				continue
			}
			link := typ == unix.DT_LNK
			switch typ {
			case unix.DT_DIR:
				continue
			case unix.DT_UNKNOWN: // some file systems do not say: ask
				var st unix.Stat_t
				if unix.Fstatat(fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
					switch st.Mode & unix.S_IFMT {
					case unix.S_IFDIR:
						continue
					case unix.S_IFLNK:
						link = true
					}
				}
			}
			if link {
				if why := badLink(fd, string(name)); why != nil {
					if skip != nil {
						skip(name, why)
					}
					continue
				}
			}
			add(name)
		}
	}
}

// badLink says why the symbolic link name in the directory fd is not a
// message the store can read: it dangles or loops (stat fails with ENOENT or
// ELOOP while the link itself is there), or it leads to a directory. It is
// nil for a link to a file, which is listed, renamed and read like any file
// (statAll and Fetch follow it), and for a link that vanished meanwhile,
// which the listing's own checks deal with as with any file.
//
// Left in the listing, a dangling link would be renamed to carry a ",U=",
// and then statAll, following it, would take its ENOENT for a file renamed
// by a mail client and rescan until List gave up: the folder would never
// sync again. It costs a stat per link; links are rare, and other files pay
// nothing.
func badLink(fd int, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(fd, name, &st, 0)
	for err == unix.EINTR {
		err = unix.Fstatat(fd, name, &st, 0)
	}
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return errors.New("symbolic link to a directory")
	case err == unix.ENOENT || err == unix.ELOOP:
		var lst unix.Stat_t
		if unix.Fstatat(fd, name, &lst, unix.AT_SYMLINK_NOFOLLOW) != nil {
			return nil // gone itself: not a link problem
		}
		if err == unix.ENOENT {
			return errors.New("dangling symbolic link")
		}
		return errors.New("symbolic link loop")
	}
	return nil
}

// skipLink warns, once per run (per Store), that the link sub/name of m is
// not a message and is left alone.
func (m *Mailbox) skipLink(sub string, name []byte, why error) {
	path := filepath.Join(m.dir, sub, string(name))
	m.s.warnedMu.Lock()
	seen := m.s.warned[path]
	if !seen {
		if m.s.warned == nil {
			m.s.warned = map[string]bool{}
		}
		m.s.warned[path] = true
	}
	m.s.warnedMu.Unlock()
	if !seen {
		m.s.log.Warn("not a message, left alone: "+why.Error(), "mailbox", m.name, "file", path)
	}
}

// dropStale looks for listing artefacts of concurrent renames: when two
// entries share a base name, those whose file no longer exists are dropped,
// and vanished says there were some. The caller lists again then rather
// than use the result: the file may as well have been renamed after a
// sound listing (a mail client marking it read), and the listing without
// it would report the message gone, which the engine carries to the other
// side as a deletion. (entries is reused for the result.)
func (m *Mailbox) dropStale(entries []*entry) (out []*entry, vanished bool) {
	shared := sharedBases(entries)
	if shared == nil {
		return entries, false
	}
	out = entries[:0]
	for i, e := range entries {
		if shared[i] {
			if _, err := os.Lstat(m.path(e)); errors.Is(err, fs.ErrNotExist) {
				vanished = true
				continue
			}
		}
		out = append(out, e)
	}
	return out, vanished
}

// sharedBases says which entries share their base name with another one;
// nil when none does (the usual case). Instead of a map of all base names
// (for 100 000 files, megabytes of fresh memory each scan) it uses an
// open-addressing table of entry indices hashed by base.
func sharedBases(entries []*entry) []bool {
	if len(entries) < 2 {
		return nil
	}
	size := 1
	for size < 2*len(entries) {
		size <<= 1
	}
	table := make([]int32, size) // entry index+1; 0 is empty
	mask := uint64(size - 1)
	seed := maphash.MakeSeed()
	var shared []bool
	for i, e := range entries {
		for h := maphash.String(seed, e.base()) & mask; ; h = (h + 1) & mask {
			j := table[h] - 1
			if j < 0 {
				table[h] = int32(i + 1)
				break
			}
			if entries[j].base() == e.base() {
				if shared == nil {
					shared = make([]bool, len(entries))
				}
				shared[i], shared[j] = true, true
				break
			}
		}
	}
	return shared
}

// scan reads the folder and builds the UID index, giving fresh UIDs to
// files without one, with a foreign one, or with a duplicate one.
func (m *Mailbox) scan(ctx context.Context) error {
	for round := 0; round < 4; round++ {
		entries, err := m.takePrefetched()
		if entries == nil || err != nil {
			entries, err = m.readDirs(ctx)
		}
		if err != nil {
			return err
		}
		again, err := m.index(entries)
		if err != nil {
			return err
		}
		if !again {
			m.scanned = true
			m.status.Messages = int64(m.idx.len())
			return nil
		}
		m.s.log.Debug("files changed while assigning UIDs, rescanning", "mailbox", m.name)
	}
	return m.errf("files kept changing while UIDs were assigned; try again later")
}

// Prefetch starts listing new/ and cur/ in the background for the next scan
// (engine.Prefetcher). Any change made through m before that scan discards it.
func (m *Mailbox) Prefetch(ctx context.Context) {
	if m.pre != nil {
		return
	}
	pre := make(chan struct{})
	m.pre = pre
	go func() {
		defer close(pre)
		m.preEntries, m.preErr = m.readDirs(ctx)
	}()
}

// takePrefetched returns the prefetched listing, waiting for it, or nil when
// none was started; either way none is pending afterwards.
func (m *Mailbox) takePrefetched() ([]*entry, error) {
	if m.pre == nil {
		return nil, nil
	}
	<-m.pre
	es, err := m.preEntries, m.preErr
	m.pre, m.preEntries, m.preErr = nil, nil, nil
	return es, err
}

// dropPrefetched is called before m changes the folder: a listing taken
// before the change must not be used after it.
func (m *Mailbox) dropPrefetched() { m.takePrefetched() }

// ensureIndexed makes m.idx hold the files of uids: from a scan, or, when
// the engine announced them all (WillTouch), from a locate.
func (m *Mailbox) ensureIndexed(ctx context.Context, uids []engine.UID) error {
	if m.scanned {
		return nil
	}
	if m.want == nil || slices.ContainsFunc(uids, func(u engine.UID) bool { return !m.want[u] }) {
		return m.scan(ctx)
	}
	if m.located {
		return nil
	}
	return m.locate(ctx)
}

// WillTouch is engine.TouchHinter. Operations on a folder that has not been
// listed must find their files; for a few messages of a big folder, one
// pass that picks out just those names costs a fraction of a scan, which
// parses and indexes every file (for 100 000 files, 35 ms of CPU against 87
// in BenchmarkSetFlagsUnlisted100k). Announced UIDs are found together by
// the first operation.
func (m *Mailbox) WillTouch(uids []engine.UID) {
	if m.scanned || m.located || len(uids) == 0 {
		return
	}
	m.want = make(map[engine.UID]bool, len(uids))
	for _, u := range uids {
		m.want[u] = true
	}
}

// prefetchedNames are the names of new/ and cur/ as read in the background
// by PrefetchNames: raw, unparsed (parsing 100 000 names into entries is
// most of a scan's CPU), with the folder's stamps before and after.
type prefetchedNames struct {
	done   chan struct{}
	t0     time.Time
	s1, s2 stamp
	names  [2][]byte // new/, cur/: each name followed by a 0 byte
	// uids has, for each name in order, the UID its ",U=" field names
	// (uidCandidate), read while the server answers so that the locate
	// after the plan only compares numbers; several has the indexes of the
	// rare names with more than one candidate, checked as before.
	uids    [2][]uint32
	several [2][]int
	// skipped are the links readNamesBuf left out, told to skipLink by
	// the locate that takes them.
	skipped []skippedLink
	err     error
}

type skippedLink struct {
	sub, name string
	why       error
}

// PrefetchNames is engine.NamePrefetcher: it starts reading the folder's
// names for the locate of the messages the engine will touch, and says
// whether that locate can rest on them — only where the folder's watch can
// vouch that nobody else changes it meanwhile (see locate).
func (m *Mailbox) PrefetchNames(ctx context.Context) bool {
	if m.w == nil || m.readOnly || m.names != nil || m.scanned || m.pre != nil {
		return false
	}
	pn := &prefetchedNames{done: make(chan struct{})}
	m.names = pn
	go func() {
		defer close(pn.done)
		buf := m.s.dirBuf()
		defer m.s.dirBufs.Put(&buf)
		pn.t0 = time.Now()
		if pn.s1, pn.err = m.s.dirStamp(m.dir); pn.err != nil {
			return
		}
		for i, sub := range []string{"new", "cur"} {
			if pn.err = ctx.Err(); pn.err != nil {
				return
			}
			pn.err = readNamesBuf(filepath.Join(m.dir, sub), buf, func(name []byte) {
				pn.names[i] = append(append(pn.names[i], name...), 0)
				u, n := uidCandidate(name)
				if n > 1 {
					pn.several[i] = append(pn.several[i], len(pn.uids[i]))
				}
				pn.uids[i] = append(pn.uids[i], u)
			}, func(name []byte, why error) { pn.skipped = append(pn.skipped, skippedLink{sub, string(name), why}) })
			if pn.err != nil {
				return
			}
		}
		pn.s2, pn.err = m.s.dirStamp(m.dir)
	}()
	return true
}

// takeNames returns the prefetched names, waiting for them, when they are
// still what new/ and cur/ hold apart from this Mailbox's own changes: read
// whole while the folder's stamp stayed, and the watch (which began before
// they were read) has seen no change that was not this Mailbox's own. A
// file a mail client renamed or removed after that cannot be in them either
// way: its change would have spoiled the watch.
func (m *Mailbox) takeNames() *prefetchedNames {
	pn := m.names
	if pn == nil {
		return nil
	}
	m.names = nil
	<-pn.done
	if pn.err != nil || pn.s1 != pn.s2 || pn.s2.recent(pn.t0, pn.s2.guard()) || m.w == nil {
		return nil
	}
	w := m.w
	w.drain()
	w.n.mu.Lock()
	clean := !w.bad && len(w.early) == 0
	w.n.mu.Unlock()
	if !clean {
		return nil
	}
	return pn
}

// locate fills m.idx with the files of m.want without indexing the rest of
// the folder. The result must be what a scan would give for those UIDs, so
// whenever a scan could decide otherwise — a wanted UID that a scan would
// renumber (foreign, above the last assigned, on several files), or a folder
// that changed while it was read or too recently to trust its mtimes — it
// scans instead.
func (m *Mailbox) locate(ctx context.Context) error {
	if m.pre != nil {
		return m.scan(ctx) // a listing is on its way anyway
	}
	st, err := m.uidState()
	if err != nil {
		return err
	}
	for u := range m.want {
		if !m.ours[u] && (u > st.Last || (m.known != nil && !m.known(u))) {
			return m.scan(ctx)
		}
	}
	l := lister{buf: m.s.dirBuf()}
	defer m.s.dirBufs.Put(&l.buf)
	if pn := m.takeNames(); pn != nil {
		m.aheadUsed = true
		for _, k := range pn.skipped {
			m.skipLink(k.sub, []byte(k.name), k.why)
		}
		wanted := wantedUIDs(m.want)
		for i, sub := range []string{"new", "cur"} {
			b, several := pn.names[i], pn.several[i]
			for n, u := range pn.uids[i] {
				k := bytes.IndexByte(b, 0)
				more := len(several) > 0 && several[0] == n
				if more {
					several = several[1:]
				}
				if candidateWanted(b[:k], u, more, wanted, m.want) {
					l.add(sub, b[:k])
				}
				b = b[k+1:]
			}
		}
	} else {
		t0 := time.Now()
		s1, err := m.s.dirStamp(m.dir)
		if err != nil {
			return m.wrap("locate", err)
		}
		for _, sub := range []string{"new", "cur"} {
			err := readNamesBuf(filepath.Join(m.dir, sub), l.buf, func(name []byte) {
				if mayCarryUID(name, m.want) {
					l.add(sub, name)
				}
			}, func(name []byte, why error) { m.skipLink(sub, name, why) })
			if err != nil {
				return m.wrap("locate", err)
			}
		}
		s2, err := m.s.dirStamp(m.dir)
		if err != nil {
			return m.wrap("locate", err)
		}
		if s1 != s2 || s2.recent(t0, s2.guard()) {
			return m.scan(ctx)
		}
	}
	idx := newUIDIndex(1, 0, 0) // a few UIDs: a map
	for _, e := range l.entries() {
		u := e.uid
		if !m.want[u] {
			continue
		}
		if idx.get(u) != nil || m.foreignIdent(u, e) {
			return m.scan(ctx) // a duplicate or a newcomer: the scan decides which file keeps u
		}
		idx.set(u, e)
	}
	for u, e := range m.idx.all { // committed in this session
		if idx.get(u) == nil {
			idx.set(u, e)
		}
	}
	m.idx, m.located = idx, true
	return nil
}

// mayCarryUID is a filter without false negatives for parseName(name).UID
// being in want: parseName takes the UID from a ",U=<digits>" field, so a
// name none of whose ",U=" is followed by the digits of a wanted UID cannot
// carry one. It allocates nothing.
func mayCarryUID(name []byte, want map[engine.UID]bool) bool {
	found := false
	uidCandidates(name, func(v uint32) bool {
		found = want[engine.UID(v)]
		return !found
	})
	return found
}

// uidCandidates calls yield with the number after each ",U=" of name that
// fits 32 bits, while yield returns true.
func uidCandidates(name []byte, yield func(uint32) bool) {
	for {
		i := bytes.Index(name, []byte(",U="))
		if i < 0 {
			return
		}
		name = name[i+3:]
		var v uint64
		j := 0
		for ; j < len(name) && name[j] >= '0' && name[j] <= '9' && v <= 1<<32; j++ {
			v = v*10 + uint64(name[j]-'0')
		}
		if j > 0 && v < 1<<32 && !yield(uint32(v)) {
			return
		}
	}
}

// uidCandidate returns the first of a name's uidCandidates (0 when there
// is none), and how many it has: with more than one, only mayCarryUID
// tells.
func uidCandidate(name []byte) (uid uint32, n int) {
	uidCandidates(name, func(v uint32) bool {
		if n == 0 {
			uid = v
		}
		n++
		return true
	})
	return uid, n
}

// candidateWanted is mayCarryUID(name, want) for a name whose candidates
// uidCandidate found: u the first, more when there are others.
func candidateWanted(name []byte, u uint32, more bool, wanted func(uint32) bool, want map[engine.UID]bool) bool {
	return wanted(u) || more && mayCarryUID(name, want)
}

// wantedUIDs is a membership test for want: a bitmap where its UIDs are
// dense enough (a plan's few hundred UIDs of a folder usually are not far
// apart), else the map. A locate asks it once per file of the folder. UID
// 0, no message's, is never wanted (uidCandidate's "no candidate").
func wantedUIDs(want map[engine.UID]bool) func(uint32) bool {
	var top engine.UID
	for u := range want {
		top = max(top, u)
	}
	if uint64(top) > 64*uint64(len(want))+1<<20 {
		return func(u uint32) bool { return u != 0 && want[engine.UID(u)] }
	}
	bits := make([]uint64, top/64+1)
	for u, ok := range want {
		if ok && u != 0 {
			bits[u/64] |= 1 << (u % 64)
		}
	}
	return func(u uint32) bool { return engine.UID(u) <= top && bits[u/64]&(1<<(u%64)) != 0 }
}

// uidState reads .uidvalidity and checks it still belongs to what was opened.
func (m *Mailbox) uidState() (uidState, error) {
	st, ok, err := readUIDState(m.dir)
	if err != nil {
		return st, m.wrap("scan", err)
	}
	if !ok {
		if !m.readOnly {
			return st, m.wrap(uidFile+" vanished", engine.ErrValidity)
		}
		st = uidState{Validity: m.status.UIDValidity}
	}
	if st.Validity != m.status.UIDValidity {
		return st, m.wrap(fmt.Sprintf("UIDVALIDITY %d, opened with %d", st.Validity, m.status.UIDValidity), engine.ErrValidity)
	}
	return st, nil
}

// maxRaise bounds the UIDs in file names that raise the folder's last UID
// (index): mbsync and quixysync count up from 1, and a file claiming more is
// renumbered rather than allowed to leave too few UIDs for new mail.
const maxRaise = engine.UID(1) << 31

// index assigns UIDs and fills m.idx; again is true when a file vanished
// while it was being renamed (a mail client was at work) and the folder must
// be read again.
func (m *Mailbox) index(entries []*entry) (again bool, err error) {
	st, err := m.uidState()
	if err != nil {
		return false, err
	}
	lo, hi := ^engine.UID(0), engine.UID(0)
	top := st.Last // the highest UID no file may be given again (see below)
	for _, e := range entries {
		if e.uid != 0 {
			lo, hi = min(lo, e.uid), max(hi, e.uid)
			if e.uid < maxRaise {
				top = max(top, e.uid)
			}
		}
	}
	idx := newUIDIndex(lo, hi, len(entries))
	var dups map[engine.UID][]*entry // UIDs on more than one file: all of them
	keep := func(u engine.UID, e *entry) {
		prev := idx.get(u)
		if prev == nil {
			idx.set(u, e)
			return
		}
		if dups == nil {
			dups = map[engine.UID][]*entry{}
		}
		if dups[u] == nil {
			dups[u] = []*entry{prev}
		}
		dups[u] = append(dups[u], e)
	}
	var fresh []*entry
	for _, e := range entries {
		u := e.uid
		switch {
		case u == 0:
			fresh = append(fresh, e)
		case m.ours[u]:
			keep(u, e)
		case u > st.Last && (m.idents == nil || !identMatches(m.idents(u), e.name)):
			// (One the state records under u was assigned here: .uidvalidity
			// went back — restored from a backup, rewritten by another tool —
			// and the file keeps its UID; the last UID is raised below.)
			m.s.log.Info("file carries a UID above the last one assigned here: giving it a new UID", "mailbox", m.name, "file", e.sub()+"/"+e.name)
			fresh = append(fresh, e)
		case m.known != nil && !m.known(u):
			m.s.log.Info("file carries a UID this folder's state does not know (moved from another folder?): giving it a new UID", "mailbox", m.name, "file", e.sub()+"/"+e.name)
			fresh = append(fresh, e)
		case m.foreignIdent(u, e):
			m.s.log.Info("file carries a UID this folder's state pairs with another file (moved from another folder?): giving it a new UID", "mailbox", m.name, "file", e.sub()+"/"+e.name)
			fresh = append(fresh, e)
		default:
			keep(u, e)
		}
	}
	for u, es := range dups {
		if !m.owner(u, es) {
			for _, e := range es {
				m.s.log.Info("duplicate UID, and no one file unchanged since the last sync: every one gets a new UID (copied again, nothing lost)",
					"mailbox", m.name, "uid", u, "file", e.sub()+"/"+e.name)
			}
			fresh = append(fresh, es...)
			idx.del(u)
			continue
		}
		for _, e := range es[1:] {
			m.s.log.Info("duplicate UID: the newer file gets a new UID", "mailbox", m.name, "uid", u, "keeps", es[0].sub()+"/"+es[0].name, "file", e.sub()+"/"+e.name)
		}
		fresh = append(fresh, es[1:]...)
		idx.set(u, es[0])
	}
	if top > st.Last && !m.readOnly {
		// No UID a file carries may be handed out again, to a fresh file
		// here or to a message Stage writes, not even one a file gives up
		// below: where .uidvalidity went back, those are UIDs the state
		// pairs with other messages, and the pair would take the wrong one.
		// (Not past maxRaise: one odd file name must not use up the UIDs.)
		raised, err := m.s.raiseLastUID(m.dir, top)
		if err != nil {
			return false, m.wrap("raise the last UID", err)
		}
		if raised.Validity != m.status.UIDValidity {
			return false, m.wrap("raise the last UID", engine.ErrValidity)
		}
		m.s.log.Info("files carry UIDs above the last one "+uidFile+" records (restored from a backup?): raised it", "mailbox", m.name, "last", st.Last, "now", top)
	}
	if len(fresh) > 0 {
		sort.Slice(fresh, func(i, j int) bool {
			if bi, bj := fresh[i].base(), fresh[j].base(); bi != bj {
				return bi < bj
			}
			return fresh[i].name < fresh[j].name
		})
		if m.readOnly {
			// In memory only: nothing on disk changes in read-only mode.
			next := max(top, m.maxOurs()) + 1
			for _, e := range fresh {
				idx.set(next, e)
				next++
			}
		} else {
			again, err = m.assignFresh(fresh, idx)
			if err != nil {
				return false, err
			}
		}
	}
	m.idx = idx
	return again, nil
}

func (m *Mailbox) maxOurs() engine.UID {
	var x engine.UID
	for u := range m.ours {
		x = max(x, u)
	}
	return x
}

// owner puts first, of the files es sharing UID u, the one that keeps it and
// reports whether there is one. A file moved or copied here keeping its
// ",U=" was changed (ctime) after the file it collides with, unless that one
// was changed too (its flags, say) — then the oldest ctime would pick the
// newcomer, pair it with the other message's partner, and lose it. So when
// the engine says when it last saved the state, the owner is the one file
// unchanged since then, and when there is not exactly one, there is none
// (the caller renumbers them all). UIDs this Mailbox handed out itself, and
// folders without a saved state, keep the oldest-ctime rule: no pair of an
// earlier run can be broken there. Where the state recorded u's ident, index
// has already given every file with another ident a fresh UID (foreignIdent),
// so es are files with the recorded ident (the same name copied within the
// folder) or u has no recorded ident: neither is decided by the ident.
func (m *Mailbox) owner(u engine.UID, es []*entry) bool {
	if m.ours[u] || m.lastSync.IsZero() {
		m.orderDuplicates(es)
		return true
	}
	// Not after: a change in the same clock tick as the state save counts
	// as before it, which at worst finds two owners and renumbers them all.
	last := m.lastSync.UnixNano()
	found := -1
	for i, e := range es {
		if c := m.ctime(e); c <= last {
			if found >= 0 {
				return m.oneFile(es)
			}
			found = i
		}
	}
	if found < 0 {
		return m.oneFile(es)
	}
	es[0], es[found] = es[found], es[0]
	return true
}

// oneFile is owner's answer for files es that the ctimes cannot tell apart:
// when they are hard links of one file (ln, cp -l: a link changes the
// inode's ctime, so none of them is unchanged since the last sync), they
// are one message, and whichever keeps the UID is paired rightly; it is
// put first, the others get fresh UIDs. Renumbering them all made the
// message look removed here: its far copy was removed (or flagged deleted)
// and it was uploaded once per link.
func (m *Mailbox) oneFile(es []*entry) bool {
	var first unix.Stat_t
	for i, e := range es {
		var st unix.Stat_t
		if err := unix.Stat(m.path(e), &st); err != nil {
			return false
		}
		if i == 0 {
			first = st
		} else if st.Dev != first.Dev || st.Ino != first.Ino {
			return false
		}
	}
	m.orderDuplicates(es)
	return true
}

// ctime is the file's status change time in ns (the largest value when it
// cannot be read: never the owner).
func (m *Mailbox) ctime(e *entry) int64 {
	var st unix.Stat_t
	if err := unix.Lstat(m.path(e), &st); err != nil {
		return 1<<63 - 1
	}
	return st.Ctim.Nano()
}

// orderDuplicates puts the file that keeps a shared UID first: the one with
// the oldest ctime (a file moved or copied here later has a newer one).
func (m *Mailbox) orderDuplicates(es []*entry) {
	ctime := m.ctime
	type ce struct {
		c int64
		e *entry
	}
	cs := make([]ce, len(es))
	for i, e := range es {
		cs[i] = ce{ctime(e), e}
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].c != cs[j].c {
			return cs[i].c < cs[j].c
		}
		if cs[i].e.sub() != cs[j].e.sub() {
			return cs[i].e.sub() == "cur"
		}
		return cs[i].e.name < cs[j].e.name
	})
	for i := range cs {
		es[i] = cs[i].e
	}
}

// assignFresh reserves UIDs for the files in fresh and renames each in place
// to carry its ",U=".
func (m *Mailbox) assignFresh(fresh []*entry, idx *uidIndex) (again bool, err error) {
	st, first, _, err := m.s.reserveUIDs(m.dir, len(fresh), true)
	if err != nil {
		return false, m.wrap("assign UIDs", err)
	}
	if st.Validity != m.status.UIDValidity {
		return false, m.wrap("assign UIDs", engine.ErrValidity)
	}
	touched := map[string]bool{}
	for i, e := range fresh {
		uid := first + engine.UID(i)
		fn := e.fn().withUID(uid)
		ne := new(entryOf(e.sub(), fn.String(), fn))
		err := renameNoReplace(m.path(e), m.path(ne))
		if errors.Is(err, syscall.ENAMETOOLONG) {
			// A name that leaves no room for ",U=" (a deliverer's, near
			// the 255 bytes a name may have) gets a short unique part of
			// our own; the message and its flags stay. Left as it is, it
			// failed the listing of the whole folder at every run.
			short := fn
			short.Base, short.fields = m.s.uniqueBase(), ""
			short = short.withUID(uid)
			m.s.log.Info("file name too long to carry its UID: renamed", "mailbox", m.name, "file", e.sub()+"/"+e.name, "to", short.String())
			ne = new(entryOf(e.sub(), short.String(), short))
			err = renameNoReplace(m.path(e), m.path(ne))
		}
		switch {
		case err == nil:
			m.w.renamed(e.sub(), e.name, ne.sub(), ne.name)
			m.ours[uid] = true
			idx.set(uid, ne)
			touched[e.sub()] = true
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrExist):
			again = true
		default:
			m.w.spoil()
			return false, m.wrap("assign UIDs", err)
		}
	}
	if err := m.syncSubs(touched); err != nil {
		return false, err
	}
	return again, nil
}

// syncLater is syncSubs, or under DeferSync a note for Flush.
func (m *Mailbox) syncLater(touched map[string]bool) error {
	if !m.deferSync {
		return m.syncSubs(touched)
	}
	if m.unsynced == nil {
		m.unsynced = map[string]bool{}
	}
	for sub, t := range touched {
		if t {
			m.unsynced[sub] = true
		}
	}
	return nil
}

// Covers is engine.Barrierer: path (the engine's journal or state file) can
// be made durable by this folder's syncfs when it is on the same file system
// and that is one where the store trusts syncfs.
func (m *Mailbox) Covers(path string) bool { return m.s.sameTrustedFS(m.dir, path) }

// CommitWith is engine.Barrierer: the next Commit makes paths durable before
// it renames any message into place; when it makes the messages durable with
// one syncfs, that covers them at no extra cost (an fsync each otherwise).
func (m *Mailbox) CommitWith(paths ...string) { m.with = append(m.with, paths...) }

// Barrier is engine.Barrierer: it makes paths durable together with what
// Flush would. When directories wait for their fsync (or a UID reservation
// for its own), one syncfs does it all instead of an fsync per directory and
// file; with nothing waiting, an fsync per path is cheaper.
func (m *Mailbox) Barrier(paths ...string) error {
	if !m.s.opt.Fsync {
		return nil
	}
	if (len(m.unsynced) > 0 || m.uidPending != 0) && m.s.syncfsErrs {
		if err := m.s.syncfs(m.dir, m.failures); err == nil {
			m.unsynced, m.uidPending = nil, 0
			return m.syncUncovered(paths, true)
		}
	}
	if err := m.Flush(); err != nil {
		return err
	}
	if err := m.syncUIDState(); err != nil {
		return err
	}
	return m.syncUncovered(paths, false)
}

// syncUncovered fsyncs those of paths that a syncfs of the folder's file
// system (done when synced) did not make durable: all when none was done.
// The engine only hands over paths Covers accepted; this keeps the promise
// for any other.
func (m *Mailbox) syncUncovered(paths []string, synced bool) error {
	for _, p := range paths {
		if synced && m.Covers(p) {
			continue
		}
		if err := m.s.fsyncFile(p); err != nil {
			return m.wrap("fsync "+p, err)
		}
	}
	return nil
}

// syncUIDState makes what a UID reservation left pending durable.
func (m *Mailbox) syncUIDState() error {
	if m.uidPending&uidOverwritten != 0 {
		if err := m.s.fsyncFile(filepath.Join(m.dir, uidFile)); err != nil {
			return m.wrap("fsync "+uidFile, err)
		}
		m.uidPending &^= uidOverwritten
	}
	if m.uidPending&uidRenamed != 0 {
		if err := m.s.syncPath(m.dir); err != nil {
			return m.wrap("fsync "+uidFile, err)
		}
		m.uidPending &^= uidRenamed
	}
	return nil
}

// Settle is engine.Settler: new/ and cur/ are fsynced whatever this
// process did to them, since the renames a listing shows may be another
// run's, killed before it could fsync them (and the reservation's rename
// with them, if one waits).
func (m *Mailbox) Settle() error {
	if !m.s.opt.Fsync {
		return nil
	}
	if err := m.syncSubs(map[string]bool{"new": true, "cur": true}); err != nil {
		return err
	}
	delete(m.unsynced, "new")
	delete(m.unsynced, "cur")
	return m.syncUIDState()
}

// DeferSync is engine.Flusher: from now on SetFlags and Expunge leave the
// directory fsyncs to Flush, one per directory instead of one per call.
func (m *Mailbox) DeferSync() { m.deferSync = true }

// Flush makes the renames and unlinks of SetFlags and Expunge durable.
func (m *Mailbox) Flush() error {
	if len(m.unsynced) == 0 {
		return nil
	}
	err := m.syncSubs(m.unsynced)
	if err == nil {
		m.unsynced = nil
	}
	return err
}

func (m *Mailbox) syncSubs(touched map[string]bool) error {
	if !m.s.opt.Fsync {
		return nil
	}
	for _, sub := range []string{"new", "cur"} {
		if touched[sub] {
			if err := m.s.syncPath(filepath.Join(m.dir, sub)); err != nil {
				return m.wrap("fsync "+sub, err)
			}
		}
	}
	return nil
}

// renameNoReplace renames old to new, failing with fs.ErrExist when new
// exists: a message file is never overwritten.
func renameNoReplace(oldPath, newPath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldPath, unix.AT_FDCWD, newPath, unix.RENAME_NOREPLACE)
	if err == nil {
		return nil
	}
	if err == unix.EINVAL || err == unix.ENOSYS || err == unix.ENOTSUP {
		// The file system lacks RENAME_NOREPLACE: link+unlink never overwrites.
		lerr := os.Link(oldPath, newPath)
		if lerr == nil {
			if rerr := os.Remove(oldPath); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				return rerr
			}
			return nil
		}
		var le *os.LinkError
		if errors.As(lerr, &le) && (le.Err == unix.EEXIST || le.Err == unix.ENOENT) {
			return lerr
		}
		// No hard links either: check, then rename (a small window remains).
		if _, serr := os.Lstat(newPath); serr == nil {
			return &os.LinkError{Op: "rename", Old: oldPath, New: newPath, Err: unix.EEXIST}
		}
		return os.Rename(oldPath, newPath)
	}
	return &os.LinkError{Op: "rename", Old: oldPath, New: newPath, Err: err}
}

// ---- listing ----

// List reports every message (Maildir has no change counter), so complete
// is always true. Size and Date (the mtime) come from stat, for the messages
// q.NeedDetails asks for (all when it is nil); the others get the size from a
// ",S=" in the name, else -1, and a zero Date. A stat costs a system call per
// file: for a folder of 100 000 files, most of a listing.
func (m *Mailbox) List(ctx context.Context, q engine.ListQuery) ([]engine.Message, bool, error) {
	for try := 0; ; try++ {
		if err := m.scan(ctx); err != nil {
			return nil, false, err
		}
		msgs := make([]engine.Message, 0, m.idx.len())
		var es []*entry
		var at []int // msgs[at[i]] is es[i]'s; nil when all are (i == at[i])
		if q.NeedDetails == nil {
			es = make([]*entry, 0, m.idx.len())
		}
		for uid, e := range m.idx.all {
			switch {
			case q.NeedDetails == nil:
				es = append(es, e)
			case q.NeedDetails(uid):
				es = append(es, e)
				at = append(at, len(msgs))
			}
			msgs = append(msgs, engine.Message{UID: uid, Flags: e.flags, Size: e.size})
		}
		gone, err := m.statAll(ctx, es, msgs, at)
		if err != nil {
			return nil, false, err
		}
		if gone {
			if try < 3 {
				continue // renamed by a mail client since the scan
			}
			return nil, false, m.errf("files kept being renamed while listed; try again later")
		}
		m.listedDeleted = nil
		for _, msg := range msgs {
			if msg.Flags.Has(engine.FlagDeleted) {
				if m.listedDeleted == nil {
					m.listedDeleted = map[engine.UID]bool{}
				}
				m.listedDeleted[msg.UID] = true
			}
		}
		return msgs, true, nil
	}
}

// statParallelMin is the listing size from which statAll uses several
// goroutines; statWorkers how many. Stat of a cached inode is kernel CPU time,
// of an uncached one a disk read: either way a few at once finish sooner.
const (
	statParallelMin = 2000
	statWorkers     = 4
)

// statAll fills in Size and Date of msgs[at[i]] (msgs[i] when at is nil)
// from the file of es[i], with fstatat relative to new/ and cur/ (no path
// lookup from the root per file).
// gone reports a file that is no longer there. Symbolic links are followed,
// as Fetch follows them (the scan left out those that lead nowhere).
func (m *Mailbox) statAll(ctx context.Context, es []*entry, msgs []engine.Message, at []int) (gone bool, err error) {
	var fds [2]int // new, cur; -1 when the directory is missing
	for i, sub := range []string{"new", "cur"} {
		fds[i] = -1
		fd, err := openRaw(filepath.Join(m.dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, m.wrap("stat", err)
		}
		defer unix.Close(fd)
		fds[i] = fd
	}
	var goneFlag atomic.Bool
	statRange := func(lo, hi int) error {
		var st unix.Stat_t
		var nameBuf []byte
		for i := lo; i < hi; i++ {
			if i&1023 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if goneFlag.Load() {
				return nil
			}
			fd := fds[1]
			if es[i].sub() == "new" {
				fd = fds[0]
			}
			if fd < 0 {
				goneFlag.Store(true)
				return nil
			}
			var err error
			for {
				err = fstatName(fd, es[i].name, &nameBuf, &st)
				if err != unix.EINTR {
					break
				}
			}
			if err == unix.ENOENT || err == unix.ELOOP {
				// Renamed or removed since the scan, or a link whose target
				// went away (or now loops) meanwhile: the rescan leaves
				// such a link out (badLink).
				goneFlag.Store(true)
				return nil
			}
			if err != nil {
				return m.wrap("stat "+es[i].sub()+"/"+es[i].name, err)
			}
			k := i
			if at != nil {
				k = at[i]
			}
			msgs[k].Size = st.Size
			msgs[k].Date = time.Unix(int64(st.Mtim.Sec), int64(st.Mtim.Nsec)) // int32 fields on 32-bit systems
		}
		return nil
	}
	n := len(es)
	if n < statParallelMin {
		err = statRange(0, n)
	} else {
		var wg sync.WaitGroup
		errs := make([]error, statWorkers)
		for w := range statWorkers {
			wg.Go(func() { errs[w] = statRange(n*w/statWorkers, n*(w+1)/statWorkers) })
		}
		wg.Wait()
		for _, e := range errs {
			if e != nil {
				err = e
				break
			}
		}
	}
	if err != nil {
		return false, err
	}
	return goneFlag.Load(), nil
}

// UIDs returns the UIDs below below of the messages that exist now.
func (m *Mailbox) UIDs(ctx context.Context, below engine.UID) ([]engine.UID, error) {
	if err := m.scan(ctx); err != nil {
		return nil, err
	}
	out := make([]engine.UID, 0, m.idx.len())
	for u := range m.idx.all {
		if u >= below {
			break // in ascending order
		}
		out = append(out, u)
	}
	return out, nil
}

// ---- operations on existing messages ----

// errGone is what an operation of each returns when a message file is not
// where the index says.
var errGone = errors.New("message file moved")

// each runs op for every uid present in the index. op returning errGone means the file moved: after one rescan those uids
// are tried again, and skipped if still gone.
func (m *Mailbox) each(ctx context.Context, uids []engine.UID, op func(uid engine.UID, e *entry) error) error {
	if err := m.ensureIndexed(ctx, uids); err != nil {
		return err
	}
	pending := uids
	// A file renamed by a mail client between the index and op is found
	// again by a scan; one renamed again after that scan too (a message
	// marked read, then answered) by another. A message that a fresh scan
	// still has but op never reached is an error, not a message gone: the
	// engine would record an act that did not happen (a flag that then
	// reads as removed here, a removal whose message stays).
	const rounds = 4
	for round := 0; round < rounds && len(pending) > 0; round++ {
		if round > 0 {
			if err := m.scan(ctx); err != nil {
				return err
			}
		}
		var missed []engine.UID
		for _, uid := range pending {
			if err := ctx.Err(); err != nil {
				return err
			}
			e := m.idx.get(uid)
			if e == nil {
				continue
			}
			err := op(uid, e)
			if err == errGone {
				missed = append(missed, uid)
				continue
			}
			if err != nil {
				return err
			}
		}
		pending = missed
	}
	if len(pending) > 0 {
		// One more look: those a fresh scan no longer has are gone (a mail
		// client deleted them meanwhile), not an error.
		if err := m.scan(ctx); err != nil {
			return err
		}
		pending = slices.DeleteFunc(pending, func(u engine.UID) bool { return m.idx.get(u) == nil })
	}
	if len(pending) > 0 {
		return m.errf("%d message files (UIDs %v) kept being renamed by another program while being worked on; they are done at the next run", len(pending), pending[:min(len(pending), 5)])
	}
	return nil
}

// Fetch passes each message file's bytes to fn (Maildir files are already in
// LF form).
func (m *Mailbox) Fetch(ctx context.Context, uids []engine.UID, fn func(uid engine.UID, r io.Reader) error) error {
	return m.each(ctx, uids, func(uid engine.UID, e *entry) error {
		f, err := sysfile.Open(m.path(e), os.O_RDONLY, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return errGone
		}
		if err != nil {
			return m.wrap("fetch", err)
		}
		defer f.Close()
		return fn(uid, f)
	})
}

// SetFlags renames files to carry the new flag letters, moving them into
// cur/ as mbsync does; unknown letters stay.
func (m *Mailbox) SetFlags(ctx context.Context, uids []engine.UID, add, remove engine.Flag) error {
	if m.readOnly {
		return m.wrap("set flags", engine.ErrReadOnly)
	}
	m.dropPrefetched()
	touched := map[string]bool{}
	err := m.each(ctx, uids, func(uid engine.UID, e *entry) error {
		fn := e.fn()
		fn = fn.withFlags((fn.Flags | add) &^ remove)
		ne := new(entryOf("cur", fn.String(), fn))
		if ne.name == e.name && e.sub() == "cur" {
			return nil
		}
		if err := renameNoReplace(m.path(e), m.path(ne)); err != nil {
			m.w.spoil()
			if errors.Is(err, fs.ErrNotExist) {
				return errGone
			}
			return m.wrap("set flags", err)
		}
		m.w.renamed(e.sub(), e.name, "cur", ne.name)
		touched[e.sub()], touched["cur"] = true, true
		m.idx.set(uid, ne)
		return nil
	})
	if serr := m.syncLater(touched); err == nil {
		err = serr
	}
	return err
}

// Expunge unlinks the message files. A file listed with \Deleted that has
// lost it since (a mail client's undelete, while the run went on) stays: the
// engine asked to remove it because of that flag, and its other side may go
// only once it is gone (engine.KeptError). Checked on the name at hand, and
// again on the name a rescan finds after a rename.
func (m *Mailbox) Expunge(ctx context.Context, uids []engine.UID) error {
	if m.readOnly {
		return m.wrap("expunge", engine.ErrReadOnly)
	}
	m.dropPrefetched()
	touched := map[string]bool{}
	var kept []engine.UID
	err := m.each(ctx, uids, func(uid engine.UID, e *entry) error {
		if m.listedDeleted[uid] && !e.flags.Has(engine.FlagDeleted) {
			kept = append(kept, uid)
			return nil
		}
		if err := os.Remove(m.path(e)); err != nil {
			m.w.spoil()
			if errors.Is(err, fs.ErrNotExist) {
				return errGone
			}
			return m.wrap("expunge", err)
		}
		m.w.own(e.sub(), false, e.name)
		touched[e.sub()] = true
		m.idx.del(uid)
		return nil
	})
	if serr := m.syncLater(touched); err == nil {
		err = serr
	}
	if m.scanned {
		m.status.Messages = int64(m.idx.len())
	}
	if err == nil && len(kept) > 0 {
		err = &engine.KeptError{UIDs: kept}
	}
	return err
}
