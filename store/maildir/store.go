// Package maildir is the Maildir side of quixysync: a folder tree of
// mbsync-compatible Maildirs (",U=<uid>" in file names, a .uidvalidity file
// per folder), written durably (tmp/, fsync, rename, directory fsync).
package maildir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// Options tune a Store.
type Options struct {
	// Fsync makes every write durable before it is reported (callers set it;
	// tests may leave it off for speed).
	Fsync bool
	// Log receives notices (skipped directories, rescans); nil discards them.
	Log *slog.Logger
	// WatchAll watches every folder opened for writing, however small
	// (tests of what the watch does; see watchMin).
	WatchAll bool
}

// Store is a Maildir folder tree. It implements engine.Store and
// engine.LocalStore; its mailboxes implement engine.Mailbox and
// engine.UIDKeeper.
type Store struct {
	name   string
	root   string
	inbox  string
	layout Layout
	opt    Options
	log    *slog.Logger
	host   string // escaped host name for unique file names
	pid    int    // for unique file names: os.Getpid is a system call each time
	// notify is the inotify instance the watches of open folders share.
	notify *notifier
	// watchMin: the size of cur/ from which a folder is watched (see
	// watchMin the constant; 0 watches every folder).
	watchMin int64
	seq      atomic.Uint64
	// rnd sets this store's file names apart from those of every other
	// store, also in this process in the same second (two channels, or a
	// store opened again): pid and seq alone repeat there, and a mail
	// client moving a file into another folder under its name (mu4e, mv)
	// would replace a message there that had the same name.
	rnd uint32
	// syncfsErrs: this kernel's syncfs reports write-back errors, so Commit
	// may use it (see durable.go).
	syncfsErrs bool
	// dirBufs holds getdents buffers (readBufSize) between listings: a run
	// lists many folders, and each fresh 256 KiB buffer costs the runtime
	// the zeroing of it.
	dirBufs sync.Pool
	// stageBufs holds Stage's 32 KiB write buffers: one per message being
	// written at once, not one per folder a run copies into.
	stageBufs sync.Pool
	// trusted caches sameTrustedFS by folder and directory: the engine asks
	// at every journal and state flush, and the answer (three stat calls)
	// does not change during a run.
	trustedMu sync.Mutex
	trusted   map[[2]string]bool
	// warned holds the paths of files a listing left out with a warning
	// (see skipLink): each is warned of once per run, not at every scan.
	warnedMu sync.Mutex
	warned   map[string]bool
	// fresh caches freshStamps by file system (st_dev).
	freshMu sync.Mutex
	fresh   map[uint64]bool

	// mtimeRes, when set by a test, makes dirStamp see mtimes rounded down
	// to it, as on a file system with coarse timestamps; listHook, when set
	// by a test, is called with each name a scan's listing reads, and with
	// ("", nil) once a listing is found sound, before its last check.
	mtimeRes time.Duration
	listHook func(sub string, name []byte)
	// testHook, when set by a test, is called before each durability step.
	testHook func(op, path string) error
	// meminfo and dirtyMax decide when a syncfs would wait for other
	// programs' writes (see othersDirty); fields so that tests can fake them.
	meminfo  string
	dirtyMax int64
	// unflushed counts the bytes Stage wrote that no flush has made durable
	// yet: the store's own part of the page cache waiting to be written.
	unflushed atomic.Int64
	// stagedFiles counts the messages Stage wrote (see syncfsCheckFiles).
	stagedFiles atomic.Int64
	// syncfsFailures counts the syncfs calls that failed; syncfsMu lets a
	// caller wait for those in flight (see syncfs).
	syncfsMu       sync.RWMutex
	syncfsFailures atomic.Uint64
}

var (
	_ engine.Store      = (*Store)(nil)
	_ engine.LocalStore = (*Store)(nil)
)

// checkDirs reports a path or inbox that exists but is not a directory: a
// mistake in the configuration, which Go's "open ...: not a directory" from
// deep inside the walk would not point at.
func (s *Store) checkDirs() error {
	// inbox is the INBOX folder itself, not a directory of folders: the fix
	// differs (and is worded as check words it).
	for _, d := range []struct{ key, path, fix string }{
		{"path", s.root, "set path to the directory that holds (or will hold) the Maildir folders"},
		{"inbox", s.inbox, "move that file away, or set inbox to the INBOX's Maildir folder (default: path/INBOX; the path itself for maildir++)"},
	} {
		if fi, err := os.Stat(d.path); err == nil && !fi.IsDir() {
			return fmt.Errorf("%s: %s %s is not a directory: %s", s.name, d.key, d.path, d.fix)
		}
	}
	return nil
}

