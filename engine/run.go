package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Mode says which directions a run propagates.
type Mode int

const (
	ModeSync Mode = iota // both directions, as the channel's pull/push lists say
	ModePull             // far -> near only
	ModePush             // near -> far only
)

// ChannelSpec is everything the engine needs to sync one channel. The cmd
// layer builds it from the configuration (package channel) and the stores.
type ChannelSpec struct {
	Name      string
	Far, Near Store
	// Match reports whether a mailbox name is selected by the channel's patterns.
	Match func(name string) bool
	// Mailboxes, when non-nil, restricts the run to these names (CHANNEL:BOX,...).
	Mailboxes []string
	// Pull/Push, Expunge, MaxSize as in Options (the Mode further restricts them).
	Pull, Push Ops
	Expunge    [2]bool
	MaxSize    int64
	// Create[side]: create a mailbox missing on that side. Remove[side]: remove an
	// empty mailbox on that side when it vanished from the other side.
	Create, Remove [2]bool
	// CopyArrivalDate: give copies the source's arrival date.
	CopyArrivalDate bool
	// StateDir is where state files go when the near store is not local
	// ($XDG_STATE_HOME/quixysync/<channel>).
	StateDir string
	// LockDir holds the channel lock (<LockDir>/<channel>-<where>.lock, see
	// ChannelLockPath); empty means
	// $XDG_STATE_HOME/quixysync/locks.
	LockDir string
	// MaxParallel bounds how many mailbox pairs sync at once (each uses one
	// mailbox per store); 0 means 4. Set it to the stores' connection limit.
	MaxParallel int
}

// RunOptions apply to a whole run.
type RunOptions struct {
	Mode   Mode
	DryRun bool
	Force  bool // let the safety guard pass
	// Log receives the run's logs; it names the channel (the engine's
	// records do not repeat it).
	Log *slog.Logger
	// Progress, when non-nil, receives progress events (may be nil).
	Progress func(ProgressEvent)
	// CrashAfter (tests only) makes the run stop dead after that many journal
	// lines, as if the process had been killed: no state write, no cleanup.
	// The environment variable QUIXYSYNC_TEST_CRASH_AFTER=N does the same with
	// a real os.Exit(100).
	CrashAfter int
	// journalLines counts journal lines written by the run (tests read it).
	journalLines *atomic.Int64
	// journalSyncs counts the journal's syncs (tests read it).
	journalSyncs *atomic.Int64
	// room is set by SyncChannel for its mailbox runs: the full file
	// systems one of them met (a side's, the engine's own files').
	room *sideRoom
	// fileErr (tests only), when it returns an error for the path of a
	// state file or a journal about to be written, fails that write with
	// it, as a full disk would.
	fileErr func(path string) error
	// fsyncs (tests only), when set, is told of each fsync of the engine's
	// own files (op "fsync" with the file, "fsyncdir" with a directory)
	// before it is made, and fails it with the error it returns.
	fsyncs func(op, path string) error
	// staleState: the mailbox's state file is of a mailbox deleted before
	// (see syncOne); a dry run leaves it in place and plans without it.
	staleState bool
}

// sideRoom records, for one channel's run, the file systems found out of
// room (full, or the disk quota reached): a side's, whose copies then stop
// in every mailbox of the channel, and that of the engine's own files (state
// files, journals). Each mailbox would otherwise meet the same refusal and
// report it (a full disk under ten mailboxes made ten errors, a cron job
// mailed them all): the first refusal is reported, the others are that fact
// again.
type sideRoom struct {
	side  [2]atomic.Bool
	files atomic.Bool
}

// markFull marks side s out of room and says whether no full disk had been
// reported before (the caller then reports it); without a sideRoom every
// caller reports.
func (r *sideRoom) markFull(s Side) (first bool) {
	if r == nil {
		return true
	}
	was := r.anyFull()
	return r.side[s].CompareAndSwap(false, true) && !was
}

// markFiles marks the engine's files out of room, and says whether no full
// disk had been reported before (the caller then reports it).
func (r *sideRoom) markFiles() (first bool) {
	if r == nil {
		return true
	}
	was := r.anyFull()
	return r.files.CompareAndSwap(false, true) && !was
}

func (r *sideRoom) full(s Side) bool { return r != nil && r.side[s].Load() }

// anyFull says a full disk has been reported in this channel's run.
func (r *sideRoom) anyFull() bool {
	return r != nil && (r.side[Far].Load() || r.side[Near].Load() || r.files.Load())
}

// roomReport is the error that reports a full disk: printed, where the same
// refusal met again (a state file, a journal, another copy) is not.
type roomReport struct{ err error }

func (e *roomReport) Error() string { return e.err.Error() }
func (e *roomReport) Unwrap() error { return e.err }

