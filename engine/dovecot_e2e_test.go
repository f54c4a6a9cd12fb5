package engine_test

// Engine integration tests on a real, private Dovecot (one server for the
// whole test binary, started by TestMain; with -short these tests skip).
// Pairings: IMAP↔Maildir (far = Dovecot user alice, near = a Maildir tree),
// IMAP↔IMAP (alice ↔ bob) and Maildir↔Maildir. Tests here run one after the
// other: they share the two Dovecot accounts and reset them per scenario.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/dovecottest"
	"github.com/quixysync/quixysync/store/imap"
	"github.com/quixysync/quixysync/store/maildir"
)

// srv is the package's Dovecot (nil with -short or in a helper child).
var srv *dovecottest.Server

// dovecotEnv, set in a helper child process, tells it how to reach the
// parent's Dovecot: "host port cafile alice-password bob-password".
const dovecotEnv = "QUIXYSYNC_TEST_DOVECOT"

func TestMain(m *testing.M) {
	// Helper children re-executed by the kill tests must not start servers
	// of their own: they use the parent's (or none).
	if os.Getenv("QUIXYSYNC_TEST_KILL_DIR") != "" {
		os.Exit(m.Run())
	}
	dovecottest.Main(m, dovecottest.Options{}, func(s *dovecottest.Server) { srv = s })
}

func needDovecot(t testing.TB) {
	t.Helper()
	if srv == nil {
		t.Skip("needs Dovecot (skipped with -short)")
	}
}

// conninfo is how to reach a Dovecot account.
type conninfo struct {
	host   string
	port   int
	tls    string // "" is starttls
	caFile string
	pass   map[string]string
	// timeout is the IMAP store's (20 s when zero).
	timeout time.Duration
	// cyrus is, for the Cyrus pairings, the far account on Cyrus (its
	// one user in pass); Dovecot's own fields then serve the near side.
	cyrus *cyrusAccount
}

// cyrusAccount is one user's account on a private Cyrus
// (internal/cyrustest), with no TLS.
type cyrusAccount struct {
	conninfo
	user string
}

func serverInfo() conninfo {
	return conninfo{host: srv.Host, port: srv.Port, caFile: srv.CAFile,
		pass: map[string]string{"alice": srv.Password("alice"), "bob": srv.Password("bob")}}
}

func (c conninfo) encode() string {
	return fmt.Sprintf("%s %d %s %s %s", c.host, c.port, c.caFile, c.pass["alice"], c.pass["bob"])
}

func decodeConninfo(s string) (conninfo, error) {
	f := strings.Fields(s)
	if len(f) != 5 {
		return conninfo{}, fmt.Errorf("bad %s %q", dovecotEnv, s)
	}
	port, err := strconv.Atoi(f[1])
	if err != nil {
		return conninfo{}, err
	}
	return conninfo{host: f[0], port: port, caFile: f[2], pass: map[string]string{"alice": f[3], "bob": f[4]}}, nil
}

func newIMAPStore(t testing.TB, ci conninfo, user, spool string) *imap.Store {
	t.Helper()
	pw := ci.pass[user]
	st, err := imap.New(imap.Config{
		Name: "imap." + user, Host: ci.host, Port: ci.port, TLS: cmp.Or(ci.tls, "starttls"), User: user,
		Password: func(context.Context) (string, error) { return pw, nil },
		CAFile:   ci.caFile, SpoolDir: spool, Timeout: cmp.Or(ci.timeout, 20*time.Second),
	}, nil)
	if err != nil {
		t.Fatalf("imap.New: %v", err)
	}
	return st
}

