package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
)

// boxRun is one run over one mailbox pair.
type boxRun struct {
	spec      ChannelSpec
	opt       RunOptions
	name      string
	statePath string
	hook      *crashHook
	log       *slog.Logger

	st     State // as loaded (and after journal replay)
	meta   stateMeta
	img    *stateImage // what the state file holds, for a save to append to (nil: rewrite it)
	listed [2]*Status  // from the channel's listing (nil: not reported)
	mb     [2]Mailbox
	status [2]Status
	j      *journal
	res    *MailboxResult

	errs       []error
	stopCopies [2]bool
	// deferred: something planned was left for the next run without an
	// error of this mailbox's: a full disk the channel had reported already
	// (see sideRoom) stopped its copies or refused its files.
	deferred    bool
	keepJournal bool
	// released[s]: mb[s] was closed as soon as the plan no longer needed
	// it (see release).
	released [2]bool
	// vouched[s]: the Restamper's answer for a side the plan does not
	// write, asked before the plan was executed (see vouchUnwritten).
	vouched [2]*vouch
	// ahead: started before the far side was listed (see syncAhead).
	ahead bool
	// undone: while applyChanges runs, the UIDs whose acts did not happen.
	undone *undone
	// paired: what pairExisting paired, reported once a state records it
	// (see pairsRecorded).
	paired pairing
	// expunging[s]: the plan's removals on side s, sorted, which happen
	// after its copies (see takeReported).
	expunging [2][]UID
	// flaggingDeleted[s]: the UIDs the plan flags \Deleted on side s,
	// sorted, also after its copies (see takeReported).
	flaggingDeleted [2][]UID
	// mergedAway[t]: copies the target merged into a message of expunging or
	// flaggingDeleted, made again after the run's changes (execute); retrying:
	// that second pass has begun, and such a merge is a failure.
	mergedAway [2][]Copy
	retrying   bool
	// unlisted[s]: side s is unchanged and left unlisted although the other
	// side changed (NamePrefetcher).
	unlisted [2]bool
}

// errNotThereYet ends, before anything is changed, the run of a mailbox
// started before the far side was listed that the far side does not have.
var errNotThereYet = errors.New("not on the far side (it was started before the far side was listed)")

// errValidityAhead ends, before anything is changed, the run of a mailbox
// started before the far side was listed whose far UIDVALIDITY is not the
// one its state records: the far mailbox may have been renamed away and
// made anew (followRenames, which can tell only once the far side is
// listed, renames the folder after it), so the change is decided after the
// listing, as for a mailbox not started ahead.
var errValidityAhead = errors.New("its far UIDVALIDITY changed (it was started before the far side was listed)")

// aheadRefused ends, before anything is changed, the run of a mailbox
// started before the far side was listed whose far side failed to open for
// another reason (a server that takes no more connections refuses every
// one alike): the mailbox waits for the listing, and then either runs
// again or, when the listing failed too, leaves the channel's error to say
// it once rather than once per mailbox started ahead.
type aheadRefused struct{ err error }

func (e *aheadRefused) Error() string { return "opening on the far side: " + e.err.Error() }
func (e *aheadRefused) Unwrap() error { return e.err }

// retryAfterListing says the run of a mailbox started ahead of the far
// listing did not count and is to be decided after it.
func retryAfterListing(err error) bool {
	return errors.Is(err, errNotThereYet) || errors.Is(err, errValidityAhead) || errors.As(err, new(*aheadRefused))
}

// fail records an error of the run. The mailbox's result reports the first
// one (the command prints it), so only the later ones are logged as
// warnings when they happen: printed twice by default, the first made a
// single failure two lines on a terminal and in a cron job's mail.
//
// A full disk is reported once per channel (see sideRoom): met again (a
// journal, a file of this mailbox, another's), it is not an error of its own;
// what is left undone waits for the next run as after any failure.
func (b *boxRun) fail(err error) {
	if diskFull(err) && !errors.As(err, new(*roomReport)) {
		if !b.opt.room.markFiles() {
			b.log.Info("not done: the disk is full", "mailbox", b.name, "err", err)
			b.deferred = true
			return
		}
		err = &roomReport{err}
	}
	level := slog.LevelWarn
	if len(b.errs) == 0 {
		level = slog.LevelInfo
	}
	b.log.Log(context.Background(), level, "sync error", "mailbox", b.name, "err", err)
	b.errs = append(b.errs, err)
}

// progress reports one event of this mailbox pair (Channel and Mailbox filled in).
func (b *boxRun) progress(ev ProgressEvent) {
	if b.opt.Progress != nil {
		ev.Channel, ev.Mailbox = b.spec.Name, b.name
		b.opt.Progress(ev)
	}
}

// plannedProgress reports the copies a plan holds and their known size, to
// the progress receiver and to stores that size themselves to the work.
func (b *boxRun) plannedProgress(p *Plan) {
	ev := ProgressEvent{Kind: ProgressPlanned}
	for s, cs := range p.Copies {
		ev.PlannedMessages += int64(len(cs))
		for _, c := range cs {
			ev.PlannedBytes += max(c.Size, 0)
		}
		if isLocal(b.spec.store(Side(s))) {
			ev.PlannedLocal += int64(len(cs))
		}
	}
	if ev.PlannedMessages > 0 {
		for _, st := range []Store{b.spec.Far, b.spec.Near} {
			if sc, ok := st.(Scaler); ok {
				sc.PlannedCopies(int(ev.PlannedMessages), ev.PlannedBytes)
			}
		}
	}
	b.progress(ev)
}

// syncMailbox runs one mailbox pair. missing[s] says the mailbox does not
// exist on side s and a dry run pretends it was created (empty).
// listed holds the statuses the channel's listing reported (nil where none).
// ahead says the far side was not listed yet: when it lacks the mailbox, the
// run ends with errNotThereYet before it changes anything.
func syncMailbox(ctx context.Context, spec ChannelSpec, opt RunOptions, name string, hook *crashHook, missing [2]bool, listed [2]*Status, ahead bool) (res MailboxResult) {
	res.Mailbox = name
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &boxRun{spec: spec, opt: opt, name: name, hook: hook, log: log, res: &res, listed: listed, ahead: ahead}
	err := b.run(ctx, missing)
	for s := 0; s < 2; s++ {
		if b.mb[s] != nil && !b.released[s] {
			b.mb[s].Close()
		}
	}
	if ctx.Err() != nil && !errors.Is(err, errCrash) {
		// Interrupted: what failed because of that is one fact, not an error
		// each (a command cut short, a connection not waited for).
		var real []error
		for _, e := range append(slices.Clone(b.errs), err) {
			if e != nil && !Interrupted(e) {
				real = append(real, e)
			} else if e != nil {
				// Cut short, whether or not it met errors of its own
				// first: those are reported below, and this is counted.
				res.Stopped = true
			}
		}
		if len(real) == 0 && (err != nil || len(b.errs) > 0) {
			b.errs, err = nil, ErrStopped
		} else if err != nil && Interrupted(err) {
			err = nil
			b.errs = real
		}
	}
	if err != nil && !errors.Is(err, errCrash) && diskFull(err) && !opt.room.markFiles() {
		// A full disk reported already (by this mailbox's copies or another
		// mailbox) refused this one's files too (its state, its journal):
		// one fact, said once. What was done is safe as after any failure;
		// the next run goes on.
		log.Info("mailbox not finished: the disk is full", "mailbox", name, "err", err)
		res.Skipped = "not finished: the disk is full"
		err = nil
	}
	switch {
	case errors.Is(err, errCrash):
		res.Err = err
	case err != nil:
		res.Err = fmt.Errorf("mailbox %s: %w", name, err)
		if len(b.errs) > 0 && !Interrupted(b.errs[0]) {
			// Not in the result: said now, as the later ones were.
			log.Warn("sync error", "mailbox", name, "err", b.errs[0])
		}
	case len(b.errs) == 1:
		res.Err = fmt.Errorf("mailbox %s: %w", name, b.errs[0])
	case len(b.errs) > 1:
		res.Err = fmt.Errorf("mailbox %s: %d errors, the first: %w", name, len(b.errs), b.errs[0])
	}
	return res
}

// Interrupted says err is the run being interrupted (its context cancelled:
// Ctrl-C, SIGTERM) and nothing else.
func Interrupted(err error) bool {
	return errors.Is(err, ErrStopped) || errors.Is(err, context.Canceled)
}