// New returns the store rooted at root. inbox is the INBOX directory (""
// means root/INBOX in the verbatim layout, root itself in Maildir++).
// Nothing is created until needed.
func New(name, root, inbox string, layout Layout, opt Options) (*Store, error) {
	if root == "" {
		return nil, fmt.Errorf("maildir %s: empty path", name)
	}
	if layout != LayoutVerbatim && layout != LayoutMaildirPP {
		return nil, fmt.Errorf("maildir %s: unknown layout %d", name, layout)
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("maildir %s: path %q: %w", name, root, err)
	}
	switch {
	case inbox == "" && layout == LayoutMaildirPP:
		inbox = absRoot
	case inbox == "":
		inbox = filepath.Join(absRoot, "INBOX")
	default:
		if inbox, err = filepath.Abs(inbox); err != nil {
			return nil, fmt.Errorf("maildir %s: inbox %q: %w", name, inbox, err)
		}
	}
	s := &Store{name: name, root: absRoot, inbox: inbox, layout: layout, opt: opt, log: opt.Log, syncfsErrs: syncfsReportsErrors(),
		notify:  newNotifier(),
		meminfo: "/proc/meminfo", dirtyMax: syncfsDirtyMax, watchMin: watchMin}
	if opt.WatchAll {
		s.watchMin = 0
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("store", name)
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	s.host = escapeHost(host)
	s.pid = os.Getpid()
	s.rnd = rand.Uint32()
	return s, nil
}

// escapeHost makes a host name safe inside a Maildir file name (as mbsync
// and the Maildir spec do for '/' and ':'; ',' would start a field).
func escapeHost(h string) string {
	r := strings.NewReplacer("/", `\057`, ":", `\072`, ",", `\054`)
	return r.Replace(h)
}

// Name is the store's config name.
func (s *Store) Name() string { return s.name }

// Close gives back the store's inotify instance (see notifier); a store
// holds no other resources between calls.
func (s *Store) Close() error {
	s.notify.close()
	return nil
}

// MailboxDir returns the directory of a mailbox (it may not exist yet).
func (s *Store) MailboxDir(name string) (string, error) { return s.mailboxPath(name) }

// within says whether p is dir or inside it.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// isMailbox says whether dir is a Maildir folder: cur/ is the presence
// indicator (new/ and tmp/ may be created lazily), as for mbsync and
// Dovecot. A folder whose cur/ is missing while new/ holds a message (cur/
// removed by mistake, a delivery script that made new/ alone) is one too:
// left out, its mail would never be synced, and a dry run would show the
// folder as one to create while the real run, creating it, found the mail.
// Opened for writing, such a folder gets its cur/ and tmp/ back.
func isMailbox(dir string) bool {
	return isDir(filepath.Join(dir, "cur")) || holdsDelivery(filepath.Join(dir, "new"))
}

// holdsDelivery says whether the directory holds a file named as Maildir
// deliveries are (the time first: "1700000000.M1P2.host"). The name test
// keeps a folder named "new" from making its parent a mailbox: its own
// files are dot-files and Dovecot's dovecot-uidlist and dovecot.index*.
func holdsDelivery(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if n := e.Name(); n[0] >= '0' && n[0] <= '9' && e.Type().IsRegular() {
			return true
		}
	}
	return false
}

// ListMailboxes walks the tree per layout and reports every folder with a
// cheap Status (stat of new/ and cur/ plus .uidvalidity).
func (s *Store) ListMailboxes(ctx context.Context) ([]engine.MailboxInfo, error) {
	if err := s.checkDirs(); err != nil {
		return nil, err
	}
	found := map[string]string{} // name -> dir
	add := func(name, dir string) {
		if prev, ok := found[name]; ok {
			if prev != dir {
				s.log.Warn("two directories map to one mailbox name; using the first", "mailbox", name, "dir", prev, "ignored", dir)
			}
			return
		}
		found[name] = dir
	}
	inboxSeen := false
	var err error
	if s.layout == LayoutVerbatim {
		links := newLinkGuard(s.root)
		if !within(s.root, s.inbox) {
			links = newLinkGuard(s.root, s.inbox)
		}
		err = s.walkVerbatim(ctx, s.root, "", add, &inboxSeen, 0, links)
		if err == nil && !inboxSeen {
			if isMailbox(s.inbox) {
				add("INBOX", s.inbox)
			}
			// An inbox outside the root has its own subfolders; one that
			// contains the root (or sits in a hidden part of it) does not.
			if !within(s.root, s.inbox) && !within(s.inbox, s.root) {
				err = s.walkVerbatim(ctx, s.inbox, "INBOX", add, &inboxSeen, 0, links)
			}
		}
	} else {
		if isMailbox(s.inbox) {
			add("INBOX", s.inbox)
		}
		err = s.walkMaildirPP(add)
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]engine.MailboxInfo, 0, len(names))
	for _, n := range names {
		info := engine.MailboxInfo{Name: n}
		if st, ok, err := s.cheapStatus(found[n]); err != nil {
			s.log.Warn("cannot read mailbox status", "mailbox", n, "err", err)
		} else if ok {
			info.Status = &st
		}
		out = append(out, info)
	}
	return out, nil
}