func newMaildirStore(t testing.TB, name, root string) *maildir.Store {
	t.Helper()
	st, err := maildir.New(name, root, "", maildir.LayoutVerbatim, maildir.Options{Fsync: false})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Pairing kinds.
const (
	imapMaildir    = "imap-maildir"
	imapIMAP       = "imap-imap"
	maildirMaildir = "maildir-maildir"
	// Cyrus IMAP as the far side, against a Maildir or Dovecot: a second
	// server's answers (TestRandomHistories).
	cyrusMaildir = "cyrus-maildir"
	cyrusIMAP    = "cyrus-imap"
)

var allPairings = []string{imapMaildir, imapIMAP, maildirMaildir}

// pairing is one channel's two stores, wrapped to count calls.
type pairing struct {
	kind  string
	dir   string
	spec  engine.ChannelSpec
	far   *wrapStore
	near  *wrapStore
	spool string
	raw   [2]engine.Store
	// durable: the Maildir stores fsync, as the command's do (setDurable).
	durable bool
	// bare: spec runs on the stores themselves, not on the counting
	// wrappers (setBare).
	bare bool
	// ci reaches the servers again (reopen); accounts says which account
	// each IMAP side uses, for sessions of a test's own beside the run's.
	ci       func() conninfo
	accounts [2]*imapAccount
}

// imapAccount is one IMAP side of a pairing.
type imapAccount struct {
	ci   conninfo
	user string
}

func (a *imapAccount) store(t testing.TB, spool string) *imap.Store {
	return newIMAPStore(t, a.ci, a.user, spool)
}

// resetAccounts empties the Dovecot accounts a pairing uses.
func resetAccounts(t testing.TB, kind string) {
	t.Helper()
	if kind == maildirMaildir || kind == cyrusMaildir {
		return
	}
	users := []string{"alice"}
	if kind == imapIMAP {
		users = append(users, "bob")
	}
	for _, u := range users {
		if err := srv.ResetUser(u); err != nil {
			t.Fatal(err)
		}
	}
}

// newPairing builds a fresh channel of the given kind in dir, resetting the
// Dovecot accounts it uses.
func newPairing(t testing.TB, kind string) *pairing {
	t.Helper()
	if kind != maildirMaildir {
		needDovecot(t)
		resetAccounts(t, kind)
	}
	p := openPairing(t, kind, t.TempDir(), serverInfo)
	return p
}

// newCyrusPairing builds a fresh channel of a Cyrus kind whose far side is
// cy, an account nothing else uses.
func newCyrusPairing(t testing.TB, kind string, cy *cyrusAccount) *pairing {
	t.Helper()
	ci := func() conninfo { return conninfo{cyrus: cy} }
	if kind == cyrusIMAP {
		needDovecot(t)
		resetAccounts(t, kind)
		ci = func() conninfo { c := serverInfo(); c.cyrus = cy; return c }
	}
	return openPairing(t, kind, t.TempDir(), ci)
}

// openPairing opens the stores of a pairing living in dir (again, as a later
// run would). ci is only called for kinds that need Dovecot.
func openPairing(t testing.TB, kind, dir string, ci func() conninfo) *pairing {
	t.Helper()
	p := &pairing{kind: kind, dir: dir, spool: filepath.Join(dir, "spool"), ci: ci}
	if err := os.MkdirAll(p.spool, 0o755); err != nil {
		t.Fatal(err)
	}
	switch kind {
	case imapMaildir, imapIMAP:
		c := ci()
		p.accounts[0] = &imapAccount{c, "alice"}
		if kind == imapIMAP {
			p.accounts[1] = &imapAccount{c, "bob"}
		}
	case cyrusMaildir, cyrusIMAP:
		c := ci()
		p.accounts[0] = &imapAccount{c.cyrus.conninfo, c.cyrus.user}
		if kind == cyrusIMAP {
			p.accounts[1] = &imapAccount{c, "alice"}
		}
	case maildirMaildir:
	default:
		t.Fatalf("unknown pairing %q", kind)
	}
	for s, name := range [2]string{"far", "near"} {
		if a := p.accounts[s]; a != nil {
			p.raw[s] = a.store(t, p.spool)
		} else {
			p.raw[s] = newMaildirStore(t, name, filepath.Join(dir, name))
		}
	}
	p.far, p.near = wrap(p.raw[0]), wrap(p.raw[1])
	p.spec = engine.TestSpecFor(dir, p.far.store(), p.near.store())
	t.Cleanup(p.close)
	return p
}

func (p *pairing) close() {
	for _, s := range p.raw {
		s.Close()
	}
}

// reopen closes the stores and opens new ones on the same accounts and
// directories, keeping the channel's options.
func (p *pairing) reopen(t testing.TB) {
	t.Helper()
	p.close()
	q := openPairing(t, p.kind, p.dir, p.ci)
	q.spec.Pull, q.spec.Push, q.spec.Expunge = p.spec.Pull, p.spec.Push, p.spec.Expunge
	durable, bare := p.durable, p.bare
	*p = *q
	if durable {
		p.setDurable(t)
	}
	if bare {
		p.setBare()
	}
}

// setBare makes spec run on the stores themselves, as the command does: the
// counting wrappers hide most optional interfaces (idents, barriers, batched
// flag changes, copy hints, …), so through them the engine takes its
// fallback paths. reopen keeps it so.
func (p *pairing) setBare() {
	p.bare = true
	spec := engine.TestSpecFor(p.dir, p.raw[0], p.raw[1])
	spec.Pull, spec.Push, spec.Expunge = p.spec.Pull, p.spec.Push, p.spec.Expunge
	p.spec = spec
}

// setDurable replaces the pairing's Maildir stores by ones that make what
// they write durable (fsync, syncfs), as the command's stores do; reopen
// keeps it so.
func (p *pairing) setDurable(t testing.TB) {
	t.Helper()
	p.durable = true
	for s, name := range [2]string{"far", "near"} {
		if _, ok := p.raw[s].(*maildir.Store); !ok {
			continue
		}
		p.raw[s].Close()
		st, err := maildir.New(name, filepath.Join(p.dir, name), "", maildir.LayoutVerbatim, maildir.Options{Fsync: true})
		if err != nil {
			t.Fatal(err)
		}
		p.raw[s] = st
	}
	p.far, p.near = wrap(p.raw[0]), wrap(p.raw[1])
	spec := engine.TestSpecFor(p.dir, p.far.store(), p.near.store())
	spec.Pull, spec.Push, spec.Expunge = p.spec.Pull, p.spec.Push, p.spec.Expunge
	p.spec = spec
	if p.bare {
		p.setBare()
	}
}

// check fails unless both sides of box look alike (and like want, if given).
func (p *pairing) check(t testing.TB, box, want string) {
	t.Helper()
	f, n := engine.ViewBox(t, p.spec.Far, box), engine.ViewBox(t, p.spec.Near, box)
	if f != n || (want != "" && f != want) {
		t.Fatalf("%s %s:\nfar:  %s\nnear: %s\nwant: %s", p.kind, box, f, n, want)
	}
}

// noTmpLeft fails if a Maildir tmp/ or the IMAP spool holds a file.
func (p *pairing) noTmpLeft(t testing.TB) {
	t.Helper()
	var left []string
	filepath.WalkDir(p.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if filepath.Base(filepath.Dir(path)) == "tmp" || filepath.Dir(path) == p.spool {
			left = append(left, path)
		}
		return nil
	})
	if len(left) > 0 {
		t.Fatalf("files left behind: %v", left)
	}
}