// release closes side s's mailbox once the plan has no more use for it, so
// that what it holds (an IMAP connection of the store's pool) serves the next
// mailbox pair while this one finishes on the other side: with the local
// commit of a pull (fsyncs, renames, the state file) no longer holding the
// connection, one connection does what took several, and a server pays for
// fewer logins. A mailbox that must still make changes durable when the
// state is saved (Flusher, Barrierer: a Maildir) stays open until the end.
func (b *boxRun) release(s Side) {
	mb := b.mb[s]
	if mb == nil || b.released[s] {
		return
	}
	if _, ok := mb.(Flusher); ok {
		return
	}
	if _, ok := mb.(Barrierer); ok {
		return
	}
	if len(b.mergedAway[Far])+len(b.mergedAway[Near]) > 0 {
		return // both are used again after the changes (execute)
	}
	b.released[s] = true
	if err := mb.Close(); err != nil {
		b.log.Debug("closing mailbox", "mailbox", b.name, "side", s, "err", err)
	}
}

// bothSides runs fn for the far and the near side concurrently and waits for
// both. fn must only write what belongs to its side.
func bothSides(fn func(s Side)) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fn(Near)
	}()
	fn(Far)
	wg.Wait()
}

// farThenNear runs fn for the far side, then for the near side.
func farThenNear(fn func(s Side)) {
	fn(Far)
	fn(Near)
}

// isLocal says whether a store keeps its mailboxes on this machine (no
// connections to wait for).
func isLocal(s Store) bool {
	_, ok := s.(LocalStore)
	return ok
}

func (b *boxRun) run(ctx context.Context, missing [2]bool) error {
	dry := b.opt.DryRun
	var err error
	if b.statePath, err = StatePath(b.spec, b.name); err != nil {
		return err
	}
	// Lock before touching anything else of this pair.
	var lk *Lock
	if dry {
		lk, err = LockFileShared(b.statePath + ".lock")
	} else {
		lk, err = LockFile(b.statePath + ".lock")
	}
	if err != nil {
		return err
	}
	defer lk.Unlock()

	opts := b.options()
	hdr, err := LoadStateHeader(b.statePath)
	if b.opt.staleState {
		// A dry run of a mailbox made anew (syncOne): the state file there
		// is of the one deleted before, which the run would drop.
		hdr, err = StateHeader{}, nil
	}
	if err != nil {
		return err
	}
	if err := hdr.Owner.check(b.spec, b.name, b.statePath); err != nil {
		renamed, rerr := adoptRenamed(ctx, b.spec, b.name, b.statePath, hdr, dry, b.log)
		if rerr != nil {
			return fmt.Errorf("%w (and taking it for a mailbox renamed on both sides: %v)", err, rerr)
		}
		if !renamed {
			return err
		}
	}
	if b.quickUnchanged(hdr, opts) {
		b.res.Skipped = "unchanged"
		return nil
	}
	jd, err := readJournal(b.statePath + ".journal")
	if b.opt.staleState {
		jd, err = nil, nil
	}
	if err != nil {
		return err
	}
	// The pairs are read while both sides open: at 100 000 messages parsing
	// them takes as long as a round trip or two, and selecting a large IMAP
	// mailbox is often the longest step of a run. Until then b.st is the
	// header, which is all that deciding what to prefetch needs.
	b.st, b.meta = hdr.State, stateMeta{Owner: hdr.Owner, Deleted: hdr.Deleted}
	var full struct {
		st   State
		meta stateMeta
		img  *stateImage
		err  error
	}
	loaded := make(chan struct{})
	go func() {
		defer close(loaded)
		if !b.opt.staleState {
			full.st, full.meta, full.img, full.err = loadStateImage(b.statePath)
		}
	}()
	if jd != nil && jd.Header.Generation != b.st.Generation && jd.Header.Generation != b.st.Generation+1 {
		// Written before the state we loaded was saved: already included.
		// A journal one generation ahead is not stale: finish writes a
		// journal it keeps (copies whose outcome is unknown) with the next
		// state's generation before it saves that state, so that the
		// records survive a crash before the save as well as after it;
		// replay then saves a generation above both.
		b.log.Info("discarding stale journal", "mailbox", b.name, "journal", jd.Header.Generation, "state", b.st.Generation)
		jd = nil
		if !dry {
			// The state that made it stale may be a section a killed run
			// appended and never made durable: made durable first, as the
			// journal's removal can reach the disk before an appended
			// section does (which a rename, committed in order, could not).
			// No state file (moved away): nothing to make durable.
			if err := b.hook.syncFile(b.statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			os.Remove(b.statePath + ".journal")
		}
	}

	// Both sides at once: selecting a large IMAP mailbox and scanning a large
	// Maildir folder each take a good part of a run, on different machines.
	// Not when both stores are remote: each then hands out connections from a
	// pool that can be smaller than the number of pairs running (an IMAP
	// store keeps to two on a near server), and a pair holding one store's
	// last connection while it waits for the other's, with another pair
	// doing the opposite, would wait for ever. Far first, then near, is one
	// order for every pair, so whoever holds a near connection holds a far
	// one and can finish.
	open := bothSides
	if !isLocal(b.spec.Far) && !isLocal(b.spec.Near) {
		open = farThenNear
	}
	var openErr [2]error
	early := b.earlySide(jd, missing)
	var earlyRep struct {
		taken bool
		rep   Report
		err   error
	}
	open(func(s Side) {
		if missing[s] {
			return
		}
		var mb Mailbox
		var err error
		lao, ok := b.spec.store(s).(ListAheadOpener)
		if ahead, want := b.listAhead(s); ok && want && jd == nil {
			mb, err = lao.OpenMailboxListing(ctx, b.name, dry, ahead)
		} else {
			mb, err = b.spec.store(s).OpenMailbox(ctx, b.name, dry)
		}
		if err != nil {
			openErr[s] = err
			return
		}
		b.mb[s] = mb
		b.status[s] = mb.Status()
		if f, ok := mb.(Flusher); ok && !dry {
			f.DeferSync()
		}
		// (The other side may still be opening: its status from the listing.)
		if pf, ok := mb.(Prefetcher); ok && jd == nil && b.willList(s, b.listed[s.Other()]) {
			// Unchanged itself, listed only because the other side changed:
			// at 100 000 files the listing is most of the run's CPU, and
			// the state says what it would.
			if np, ok := mb.(NamePrefetcher); ok && !b.changed(s, b.status[s]) && np.PrefetchNames(ctx) {
				b.unlisted[s] = true
			} else {
				pf.Prefetch(ctx)
			}
		}
		if s != early {
			return
		}
		// The local side's report while the remote side is still opening:
		// at 100 000 files, turning the names into a report takes 30-45 ms
		// that would otherwise come after the far side's SELECT. It is
		// used below only if nothing it rests on changed meanwhile.
		<-loaded
		validity := full.st.FarValidity
		if s == Near {
			validity = full.st.NearValidity
		}
		if full.err != nil || full.st.Generation != hdr.Generation || validity != b.status[s].UIDValidity {
			return
		}
		b.setKnownUIDsOn(s, &full.st, nil)
		earlyRep.taken = true
		earlyRep.rep, earlyRep.err = b.reportOn(ctx, s, &full.st, b.listed[s.Other()])
	})
	<-loaded
	if full.err != nil {
		return full.err
	}
	if full.st.Generation != hdr.Generation {
		// Nothing else writes the state while the pair is locked.
		return fmt.Errorf("state %s changed while it was read", b.statePath)
	}
	b.st, b.meta, b.img = full.st, full.meta, full.img
	for _, s := range []Side{Far, Near} {
		err := openErr[s]
		if errors.Is(err, ErrNoMailbox) && b.ahead && s == Far {
			return errNotThereYet
		}
		if err != nil && b.ahead && s == Far && ctx.Err() == nil {
			return &aheadRefused{err}
		}
		if errors.Is(err, ErrNoMailbox) && b.listsMessages(s) {
			return b.vanished(s)
		}
		if err != nil {
			return fmt.Errorf("opening on the %s side: %w", s, err)
		}
	}
	if b.ahead && b.st.FarValidity != 0 && b.status[Far].UIDValidity != b.st.FarValidity {
		return errValidityAhead
	}
	if !earlyRep.taken {
		early = -1
	}
	b.setKnownUIDs(jd, early)

	if jd != nil {
		if jd.Header.FarValidity != b.status[Far].UIDValidity || jd.Header.NearValidity != b.status[Near].UIDValidity {
			b.log.Warn("discarding journal: UIDVALIDITY changed since it was written", "mailbox", b.name)
			if !dry {
				os.Remove(b.statePath + ".journal")
			}
		} else if err := b.replay(ctx, jd); err != nil {
			return err
		}
	}

	validityKept := b.st.FarValidity == b.status[Far].UIDValidity && b.st.NearValidity == b.status[Near].UIDValidity
	repaired, err := b.checkValidity(ctx)
	if err != nil {
		return err
	}
	var rep [2]Report
	var repErr [2]error
	bothSides(func(s Side) {
		if missing[s] {
			rep[s] = Report{Complete: true}
			return
		}
		// The early report stands if it listed the side (not told
		// "unchanged" by a hint the other side's status may belie), no
		// repair renumbered the pairs, and the other side's status, known
		// now, asks for a listing too. Otherwise the side is reported
		// again, as if there had been none.
		if s == early && earlyRep.err == nil && !earlyRep.rep.Unchanged && validityKept && !repaired {
			if other := b.status[s.Other()]; b.willList(s, &other) {
				rep[s] = earlyRep.rep
				return
			}
		}
		rep[s], repErr[s] = b.report(ctx, s)
	})
	for _, err := range repErr {
		if err != nil {
			return err
		}
	}
	if err := b.pairExisting(ctx, &rep, opts); err != nil {
		return err
	}
	if rep[Far].Unchanged && rep[Near].Unchanged && !b.expungePending(opts) {
		b.res.Skipped = "unchanged"
		if !dry && !b.headerCurrent() {
			// A state from before the header said all the next run needs
			// to skip this pair without opening it: write it once more.
			st := b.st
			st.Generation++
			if err := b.save(st); err != nil {
				return err
			}
			b.pairsRecorded()
		}
		return nil
	}
	plan := PlanMailbox(b.st, rep[Far], rep[Near], opts)
	if plan.Guard != nil && b.opt.Force {
		plan.Guard = nil
	}
	if dry {
		b.res.Plan = &plan
		for s := 0; s < 2; s++ {
			b.res.Copied[s] = len(plan.Copies[s])
			for _, fu := range plan.Flags[s] {
				b.res.Flagged[s] += len(fu.UIDs)
			}
			b.res.Deleted[s] = len(plan.Expunges[s])
		}
		if plan.Guard != nil {
			return fmt.Errorf("%w: %w", ErrGuard, plan.Guard)
		}
		return nil
	}
	if plan.Guard != nil {
		return fmt.Errorf("%w: nothing was changed in this mailbox: %w", ErrGuard, plan.Guard)
	}
	empty := plan.Empty() && len(plan.TooBig[Far])+len(plan.TooBig[Near]) == 0 && b.headerCurrent()
	if empty {
		// The idents too: a state without them (older, or one whose
		// messages were not listed since) gets them once.
		b.fillIdents(&plan.State)
		// And the stamps a side can vouch for although it was modified too
		// recently to give one at open (by the last run, say).
		b.restamp(&plan)
	}
	if empty && sameState(b.st, plan.State) {
		// Nothing to do and nothing new to record. A channel that never
		// copies one way (push = ["flags"]: local messages stay local) keeps
		// that side's old markers, so each run lists the side and plans
		// nothing; writing the same state again each time was a disk flush
		// (and a new generation) per mailbox and run for nothing.
		b.res.Skipped = "unchanged"
		return nil
	}
	for t, uids := range plan.TooBig {
		// Said once ever, so it must say all a user needs to find the
		// message and judge the limit: the side its UID is on, its size.
		src := Side(t).Other()
		size := make(map[UID]int64, len(uids))
		for _, u := range uids {
			size[u] = -1
		}
		for _, m := range rep[src].Messages {
			if _, ok := size[m.UID]; ok {
				size[m.UID] = m.Size
			}
		}
		for _, u := range uids {
			b.log.Warn(fmt.Sprintf("message over max_size not copied to the %s side (reported once)", Side(t)),
				"mailbox", b.name, "side", src.String(), "uid", u, "size", size[u], "max_size", b.spec.MaxSize, Notice, true)
		}
	}

	b.plannedProgress(&plan)
	b.vouchUnwritten(&plan)
	b.j = newJournal(b.statePath+".journal", journalHeader{
		Generation: b.st.Generation, FarValidity: b.status[Far].UIDValidity, NearValidity: b.status[Near].UIDValidity,
	}, b.hook)
	if err := b.execute(ctx, &plan); err != nil {
		b.j.close()
		return err // errCrash: stop dead
	}
	if len(b.errs) > 0 || b.deferred || ctx.Err() != nil {
		// Something planned did not happen (and was put back as pending or
		// reverted): forget the markers so the next run looks at everything
		// instead of skipping the mailbox as unchanged.
		plan.State.Far, plan.State.Near = Markers{}, Markers{}
	} else if !empty {
		b.restamp(&plan)
	}
	if err := b.finish(plan.State); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ErrStopped, ctx.Err())
	}
	return nil
}