// ProgressEvent reports progress of long runs. Events come from the
// goroutines that sync mailboxes, so a receiver must be goroutine-safe.
type ProgressEvent struct {
	// Kind says what happened; zero means the non-zero fields tell.
	Kind             ProgressKind
	Channel, Mailbox string
	MailboxesDone    int
	MailboxesTotal   int
	// Messages, Bytes: copied since this mailbox's previous event (deltas).
	Messages, Bytes int64
	// PlannedMessages, PlannedBytes (ProgressPlanned): the copies the plan
	// holds, both directions together, and their total size.
	PlannedMessages, PlannedBytes int64
	// PlannedLocal (ProgressPlanned): how many of those copies go into a
	// store on this machine (a LocalStore: files written here).
	PlannedLocal int64
}

// ProgressKind is what a ProgressEvent reports.
type ProgressKind uint8

const (
	// ProgressUnspecified: MailboxesDone > 0 means Mailbox finished;
	// Messages/Bytes > 0 means a batch of copies was committed.
	ProgressUnspecified ProgressKind = iota
	// ProgressListed: the channel's mailboxes are selected (Mailbox is
	// empty); MailboxesTotal is how many there are, possibly 0.
	ProgressListed
	// ProgressPlanned: Mailbox's plan is made (sent also when it copies
	// nothing); PlannedMessages and PlannedBytes are set.
	ProgressPlanned
	// ProgressCopied: a batch of copies is committed; Messages and Bytes
	// are that batch's.
	ProgressCopied
	// ProgressMailboxDone: Mailbox is finished (synced, skipped or failed);
	// MailboxesDone counts the channel's finished mailboxes so far and
	// MailboxesTotal all of its selected ones.
	ProgressMailboxDone
)

// Counts are per-direction counters; index [Near] means "done on the near side"
// (i.e. pulled), [Far] "done on the far side" (pushed).
type Counts struct {
	Copied, Flagged, Deleted [2]int
	Created                  [2]int
	// Failed counts messages that could not be copied to that side (they stay
	// pending and are retried next run).
	Failed [2]int
	// Paired counts messages a first sync found on both sides already and
	// paired instead of copying (see pairExisting).
	Paired int
}

func (c *Counts) add(o Counts) {
	for s := 0; s < 2; s++ {
		c.Copied[s] += o.Copied[s]
		c.Flagged[s] += o.Flagged[s]
		c.Deleted[s] += o.Deleted[s]
		c.Created[s] += o.Created[s]
		c.Failed[s] += o.Failed[s]
	}
	c.Paired += o.Paired
}

// MailboxResult is the outcome for one mailbox pair.
type MailboxResult struct {
	Mailbox string
	Counts
	Plan    *Plan  // in dry-run, what would be done
	Skipped string // why nothing was done, if so (e.g. "unchanged")
	Err     error
	// Stopped: the interruption (Ctrl-C, SIGTERM) cut this mailbox's run
	// short. Err then wraps ErrStopped, unless the run met errors of its
	// own before: Err reports those, and this says it was cut short too, so
	// that the mailboxes not finished can be counted.
	Stopped bool
}

// ChannelResult is the outcome for one channel.
type ChannelResult struct {
	Channel   string
	Mailboxes []MailboxResult
	Counts
	Err error // channel-level failure (connect, list)
}

// Errors a run reports so the cmd layer can pick an exit status.
var (
	ErrLocked  = errors.New("locked by another run")
	ErrGuard   = errors.New("stopped by a safety guard")
	ErrStopped = errors.New("interrupted")
)