// ---- a Store wrapper that counts calls and can change behaviour ----

type callCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *callCounts) inc(op string) {
	c.mu.Lock()
	c.n[op]++
	c.mu.Unlock()
}

func (c *callCounts) get(ops ...string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for _, op := range ops {
		t += c.n[op]
	}
	return t
}

// wrapStore forwards to a real store, counting calls. Its knobs simulate
// servers the tests cannot get from Dovecot.
type wrapStore struct {
	engine.Store
	calls *callCounts
	// noUIDPlus: Commit reports UID 0, as a server without UIDPLUS does.
	noUIDPlus atomic.Bool
	// rewrite, when set, changes each message on its way into Stage, as a
	// server that rewrites messages on APPEND does.
	rewrite func([]byte) []byte
	// afterCommit is called after each Commit with the number of messages.
	afterCommit func(n int)
	// beforeCommit is called before each Commit of the store below with
	// the number of messages.
	beforeCommit func(n int)
	// splitCommit > 0 commits messages one at a time (calling afterCommit
	// after each), so a test can stop in the middle of a batch.
	splitCommit int
	// failStage makes Stage fail for bodies containing it.
	failStage atomic.Value // string
	// fullAfter > 0 makes Stage fail as on a full disk (ENOSPC) from that
	// many staged messages on.
	fullAfter atomic.Int64
	// beforeStage is called before each Stage with a running count.
	beforeStage func(n int)
	staged      atomic.Int64
	// keepOpen forwards engine.Flusher, so that the engine keeps a wrapped
	// Maildir mailbox open to the end of the run, as it does a real one.
	keepOpen bool
}