// restamp gives a side that the plan describes exactly, and that this run
// changed without a hitch, the markers it has now where its store vouches
// that nothing but this run changed it since it was opened (Restamper). The
// markers seen at open would make the next run list the whole mailbox (for
// a Maildir of 100 000 messages, 0.2-0.3 s) only because this run wrote to it.
func (b *boxRun) restamp(p *Plan) {
	for _, s := range []Side{Far, Near} {
		r, ok := b.mb[s].(Restamper)
		if !ok || b.released[s] || !p.Exact[s] {
			continue
		}
		var st Status
		if v := b.vouched[s]; v != nil {
			st, ok = v.st, v.ok
		} else {
			st, ok = r.StatusAfter()
		}
		if !ok || st.Stamp == "" || st.UIDValidity != b.status[s].UIDValidity {
			continue
		}
		if s == Far {
			p.State.Far = MarkersOf(st)
		} else {
			p.State.Near = MarkersOf(st)
		}
	}
}

// vouch is a Restamper's answer.
type vouch struct {
	st Status
	ok bool
}

// vouchUnwritten asks the Restamper of a side the plan does not write (no
// copies to it, no flag changes or removals on it) at once, before the plan
// is executed, instead of after it: its last change by this run was
// before the plan (a Maildir's new files given their UIDs at the listing),
// and a Maildir ends its watch when asked, which the kernel then reaps
// while the other side is written to; the store's Close, at the end of
// the run, waits for that reaping otherwise (~13 ms). restamp uses the
// answer only where it would have asked itself.
func (b *boxRun) vouchUnwritten(p *Plan) {
	for _, s := range []Side{Far, Near} {
		r, ok := b.mb[s].(Restamper)
		if !ok || b.released[s] || !p.Exact[s] || len(p.Copies[s]) > 0 || p.changes(s) {
			continue
		}
		st, ok := r.StatusAfter()
		b.vouched[s] = &vouch{st: st, ok: ok}
	}
}

// headerCurrent says the state file's header holds everything this version
// writes there (see the unchanged path in run): the state need not be
// written again just for that.
func (b *boxRun) headerCurrent() bool {
	return b.meta.Deleted[Far] >= 0 && b.meta.Deleted[Near] >= 0 && b.meta.Owner.FarStore != ""
}

// sameState says a and b record the same, generation aside.
func sameState(a, b State) bool {
	if a.FarValidity != b.FarValidity || a.NearValidity != b.NearValidity || a.MaxPulled != b.MaxPulled ||
		a.MaxPushed != b.MaxPushed || a.Far != b.Far || a.Near != b.Near || len(a.Pairs) != len(b.Pairs) {
		return false
	}
	sortPairs(a.Pairs)
	sortPairs(b.Pairs)
	return slices.Equal(a.Pairs, b.Pairs)
}

// listAhead is, before side s is opened, the incremental listing report
// will very likely ask of it: its query from the recorded markers, when the
// status seen before opening (a STATUS or LIST-STATUS, if any) says the side
// changed under the same UIDVALIDITY, and the UIDs below too when that
// status shows removals or there is none. Only the state's header is loaded
// at this point, so removals are judged by the recorded count alone.
func (b *boxRun) listAhead(s Side) (ListAhead, bool) {
	rec, validity := b.st.Far, b.st.FarValidity
	if s == Near {
		rec, validity = b.st.Near, b.st.NearValidity
	}
	if b.st.Generation == 0 || validity == 0 || rec.UIDNext <= 1 || rec.HighestModSeq == 0 {
		return ListAhead{}, false
	}
	a := ListAhead{UIDValidity: validity, From: rec.UIDNext, ChangedSince: rec.HighestModSeq}
	seen := b.listed[s]
	if seen == nil {
		// Nothing to judge removals by: ask for the UIDs too (a UID SEARCH
		// of the known range is cheap); report may not need them.
		a.UIDsBelow = rec.UIDNext
		return a, true
	}
	if seen.UIDValidity != validity || seen.HighestModSeq == 0 || (seen.Stamp != "" && seen.Stamp == rec.Stamp) {
		return ListAhead{}, false
	}
	if removalsLikely(*seen, rec, nil, s) {
		a.UIDsBelow = rec.UIDNext
	}
	return a, true
}