// SyncChannel syncs every selected mailbox pair of a channel.
func SyncChannel(ctx context.Context, spec ChannelSpec, opt RunOptions) ChannelResult {
	res := ChannelResult{Channel: spec.Name}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	opt.room = new(sideRoom)
	hook := &crashHook{lines: opt.journalLines, syncs: opt.journalSyncs, after: int64(opt.CrashAfter), fileErr: opt.fileErr, fsyncs: opt.fsyncs}
	if hook.lines == nil {
		hook.lines = new(atomic.Int64)
	}
	if v := os.Getenv("QUIXYSYNC_TEST_CRASH_AFTER"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			hook.after, hook.exit = int64(n), true
		}
	}

	// The channel lock comes before any store access.
	lockPath, err := ChannelLockPath(spec)
	if err != nil {
		res.Err = err
		return res
	}
	var lk *Lock
	if opt.DryRun {
		lk, err = LockFileShared(lockPath)
	} else {
		lk, err = LockFile(lockPath)
	}
	if err != nil {
		res.Err = fmt.Errorf("channel %s: %w", spec.Name, err)
		return res
	}
	defer lk.Unlock()

	// Both listings at once: on a run with nothing to do they are most of its cost.
	var lists [2][]MailboxInfo
	var listErr [2]error
	noStatus := map[string]bool{}
	early := statusFirst(ctx, spec, opt.Log, &lists, &listErr, noStatus)
	// What statusFirst listed of the near side, before the listings below
	// (which write lists) start.
	nearList, nearErr := lists[Near], listErr[Near]
	nearDone := nearList != nil || nearErr != nil
	var lw sync.WaitGroup
	for _, s := range []Side{Far, Near} {
		if lists[s] != nil || listErr[s] != nil {
			continue
		}
		lw.Add(1)
		go func() {
			defer lw.Done()
			lists[s], listErr[s] = spec.store(s).ListMailboxes(ctx)
		}()
	}
	pool := newBoxPool(spec.parallelism(), opt.Progress, spec.Name)
	// Mailboxes whose near side changed are opened whatever the far side
	// says: they start while the far side is still being listed (a LIST
	// after changes cost Dovecot 10-16 ms, and it is a round trip).
	var ahead []string
	if nearDone {
		ahead = syncAhead(spec, noStatus, nearList, nearErr)
	}
	for _, name := range ahead {
		pool.submit(name, func() MailboxResult {
			return syncMailbox(ctx, spec, opt, name, hook, [2]bool{}, [2]*Status{Near: nearStatus(nearList, name)}, true)
		})
	}
	lw.Wait()
	var present [2]map[string]bool
	var listed [2]map[string]*Status
	for _, s := range []Side{Far, Near} {
		if err := listErr[s]; err != nil {
			of := " of " + spec.store(s).Name()
			if strings.HasPrefix(err.Error(), spec.store(s).Name()+":") {
				of = "" // the store's own message names it
			}
			res.Err = fmt.Errorf("channel %s: listing mailboxes%s: %w", spec.Name, of, err)
			pool.wait()
			for _, r := range pool.results(ahead) {
				if !retryAfterListing(r.Err) {
					res.Mailboxes = append(res.Mailboxes, r)
					res.Counts.add(r.Counts)
				}
			}
			return res
		}
		present[s], listed[s] = map[string]bool{}, map[string]*Status{}
		for _, mi := range lists[s] {
			present[s][mi.Name] = true
			if mi.Status != nil {
				listed[s][mi.Name] = mi.Status
			} else if st, ok := early[s][mi.Name]; ok {
				listed[s][mi.Name] = &st
			}
		}
	}
	names := selectMailboxes(spec, present)
	if len(names) == 0 && spec.Mailboxes == nil && len(present[Far])+len(present[Near]) > 0 {
		// Most likely a pattern with a typo: say so rather than report a
		// run that synced nothing as a success in silence.
		opt.Log.Warn("the channel's mailbox patterns match no mailbox on either side; `quixysync list` shows which are excluded",
			"far mailboxes", len(present[Far]), "near mailboxes", len(present[Near]), Notice, true)
	}
	statusAll(ctx, spec, opt.Log, names, present, listed, noStatus)
	pool.setTotal(len(names))
	if opt.Progress != nil {
		opt.Progress(ProgressEvent{Kind: ProgressListed, Channel: spec.Name, MailboxesTotal: len(names)})
	}
	started := make(map[string]bool, len(ahead))
	for _, n := range ahead {
		started[n] = true
	}
	// Before any other mailbox starts: following renames changes present.
	followed := followRenames(ctx, spec, opt, names, present, listed[Far], pool.wait)
	carried, again := followNearRenames(ctx, spec, opt, names, present, listed, pool.wait)
	if followed == nil {
		followed = carried
	} else {
		maps.Copy(followed, carried)
	}
	for _, n := range again {
		started[n] = false
	}
	for _, name := range names {
		if hook.crashed() {
			break
		}
		if r, ok := followed[name]; ok {
			pool.submit(name, func() MailboxResult { return r })
			continue
		}
		if started[name] {
			continue
		}
		pool.submit(name, func() MailboxResult { return syncOne(ctx, spec, opt, name, present, listed, hook, false) })
	}
	pool.wait()
	// A mailbox started ahead that the far side does not have (removed
	// since the last run) goes the way of any mailbox missing on one side.
	for _, name := range ahead {
		r := pool.result(name)
		if hook.crashed() || !retryAfterListing(r.Err) {
			continue
		}
		// Not there: its far side failed to open by name already, no need
		// to ask again. Refused: asked again now that the listing went
		// through.
		missing := errors.Is(r.Err, errNotThereYet)
		pool.submit(name, func() MailboxResult { return syncOne(ctx, spec, opt, name, present, listed, hook, missing) })
	}
	pool.wait()
	seen := map[string]bool{}
	for _, r := range pool.results(slices.Concat(names, ahead)) {
		if r.Mailbox == "" || seen[r.Mailbox] {
			continue
		}
		seen[r.Mailbox] = true
		res.Mailboxes = append(res.Mailboxes, r)
		res.Counts.add(r.Counts)
	}
	if ctx.Err() != nil && res.Err == nil {
		res.Err = fmt.Errorf("channel %s: %w", spec.Name, ErrStopped)
	}
	return res
}