// maxDepth bounds the verbatim walk (a safety net against absurd trees).
const maxDepth = 64

func (s *Store) walkVerbatim(ctx context.Context, dir, prefix string, add func(name, dir string), inboxSeen *bool, depth int, links *linkGuard) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if depth > maxDepth {
		s.log.Warn("folder tree too deep, not descending", "dir", dir)
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) && depth > 0 {
			if depth > 0 {
				s.log.Warn("cannot read directory", "dir", dir, "err", err)
			}
			return nil
		}
		return fmt.Errorf("maildir %s: %w", dir, err)
	}
	parentIsBox := isMailbox(dir)
	for _, e := range entries {
		dname := e.Name()
		if strings.HasPrefix(dname, ".") {
			continue // .notmuch, .git, .uidvalidity, our state files
		}
		if parentIsBox && (dname == "cur" || dname == "new" || dname == "tmp") {
			continue
		}
		path := filepath.Join(dir, dname)
		isLink := e.Type()&fs.ModeSymlink != 0
		if !e.IsDir() && !(isLink && isDir(path)) {
			continue
		}
		comp := readComponent(dname)
		var name string
		switch {
		case path == s.inbox:
			name = "INBOX"
			*inboxSeen = true
		case !utf8Valid(comp):
			s.log.Warn("skipping a directory whose name is not UTF-8", "dir", path)
			continue
		case prefix == "" && strings.EqualFold(comp, "INBOX"):
			s.log.Warn("skipping a directory named like the inbox that is not the configured inbox", "dir", path, "inbox", s.inbox)
			continue
		case prefix == "":
			name = comp
		default:
			name = prefix + "/" + comp
		}
		if isMailbox(path) {
			// Only names that map back to this very directory are usable.
			if p, err := s.mailboxPath(name); err != nil || p != path {
				s.log.Warn("skipping a directory that does not map back to itself as a mailbox", "dir", path, "mailbox", name)
			} else {
				add(name, path)
			}
		}
		if !isLink || links.descend(path) {
			if err := s.walkVerbatim(ctx, path, name, add, inboxSeen, depth+1, links); err != nil {
				return err
			}
		}
	}
	return nil
}

// linkGuard decides which linked directories a walk of the folder tree goes
// into: a folder moved to another disk and linked back has subfolders that
// are the user's folders like any other (left out, new ones there were
// never synced, and the far side's were created there again at every run).
// A link into the tree itself (or above it) is not followed: its folders
// are listed under their own names, and an ancestor would loop. Each
// directory outside is walked once.
type linkGuard struct {
	// roots are the trees walked: the root, and an inbox outside it (its
	// subfolders are walked as INBOX/...); links resolved once the first
	// link is met.
	roots    []string
	resolved bool
	seen     map[string]bool
}

func newLinkGuard(roots ...string) *linkGuard { return &linkGuard{roots: roots} }