// changed tells whether side s, with status st, may have changed since the
// last run: not when its status stamp is the one recorded.
func (b *boxRun) changed(s Side, st Status) bool {
	rec, validity := b.st.Far, b.st.FarValidity
	if s == Near {
		rec, validity = b.st.Near, b.st.NearValidity
	}
	return b.st.Generation == 0 || validity != st.UIDValidity || st.Stamp == "" || st.Stamp != rec.Stamp
}

// willList tells whether report lists side s: when it changed, and for a
// local store also when the other side did. That side's changes will most
// likely have to be made here, which needs the folder's files, and listing
// them alongside the other side's report costs less wall time than finding
// them one by one after it (for 100 000 files, 40-60 ms of reading names).
// other is the other side's status (a hint from the store's listing when
// it is not open yet; nil: not known).
func (b *boxRun) willList(s Side, other *Status) bool {
	if b.unlisted[s] {
		return false
	}
	if b.changed(s, b.status[s]) {
		return true
	}
	return isLocal(b.spec.store(s)) && (other == nil || b.changed(s.Other(), *other))
}

// options are the channel's rules for this pair in this run.
func (b *boxRun) options() Options {
	opts := Options{Pull: b.spec.Pull, Push: b.spec.Push, Expunge: b.spec.Expunge, MaxSize: b.spec.MaxSize, Force: b.opt.Force}
	switch b.opt.Mode {
	case ModePull:
		opts.Push, opts.Expunge[Far] = 0, false
	case ModePush:
		opts.Pull, opts.Expunge[Near] = 0, false
	}
	return opts
}

// save writes st as this pair's state, naming its owner.
func (b *boxRun) save(st State) error {
	img, err := saveStateWith(b.statePath, st, ownerOf(b.spec, b.name), b.img, nil, b.hook)
	b.keepImage(img, st)
	return err
}

// keepImage records what a save left in the state file, for the next save
// of this run to append to: a copy of the pairs, which the run may change in
// place.
func (b *boxRun) keepImage(img *stateImage, st State) {
	if img != nil {
		img.pairs = append([]Pair{}, st.Pairs...)
	}
	b.img = img
}

// expungePending reports whether the state records a message flagged
// \Deleted on a side this run expunges: then an unchanged mailbox still has
// work (expunge was just enabled, or a pull/push run left it for a sync).
func (b *boxRun) expungePending(opts Options) bool {
	for _, p := range b.st.Pairs {
		for _, s := range []Side{Far, Near} {
			if opts.Expunge[s] && p.uid(s) != 0 && p.Flags.Has(FlagDeleted) {
				return true
			}
		}
	}
	return false
}

// finish writes the new state and removes the journal.
func (b *boxRun) finish(st State) error {
	b.fillIdents(&st)
	st.Generation = b.st.Generation + 1
	st.FarValidity, st.NearValidity = b.status[Far].UIDValidity, b.status[Near].UIDValidity
	// The markers come from the plan: those seen at open (not now, so a change
	// made by someone else during this run still looks like a change next
	// time), or the old ones where the plan could not record a side exactly.
	//
	// What the state records must be durable before it is saved. The journal
	// need not be synced here: every intent was synced before its act, and a
	// result or "done" line lost in a crash only makes the next run look at
	// the target; once the state is saved the journal is stale anyway.
	//
	// Where a mailbox can make the state file durable in the same step as
	// its own changes (Barrierer: a Maildir's syncfs), one flush of the disk
	// does what an fsync per changed directory plus one of the state did.
	var barrier Barrierer
	for _, mb := range b.mb {
		if br, ok := mb.(Barrierer); ok && barrier == nil && br.Covers(b.statePath) {
			barrier = br
			continue
		}
		if f, ok := mb.(Flusher); ok {
			if err := f.Flush(); err != nil {
				return err
			}
		}
	}
	if b.keepJournal {
		// The kept journal gets the new generation first: a crash before
		// the state's rename leaves it one ahead of the old state, which
		// run accepts, one after it leaves both equal. Rebased after the
		// save, a crash in between left an older journal beside the new
		// state, discarded as stale: its copies were made again.
		if err := b.j.rebase(st.Generation); err != nil {
			return err
		}
	}
	if err := b.hook.point(crashBeforeState); err != nil {
		return err
	}
	if err := b.hook.writeErr(b.statePath); err != nil {
		return fmt.Errorf("state %s: %w", b.statePath, err)
	}
	var durable func(string) error
	if barrier != nil {
		durable = func(path string) error { return barrier.Barrier(path) }
	}
	// The run ends here: no save follows that would append to this one.
	_, err := saveStateWith(b.statePath, st, ownerOf(b.spec, b.name), b.img, durable, b.hook)
	b.img = nil
	if err != nil {
		return err
	}
	b.pairsRecorded()
	if err := b.hook.point(crashAfterState); err != nil {
		return err
	}
	b.st = st
	if b.keepJournal {
		return nil
	}
	return b.j.remove()
}

// listsMessages reports whether the state holds messages on side s.
func (b *boxRun) listsMessages(s Side) bool {
	for _, p := range b.st.Pairs {
		if p.uid(s) != 0 {
			return true
		}
	}
	return false
}

func (b *boxRun) vanished(s Side) error {
	n := 0
	for _, p := range b.st.Pairs {
		if p.uid(s) != 0 {
			n++
		}
	}
	return fmt.Errorf("%w: the mailbox has vanished on the %s side while the state %s lists %d messages there; "+
		"nothing was deleted on the %s side. If the removal is intended, delete the mailbox on the %s side too "+
		"(or enable remove); to copy everything back instead, move the state file away",
		ErrGuard, s, b.statePath, n, s.Other(), s.Other())
}

// earlySide is the side whose report run takes while the other side opens:
// the local one when the other is remote, for a pair synced before with no
// journal to replay first. -1: none.
func (b *boxRun) earlySide(jd *journalData, missing [2]bool) Side {
	if jd != nil || b.st.Generation == 0 || missing[Far] || missing[Near] {
		return -1
	}
	switch far, near := isLocal(b.spec.Far), isLocal(b.spec.Near); {
	case near && !far:
		return Near
	case far && !near:
		return Far
	}
	return -1
}

// setKnownUIDs tells mailboxes that keep UIDs in file names which UIDs the
// engine knows (see UIDKeeper), but for side done, told already (-1: none).
func (b *boxRun) setKnownUIDs(jd *journalData, done Side) {
	for _, s := range []Side{Far, Near} {
		if s != done {
			b.setKnownUIDsOn(s, &b.st, jd)
		}
	}
}

// setKnownUIDsOn is setKnownUIDs for side s from the state st.
func (b *boxRun) setKnownUIDsOn(s Side, st *State, jd *journalData) {
	k, ok := b.mb[s].(UIDKeeper)
	if !ok {
		return
	}
	var journal func(yield func(UID))
	if jd != nil {
		journal = func(yield func(UID)) {
			for _, c := range jd.Copies {
				if c.To == s {
					yield(c.Reserved)
					yield(c.Target)
				} else {
					yield(c.Src)
				}
			}
		}
	}
	tellKnown(b.mb[s], st, s, journal)
	if st.Generation > 0 {
		if fi, err := os.Stat(b.statePath); err == nil {
			k.SetLastSync(fi.ModTime())
		}
	}
}

// tellKnown tells a mailbox that keeps UIDs in file names (UIDKeeper) what
// the state st knows of side s: the UIDs it has seen (and those more
// yields: a journal's), and the idents of the messages it pairs. A mailbox
// opened outside a mailbox run (a rename's evidence) is told so too, so
// that it reads the folder as a run does.
func tellKnown(mb Mailbox, st *State, s Side, more func(yield func(UID))) {
	k, ok := mb.(UIDKeeper)
	if !ok {
		return
	}
	above, validity := st.MaxPulled, st.FarValidity
	if s == Near {
		above, validity = st.MaxPushed, st.NearValidity
	}
	has, _ := uidSet(func(yield func(UID)) {
		for _, p := range st.Pairs {
			if u := p.uid(s); u != 0 {
				yield(u)
			}
		}
		if more != nil {
			more(yield)
		}
	})
	k.SetKnownUIDs(func(u UID) bool { return u > above || has(u) })
	// Idents recorded under another UIDVALIDITY describe other UIDs
	// (repair renumbers the pairs and forgets them).
	if ik, ok := mb.(IdentKeeper); ok && validity == mb.Status().UIDValidity {
		if ident := identsOf(st.Pairs, s); ident != nil {
			ik.SetKnownIdents(ident)
		}
	}
}