// syncAhead returns the mailboxes to start before the far side is listed:
// those statusFirst left out because their near side changed (so they are
// opened in any case), that the near side lists and that were synced before
// (so they existed on the far side at the last run). A far side that no
// longer has one makes its run end, before anything is changed, with
// errNotThereYet. Only when there are two or more: statusFirst then had the
// far store log in connections for them (Warmer), while a single one would
// make the store log in a second connection beside the listing's, which
// costs more than the listing (local changes at 100 000 messages, one
// folder: 0.60 s before the early start, 0.71 s with it).
func syncAhead(spec ChannelSpec, noStatus map[string]bool, nearList []MailboxInfo, nearErr error) []string {
	if len(noStatus) == 0 || nearErr != nil {
		return nil
	}
	var out []string
	for _, mi := range nearList {
		if !noStatus[mi.Name] {
			continue
		}
		path, err := StatePath(spec, mi.Name)
		if err != nil {
			continue
		}
		if h, err := LoadStateHeader(path); err != nil || h.Generation == 0 {
			continue
		}
		out = append(out, mi.Name)
	}
	if len(out) < 2 {
		return nil
	}
	slices.SortFunc(out, compareMailboxes)
	return out
}

// nearStatus is the status the near listing reported for name (nil if none).
func nearStatus(list []MailboxInfo, name string) *Status {
	for _, mi := range list {
		if mi.Name == name {
			return mi.Status
		}
	}
	return nil
}

// boxPool runs mailbox pairs, up to max at once, and keeps their results.
type boxPool struct {
	max      int
	progress func(ProgressEvent)
	channel  string

	mu      sync.Mutex
	running int
	queue   []boxJob
	res     map[string]MailboxResult
	total   int
	done    int
	wg      sync.WaitGroup
}

type boxJob struct {
	name string
	run  func() MailboxResult
}

func newBoxPool(max int, progress func(ProgressEvent), channel string) *boxPool {
	return &boxPool{max: max, progress: progress, channel: channel, res: map[string]MailboxResult{}}
}

// submit queues a mailbox pair's run; a worker starts when fewer than max run.
func (p *boxPool) submit(name string, run func() MailboxResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = append(p.queue, boxJob{name, run})
	if p.running < p.max {
		p.running++
		p.wg.Add(1)
		go p.work()
	}
}

func (p *boxPool) work() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.running--
			p.mu.Unlock()
			return
		}
		j := p.queue[0]
		p.queue = p.queue[1:]
		p.mu.Unlock()
		r := j.run()
		p.mu.Lock()
		p.res[j.name] = r
		final := !retryAfterListing(r.Err)
		if final {
			p.done++
		}
		ev := ProgressEvent{Kind: ProgressMailboxDone, Channel: p.channel, Mailbox: j.name, MailboxesDone: p.done, MailboxesTotal: p.total}
		p.mu.Unlock()
		if final && p.progress != nil {
			p.progress(ev)
		}
	}
}

// setTotal records how many mailboxes the channel has, once listed.
func (p *boxPool) setTotal(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = n
}

// wait waits until every submitted run is over.
func (p *boxPool) wait() { p.wg.Wait() }

func (p *boxPool) result(name string) MailboxResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.res[name]
}

// results returns the results of names that ran, in that order.
func (p *boxPool) results(names []string) []MailboxResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []MailboxResult
	for _, n := range names {
		if r, ok := p.res[n]; ok {
			out = append(out, r)
		}
	}
	return out
}

// parallelism is how many mailbox pairs of the channel are synced at once.
func (spec ChannelSpec) parallelism() int {
	if spec.MaxParallel <= 0 {
		return 4
	}
	return spec.MaxParallel
}