func (g *linkGuard) descend(path string) bool {
	if !g.resolved {
		// Here, not at the start: a tree without links (most) pays nothing.
		g.resolved, g.seen = true, map[string]bool{}
		for i, root := range g.roots {
			if r, err := filepath.EvalSymlinks(root); err == nil {
				g.roots[i] = r
			}
		}
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil || g.seen[real] {
		return false
	}
	for _, root := range g.roots {
		if within(root, real) || within(real, root) {
			return false
		}
	}
	g.seen[real] = true
	return true
}

func (s *Store) walkMaildirPP(add func(name, dir string)) error {
	entries, err := os.ReadDir(s.root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("maildir %s: %w", s.root, err)
	}
	for _, e := range entries {
		dname := e.Name()
		if len(dname) < 2 || dname[0] != '.' || dname == ".." {
			continue
		}
		path := filepath.Join(s.root, dname)
		if path == s.inbox || !isMailbox(path) {
			continue
		}
		parts := strings.Split(dname[1:], ".")
		comps := make([]string, 0, len(parts))
		for _, p := range parts {
			comps = append(comps, readComponent(p))
		}
		name := strings.Join(comps, "/")
		if p, err := s.mailboxPath(name); err != nil || p != path || name == "INBOX" {
			s.log.Warn("skipping a directory that does not map back to itself as a mailbox", "dir", path, "mailbox", name)
			continue
		}
		add(name, path)
	}
	return nil
}

// cheapStatus stats new/ and cur/ and reads .uidvalidity; ok is false when
// the folder has no .uidvalidity yet.
func (s *Store) cheapStatus(dir string) (engine.Status, bool, error) {
	now := time.Now()
	stamp, err := s.dirStamp(dir)
	if err != nil {
		return engine.Status{}, false, err
	}
	st, ok, err := readUIDState(dir)
	if err != nil || !ok {
		return engine.Status{}, false, err
	}
	return engine.Status{
		UIDValidity: st.Validity,
		UIDNext:     st.Last + 1,
		Messages:    -1,
		Stamp:       stamp.String(now),
	}, true, nil
}

// CreateMailbox creates the folder (and missing parents) with cur/ new/ tmp/
// and its .uidvalidity.
func (s *Store) CreateMailbox(ctx context.Context, name string) error {
	dir, err := s.mailboxPath(name)
	if err != nil {
		return err
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("maildir %s: create mailbox %q: %w", s.name, name, err)
		}
	}
	if s.opt.Fsync {
		if err := syncPath(filepath.Dir(dir)); err != nil {
			return fmt.Errorf("maildir %s: create mailbox %q: %w", s.name, name, err)
		}
	}
	if _, err := s.ensureUIDState(dir); err != nil {
		return fmt.Errorf("maildir %s: create mailbox %q: %w", s.name, name, err)
	}
	return nil
}

// tmpMaxAge is how old a tmp/ file must be to count as abandoned (Dovecot's
// and go-maildir's 36 hours).
const tmpMaxAge = 36 * time.Hour

// DeleteMailbox removes an empty folder: its cur/ new/ tmp/, .uidvalidity and
// our state files, then the directory itself if nothing else is left in it
// (subfolders stay).
func (s *Store) DeleteMailbox(ctx context.Context, name string) error {
	dir, err := s.mailboxPath(name)
	if err != nil {
		return err
	}
	if !isMailbox(dir) {
		return fmt.Errorf("maildir %s: delete mailbox %q: %w", s.name, name, engine.ErrNoMailbox)
	}
	notEmpty := fmt.Errorf("maildir %s: delete mailbox %q: %w", s.name, name, engine.ErrNotEmpty)
	for _, sub := range []string{"new", "cur"} {
		if n, err := countFiles(filepath.Join(dir, sub)); err != nil {
			return fmt.Errorf("maildir %s: delete mailbox %q: %w", s.name, name, err)
		} else if n > 0 {
			return notEmpty
		}
	}
	// tmp/ may hold a delivery in progress (refuse) or abandoned files.
	tmp := filepath.Join(dir, "tmp")
	if entries, err := os.ReadDir(tmp); err == nil {
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil {
				continue
			}
			if time.Since(fi.ModTime()) < tmpMaxAge {
				return notEmpty
			}
			_ = os.Remove(filepath.Join(tmp, e.Name()))
		}
	}
	// Remove new/ and tmp/ before cur/: rmdir fails on a directory that got a
	// file meanwhile, and while cur/ exists the folder is still a mailbox.
	for _, sub := range []string{"new", "tmp", "cur"} {
		if err := os.Remove(filepath.Join(dir, sub)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, fs.ErrExist) {
				return notEmpty
			}
			return fmt.Errorf("maildir %s: delete mailbox %q: %w", s.name, name, err)
		}
	}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			n := e.Name()
			if !e.IsDir() && (n == uidFile || strings.HasPrefix(n, statePrefix)) {
				_ = os.Remove(filepath.Join(dir, n))
			}
		}
	}
	if dir != s.root {
		_ = os.Remove(dir) // fails, as it should, when subfolders or other files remain
	}
	if s.opt.Fsync {
		_ = syncPath(filepath.Dir(dir))
	}
	return nil
}