// wrapLocal is a wrapStore over a LocalStore (the engine keeps state inside
// local near stores, so the wrapper must not hide it).
type wrapLocal struct{ *wrapStore }

func (w wrapLocal) MailboxDir(name string) (string, error) {
	return w.Store.(engine.LocalStore).MailboxDir(name)
}

// RenameMailbox forwards engine.MailboxRenamer (both stores have it).
func (w *wrapStore) RenameMailbox(ctx context.Context, from, to string) error {
	w.calls.inc("RenameMailbox")
	rn, ok := w.Store.(engine.MailboxRenamer)
	if !ok {
		return engine.ErrNotSupport
	}
	return rn.RenameMailbox(ctx, from, to)
}

func wrap(s engine.Store) *wrapStore {
	return &wrapStore{Store: s, calls: &callCounts{n: map[string]int{}}}
}

// store returns the wrapper as an engine.Store, LocalStore when the inner one is.
func (w *wrapStore) store() engine.Store {
	if _, ok := w.Store.(engine.LocalStore); ok {
		return wrapLocal{w}
	}
	return w
}

func (w *wrapStore) ListMailboxes(ctx context.Context) ([]engine.MailboxInfo, error) {
	w.calls.inc("ListMailboxes")
	return w.Store.ListMailboxes(ctx)
}

// StatusAll forwards to the real store's pipelined STATUS when it has one (the
// IMAP store: its ListMailboxes reports no status by default).
func (w *wrapStore) StatusAll(ctx context.Context, names []string) (map[string]engine.Status, error) {
	sl, ok := w.Store.(engine.StatusLister)
	if !ok {
		return nil, engine.ErrNotSupport
	}
	w.calls.inc("StatusAll")
	return sl.StatusAll(ctx, names)
}

func (w *wrapStore) OpenMailbox(ctx context.Context, name string, readOnly bool) (engine.Mailbox, error) {
	w.calls.inc("OpenMailbox")
	return w.wrap(w.Store.OpenMailbox(ctx, name, readOnly))
}

// OpenMailboxListing forwards to the real store's when it has one (the IMAP
// store), so that the engine's tests over Dovecot go through it.
func (w *wrapStore) OpenMailboxListing(ctx context.Context, name string, readOnly bool, ahead engine.ListAhead) (engine.Mailbox, error) {
	lao, ok := w.Store.(engine.ListAheadOpener)
	if !ok {
		return w.OpenMailbox(ctx, name, readOnly)
	}
	w.calls.inc("OpenMailbox")
	w.calls.inc("OpenMailboxListing")
	return w.wrap(lao.OpenMailboxListing(ctx, name, readOnly, ahead))
}

func (w *wrapStore) wrap(mb engine.Mailbox, err error) (engine.Mailbox, error) {
	if err != nil {
		return nil, err
	}
	wm := &wrapMailbox{Mailbox: mb, w: w}
	if _, ok := mb.(engine.UIDKeeper); ok {
		if _, ok := mb.(engine.Flusher); ok && w.keepOpen {
			return wrapFlusher{wrapKeeper{wm}}, nil
		}
		return wrapKeeper{wm}, nil
	}
	if _, ok := mb.(engine.Identifier); ok {
		return wrapIdentifier{wm}, nil
	}
	return wm, nil
}

// wrapIdentifier forwards Identify (the IMAP store's), counting it.
type wrapIdentifier struct{ *wrapMailbox }