// selectMailboxes returns the names to sync: the union of both sides filtered
// by the channel's patterns (or the explicit list), INBOX first.
func selectMailboxes(spec ChannelSpec, present [2]map[string]bool) []string {
	set := map[string]bool{}
	if spec.Mailboxes != nil {
		for _, n := range spec.Mailboxes {
			set[n] = true
		}
	} else {
		for s := 0; s < 2; s++ {
			for n := range present[s] {
				if spec.Match == nil || spec.Match(n) {
					set[n] = true
				}
			}
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	slices.SortFunc(names, compareMailboxes)
	return names
}

// compareMailboxes orders mailbox names INBOX first, then by name.
func compareMailboxes(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "INBOX":
		return -1
	case b == "INBOX":
		return 1
	}
	return strings.Compare(a, b)
}

// syncOne handles one mailbox name: creation or removal when it exists on one
// side only, else a sync of the pair. openedMissing: the side a listing left
// it out of has been found not to have it by name already, in this run.
func syncOne(ctx context.Context, spec ChannelSpec, opt RunOptions, name string, present [2]map[string]bool,
	statuses [2]map[string]*Status, hook *crashHook, openedMissing bool) MailboxResult {
	res := MailboxResult{Mailbox: name}
	if ctx.Err() != nil {
		res.Err = fmt.Errorf("mailbox %s: %w", name, ErrStopped)
		return res
	}
	if present[Far][name] && present[Near][name] {
		return syncMailbox(ctx, spec, opt, name, hook, [2]bool{}, [2]*Status{statuses[Far][name], statuses[Near][name]}, false)
	}
	if !present[Far][name] && !present[Near][name] {
		res.Err = fmt.Errorf("mailbox %s exists on neither side", name)
		return res
	}
	miss := Far
	if present[Far][name] {
		miss = Near
	}
	have := miss.Other()
	allowed := func(s Side) bool {
		return !(opt.Mode == ModePull && s == Far) && !(opt.Mode == ModePush && s == Near)
	}
	statePath, err := StatePath(spec, name)
	if err != nil {
		res.Err = err
		return res
	}
	st, meta, err := loadState(statePath, false)
	if err == nil {
		err = meta.Owner.check(spec, name, statePath)
	}
	if err != nil {
		res.Err = fmt.Errorf("mailbox %s: %w", name, err)
		return res
	}
	if st.Generation > 0 && !openedMissing {
		// Synced before: ask the side whose listing left it out once more, by
		// name, before taking it for removed. A listing can miss a mailbox
		// that exists (Dovecot did, twice in the random histories, while
		// another session appended to it; the cause is not known), and
		// what follows either stops the pair with the guard or removes the
		// other side when it is empty.
		mb, err := spec.store(miss).OpenMailbox(ctx, name, true)
		if err == nil {
			mb.Close()
			opt.Log.Warn("mailbox missing from the listing opens by name: syncing it",
				"channel", spec.Name, "mailbox", name, "side", miss.String())
			return syncMailbox(ctx, spec, opt, name, hook, [2]bool{}, [2]*Status{statuses[Far][name], statuses[Near][name]}, false)
		}
		if !errors.Is(err, ErrNoMailbox) {
			res.Err = fmt.Errorf("mailbox %s: the %s side's listing leaves it out, and opening it there to make sure failed: %w", name, miss, err)
			if ctx.Err() != nil {
				res.Err = fmt.Errorf("mailbox %s: %w", name, ErrStopped)
			}
			return res
		}
	}
	if st.Generation > 0 {
		if stale, err := staleState(ctx, spec, name, have, st, statuses[have][name]); err != nil {
			res.Err = fmt.Errorf("mailbox %s: %w", name, err)
			if ctx.Err() != nil {
				res.Err = fmt.Errorf("mailbox %s: %w", name, ErrStopped)
			}
			return res
		} else if stale != "" {
			// The mailbox the state knew is gone from both sides, and one of
			// the same name was made anew (deleted by hand on both sides,
			// then created again): the state says nothing about it. Taken
			// for the old one, an empty new mailbox would be removed, a
			// full one stopped by the guard at every run. It is a mailbox
			// seen for the first time.
			opt.Log.Warn("the state is of a mailbox of the same name deleted before: starting over with the new one",
				"channel", spec.Name, "mailbox", name, "side", have.String(), "uidvalidity", stale, "state", statePath)
			if opt.DryRun {
				opt.staleState = true
			} else {
				for _, p := range []string{statePath + ".journal", statePath} {
					if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
						res.Err = fmt.Errorf("mailbox %s: removing the state of the mailbox deleted before: %w", name, err)
						return res
					}
				}
			}
			st = State{}
		}
	}
	listed := 0
	for _, p := range st.Pairs {
		if p.uid(miss) != 0 {
			listed++
		}
	}
	canRemove := spec.Remove[have] && allowed(have)
	if st.Generation > 0 && listed == 0 && canRemove {
		// Synced before, empty on the side where it vanished: remove the
		// other side too when it is empty; else it is re-created below.
		if opt.DryRun {
			// Say what the run would do: remove it, or (holding mail)
			// create it again below.
			if empty, err := holdsNothing(ctx, spec, name, have); err != nil || empty {
				res.Skipped = fmt.Sprintf("would remove the %s side mailbox (vanished on the %s side) if empty", have, miss)
				if err == nil {
					res.Skipped = fmt.Sprintf("would remove the %s side mailbox (vanished on the %s side; empty)", have, miss)
				}
				return res
			}
		} else if r := removeVanished(ctx, spec, name, have, statePath); !errors.Is(r.Err, ErrGuard) {
			return r
		}
	}
	if listed > 0 {
		// It was synced before and vanished on one side.
		hint := func() string { return renameHint(ctx, spec, name, miss, st, present, statuses[Far]) }
		if !canRemove {
			res.Err = fmt.Errorf("mailbox %s: %w: it has vanished on the %s side while the state %s lists %d messages there; "+
				"nothing was deleted. Remove it on the %s side too (or enable remove for that side) if that is intended, "+
				"or move the state file away to copy it back%s", name, ErrGuard, miss, statePath, listed, have, hint())
			return res
		}
		if opt.DryRun {
			res.Skipped = fmt.Sprintf("would remove the %s side mailbox (vanished on the %s side) if empty", have, miss)
			if empty, err := holdsNothing(ctx, spec, name, have); err == nil && !empty {
				res.Skipped = ""
				res.Err = fmt.Errorf("%w%s", vanishedNotEmpty(name, have), hint())
			} else if err == nil {
				res.Skipped = fmt.Sprintf("would remove the %s side mailbox (vanished on the %s side; empty)", have, miss)
			}
			return res
		}
		r := removeVanished(ctx, spec, name, have, statePath)
		if errors.Is(r.Err, ErrGuard) {
			r.Err = fmt.Errorf("%w%s", r.Err, hint())
		}
		return r
	}
	if !spec.Create[miss] || !allowed(miss) {
		res.Skipped = fmt.Sprintf("missing on the %s side (not created: create is not enabled for it in this run)", miss)
		return res
	}
	if opt.DryRun {
		r := syncMailbox(ctx, spec, opt, name, hook, [2]bool{miss == Far, miss == Near}, [2]*Status{}, false)
		r.Created[miss] = 1
		return r
	}
	store := spec.Far
	if miss == Near {
		store = spec.Near
	}
	if err := store.CreateMailbox(ctx, name); err != nil {
		res.Err = fmt.Errorf("mailbox %s: creating it on the %s side: %w", name, miss, err)
		if ctx.Err() != nil {
			// Interrupted while creating it: that one fact, as above, not
			// the command's "context canceled". The next run finds the
			// mailbox made or not.
			res.Err = fmt.Errorf("mailbox %s: %w", name, ErrStopped)
		}
		return res
	}
	r := syncMailbox(ctx, spec, opt, name, hook, [2]bool{}, [2]*Status{}, false)
	r.Created[miss]++
	return r
}