// RenameMailbox moves the folder of mailbox from to where mailbox to's
// belongs, with everything in it: its messages, .uidvalidity and UID files
// (the UIDs stay the same) and the engine's state. In the verbatim layout
// its subfolders move along, as a server's RENAME takes the mailbox's
// children. Missing parents of the new place are made (plain directories);
// an existing one, of any kind, is never replaced.
func (s *Store) RenameMailbox(ctx context.Context, from, to string) error {
	fail := func(err error) error {
		return fmt.Errorf("maildir %s: rename mailbox %q to %q: %w", s.name, from, to, err)
	}
	src, err := s.mailboxPath(from)
	if err != nil {
		return err
	}
	dst, err := s.mailboxPath(to)
	if err != nil {
		return err
	}
	if from == "INBOX" || to == "INBOX" || src == s.root || within(src, s.inbox) || within(dst, s.inbox) || within(src, dst) || within(dst, src) {
		return fail(errors.New("a folder can be moved only apart from the other's and from the inbox's"))
	}
	if !isMailbox(src) {
		return fail(engine.ErrNoMailbox)
	}
	// The parents made are new directory entries too: each is durable with
	// the directory that holds it.
	var made []string
	for p := filepath.Dir(dst); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil && !fi.IsDir() {
			return fail(fmt.Errorf("%s is not a directory", p))
		}
		if err == nil {
			break
		}
		// Made under the root, or under the inbox for INBOX/... names (the
		// inbox may be configured outside the root).
		if !errors.Is(err, fs.ErrNotExist) || p == s.root || p == s.inbox || !within(s.root, p) && !within(s.inbox, p) {
			return fail(err)
		}
		made = append(made, p)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fail(err)
	}
	// An empty directory in the way (left by a folder deleted by hand) is
	// no folder: it goes. Anything else there is the user's.
	_ = syscall.Rmdir(dst)
	if err := renameNoReplace(src, dst); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return fail(fmt.Errorf("%s exists: %w", dst, engine.ErrTaken))
		}
		return fail(err)
	}
	if !s.opt.Fsync {
		return nil
	}
	dirs := []string{filepath.Dir(src), filepath.Dir(dst)}
	for _, p := range made {
		dirs = append(dirs, filepath.Dir(p))
	}
	slices.Sort(dirs)
	for _, d := range slices.Compact(dirs) {
		if err := s.syncPath(d); err != nil {
			return fail(err)
		}
	}
	return nil
}

// countFiles counts the message files (not dot-files) in a directory; a
// missing directory holds none.
func countFiles(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n, nil
}

// OpenMailbox opens a folder. It stats new/ and cur/ (the Stamp) and reads
// .uidvalidity (creating it unless readOnly); messages are scanned on first use.
func (s *Store) OpenMailbox(ctx context.Context, name string, readOnly bool) (engine.Mailbox, error) {
	dir, err := s.mailboxPath(name)
	if err != nil {
		return nil, err
	}
	if !isMailbox(dir) {
		return nil, fmt.Errorf("maildir %s: mailbox %q (%s): %w", s.name, name, dir, engine.ErrNoMailbox)
	}
	if !readOnly && !isDir(filepath.Join(dir, "cur")) {
		// new/ alone (see isMailbox): made whole before anything is written.
		for _, sub := range []string{"cur", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				return nil, fmt.Errorf("maildir %s: mailbox %q: completing the folder: %w", s.name, name, err)
			}
		}
		s.log.Info("completed a Maildir folder that had new/ but no cur/", "mailbox", name, "dir", dir)
	}
	var w *watch
	if !readOnly {
		// Before the stamp: every change after it must be seen.
		w = watchFolder(dir, s.notify, s.watchMin)
	}
	now := time.Now()
	stamp, err := s.dirStamp(dir)
	if err != nil {
		w.close()
		return nil, fmt.Errorf("maildir %s: mailbox %q: %w", s.name, name, err)
	}
	var st uidState
	if readOnly {
		var ok bool
		st, ok, err = readUIDState(dir)
		if err == nil && !ok {
			st = uidState{Validity: newValidity()} // in memory only
		}
	} else {
		st, err = s.ensureUIDState(dir)
	}
	if err != nil {
		w.close()
		return nil, fmt.Errorf("maildir %s: mailbox %q: %w", s.name, name, err)
	}
	m := &Mailbox{
		w:        w,
		s:        s,
		name:     name,
		dir:      dir,
		readOnly: readOnly,
		status: engine.Status{
			UIDValidity: st.Validity,
			UIDNext:     st.Last + 1,
			Messages:    -1,
			Stamp:       stamp.String(now),
		},
		ours:     map[engine.UID]bool{},
		failures: s.syncfsFailures.Load(),
	}
	return m, nil
}