func (m wrapIdentifier) Identify(ctx context.Context, uids []engine.UID, fn func(engine.UID, io.Reader, int64) error) error {
	m.w.calls.inc("Identify")
	return m.Mailbox.(engine.Identifier).Identify(ctx, uids, fn)
}

type wrapMailbox struct {
	engine.Mailbox
	w *wrapStore
}

type wrapKeeper struct{ *wrapMailbox }

type wrapFlusher struct{ wrapKeeper }

func (f wrapFlusher) DeferSync()   { f.Mailbox.(engine.Flusher).DeferSync() }
func (f wrapFlusher) Flush() error { return f.Mailbox.(engine.Flusher).Flush() }

// A kept-open Maildir mailbox also reads ahead as the real one does
// (engine.Prefetcher, NamePrefetcher, TouchHinter), counting the names read.
func (f wrapFlusher) Prefetch(ctx context.Context) { f.Mailbox.(engine.Prefetcher).Prefetch(ctx) }
func (f wrapFlusher) PrefetchNames(ctx context.Context) bool {
	ok := f.Mailbox.(engine.NamePrefetcher).PrefetchNames(ctx)
	if ok {
		f.w.calls.inc("PrefetchNames")
	}
	return ok
}
func (f wrapFlusher) WillTouch(uids []engine.UID) { f.Mailbox.(engine.TouchHinter).WillTouch(uids) }

func (k wrapKeeper) SetKnownUIDs(known func(engine.UID) bool) {
	k.Mailbox.(engine.UIDKeeper).SetKnownUIDs(known)
}

func (k wrapKeeper) SetLastSync(t time.Time) { k.Mailbox.(engine.UIDKeeper).SetLastSync(t) }

func (m *wrapMailbox) List(ctx context.Context, q engine.ListQuery) ([]engine.Message, bool, error) {
	if q.All {
		m.w.calls.inc("ListAll")
	}
	m.w.calls.inc("List")
	return m.Mailbox.List(ctx, q)
}

// PrefetchUIDs forwards to a mailbox that prefetches (and counts it); for
// one that does not, it does nothing, as the engine would.
func (m *wrapMailbox) PrefetchUIDs(below engine.UID) {
	if pf, ok := m.Mailbox.(engine.UIDPrefetcher); ok {
		m.w.calls.inc("PrefetchUIDs")
		pf.PrefetchUIDs(below)
	}
}

// KeptFlags forwards the real mailbox's engine.FlagKeeper (every flag for
// one that does not implement it, as the engine takes it).
func (m *wrapMailbox) KeptFlags() engine.Flag {
	if fk, ok := m.Mailbox.(engine.FlagKeeper); ok {
		return fk.KeptFlags()
	}
	return engine.AllFlags
}

// StatusAfter forwards the real mailbox's engine.Restamper (no vouching for
// one that does not implement it, as the engine takes it).
func (m *wrapMailbox) StatusAfter() (engine.Status, bool) {
	if r, ok := m.Mailbox.(engine.Restamper); ok {
		m.w.calls.inc("StatusAfter")
		return r.StatusAfter()
	}
	return engine.Status{}, false
}

// Describe forwards the real mailbox's engine.Describer (nothing described
// for one that does not implement it: the engine then plans without).
func (m *wrapMailbox) Describe(ctx context.Context, uids []engine.UID) ([]engine.Message, error) {
	if d, ok := m.Mailbox.(engine.Describer); ok {
		m.w.calls.inc("Describe")
		return d.Describe(ctx, uids)
	}
	return nil, nil
}

func (m *wrapMailbox) UIDs(ctx context.Context, below engine.UID) ([]engine.UID, error) {
	m.w.calls.inc("UIDs")
	return m.Mailbox.UIDs(ctx, below)
}

func (m *wrapMailbox) Fetch(ctx context.Context, uids []engine.UID, fn func(engine.UID, io.Reader) error) error {
	m.w.calls.inc("Fetch")
	return m.Mailbox.Fetch(ctx, uids, fn)
}