// staleState says whether st, the state of a mailbox that exists only on side
// s, is of another mailbox than the one there now: its UIDVALIDITY is not the
// one the state recorded (a mailbox made anew gets a new one). It returns the
// two values ("recorded → now") when so, "" when the state is the mailbox's
// or says nothing (recorded 0).
func staleState(ctx context.Context, spec ChannelSpec, name string, s Side, st State, status *Status) (string, error) {
	recorded := st.FarValidity
	if s == Near {
		recorded = st.NearValidity
	}
	if recorded == 0 {
		return "", nil
	}
	var now uint32
	if status != nil && status.UIDValidity != 0 {
		now = status.UIDValidity
	} else {
		mb, err := spec.store(s).OpenMailbox(ctx, name, true)
		if err != nil {
			return "", fmt.Errorf("opening it on the %s side to compare its UIDVALIDITY with the state's: %w", s, err)
		}
		now = mb.Status().UIDValidity
		mb.Close()
	}
	if now == recorded {
		return "", nil
	}
	return fmt.Sprintf("%d → %d", recorded, now), nil
}

// adoptRenamed takes over the state hdr (at path) of a mailbox renamed on
// both sides to name — the server's RENAME and a mv of the folder, which
// takes its state along: how an mbsync user renames a folder, and mbsync
// carries on with the state it finds. The state's near UIDs are the folder's
// own wherever it moved (its .uidvalidity moved with it, and the run checks
// it as always); its far UIDs are those of name only when the mailbox they
// were of is gone from the far side (or made anew there after the rename:
// another UIDVALIDITY) and name has the UIDVALIDITY they refer to (a RENAME
// keeps it, a mailbox made anew gets another). Then the owner
// lines are rewritten to name (not in a dry run) and it reports true; in
// any other case false, and the caller refuses the state as foreign.
func adoptRenamed(ctx context.Context, spec ChannelSpec, name, path string, hdr StateHeader, dry bool, log *slog.Logger) (bool, error) {
	o, me := hdr.Owner, ownerOf(spec, name)
	if _, local := spec.Near.(LocalStore); !local || o.Channel != spec.Name || o.FarStore != me.FarStore ||
		(o.NearStore != "" && o.NearStore != me.NearStore) || o.FarMailbox == "" || o.FarMailbox == name ||
		hdr.FarValidity == 0 {
		return false, nil
	}
	if gone, err := farGone(ctx, spec, o.FarMailbox, hdr.FarValidity); err != nil || !gone {
		// Still there: only the folder was renamed (or copied), and the
		// far UIDs are the old mailbox's.
		return false, err
	}
	mb, err := spec.Far.OpenMailbox(ctx, name, true)
	if errors.Is(err, ErrNoMailbox) {
		return false, nil // renamed here only
	}
	if err != nil {
		return false, fmt.Errorf("opening it on the far side: %w", err)
	}
	defer mb.Close()
	if mb.Status().UIDValidity != hdr.FarValidity {
		return false, nil
	}
	st, _, err := loadState(path, false)
	if err != nil {
		return false, err
	}
	if same, err := samePairs(ctx, spec, name, mb, st); err != nil || !same {
		return false, err
	}
	if !dry {
		// Rewritten now, under the pair's lock: an unchanged mailbox is
		// skipped without a state write, and the next run would otherwise
		// have to look again.
		if err := saveState(path, st, me); err != nil {
			return false, err
		}
	}
	log.Warn("mailbox renamed on both sides: syncing it with the state it took along",
		"mailbox", name, "from", o.FarMailbox, "state", path, Notice, true)
	return true, nil
}