// identsOf returns the idents pairs record for side s by UID (0 where none
// is), or nil when they record none (a state written before idents were).
// Like uidSet, a table where the UIDs are dense, else binary search.
func identsOf(pairs []Pair, s Side) func(UID) uint32 {
	var top UID
	n := 0
	for _, p := range pairs {
		if u := p.uid(s); u != 0 && p.Ident[s] != 0 {
			top = max(top, u)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if uint64(top) <= 2*uint64(n)+1<<12 {
		tab := make([]uint32, top+1)
		for _, p := range pairs {
			if u := p.uid(s); u != 0 && p.Ident[s] != 0 {
				tab[u] = p.Ident[s]
			}
		}
		return func(u UID) uint32 {
			if u <= top {
				return tab[u]
			}
			return 0
		}
	}
	type ui struct {
		u  UID
		id uint32
	}
	l := make([]ui, 0, n)
	for _, p := range pairs {
		if u := p.uid(s); u != 0 && p.Ident[s] != 0 {
			l = append(l, ui{u, p.Ident[s]})
		}
	}
	slices.SortFunc(l, func(a, b ui) int { return cmpUID(a.u, b.u) })
	return func(u UID) uint32 {
		if i, ok := slices.BinarySearchFunc(l, u, func(e ui, u UID) int { return cmpUID(e.u, u) }); ok {
			return l[i].id
		}
		return 0
	}
}

// fillIdents sets the idents of st's pairs before st is saved: the planner
// and the executor build pairs without them. Each is the one b.st, the state
// this run started from, recorded for the UID, else the mailbox's when it
// has seen the message in this run (IdentKeeper.IdentOf). A recorded ident
// still holds: setKnownUIDs passed it to the mailbox, which gave any message
// with another ident a fresh UID (and repair forgot those of renumbered
// UIDs), so the mailbox is asked only for the others — new messages, and all
// of a state written before idents — not for every message at every save.
//
// Both states are in the order of State.Pairs, and the new one is mostly the
// old one with a few pairs changed: a walk through both finds most pairs'
// old idents in place (at 100 000 pairs, 5 ms for tables of both sides'
// idents by UID, on the critical path of every run that saves, against well
// under one for the walk). The tables are built only for the pairs the walk
// does not find with an ident (one side copied again, an old state not in
// order) whose UID is not above every recorded one (a new copy's is).
func (b *boxRun) fillIdents(st *State) {
	var ik [2]IdentKeeper
	var top [2]UID // the highest UID of each side with an ident there (0: none has one)
	old := b.st.Pairs
	for i := range old {
		p := &old[i]
		if p.Ident[Far] != 0 {
			top[Far] = max(top[Far], p.Far)
		}
		if p.Ident[Near] != 0 {
			top[Near] = max(top[Near], p.Near)
		}
	}
	for _, s := range []Side{Far, Near} {
		ik[s], _ = b.mb[s].(IdentKeeper)
	}
	if ik == [2]IdentKeeper{} && top == [2]UID{} {
		return
	}
	var tab [2]func(UID) uint32
	fill := func(p *Pair, s Side, u UID, same *Pair) {
		switch {
		case u == 0:
			p.Ident[s] = 0
		case same != nil && same.Ident[s] != 0:
			p.Ident[s] = same.Ident[s]
		default:
			p.Ident[s] = 0
			// A UID above every recorded one is a message new to the
			// state (a copy made in this run, one listed for the first
			// time): no table needed to find that it has no ident yet.
			if u <= top[s] {
				if tab[s] == nil {
					tab[s] = identsOf(old, s)
				}
				p.Ident[s] = tab[s](u)
			}
			if p.Ident[s] == 0 && ik[s] != nil {
				p.Ident[s], _ = ik[s].IdentOf(u)
			}
		}
	}
	j := 0
	for i := range st.Pairs {
		p := &st.Pairs[i]
		for j < len(old) && pairBefore(&old[j], p) {
			j++
		}
		var same *Pair
		if j < len(old) && old[j].Far == p.Far && old[j].Near == p.Near {
			same = &old[j]
		}
		fill(p, Far, p.Far, same)
		fill(p, Near, p.Near, same)
	}
}

// pairBefore is comparePairs(*a, *b) < 0, without copying the pairs.
func pairBefore(a, b *Pair) bool {
	if (a.Far == 0) != (b.Far == 0) {
		return b.Far == 0
	}
	if a.Far != b.Far {
		return a.Far < b.Far
	}
	return a.Near < b.Near
}

// uidSet returns a membership test for the UIDs each yields, and how many
// it yielded; each is called once or twice. The store asks the test once per
// file: a bitmap where the UIDs are dense (the usual case: 12 KiB for 100 000
// messages), else binary search — both far cheaper than a map of 100 000
// entries, which cost more than the rest of the run's set-up. No slice of
// the UIDs is built in the dense case: at 100 000 pairs its memory, first
// touched, cost more than the rest of report.
func uidSet(each func(yield func(UID))) (has func(UID) bool, n int) {
	var top UID
	each(func(u UID) { top = max(top, u); n++ })
	if uint64(top) <= 64*uint64(n)+1<<16 {
		bits := make([]uint64, top/64+1)
		each(func(u UID) { bits[u/64] |= 1 << (u % 64) })
		return func(u UID) bool { return u <= top && bits[u/64]&(1<<(u%64)) != 0 }, n
	}
	uids := make([]UID, 0, n)
	each(func(u UID) { uids = append(uids, u) })
	slices.Sort(uids)
	return func(u UID) bool { _, ok := slices.BinarySearch(uids, u); return ok }, n
}

// replay resolves the copies and flag changes of an interrupted run's
// journal, records them in the state, saves it and removes the journal.
// Removals are left to this run's planner (see below).
func (b *boxRun) replay(ctx context.Context, jd *journalData) error {
	dry := b.opt.DryRun
	b.log.Info("resuming an interrupted run", "mailbox", b.name, "copies", len(jd.Copies), "flags", len(jd.Flags), "expunges", len(jd.Expunges))
	for _, t := range []Side{Far, Near} {
		var open []*copyIntent
		for _, c := range jd.Copies {
			if c.To == t && (!c.Done || (!c.Failed && c.Target == 0)) {
				open = append(open, c)
			}
		}
		if len(open) == 0 {
			continue
		}
		if b.mb[t] == nil {
			continue
		}
		// The copies with a result line go along: their targets are taken.
		for _, c := range jd.Copies {
			if c.To == t && c.Done && !c.Failed && c.Target != 0 {
				open = append(open, c)
			}
		}
		if err := b.resolveCopies(ctx, t, open, &b.st); err != nil {
			return fmt.Errorf("resuming the interrupted run: %w", err)
		}
	}
	// Record the copies that reached the target.
	idx := [2]map[UID]int{{}, {}}
	for i, p := range b.st.Pairs {
		for s := 0; s < 2; s++ {
			if u := p.uid(Side(s)); u != 0 {
				idx[s][u] = i
			}
		}
	}
	for _, c := range jd.Copies {
		if c.Failed || c.Target == 0 {
			continue
		}
		src := c.To.Other()
		if _, dup := idx[c.To][c.Target]; dup {
			continue
		}
		if i, ok := idx[src][c.Src]; ok {
			if b.st.Pairs[i].uid(c.To) != 0 {
				continue
			}
			b.st.Pairs[i].setUID(c.To, c.Target)
			b.st.Pairs[i].Flags, b.st.Pairs[i].Skip = c.Flags, SkipNone
			idx[c.To][c.Target] = i
			continue
		}
		p := Pair{Flags: c.Flags}
		p.setUID(src, c.Src)
		p.setUID(c.To, c.Target)
		b.st.Pairs = append(b.st.Pairs, p)
		idx[src][c.Src] = len(b.st.Pairs) - 1
		idx[c.To][c.Target] = len(b.st.Pairs) - 1
	}
	if dry {
		return nil
	}
	// Flag changes are idempotent: redo the unfinished ones. Each one,
	// done before or now, made both sides agree on its flags: the pairs
	// record that agreement as their merge base, as the killed run's state
	// would have. Otherwise a flag the run propagated (a \Deleted above all)
	// would look like a fresh change of its target side and win over the
	// user taking it back on the side it came from since.
	for _, f := range jd.Flags {
		if !f.Done {
			if b.mb[f.Side] == nil {
				continue
			}
			if err := b.mb[f.Side].SetFlags(ctx, f.UIDs, f.Add, f.Remove); err != nil {
				return fmt.Errorf("resuming the interrupted run: flags on the %s side: %w", f.Side, err)
			}
		}
		for _, u := range f.UIDs {
			if i, ok := idx[f.Side][u]; ok {
				b.st.Pairs[i].Flags = (b.st.Pairs[i].Flags | f.Add) &^ f.Remove
			}
		}
	}
	// The state below records those flags as agreed: the renames that carry
	// them must be durable first — the ones just redone (their fsync
	// deferred), and the killed run's, which may never have been fsynced
	// (its journal says done once the rename returned). Lost to a power cut
	// after the save, a flag would read as taken away on that side.
	var flagged [2]bool
	for _, f := range jd.Flags {
		flagged[f.Side] = true
	}
	for _, s := range []Side{Far, Near} {
		if !flagged[s] || b.mb[s] == nil {
			continue
		}
		var err error
		if st, ok := b.mb[s].(Settler); ok {
			err = st.Settle()
		} else if fl, ok := b.mb[s].(Flusher); ok {
			err = fl.Flush()
		}
		if err != nil {
			return fmt.Errorf("resuming the interrupted run: making the flags on the %s side durable: %w", s, err)
		}
	}
	// Unfinished expunges are not redone: the user may have taken the
	// \Deleted back since (an expunge cannot be undone, and the stores make
	// it unconditional: IMAP stores +\Deleted itself before UID EXPUNGE). The
	// state saved below still holds those pairs with their recorded flags,
	// so this run's planner decides again from what the sides show now: a
	// message still flagged \Deleted is expunged again, a partner of one
	// already gone is removed as any removal is, and a message whose
	// \Deleted was taken back stays. A half-done IMAP expunge (our +\Deleted
	// stored, UID EXPUNGE not sent) shows \Deleted and is expunged again;
	// that is only ever the partner of a message already expunged, or one
	// the user flagged itself: a removal whose \Deleted came from the near
	// side waits until the near message is gone (Plan.ExpungeLast), and the
	// far side goes first otherwise.
	//
	// Save with the old markers: this run still has to look at everything.
	// The generation goes above the journal's too (one written just before
	// a state save that did not happen is one ahead, see finish), so that
	// the journal, if a crash keeps it from being removed below, is stale.
	st := b.st
	b.fillIdents(&st)
	st.Generation = max(st.Generation, jd.Header.Generation) + 1
	if err := b.save(st); err != nil {
		return err
	}
	b.st = st
	if err := b.hook.point(crashAfterReplay); err != nil {
		return err
	}
	if err := os.Remove(b.statePath + ".journal"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// report looks at one side: nothing when its stamp is unchanged, only new and
// changed messages when the store has a change counter, else everything.
func (b *boxRun) report(ctx context.Context, s Side) (Report, error) {
	other := b.status[s.Other()]
	return b.reportOn(ctx, s, &b.st, &other)
}

// reportOn is report from the state st, with other the other side's status
// (nil: not known). run calls it for the side earlySide names before b.st
// holds the pairs, while the other side still opens.
func (b *boxRun) reportOn(ctx context.Context, s Side, st *State, other *Status) (Report, error) {
	status := b.status[s]
	rec, validity := st.Far, st.FarValidity
	if s == Near {
		rec, validity = st.Near, st.NearValidity
	}
	r := Report{Status: status}
	known := st.Generation > 0 && validity == status.UIDValidity
	if !b.willList(s, other) {
		r.Unchanged = true
		return r, nil
	}
	q := ListQuery{All: true}
	incremental := known && rec.UIDNext > 0 && rec.HighestModSeq > 0 && status.HighestModSeq > 0
	if incremental && (status.HighestModSeq < rec.HighestModSeq || status.UIDNext < rec.UIDNext) {
		// Neither may go down while UIDVALIDITY stays (RFC 7162, 3501), but
		// a server that rebuilt its index can do it: asking for the changes
		// since the recorded value would then miss every change made since
		// the rebuild, for good. Everything is listed instead.
		b.log.Warn("the server's change counters went down without a UIDVALIDITY change: listing every message",
			"mailbox", b.name, "side", s.String(), "highestmodseq", status.HighestModSeq, "recorded_highestmodseq", rec.HighestModSeq,
			"uidnext", status.UIDNext, "recorded_uidnext", rec.UIDNext)
		incremental = false
	}
	if incremental {
		q = ListQuery{From: rec.UIDNext, ChangedSince: rec.HighestModSeq}
	}
	// Size and Date serve only copies: a message paired on both sides is
	// never copied, so a Maildir need not stat it (100 000 stats: 0.4 s).
	paired := func(yield func(UID)) {
		for _, p := range st.Pairs {
			if p.Far != 0 && p.Near != 0 {
				yield(p.uid(s))
			}
		}
	}
	if has, n := uidSet(paired); n > 0 {
		q.NeedDetails = func(u UID) bool { return !has(u) }
	}
	if pf, ok := b.mb[s].(UIDPrefetcher); ok && incremental && removalsLikely(status, rec, st.Pairs, s) {
		pf.PrefetchUIDs(rec.UIDNext)
	}
	msgs, complete, err := b.mb[s].List(ctx, q)
	if err != nil {
		return r, fmt.Errorf("listing the %s side: %w", s, err)
	}
	r.Messages, r.Complete = msgs, complete
	if fk, ok := b.mb[s].(FlagKeeper); ok {
		if kept := fk.KeptFlags() & AllFlags; kept != AllFlags {
			keepRecordedFlags(msgs, st.Pairs, s, kept)
		}
	}
	if complete {
		return r, nil
	}
	if !incremental {
		return r, fmt.Errorf("listing the %s side: the store returned a partial list for a full listing", s)
	}
	if d, ok := b.mb[s].(Describer); ok {
		if err := b.describePending(ctx, s, st, d, &r); err != nil {
			return r, fmt.Errorf("listing the %s side: %w", s, err)
		}
	}
	// Were messages known from earlier removed? Compare counts and only ask
	// for the UIDs when some are missing.
	listed := make(map[UID]bool, len(msgs))
	newCount := 0
	for _, m := range msgs {
		if m.UID >= rec.UIDNext {
			listed[m.UID] = true
			newCount++
		}
	}
	// A known UID at or above the old UIDNEXT (copied by the last run) that
	// is not listed is gone; the planner learns that only from Existing.
	// Existing then reaches up to it: a listing can leave out a message
	// that is there (an answer the client could not use), and one taken
	// for gone would be removed from the other side.
	knownBelow := 0
	need := status.Messages < 0
	below := rec.UIDNext
	for _, p := range st.Pairs {
		if u := p.uid(s); u != 0 && u < rec.UIDNext {
			knownBelow++
		} else if u != 0 && !listed[u] {
			need = true
			below = max(below, u+1)
		}
	}
	if !need {
		old := status.Messages - int64(newCount)
		need = old < int64(knownBelow) || (rec.Messages >= 0 && old < rec.Messages)
	}
	if need {
		uids, err := b.mb[s].UIDs(ctx, below)
		if err != nil {
			return r, fmt.Errorf("listing the %s side: %w", s, err)
		}
		r.Existing, r.ExistingKnown = uids, true
	}
	return r, nil
}

// describePending adds to r the sources on side s of copies a previous run
// left unfinished that the incremental listing left out (unchanged since):
// without them the retried copy would lose its arrival date and escape
// max_size.
func (b *boxRun) describePending(ctx context.Context, s Side, st *State, d Describer, r *Report) error {
	var want []UID
	for _, p := range st.Pairs {
		if p.Skip == SkipNone && p.uid(s) != 0 && p.uid(s.Other()) == 0 {
			want = append(want, p.uid(s))
		}
	}
	if len(want) == 0 {
		return nil
	}
	listed := make(map[UID]bool, len(r.Messages))
	for _, m := range r.Messages {
		listed[m.UID] = true
	}
	want = slices.DeleteFunc(want, func(u UID) bool { return listed[u] })
	if len(want) == 0 {
		return nil
	}
	msgs, err := d.Describe(ctx, want)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if !listed[m.UID] {
			r.Messages = append(r.Messages, m)
		}
	}
	slices.SortFunc(r.Messages, func(a, b Message) int { return cmpUID(a.UID, b.UID) })
	return nil
}

// keepRecordedFlags gives each listed message of side s that the state
// knows the recorded value of the flags the side does not keep (see
// FlagKeeper): the side cannot have changed them, so what it reports of them
// is no change. This covers one-sided pairs too: a \Deleted recorded on a
// message kept after its partner's removal, where \Deleted does not last,
// is not the user's undelete. A message the state does not know is left as
// reported.
func keepRecordedFlags(msgs []Message, pairs []Pair, s Side, kept Flag) {
	if len(msgs) == 0 {
		return
	}
	at := make(map[UID]int, len(msgs)) // usually the fewer: an incremental listing
	for i, m := range msgs {
		at[m.UID] = i
	}
	for _, p := range pairs {
		if i, ok := at[p.uid(s)]; ok && p.uid(s) != 0 {
			msgs[i].Flags = msgs[i].Flags&kept | p.Flags&^kept
		}
	}
}

// removalsLikely tells, from the status seen at opening alone, that some
// messages the state knows below rec.UIDNext are gone from side s: even if
// every UID from there to the current UIDNEXT were a message that arrived
// since, fewer than those known would be left. Only a message that arrived
// and was removed again between two runs makes it wrong, and then the
// prefetched UIDs are just not used. report then asks for UIDs, and a store
// can fetch them along with the listing (UIDPrefetcher).
func removalsLikely(status Status, rec Markers, pairs []Pair, s Side) bool {
	if status.Messages < 0 || status.UIDNext == 0 || status.UIDNext < rec.UIDNext {
		return false
	}
	knownBelow := 0
	for _, p := range pairs {
		if u := p.uid(s); u != 0 && u < rec.UIDNext {
			knownBelow++
		}
	}
	old := status.Messages - int64(status.UIDNext-rec.UIDNext)
	return old < int64(knownBelow) || (rec.Messages >= 0 && old < rec.Messages)
}

// checkValidity handles a changed UIDVALIDITY (or a UIDNEXT gone down): one
// side changed → re-pair by Message-ID when the evidence is strong; both →
// stop. repaired says the pairs were renumbered.
func (b *boxRun) checkValidity(ctx context.Context) (repaired bool, err error) {
	if b.st.Generation == 0 && len(b.st.Pairs) == 0 {
		return false, nil
	}
	var changed, back [2]bool
	rec := [2]uint32{b.st.FarValidity, b.st.NearValidity}
	recNext := [2]UID{b.st.Far.UIDNext, b.st.Near.UIDNext}
	for s := 0; s < 2; s++ {
		changed[s] = b.mb[s] != nil && rec[s] != 0 && rec[s] != b.status[s].UIDValidity
		// UIDNEXT may not go down while UIDVALIDITY stays (RFC 3501), but
		// a server restored from a backup without a new UIDVALIDITY does
		// it, and then hands out again UIDs the state pairs with other
		// messages: a new message taken for the one paired under its UID
		// (never copied; removing the copy of the other here would remove
		// it there), and the messages it lost taken as removed. Such a side
		// is re-paired by Message-ID, as after a UIDVALIDITY change.
		back[s] = b.mb[s] != nil && !changed[s] && rec[s] != 0 && recNext[s] > 0 && !b.status[s].UIDNextGuessed &&
			b.status[s].UIDNext > 0 && b.status[s].UIDNext < recNext[s]
	}
	for _, s := range []Side{Far, Near} {
		if back[s] && !changed[s.Other()] && !back[s.Other()] {
			return true, b.repair(ctx, s, fmt.Sprintf("UIDNEXT of the %s side went down (%d→%d) with the same UIDVALIDITY (%d; a mailbox restored from a backup?)",
				s, recNext[s], b.status[s].UIDNext, rec[s]), true)
		}
	}
	if back[Far] && back[Near] {
		return false, fmt.Errorf("UIDNEXT of both sides went down (far %d→%d, near %d→%d) with the same UIDVALIDITYs: the messages cannot be re-paired; "+
			"nothing was copied or deleted. If both mailboxes were really restored, move the state file %s away "+
			"(the next run then copies messages present on only one side, which may create duplicates)",
			recNext[Far], b.status[Far].UIDNext, recNext[Near], b.status[Near].UIDNext, b.statePath)
	}
	switch {
	case changed[Far] && changed[Near]:
		return false, fmt.Errorf("UIDVALIDITY of both sides changed (far %d→%d, near %d→%d): the messages cannot be re-paired; "+
			"nothing was copied or deleted. If both mailboxes were really replaced, move the state file %s away "+
			"(the next run then copies messages present on only one side, which may create duplicates)",
			rec[Far], b.status[Far].UIDValidity, rec[Near], b.status[Near].UIDValidity, b.statePath)
	case changed[Far]:
		return true, b.repair(ctx, Far, fmt.Sprintf("UIDVALIDITY of the far side changed (%d→%d)", rec[Far], b.status[Far].UIDValidity), false)
	case changed[Near]:
		return true, b.repair(ctx, Near, fmt.Sprintf("UIDVALIDITY of the near side changed (%d→%d)", rec[Near], b.status[Near].UIDValidity), false)
	}
	return false, nil
}

// repair re-pairs the messages of side c, whose UIDs the state can no
// longer trust (why says what happened), by Message-ID. restored says the
// side went back in time (UIDNEXT down, UIDVALIDITY kept): its UIDs from the
// lowest one the state paired with a message it no longer has were handed
// out again, to messages that arrived since.
func (b *boxRun) repair(ctx context.Context, c Side, why string, restored bool) error {
	u := c.Other()
	if b.mb[u] == nil {
		// A dry run of a mailbox still to be created there: nothing to
		// re-pair against, and the run would create it empty.
		return nil
	}
	var all [2]map[UID]Message
	for _, s := range []Side{Far, Near} {
		msgs, _, err := b.mb[s].List(ctx, ListQuery{All: true})
		if err != nil {
			return fmt.Errorf("re-pairing (%s): listing the %s side: %w", why, s, err)
		}
		all[s] = make(map[UID]Message, len(msgs))
		for _, m := range msgs {
			all[s][m.UID] = m
		}
	}
	var unchangedUIDs []UID
	total := 0
	for _, p := range b.st.Pairs {
		if p.Far != 0 && p.Near != 0 {
			total++
			if _, ok := all[u][p.uid(u)]; ok {
				unchangedUIDs = append(unchangedUIDs, p.uid(u))
			}
		}
	}
	var changedUIDs []UID
	for uid := range all[c] {
		changedUIDs = append(changedUIDs, uid)
	}
	// Messages of the unchanged side no pair holds, and those waiting to be
	// copied: new since the last run, or copied by a run that crashed before
	// recording it — the journal that knew is void with the UIDVALIDITY. If
	// the changed side holds the same message, it is the copy (or, for a new
	// one, the same delivery): they are paired, like the messages both sides
	// hold at a first sync, rather than copied into duplicates both ways.
	inPair := map[UID]bool{}
	for _, p := range b.st.Pairs {
		if p.uid(u) != 0 && (p.uid(c) != 0 || p.Skip != SkipNone) {
			inPair[p.uid(u)] = true
		}
	}
	var looseUIDs []UID
	for uid := range all[u] {
		if !inPair[uid] {
			looseUIDs = append(looseUIDs, uid)
		}
	}
	idsU, err := fetchMessageIDs(ctx, b.mb[u], sortedUIDs(slices.Concat(unchangedUIDs, looseUIDs)))
	if err != nil {
		return fmt.Errorf("re-pairing (%s): %w", why, err)
	}
	idsC, err := fetchMessageIDs(ctx, b.mb[c], sortedUIDs(changedUIDs))
	if err != nil {
		return fmt.Errorf("re-pairing (%s): %w", why, err)
	}
	byID := map[string]UID{}
	for uid, id := range idsC {
		if _, dup := byID[id]; dup {
			byID[id] = 0 // ambiguous
		} else {
			byID[id] = uid
		}
	}
	comparable := func(a, b Message) bool {
		return a.Size >= 0 && b.Size >= 0 && a.SizeIsCRLF == b.SizeIsCRLF
	}
	// match pairs each of uids with the changed side's message of the same
	// Message-ID (one not taken yet, and not of another size).
	used := map[UID]bool{}
	match := func(uids []UID) map[UID]UID { // unchanged-side UID → changed-side UID
		m := map[UID]UID{}
		for _, uu := range uids {
			id, ok := idsU[uu]
			if !ok {
				continue
			}
			cu := byID[id]
			if cu == 0 || used[cu] {
				continue
			}
			if mu, mc := all[u][uu], all[c][cu]; comparable(mu, mc) && mu.Size != mc.Size {
				continue
			}
			m[uu] = cu
			used[cu] = true
		}
		return m
	}
	newUID := match(unchangedUIDs) // the pairs first
	confirmed := len(newUID)
	loose := match(sortedUIDs(looseUIDs))
	matchedLoose := len(loose)
	if total > 0 && confirmed < 20 && confirmed*5 < total*4 {
		return fmt.Errorf("%s and only %d of %d paired messages could be "+
			"matched again by Message-ID and size, too few to trust. Nothing was copied or deleted. If the %s mailbox "+
			"was really replaced, move the state file %s away: the next run then copies messages present on only "+
			"one side (duplicates of messages present on both are possible)",
			why, confirmed, total, c, b.statePath)
	}
	kept := b.st.Pairs[:0]
	dropped, orphans, skippedC := 0, 0, 0
	var lostFrom UID // the lowest UID of the changed side paired with a message not found again
	for _, p := range b.st.Pairs {
		if p.uid(u) == 0 && p.Skip != SkipNone {
			skippedC++ // kept on the changed side on purpose; its new UID is not known
		}
		if p.uid(c) == 0 && p.Skip == SkipMerged && p.Into != 0 {
			// Merged into a message of the changed side, under a UID that
			// now means another message: copied again, it is merged again
			// (and recorded with the message's new UID) or arrives.
			p.Skip, p.Into = SkipNone, 0
		}
		if p.uid(c) == 0 {
			if cu, ok := loose[p.uid(u)]; ok {
				p.setUID(c, cu) // the copy a crashed run made
				delete(loose, p.uid(u))
			} else if p.Skip == SkipNone && p.uid(u) != 0 {
				orphans++ // a copy still to make: a crashed run may have made it, since rewritten
			}
			kept = append(kept, p)
			continue
		}
		p.Ident[c] = 0 // it was the old UID's
		if nu, ok := newUID[p.uid(u)]; ok && p.uid(u) != 0 {
			p.setUID(c, nu)
			kept = append(kept, p)
			continue
		}
		dropped++
		if lostFrom == 0 || p.uid(c) < lostFrom {
			lostFrom = p.uid(c)
		}
		if _, ok := all[u][p.uid(u)]; ok && p.uid(u) != 0 {
			// Its partner was not found, but the changed side may hold it in
			// another form (a migration that rewrote it): copying it over
			// could duplicate it, and it must not be deleted either. A
			// one-sided pair keeps it known and leaves it alone.
			p.setUID(c, 0)
			p.Skip = SkipGone
			kept = append(kept, p)
			orphans++
		}
	}
	b.st.Pairs = kept
	for uu, cu := range loose {
		p := Pair{Flags: all[u][uu].Flags & all[c][cu].Flags}
		p.setUID(u, uu)
		p.setUID(c, cu)
		b.st.Pairs = append(b.st.Pairs, p)
	}
	held := make(map[UID]bool, len(b.st.Pairs))
	for _, p := range b.st.Pairs {
		held[p.uid(c)] = true
	}
	// A message kept on the changed side on purpose (SkipGone: its partner
	// was removed and expunge may not remove it; SkipDeleted) carries
	// \Deleted, and nothing else tells its new UID: were it left to look new,
	// it would be copied back to the side that deleted it. So when such pairs
	// were dropped, every \Deleted message of the changed side that no pair
	// holds is kept as SkipGone again (a \Deleted one that arrived since the
	// last run is then not copied either; an undelete copies it, as it does a
	// SkipGone message's).
	keptDeleted := 0
	if skippedC > 0 {
		for cu, m := range all[c] { // (sorted with the rest below)
			if !held[cu] && m.Flags.Has(FlagDeleted) {
				b.st.Pairs = append(b.st.Pairs, pairOf(c, cu, m.Flags, SkipGone))
				held[cu] = true
				keptDeleted++
			}
		}
	}
	if len(loose) > 0 || keptDeleted > 0 {
		slices.SortFunc(b.st.Pairs, comparePairs)
	}
	// A message of the changed side that no pair holds is new — a folder
	// restored with mail the other side no longer has — and is copied as
	// new ones are, unless a message of the unchanged side lost its partner
	// (orphans): one of them may be that partner, rewritten by a
	// migration, and a copy would duplicate it. Then everything on the
	// changed side counts as already considered and those are left alone;
	// the warning says how many.
	top, left := UID(0), 0
	if orphans > 0 {
		if b.status[c].UIDNext > 0 {
			top = b.status[c].UIDNext - 1
		}
		for uid := range all[c] {
			top = max(top, uid)
		}
		// A side restored from a backup had none of its messages from
		// lostFrom on when it was restored: those it holds now arrived
		// since, and are copied as new.
		if restored && lostFrom > 0 {
			top = lostFrom - 1
		}
		for uid := range all[c] {
			if !held[uid] && uid <= top {
				left++
			}
		}
	}
	if c == Far {
		b.st.FarValidity, b.st.MaxPulled, b.st.Far = b.status[c].UIDValidity, top, Markers{}
	} else {
		b.st.NearValidity, b.st.MaxPushed, b.st.Near = b.status[c].UIDValidity, top, Markers{}
	}
	b.log.Warn("re-paired the messages of a side whose UIDs changed", "why", why, "mailbox", b.name, "side", c.String(),
		"repaired", confirmed, "pairs", total, "unmatched_dropped", dropped, "unpaired_matched", matchedLoose,
		"deleted_kept", keptDeleted, "left_alone", left)
	return nil
}

func sortedUIDs(u []UID) []UID {
	slices.Sort(u)
	return u
}

// fetchMessageIDs returns the Message-ID header of each message that has one.
// From a store that can send headers alone (Identifier: IMAP), it asks for
// those: a UIDVALIDITY change of a large server mailbox must not download it.
func fetchMessageIDs(ctx context.Context, mb Mailbox, uids []UID) (map[UID]string, error) {
	out := map[UID]string{}
	if len(uids) == 0 {
		return out, nil
	}
	br := bufio.NewReaderSize(nil, 4096)
	read := func(uid UID, r io.Reader) error {
		br.Reset(r)
		if id := readMessageID(br); id != "" {
			out[uid] = id
		}
		_, err := io.Copy(io.Discard, br) // Fetch wants the body consumed
		return err
	}
	if idf, ok := mb.(Identifier); ok {
		err := idf.Identify(ctx, uids, func(uid UID, header io.Reader, _ int64) error { return read(uid, header) })
		return out, err
	}
	return out, mb.Fetch(ctx, uids, read)
}

// readMessageID reads the header block and returns the value of its first
// Message-ID field. A line longer than br's buffer is skipped whole, and the
// field it belongs to with it: reading its tail as a line of its own would
// let a long field's content pass for a field (a forged Message-ID could
// pair a message with another one at a first sync or a UIDVALIDITY
// recovery), or end the header block early and lose the real one.
func readMessageID(br *bufio.Reader) string {
	return readIdent(br).id
}

// headerIdent is what a first sync reads of a message's header (readIdent).
type headerIdent struct {
	// id, date and subject are the values of the first Message-ID, Date
	// and Subject fields.
	id, date, subject string
	// tuid is how many bytes, in CRLF form, the X-TUID fields take.
	tuid int64
}

// readIdent is readMessageID that also returns the Date and Subject, and
// how many bytes the header's X-TUID fields take. mbsync writes one into
// every message it copies (the Maildir file of a message it pulled, the
// server's copy of one it pushed) and the other copy lacks it: a first sync
// after mbsync must compare sizes without it, or it pairs none of those
// messages and copies each back to the side it came from.
func readIdent(br *bufio.Reader) (h headerIdent) {
	var cur []byte
	var curLen int64 // cur's lines as they were, in CRLF form
	skip := false    // cur is a field with a line too long to keep: ignored
	flush := func() {
		if len(cur) > 0 && !skip {
			k, v, ok := bytes.Cut(cur, []byte{':'})
			first := func(f *string) {
				if *f == "" {
					*f = strings.TrimSpace(string(v))
				}
			}
			switch name := string(bytes.TrimSpace(k)); {
			case !ok:
			case strings.EqualFold(name, "Message-ID"):
				first(&h.id)
			case strings.EqualFold(name, "Date"):
				first(&h.date)
			case strings.EqualFold(name, "Subject"):
				first(&h.subject)
			case strings.EqualFold(name, "X-TUID"):
				h.tuid += curLen
			}
		}
		cur, curLen, skip = cur[:0], 0, false
	}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(line) > 0 && line[0] != ' ' && line[0] != '\t' {
				flush() // the long line starts a field of its own
			}
			skip = true
			for err == bufio.ErrBufferFull { // the rest of that line
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				flush()
				return h
			}
			continue
		}
		if len(line) > 0 {
			t := bytes.TrimRight(line, "\r\n")
			if len(t) == 0 {
				flush()
				return h
			}
			if t[0] != ' ' && t[0] != '\t' {
				flush()
			}
			if !skip {
				cur = append(cur, t...)
				curLen += int64(len(line))
				if n := len(line); line[n-1] == '\n' && (n < 2 || line[n-2] != '\r') {
					curLen++ // a bare LF counts as CRLF
				}
			}
		}
		if err != nil {
			flush()
			return h
		}
	}
}