func (m *wrapMailbox) Stage(ctx context.Context, nm engine.NewMessage) (engine.Staged, error) {
	m.w.calls.inc("Stage")
	n := int(m.w.staged.Add(1))
	if m.w.beforeStage != nil {
		m.w.beforeStage(n)
	}
	if fa := m.w.fullAfter.Load(); fa > 0 && int64(n) >= fa {
		io.Copy(io.Discard, nm.Body)
		return nil, &fs.PathError{Op: "write", Path: "tmp/full", Err: syscall.ENOSPC}
	}
	if fs, _ := m.w.failStage.Load().(string); fs != "" {
		b, err := io.ReadAll(nm.Body)
		if err != nil {
			return nil, err
		}
		if bytes.Contains(b, []byte(fs)) {
			return nil, fmt.Errorf("test: refusing to stage a message holding %q", fs)
		}
		nm.Body = bytes.NewReader(b)
	}
	if m.w.rewrite != nil {
		b, err := io.ReadAll(nm.Body)
		if err != nil {
			return nil, err
		}
		nb := m.w.rewrite(b)
		nm.Body = bytes.NewReader(nb)
		st, err := m.Mailbox.Stage(ctx, nm)
		if err != nil {
			return nil, err
		}
		// The engine compares the staged size with what it sent: report
		// the original size, as a server rewriting on its side would leave
		// the client's count untouched.
		return rewritten{st, int64(len(b))}, nil
	}
	return m.Mailbox.Stage(ctx, nm)
}

type rewritten struct {
	engine.Staged
	size int64
}

func (r rewritten) Size() int64 { return r.size }

func unwrapStaged(ss []engine.Staged) []engine.Staged {
	out := make([]engine.Staged, len(ss))
	for i, s := range ss {
		if r, ok := s.(rewritten); ok {
			s = r.Staged
		}
		out[i] = s
	}
	return out
}

func (m *wrapMailbox) Commit(ctx context.Context, ss []engine.Staged) ([]engine.CommitResult, error) {
	m.w.calls.inc("Commit")
	if m.w.splitCommit > 0 && len(ss) > 1 {
		var res []engine.CommitResult
		for i := range ss {
			r, err := m.Commit(ctx, ss[i:i+1])
			res = append(res, r...)
			if err != nil {
				for range ss[i+1:] {
					res = append(res, engine.CommitResult{Err: err})
				}
				m.Discard(ss[i+1:])
				return res, err
			}
		}
		return res, nil
	}
	if m.w.beforeCommit != nil {
		m.w.beforeCommit(len(ss))
	}
	res, err := m.Mailbox.Commit(ctx, unwrapStaged(ss))
	if m.w.noUIDPlus.Load() {
		for i := range res {
			res[i].UID = 0
		}
	}
	if m.w.afterCommit != nil {
		m.w.afterCommit(len(ss))
	}
	return res, err
}

func (m *wrapMailbox) Discard(ss []engine.Staged) { m.Mailbox.Discard(unwrapStaged(ss)) }

func (m *wrapMailbox) SetFlags(ctx context.Context, uids []engine.UID, add, remove engine.Flag) error {
	m.w.calls.inc("SetFlags")
	return m.Mailbox.SetFlags(ctx, uids, add, remove)
}

func (m *wrapMailbox) Expunge(ctx context.Context, uids []engine.UID) error {
	m.w.calls.inc("Expunge")
	return m.Mailbox.Expunge(ctx, uids)
}

// SetFlagsBatch and SetFlagsAndExpunge forward to the real mailbox's where
// it has them (IMAP), so that the engine's tests over Dovecot, the crash
// tests among them, go through them; each counts as the calls it stands for.
func (m *wrapMailbox) SetFlagsBatch(ctx context.Context, changes []engine.FlagChange) []error {
	fb, ok := m.Mailbox.(engine.FlagBatcher)
	if !ok {
		out := make([]error, len(changes))
		for i, c := range changes {
			out[i] = m.SetFlags(ctx, c.UIDs, c.Add, c.Remove)
		}
		return out
	}
	for range changes {
		m.w.calls.inc("SetFlags")
	}
	return fb.SetFlagsBatch(ctx, changes)
}