// samePairs says whether a few of st's pairs, the newest, hold the same
// Message-ID on both sides (far in mb): an equal UIDVALIDITY alone does not
// make a far mailbox the renamed one, since some servers give every mailbox
// the same (and a mailbox made anew could get the old value), and pairs
// taken from another mailbox would tie unrelated messages together and
// carry removals between them. Messages gone or without a Message-ID say
// nothing; one pair that differs is enough to refuse, and at least one must
// match: a far mailbox that holds none of the sampled far UIDs (made anew,
// empty, with the same UIDVALIDITY) would otherwise pass, and every pair
// would then look removed on the far side and be removed here. A state
// without pairs is taken over only when neither side holds a message at or
// below the UIDs it records as seen (such a message would never be copied).
func samePairs(ctx context.Context, spec ChannelSpec, name string, far Mailbox, st State) (bool, error) {
	const sample = 8
	var fu, nu []UID
	for i := len(st.Pairs) - 1; i >= 0 && len(fu) < sample; i-- {
		if p := st.Pairs[i]; p.Far != 0 && p.Near != 0 {
			fu, nu = append(fu, p.Far), append(nu, p.Near)
		}
	}
	if len(fu) == 0 {
		if len(st.Pairs) > 0 {
			return false, nil
		}
		// No pairs (an empty folder, maybe one that held mail): nothing
		// can be tied wrongly; only a message at or below the UIDs the
		// state has seen would be taken for one considered already and
		// never copied. An empty folder renamed has none on either side.
		for _, c := range []struct {
			s   Side
			max UID
		}{{Far, st.MaxPulled}, {Near, st.MaxPushed}} {
			if c.max == 0 {
				continue
			}
			mb := far
			if c.s == Near {
				near, err := spec.Near.OpenMailbox(ctx, name, true)
				if err != nil {
					return false, fmt.Errorf("opening it on the near side: %w", err)
				}
				defer near.Close()
				mb = near
			}
			have, err := mb.UIDs(ctx, c.max+1)
			if err != nil {
				return false, fmt.Errorf("reading the UIDs on the %s side: %w", c.s, err)
			}
			if len(have) > 0 {
				return false, nil
			}
		}
		return true, nil
	}
	near, err := spec.Near.OpenMailbox(ctx, name, true)
	if err != nil {
		return false, fmt.Errorf("opening it on the near side: %w", err)
	}
	defer near.Close()
	// Read as a run reads them: a file a mail client moved in keeping its
	// ",U=" is not the message the state pairs under that UID.
	tellKnown(far, &st, Far, nil)
	tellKnown(near, &st, Near, nil)
	farIDs, err := fetchMessageIDs(ctx, far, sortedUIDs(slices.Clone(fu)))
	if err != nil {
		return false, fmt.Errorf("reading Message-IDs on the far side: %w", err)
	}
	nearIDs, err := fetchMessageIDs(ctx, near, sortedUIDs(slices.Clone(nu)))
	if err != nil {
		return false, fmt.Errorf("reading Message-IDs on the near side: %w", err)
	}
	matched := 0
	for i := range fu {
		f, fok := farIDs[fu[i]]
		n, nok := nearIDs[nu[i]]
		if fok && nok && f != n {
			return false, nil
		}
		if fok && nok && f != "" {
			matched++
		}
	}
	return matched > 0, nil
}

// renameHint is what the guard adds for a mailbox gone from the far side
// while a far mailbox new to this run has the UIDVALIDITY its state
// records: renamed there (a webmail's RENAME keeps it), most likely. That
// one is copied here whole; the folder renamed here too takes its state
// along (adoptRenamed), and the next run copies nothing. Only for a Maildir
// near side, whose states live in the folders; "" when nothing points so.
// A mailbox the listing gave no status for is opened to learn it: this is
// the guard's path, and new far mailboxes are few (at most 16 are asked).
func renameHint(ctx context.Context, spec ChannelSpec, name string, miss Side, st State, present [2]map[string]bool, far map[string]*Status) string {
	ls, local := spec.Near.(LocalStore)
	if miss != Far || !local || st.FarValidity == 0 {
		return ""
	}
	var fresh []string
	for n := range present[Far] {
		if !present[Near][n] && (spec.Match == nil || spec.Match(n)) {
			fresh = append(fresh, n)
		}
	}
	if len(fresh) > 16 {
		return ""
	}
	slices.Sort(fresh)
	to := ""
	for _, n := range fresh {
		validity := uint32(0)
		if status := far[n]; status != nil {
			validity = status.UIDValidity
		} else if mb, err := spec.Far.OpenMailbox(ctx, n, true); err == nil {
			validity = mb.Status().UIDValidity
			mb.Close()
		}
		if validity == st.FarValidity {
			if to != "" {
				return "" // more than one: a server that gives all the same
			}
			to = n
		}
	}
	if to == "" {
		return ""
	}
	// An equal UIDVALIDITY alone is no rename (a server that gives every
	// mailbox the same, a mailbox made anew): the state's messages must be
	// there, as adoptRenamed will require of the folder moved.
	mb, err := spec.Far.OpenMailbox(ctx, to, true)
	if err != nil {
		return ""
	}
	same, err := samePairs(ctx, spec, name, mb, st)
	mb.Close()
	if err != nil || !same {
		return ""
	}
	from, err1 := ls.MailboxDir(name)
	dest, err2 := ls.MailboxDir(to)
	if err1 != nil || err2 != nil {
		return ""
	}
	// Inside the folder of another mailbox gone from the far side (a nested
	// layout; the server's RENAME of a parent takes its children along):
	// the parent's mv moves this folder too, onto dest. Told to delete dest
	// "if a run made it" after that, the user would delete this folder,
	// its state and any mail not synced yet.
	for n := range present[Near] {
		if n == name || present[Far][n] {
			continue
		}
		if d, err := ls.MailboxDir(n); err == nil && strings.HasPrefix(from, d+string(filepath.Separator)) {
			return fmt.Sprintf(". The far mailbox %q, new to this run, has the UIDVALIDITY this state records, so %q was most likely "+
				"renamed to it on the far side along with %q: its folder here moves with %q's (see that mailbox's message); "+
				"do not delete %s once that is done", to, name, n, n, dest)
		}
	}
	return fmt.Sprintf(". The far mailbox %q, new to this run, has the UIDVALIDITY this state records, so %q was most likely "+
		"renamed to it on the far side. To follow the rename here without copying anything: delete the folder %s if a run "+
		"made it (its mail is the far %q's), then mv %s %s, and run again (the state moves with the folder)",
		to, name, dest, to, from, dest)
}

// vanishedNotEmpty is the guard's error for a mailbox that vanished on one
// side and holds messages on side s.
func vanishedNotEmpty(name string, s Side) error {
	return fmt.Errorf("mailbox %s: %w: it vanished on the %s side but still holds messages on the %s side, so it was left alone "+
		"(remove only removes empty mailboxes). Move or delete those messages yourself, or create the mailbox on the %s side again to sync them back",
		name, ErrGuard, s.Other(), s, s.Other())
}

// holdsNothing reports whether the mailbox on side s lists no message, for
// a dry run to say what removeVanished would do.
func holdsNothing(ctx context.Context, spec ChannelSpec, name string, s Side) (bool, error) {
	mb, err := spec.store(s).OpenMailbox(ctx, name, true)
	if err != nil {
		return false, err
	}
	defer mb.Close()
	msgs, _, err := mb.List(ctx, ListQuery{All: true})
	return err == nil && len(msgs) == 0, err
}

// removeVanished removes the mailbox on side s because it vanished on the
// other side, only when it is empty, and forgets its state.
func removeVanished(ctx context.Context, spec ChannelSpec, name string, s Side, statePath string) MailboxResult {
	res := MailboxResult{Mailbox: name}
	store := spec.Far
	if s == Near {
		store = spec.Near
	}
	lk, err := LockFile(statePath + ".lock")
	if err != nil {
		res.Err = fmt.Errorf("mailbox %s: %w", name, err)
		return res
	}
	notEmpty := func() MailboxResult {
		res.Err = vanishedNotEmpty(name, s)
		return res
	}
	// Look before removing anything: a mailbox that still holds messages keeps
	// its state untouched (removing and rewriting it every run would leave a
	// window where a crash loses the pairing and the next run copies them all
	// back to where they were deleted).
	if mb, err := store.OpenMailbox(ctx, name, true); err == nil {
		msgs, _, lerr := mb.List(ctx, ListQuery{All: true})
		mb.Close()
		if lerr == nil && len(msgs) > 0 {
			lk.Unlock()
			return notEmpty()
		}
	}
	// A state inside the folder stays until the folder is no longer one
	// (DeleteMailbox of a LocalStore takes it along then): a run dying
	// before would leave an empty folder without its state, which the next
	// run would create on the other side again.
	err = store.DeleteMailbox(ctx, name)
	if err != nil {
		lk.Unlock()
		if errors.Is(err, ErrNotEmpty) {
			return notEmpty()
		}
		res.Err = fmt.Errorf("mailbox %s: removing it on the %s side: %w", name, s, err)
		return res
	}
	os.Remove(statePath)
	os.Remove(statePath + ".journal")
	lk.Unlock()
	res.Skipped = fmt.Sprintf("removed on the %s side (vanished on the %s side)", s, s.Other())
	return res
}