func (m *wrapMailbox) SetFlagsAndExpunge(ctx context.Context, changes []engine.FlagChange, expunge []engine.UID) ([]error, error) {
	cb, ok := m.Mailbox.(engine.ChangeBatcher)
	if !ok {
		return m.SetFlagsBatch(ctx, changes), m.Expunge(ctx, expunge)
	}
	for range changes {
		m.w.calls.inc("SetFlags")
	}
	m.w.calls.inc("Expunge")
	m.w.calls.inc("SetFlagsAndExpunge")
	return cb.SetFlagsAndExpunge(ctx, changes, expunge)
}

// ---- helpers acting through the Store interface ----

// addMany adds messages with the given subjects in one mailbox open and one
// commit (much faster than one AddMsg each on IMAP).
func addMany(t testing.TB, s engine.Store, box string, flags engine.Flag, subjects ...string) {
	t.Helper()
	addManyAt(t, s, box, flags, time.Time{}, subjects...)
}

// addManyAt is addMany with an arrival date (zero: the store's choice).
func addManyAt(t testing.TB, s engine.Store, box string, flags engine.Flag, date time.Time, subjects ...string) {
	t.Helper()
	bodies := make([]string, len(subjects))
	for i, subj := range subjects {
		bodies[i] = testBody(subj)
	}
	addBodies(t, s, box, flags, date, bodies...)
}

// addBodies adds messages given whole to box of s (made if missing), with
// flags and an arrival date (zero: the store's choice).
func addBodies(t testing.TB, s engine.Store, box string, flags engine.Flag, date time.Time, bodies ...string) {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, box); err != nil {
		t.Fatal(err)
	}
	mb, err := s.OpenMailbox(ctx, box, false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	var ss []engine.Staged
	for _, b := range bodies {
		st, err := mb.Stage(ctx, engine.NewMessage{Flags: flags, Date: date, Body: strings.NewReader(b)})
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, st)
	}
	res, err := mb.Commit(ctx, ss)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}

// testBody is the body engine's own helpers use (Subject names the message).
func testBody(subject string) string {
	return fmt.Sprintf("From: a@example.org\nMessage-ID: <%s@test>\nSubject: %s\n\nbody of %s\n%s\n",
		subject, subject, subject, strings.Repeat("x", len(subject)*7))
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

// mailboxSnapshot is what a dry run must leave alone: each mailbox's status
// and (UID, flags) list.
func mailboxSnapshot(t testing.TB, s engine.Store) string {
	t.Helper()
	ctx := context.Background()
	list, err := s.ListMailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	for _, mi := range list {
		mb, err := s.OpenMailbox(ctx, mi.Name, true)
		if err != nil {
			t.Fatal(err)
		}
		st := mb.Status()
		msgs, _, err := mb.List(ctx, engine.ListQuery{All: true})
		mb.Close()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s validity=%d next=%d n=%d modseq=%d:", mi.Name, st.UIDValidity, st.UIDNext, st.Messages, st.HighestModSeq)
		for _, m := range msgs {
			fmt.Fprintf(&b, " %d:%s", m.UID, m.Flags)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// treeSnapshot lists every file under dir with its size.
func treeSnapshot(t testing.TB, dir string) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			lines = append(lines, rel+"/")
			return nil
		}
		fi, _ := d.Info()
		lines = append(lines, fmt.Sprintf("%s %d %d", rel, fi.Size(), fi.ModTime().UnixNano()))
		return nil
	})
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func mailboxErr(res engine.ChannelResult) error {
	if res.Err != nil {
		return res.Err
	}
	var errs []error
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			errs = append(errs, m.Err)
		}
	}
	return errors.Join(errs...)
}

func zeroCounts(c engine.Counts) bool {
	return c.Copied == [2]int{} && c.Flagged == [2]int{} && c.Deleted == [2]int{} && c.Failed == [2]int{}
}
