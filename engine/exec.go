package engine

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
)

// Copy batches: one journal fsync and one Commit per batch.
const (
	batchMessages = 100
	batchBytes    = 32 << 20
)

// bodyCounter wraps a message body on its way into Stage: it hashes the bytes
// and counts both the canonical (LF) size and the size with CRLF line endings,
// which is what an IMAP server reports as RFC822.SIZE.
type bodyCounter struct {
	r        io.Reader
	h        hash.Hash
	n, crlf  int64
	prevCR   bool
	scratch  []byte
	consumed bool
	// hdr collects the header block (up to maxHeader bytes) for the
	// Message-ID, which identifies a copy a server rewrote on APPEND.
	hdr     []byte
	hdrDone bool
	// heldCR: the last byte read was a CR not hashed yet (see hashLF).
	heldCR bool
}

// maxHeader bounds how much of a message is kept to find its Message-ID.
const maxHeader = 64 << 10

func newBodyCounter(r io.Reader) *bodyCounter {
	return &bodyCounter{r: r, h: sha256.New()}
}

func (b *bodyCounter) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.account(p[:n])
	if err == io.EOF {
		b.consumed = true
	}
	return n, err
}

func (b *bodyCounter) account(p []byte) {
	if !b.hdrDone && len(p) > 0 {
		b.keepHeader(p)
	}
	b.hashLF(p)
	b.n += int64(len(p))
	if len(p) == 0 {
		return
	}
	// Every LF without a CR before it takes one more byte as CRLF. Counted
	// with bytes.Count, not byte by byte (4% of a pull's CPU at 2 000 / 10).
	bare := bytes.Count(p, lfByte) - bytes.Count(p, crlfBytes)
	if b.prevCR && p[0] == '\n' {
		bare--
	}
	b.crlf += int64(len(p) + bare)
	b.prevCR = p[len(p)-1] == '\r'
}

var lfByte, crlfBytes = []byte{'\n'}, []byte("\r\n")

// hashLF adds p to the hash with every CRLF taken as LF. The hash finds a
// copy again on the target (resolveCopies), and the target may hand back
// other line ends than the source gave: a Maildir file can hold CRLF, which
// an IMAP APPEND keeps and a FETCH turns back into LF. Hashing one form of
// both keeps such a copy from counting as lost (and being made again at
// every run, where no Message-ID is there to find it by).
func (b *bodyCounter) hashLF(p []byte) {
	if b.heldCR {
		if len(p) == 0 {
			return
		}
		if p[0] != '\n' {
			b.h.Write(crByte)
		}
		b.heldCR = false
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			b.h.Write(p)
			return
		}
		b.h.Write(p[:i])
		if i+1 == len(p) {
			b.heldCR = true
			return
		}
		if p[i+1] != '\n' {
			b.h.Write(p[i : i+1])
		}
		p = p[i+1:]
	}
}

var crByte = []byte{'\r'}

// keepHeader appends to hdr what of p belongs to the header block (up to and
// including the newline before the empty line), at most maxHeader bytes in
// all. Only that part is copied: a read brings up to 32 KiB, and copying all
// of it for every message cost a fifth of a small run's fresh memory.
func (b *bodyCounter) keepHeader(p []byte) {
	if n := len(b.hdr); n > 0 && b.hdr[n-1] == '\n' && p[0] == '\n' {
		b.hdrDone = true // the empty line begins this read
		return
	}
	take := p
	if i := bytes.Index(p, []byte("\n\n")); i >= 0 {
		take, b.hdrDone = p[:i+1], true
	}
	if room := maxHeader - len(b.hdr); len(take) >= room {
		take, b.hdrDone = take[:room], true
	}
	b.hdr = append(b.hdr, take...)
}

// drain reads what Stage left unread, so the counts cover the whole message.
func (b *bodyCounter) drain() error {
	if b.consumed {
		return nil
	}
	if b.scratch == nil {
		b.scratch = make([]byte, 32<<10)
	}
	for {
		n, err := b.r.Read(b.scratch)
		b.account(b.scratch[:n])
		if err == io.EOF {
			b.consumed = true
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (b *bodyCounter) sum() string {
	if b.heldCR { // a CR at the very end, not followed by LF: it is part of the message
		b.h.Write(crByte)
		b.heldCR = false
	}
	return hex.EncodeToString(b.h.Sum(nil))
}

// messageID returns the Message-ID header of the message read so far ("" if none).
func (b *bodyCounter) messageID() string {
	// A buffer the header's size (readMessageID's lines are at most 4 KiB
	// long either way), not 4 KiB per message.
	return readMessageID(bufio.NewReaderSize(bytes.NewReader(b.hdr), min(4096, len(b.hdr)+1)))
}

// hashMessage reads a whole message and returns its hash and Message-ID.
func hashMessage(r io.Reader) (sum, msgID string, err error) {
	bc := newBodyCounter(r)
	if err := bc.drain(); err != nil {
		return "", "", err
	}
	return bc.sum(), bc.messageID(), nil
}

// execute performs a plan on both mailboxes, journaling each irreversible act,
// and fills in newSt (the plan's state) with what really happened. It returns
// errCrash untouched; any other error has been recorded in b.errs and the run
// goes on with what is still possible.
func (b *boxRun) execute(ctx context.Context, p *Plan) error {
	newSt := &p.State
	for _, s := range []Side{Far, Near} {
		if h, ok := b.mb[s].(TouchHinter); ok {
			if uids := p.touched(s); len(uids) > 0 {
				h.WillTouch(uids)
			}
		}
	}
	// A side the plan does not touch at all is released at once; a source
	// whose last use is the copies from it, right after their last fetch.
	for _, s := range []Side{Far, Near} {
		if !p.uses(s) {
			b.release(s)
		}
	}
	b.expunging = p.Expunges
	for s := range b.flaggingDeleted {
		var uids []UID
		for _, fu := range p.Flags[s] {
			if fu.Add.Has(FlagDeleted) {
				uids = append(uids, fu.UIDs...)
			}
		}
		slices.Sort(uids)
		b.flaggingDeleted[s] = uids
	}
	// Pull first, then push: the order only matters for progress output.
	for _, t := range []Side{Near, Far} {
		src := t.Other()
		// (A source stays open while a server target loses messages: a
		// copy merged into one of them is made again afterwards.)
		last := !p.changes(src) && (t == Far || len(p.Copies[src]) == 0) &&
			(isLocal(b.spec.store(t)) || len(b.expunging[t]) == 0 && len(b.flaggingDeleted[t]) == 0)
		if err := b.copyAll(ctx, t, p.Copies[t], newSt, last); err != nil {
			return err
		}
	}
	if err := b.applyChanges(ctx, p, newSt); err != nil {
		return err
	}
	// Copies the target merged into a message the run has now removed (or
	// flagged \Deleted, which a merging server such as Gmail removes at
	// once) are made again, each a message of its own there now.
	again := b.mergedAway
	b.mergedAway = [2][]Copy{}
	for _, t := range []Side{Near, Far} {
		if len(again[t]) == 0 || ctx.Err() != nil {
			continue
		}
		b.expunging[t], b.flaggingDeleted[t] = nil, nil
		b.retrying = true
		if err := b.copyAll(ctx, t, again[t], newSt, false); err != nil {
			return err
		}
	}
	// Whatever is left (a target of copies with no changes after them) is
	// released before the state is saved.
	b.release(Far)
	b.release(Near)
	return nil
}

// uses reports whether executing the plan reads or writes side s.
func (p *Plan) uses(s Side) bool {
	return len(p.Copies[Far]) > 0 || len(p.Copies[Near]) > 0 || p.changes(s)
}

// changes reports whether the plan changes flags or removes messages on side s.
func (p *Plan) changes(s Side) bool { return len(p.Flags[s]) > 0 || len(p.Expunges[s]) > 0 }

// touched lists the existing messages of side s the plan acts on: the
// sources of copies from s, and those whose flags change or that go.
func (p *Plan) touched(s Side) []UID {
	var out []UID
	for _, c := range p.Copies[s.Other()] {
		out = append(out, c.UID)
	}
	out = append(out, flagUIDs(p.Flags[s])...)
	return append(out, p.Expunges[s]...)
}

func flagUIDs(fus []FlagUpdate) []UID {
	var out []UID
	for _, fu := range fus {
		out = append(out, fu.UIDs...)
	}
	return out
}

// sideChanges are one side's flag and removal intents of a plan.
type sideChanges struct {
	flags []*flagIntent
	exp   *expungeIntent
}

func (c sideChanges) uids() []UID {
	var out []UID
	for _, fi := range c.flags {
		out = append(out, fi.UIDs...)
	}
	if c.exp != nil {
		out = append(out, c.exp.UIDs...)
	}
	return out
}

// applyChanges makes the flag changes and removals of both sides. Every
// intent is journaled first, with one sync for all of them (each sync is a
// disk flush: one per change made small incremental runs wait mostly on
// the disk), then the acts follow side by side: far flags and removals, then
// near ones (the sides are independent; going side by side lets the far
// mailbox be released before the near side's renames and unlinks). Copies are journaled before,
// batch by batch: they can take long, and a flag change journaled ahead of
// them would be replayed after a crash during the copies, long after it was
// decided (a removal is never replayed: the next run's planner decides it
// again).
func (b *boxRun) applyChanges(ctx context.Context, p *Plan, newSt *State) error {
	var ch [2]sideChanges
	var last *expungeIntent // Plan.ExpungeLast: after the near side
	var u undone
	b.undone = &u
	defer func() {
		b.undone = nil
		b.restorePairs(newSt, &u, ch)
	}()
	journaled := false
	for _, s := range []Side{Far, Near} {
		if ctx.Err() != nil {
			b.undo(s, append(flagUIDs(p.Flags[s]), p.Expunges[s]...))
			continue
		}
		for _, fu := range p.Flags[s] {
			fi := &flagIntent{Side: s, Add: fu.Add, Remove: fu.Remove, UIDs: fu.UIDs}
			if err := b.j.addFlags(fi); err != nil {
				return err
			}
			ch[s].flags = append(ch[s].flags, fi)
			journaled = true
		}
		uids := p.Expunges[s]
		if s == Far && len(p.ExpungeLast) > 0 {
			isLast := make(map[UID]bool, len(p.ExpungeLast))
			for _, u := range p.ExpungeLast {
				isLast[u] = true
			}
			uids = slices.DeleteFunc(slices.Clone(uids), func(u UID) bool { return isLast[u] })
			last = &expungeIntent{Side: Far, UIDs: p.ExpungeLast}
			if err := b.j.addExpunge(last); err != nil {
				return err
			}
			journaled = true
		}
		if len(uids) > 0 {
			ch[s].exp = &expungeIntent{Side: s, UIDs: uids}
			if err := b.j.addExpunge(ch[s].exp); err != nil {
				return err
			}
			journaled = true
		}
	}
	if !journaled {
		return nil
	}
	if err := b.j.sync(); err != nil {
		b.fail(err)
		for s := range ch {
			b.undo(Side(s), ch[s].uids())
		}
		if last != nil {
			b.undo(Far, last.UIDs)
		}
		return nil
	}
	for _, s := range []Side{Far, Near} {
		if s == Near {
			ch[Near].exp = b.withoutPartnersOf(ch[Near].exp)
		}
		if err := b.applySide(ctx, s, ch[s]); err != nil {
			return err
		}
		if s == Near || last == nil {
			b.release(s)
		}
	}
	if last == nil {
		return nil
	}
	defer b.release(Far)
	// Only once the near messages are gone: while one is there, its user
	// may still take the \Deleted back.
	if ctx.Err() != nil || ch[Near].exp == nil || !ch[Near].exp.Done {
		b.undo(Far, last.UIDs)
		return nil
	}
	if held := b.partners(Near, b.undone[Near]); len(held) > 0 {
		// Some near messages stayed (kept: undeleted meanwhile).
		keep := slices.DeleteFunc(slices.Clone(last.UIDs), func(u UID) bool { return held[u] })
		b.undo(Far, slices.DeleteFunc(slices.Clone(last.UIDs), func(u UID) bool { return !held[u] }))
		if len(keep) == 0 {
			return nil
		}
		last = &expungeIntent{ID: last.ID, Side: Far, UIDs: keep}
	}
	return b.expunge(ctx, Far, last)
}

// applySide makes one side's journaled flag changes, then its removals.
func (b *boxRun) applySide(ctx context.Context, s Side, ch sideChanges) error {
	fis := ch.flags
	if cb, ok := b.mb[s].(ChangeBatcher); ok && len(fis) > 0 && ch.exp != nil && ctx.Err() == nil {
		flagErrs, expErr := cb.SetFlagsAndExpunge(ctx, flagChanges(fis), ch.exp.UIDs)
		if err := b.flagOutcomes(s, fis, flagErrs); err != nil {
			return err
		}
		return b.expungeOutcome(s, ch.exp, expErr)
	}
	if fb, ok := b.mb[s].(FlagBatcher); ok && len(fis) > 1 {
		if ctx.Err() != nil {
			b.undo(s, sideChanges{flags: fis}.uids())
		} else if err := b.setFlagsBatch(ctx, s, fb, fis); err != nil {
			return err
		}
	} else {
		for i, fi := range fis {
			if ctx.Err() != nil {
				b.undo(s, sideChanges{flags: fis[i:]}.uids())
				break
			}
			if err := b.setFlags(ctx, s, fi); err != nil {
				return err
			}
		}
	}
	ei := ch.exp
	if ei == nil {
		return nil
	}
	if ctx.Err() != nil {
		b.undo(s, ei.UIDs)
		return nil
	}
	return b.expunge(ctx, s, ei)
}

// setFlags makes one journaled flag change; only a journal error is
// returned, a store's failure is recorded and its pairs reverted.
func (b *boxRun) setFlags(ctx context.Context, s Side, fi *flagIntent) error {
	if err := b.mb[s].SetFlags(ctx, fi.UIDs, fi.Add, fi.Remove); err != nil {
		b.fail(fmt.Errorf("setting flags on the %s side: %w", s, err))
		b.undo(s, fi.UIDs)
		return nil
	}
	b.res.Flagged[s] += len(fi.UIDs)
	fi.Done = true
	return b.j.addDone(fi.ID)
}

// setFlagsBatch is setFlags for all of a side's flag changes at once.
func (b *boxRun) setFlagsBatch(ctx context.Context, s Side, fb FlagBatcher, fis []*flagIntent) error {
	return b.flagOutcomes(s, fis, fb.SetFlagsBatch(ctx, flagChanges(fis)))
}

func flagChanges(fis []*flagIntent) []FlagChange {
	changes := make([]FlagChange, len(fis))
	for i, fi := range fis {
		changes[i] = FlagChange{UIDs: fi.UIDs, Add: fi.Add, Remove: fi.Remove}
	}
	return changes
}

// flagOutcomes records what a batch of flag changes did: the changes made
// are journaled done, the others' pairs reverted.
func (b *boxRun) flagOutcomes(s Side, fis []*flagIntent, errs []error) error {
	for i, fi := range fis {
		var err error
		if i < len(errs) {
			err = errs[i]
		} else {
			err = fmt.Errorf("store reported no outcome")
		}
		if err != nil {
			b.fail(fmt.Errorf("setting flags on the %s side: %w", s, err))
			b.undo(s, fi.UIDs)
			continue
		}
		b.res.Flagged[s] += len(fi.UIDs)
		fi.Done = true
		if err := b.j.addDone(fi.ID); err != nil {
			return err
		}
	}
	return nil
}

// expunge makes one journaled removal, as setFlags.
func (b *boxRun) expunge(ctx context.Context, s Side, ei *expungeIntent) error {
	return b.expungeOutcome(s, ei, b.mb[s].Expunge(ctx, ei.UIDs))
}

// expungeOutcome records what a removal did, as flagOutcomes.
func (b *boxRun) expungeOutcome(s Side, ei *expungeIntent, err error) error {
	var kept *KeptError
	if errors.As(err, &kept) {
		// Not an error: the user changed their mind while the run went on.
		// Those pairs stay as they were; the next run sees the undelete.
		b.log.Info("removal skipped: the message changed during the run (a \\Deleted taken back?)",
			"mailbox", b.name, "side", s.String(), "messages", len(kept.UIDs))
		b.undo(s, kept.UIDs)
		b.res.Deleted[s] += len(ei.UIDs) - len(kept.UIDs)
		ei.Done = true
		return b.j.addDone(ei.ID)
	}
	if err != nil {
		b.fail(fmt.Errorf("expunging on the %s side: %w", s, err))
		b.undo(s, ei.UIDs)
		return nil
	}
	b.res.Deleted[s] += len(ei.UIDs)
	ei.Done = true
	return b.j.addDone(ei.ID)
}

// undone collects, per side, the UIDs whose planned acts did not happen
// (failed, interrupted, or held back): restorePairs puts their pairs back once
// both sides' acts are over.
type undone [2][]UID

// undo records that the acts planned on side s for uids did not happen
// (applyChanges restores their pairs when it ends). The run's markers are
// then not recorded (deferred): the next run must look at those messages
// again, whatever changed on either side since the open.
func (b *boxRun) undo(s Side, uids []UID) {
	if len(uids) > 0 {
		b.deferred = true
	}
	b.undone[s] = append(b.undone[s], uids...)
}

// restorePairs puts back the previous state's pairs of the undone UIDs: the next
// run then sees the same differences again and plans them anew (the
// recorded flags are the merge base, so a base that claimed a change not
// made would turn it into a reverse change). The flag changes that did
// happen on such a pair — the other side's, or this side's before its
// removal failed — go into its base, as a crashed run's replay records
// them: left out, a flag this run set would look like a fresh change of
// that side next time and win over a user's change on the side it came
// from (a \Deleted taken back, a flag removed).
func (b *boxRun) restorePairs(newSt *State, u *undone, ch [2]sideChanges) {
	if len(u[Far]) == 0 && len(u[Near]) == 0 {
		return
	}
	var want [2]map[UID]bool
	for s := range want {
		want[s] = make(map[UID]bool, len(u[s]))
		for _, uid := range u[s] {
			want[s][uid] = true
		}
	}
	var restore []Pair
	drop := [2]map[UID]bool{{}, {}}
	for _, p := range b.st.Pairs {
		if (p.Far != 0 && want[Far][p.Far]) || (p.Near != 0 && want[Near][p.Near]) {
			restore = append(restore, p)
			if p.Far != 0 {
				drop[Far][p.Far] = true
			}
			if p.Near != 0 {
				drop[Near][p.Near] = true
			}
		}
	}
	// A message no pair held (new this run, already \Deleted, planned for
	// removal without a copy) whose removal did not happen — kept (its
	// user took the \Deleted back), refused, or interrupted: a pending
	// copy now. Else the next run would leave it on its side for good
	// (below the high-water marks, unpaired), an undelete after this run
	// as well; pending, it is removed again while \Deleted, or copied.
	for _, s := range []Side{Far, Near} {
		for _, uid := range u[s] {
			if !drop[s][uid] {
				p := Pair{}
				p.setUID(s, uid)
				restore = append(restore, p)
				drop[s][uid] = true
			}
		}
	}
	if len(restore) == 0 {
		return
	}
	var done [2]map[UID]*flagIntent
	for s := range ch {
		for _, fi := range ch[s].flags {
			if !fi.Done {
				continue
			}
			if done[s] == nil {
				done[s] = map[UID]*flagIntent{}
			}
			for _, uid := range fi.UIDs {
				if drop[s][uid] {
					done[s][uid] = fi
				}
			}
		}
	}
	for i := range restore {
		for _, s := range []Side{Far, Near} {
			if fi := done[s][restore[i].uid(s)]; fi != nil {
				restore[i].Flags = (restore[i].Flags | fi.Add) &^ fi.Remove
			}
		}
	}
	kept := newSt.Pairs[:0]
	for _, p := range newSt.Pairs {
		if (p.Far != 0 && drop[Far][p.Far]) || (p.Near != 0 && drop[Near][p.Near]) {
			continue
		}
		kept = append(kept, p)
	}
	newSt.Pairs = append(kept, restore...)
}

// withoutPartnersOf returns the near removals left once those whose far
// partner stayed are taken out: its removal failed, was interrupted, or
// left the message (KeptError: undeleted meanwhile). The far side goes
// first so that a crash between the sides leaves the far message gone and
// its partner to be removed by the next run; a far message that stayed,
// its partner removed anyway, would turn a \Deleted taken back since on the
// far side into the loss of both (the next run would see the near message
// gone, a removal to carry over). Held back, it is planned again. (The
// mirror case is Plan.ExpungeLast.)
func (b *boxRun) withoutPartnersOf(near *expungeIntent) *expungeIntent {
	if near == nil {
		return nil
	}
	held := b.partners(Far, b.undone[Far])
	if len(held) == 0 {
		return near
	}
	var keep []UID
	for _, uid := range near.UIDs {
		if !held[uid] {
			keep = append(keep, uid)
		}
	}
	b.undo(Near, slices.DeleteFunc(slices.Clone(near.UIDs), func(u UID) bool { return !held[u] }))
	if len(keep) == 0 {
		return nil
	}
	// The journaled intent keeps every UID: a replay never redoes a removal
	// (see replay), so only what this run does changes.
	return &expungeIntent{ID: near.ID, Side: Near, UIDs: keep}
}

// partners returns the UIDs on the other side paired, in the state the run
// started from, with uids of side s.
func (b *boxRun) partners(s Side, uids []UID) map[UID]bool {
	if len(uids) == 0 {
		return nil
	}
	of := make(map[UID]bool, len(uids))
	for _, u := range uids {
		of[u] = true
	}
	out := map[UID]bool{}
	for _, p := range b.st.Pairs {
		if u, o := p.uid(s), p.uid(s.Other()); u != 0 && o != 0 && of[u] {
			out[o] = true
		}
	}
	return out
}

func (p Pair) uid(s Side) UID {
	if s == Far {
		return p.Far
	}
	return p.Near
}

func (p *Pair) setUID(s Side, u UID) {
	if s == Far {
		p.Far = u
	} else {
		p.Near = u
	}
}

// stagedCopy is one message staged into the target during a batch.
type stagedCopy struct {
	c      Copy
	s      Staged
	intent *copyIntent
	// err is the store's reason for this message's failed commit (a
	// server's refusal: NO [OVERQUOTA]...), for the report if it turns out
	// not to have happened.
	err error
	// merged: the target took the copy into a message it holds that is
	// paired already (see takeReported).
	merged     bool
	mergedInto UID
}

// copyAll copies messages to side t in batches. lastUse says the plan has
// no use for the source after these copies: it is released once the last
// batch is fetched, before that batch is committed.
func (b *boxRun) copyAll(ctx context.Context, t Side, copies []Copy, newSt *State, lastUse bool) error {
	if len(copies) == 0 {
		return nil
	}
	src := t.Other()
	if b.opt.room.full(t) {
		// Another mailbox of the channel found the target out of room and
		// said so; these copies stay pending for the next run.
		b.stopCopies[t], b.deferred = true, true
		b.res.Failed[t] += len(copies)
		b.log.Info("copies wait for room on the target", "mailbox", b.name, "side", t.String(), "messages", len(copies))
		return nil
	}
	// Where each copy's pair sits in the new state (source UID -> index).
	pending := make(map[UID]int, len(copies))
	for i, p := range newSt.Pairs {
		if p.uid(t) == 0 && p.uid(src) != 0 && p.Skip == SkipNone {
			pending[p.uid(src)] = i
		}
	}
	if h, ok := b.mb[t].(CopyHinter); ok {
		h.ExpectCopies(len(copies))
	}
	uidNext := b.status[t].UIDNext
	for start := 0; start < len(copies); {
		if ctx.Err() != nil {
			return nil
		}
		end := start
		var bytes int64
		for end < len(copies) && end-start < batchMessages && (end == start || bytes+max(copies[end].Size, 0) <= batchBytes) {
			bytes += max(copies[end].Size, 0)
			end++
		}
		batch := copies[start:end]
		start = end
		done, err := b.copyBatch(ctx, t, batch, uidNext, newSt, pending, lastUse && start == len(copies))
		if err != nil {
			return err
		}
		for _, u := range done {
			if u >= uidNext {
				uidNext = u + 1
			}
		}
		if b.stopCopies[t] {
			return nil
		}
	}
	return nil
}

// copyErr is the error of one failed copy. A target out of room stops the
// mailbox's copies in that direction: each would fail the same way (a
// full disk made 126 errors of one mailbox's 126 copies), and a cron job
// would mail them all.
//
// A message the target refuses for its size (ErrTooBig: a server's
// APPENDLIMIT or its refusal) is marked in the new state (SkipRefused):
// reported this once, not tried again while it exists unless its user
// flags it since (the upload was refused at each run before, an error
// each time).
func (b *boxRun) copyErr(src Side, uid UID, t Side, err error, pending map[UID]int, newSt *State) error {
	if errors.Is(err, ErrTooBig) {
		if i, ok := pending[uid]; ok {
			newSt.Pairs[i].Skip = SkipRefused
		}
		return fmt.Errorf("%s UID %d is larger than the %s side takes: %w; it stays on the %s side only and is not tried again (unless flagged since)", src, uid, t, err, src)
	}
	if noSpace(err) && !b.stopCopies[t] {
		b.stopCopies[t] = true
		if diskFull(err) {
			where := "there"
			if errors.Is(err, ErrStagingFull) {
				where = "in that directory, or set TMPDIR to one with room,"
			}
			err = fmt.Errorf("copying %s UID %d to the %s side: %w; no more copies go to the %s side in this run (they are made at the next): make room %s first", src, uid, t, err, t, where)
			if b.opt.room.markFull(t) {
				return &roomReport{err}
			}
			return err // reported already (another copy, a state file)
		}
		// A server's quota can be a mailbox's own (Dovecot's quota_rule for
		// Trash): the other mailboxes still try.
		return fmt.Errorf("copying %s UID %d to the %s side: %w; the other copies to the %s side wait for the next run: make room there first", src, uid, t, err, t)
	}
	return fmt.Errorf("copying %s UID %d to the %s side: %w", src, uid, t, err)
}

// copyBatch fetches, stages, journals and commits one batch. It returns the
// target UIDs learnt. With releaseSrc, the source is released after the fetch.
func (b *boxRun) copyBatch(ctx context.Context, t Side, batch []Copy, uidNext UID, newSt *State, pending map[UID]int, releaseSrc bool) ([]UID, error) {
	src := t.Other()
	byUID := make(map[UID]Copy, len(batch))
	uids := make([]UID, len(batch))
	for i, c := range batch {
		byUID[c.UID] = c
		uids[i] = c.UID
	}
	var staged []*stagedCopy
	discardAll := func() {
		ss := make([]Staged, len(staged))
		for i, sc := range staged {
			ss[i] = sc.s
		}
		b.mb[t].Discard(ss)
	}
	fetchErr := b.mb[src].Fetch(ctx, uids, func(uid UID, r io.Reader) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, ok := byUID[uid]
		if !ok {
			return nil
		}
		if !b.stopCopies[t] && b.opt.room.full(t) {
			b.stopCopies[t], b.deferred = true, true
		}
		if b.stopCopies[t] {
			// The target ran out of room earlier in this batch, or under
			// another mailbox of the channel: the rest waits for the next run.
			_, err := io.Copy(io.Discard, r)
			return err
		}
		bc := newBodyCounter(r)
		nm := NewMessage{Flags: c.Flags, Body: bc}
		if b.spec.CopyArrivalDate {
			nm.Date = c.Date
		}
		s, err := b.mb[t].Stage(ctx, nm)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			b.res.Failed[t]++
			b.fail(b.copyErr(src, uid, t, err, pending, newSt))
			return bc.drain()
		}
		if err := bc.drain(); err != nil {
			b.mb[t].Discard([]Staged{s})
			return err
		}
		if s.Size() != bc.n {
			b.mb[t].Discard([]Staged{s})
			b.res.Failed[t]++
			b.fail(fmt.Errorf("copying %s UID %d to the %s side: staged %d bytes of %d", src, uid, t, s.Size(), bc.n))
			return nil
		}
		if bc.n == 0 && c.Size > 0 {
			// No message is empty that was listed with a size: a server
			// answers so for one expunged meanwhile (Gmail), or in a
			// glitch. Copied, the empty message would stand paired for the
			// real one for good; not copied, a later run copies it (or
			// finds it gone).
			b.mb[t].Discard([]Staged{s})
			b.res.Failed[t]++
			b.fail(fmt.Errorf("copying %s UID %d to the %s side: the %s side sent no bytes of a message it listed with %d", src, uid, t, src, c.Size))
			return nil
		}
		staged = append(staged, &stagedCopy{c: c, s: s, intent: &copyIntent{
			To: t, Src: uid, Flags: c.Flags, Reserved: s.UID(), UIDNext: uidNext,
			Size: bc.n, CRLFSize: bc.crlf, SHA256: bc.sum(), MessageID: bc.messageID(),
		}})
		return nil
	})
	if releaseSrc {
		b.release(src)
	}
	if fetchErr != nil {
		if ctx.Err() != nil {
			// Interrupted: abandon the batch cleanly, nothing was committed.
			discardAll()
			return nil, nil
		}
		// The source failed (connection lost...): commit what is staged, then
		// stop copying in this direction.
		b.fail(fmt.Errorf("fetching from the %s side: %w", src, fetchErr))
		b.stopCopies[t] = true
	}
	if len(staged) == 0 {
		return nil, nil
	}
	for _, sc := range staged {
		if err := b.j.addCopy(sc.intent); err != nil {
			if !errors.Is(err, errCrash) {
				discardAll()
			}
			return nil, err
		}
	}
	// The intents must be durable before the commit makes a message
	// visible. A Maildir target makes them so with the syncfs that makes
	// the messages durable: one flush of the disk instead of two.
	var jerr error
	if br, ok := b.mb[t].(Barrierer); ok && br.Covers(b.j.path) {
		if jerr = b.j.flush(); jerr == nil {
			br.CommitWith(b.j.durablePaths()...)
		}
	} else {
		jerr = b.j.syncWithName()
	}
	if jerr != nil {
		discardAll()
		b.fail(jerr)
		b.stopCopies[t] = true
		return nil, nil
	}
	ss := make([]Staged, len(staged))
	for i, sc := range staged {
		ss[i] = sc.s
	}
	// Once begun, a commit is finished even when interrupted: a half-known
	// commit costs a search afterwards.
	results, cerr := b.mb[t].Commit(context.WithoutCancel(ctx), ss)
	// A UID the store reports for a copy it did not reserve comes from the
	// server (APPENDUID). One below the UIDNEXT seen before the copy names
	// a message the target had already, and one given to two copies names
	// at most one of them: a broken server's answer. Taken as it is, the
	// copy would be paired with another message and itself come back as new
	// mail (a duplicate on both sides); such copies are looked for instead,
	// and only when not found is the reported UID taken, if that message is
	// the copy's (same bytes or Message-ID: a server that merges a message
	// into one it holds already, as Gmail does by Message-ID).
	given := make(map[UID]int, len(results))
	reported := map[*copyIntent]UID{}
	for _, r := range results {
		if r.Err == nil && r.UID != 0 {
			given[r.UID]++
		}
	}
	var unsure []*copyIntent
	for i, sc := range staged {
		switch {
		case i >= len(results):
			unsure = append(unsure, sc.intent) // a store that broke its contract: find out
		case results[i].Err != nil:
			sc.err = results[i].Err
			unsure = append(unsure, sc.intent) // a failure: find out whether it arrived all the same
		case results[i].UID == 0:
			unsure = append(unsure, sc.intent) // committed, UID unknown (no UIDPLUS)
		case sc.intent.Reserved == 0 && (results[i].UID < sc.intent.UIDNext || given[results[i].UID] > 1):
			b.log.Warn("the target reported a UID its copy cannot have; looking for the copy instead",
				"mailbox", b.name, "side", t.String(), "uid", results[i].UID, "uidnext", sc.intent.UIDNext)
			unsure = append(unsure, sc.intent)
			reported[sc.intent] = results[i].UID
		default:
			sc.intent.Done, sc.intent.Target = true, results[i].UID
		}
	}
	if len(unsure) > 0 {
		// The batch's copies known done go along: their targets are taken.
		all := unsure
		for _, sc := range staged {
			if sc.intent.Done && !sc.intent.Failed && sc.intent.Target != 0 {
				all = append(all, sc.intent)
			}
		}
		err := b.resolveCopies(ctx, t, all, newSt)
		if err == nil {
			err = b.takeReported(ctx, t, staged, reported, newSt)
		}
		if err != nil {
			// Cannot tell what happened: keep the journal so the next run resolves it.
			b.fail(err)
			b.keepJournal = true
			b.stopCopies[t] = true
			return nil, nil
		}
		if late := arriveLate(staged); len(late) > 0 {
			// Not found yet is not "did not happen": the next run looks
			// for the batch again (the journal stays), by when the server
			// has long finished what it received.
			for _, sc := range late {
				b.res.Failed[t]++
				b.fail(fmt.Errorf("%w; whether it arrived is not known yet: the next run looks for it", b.copyErr(src, sc.intent.Src, t, sc.err, pending, newSt)))
			}
			// What was not committed is let go, as after any failed copy
			// (an IMAP spool holds a file open until its last message is).
			var uncommitted []Staged
			for _, sc := range staged {
				if sc.intent.Failed {
					uncommitted = append(uncommitted, sc.s)
				}
			}
			b.mb[t].Discard(uncommitted)
			b.keepJournal = true
			b.stopCopies[t] = true
			return nil, nil
		}
	}
	var learnt []UID
	var failed []Staged
	var bytesDone int64
	for _, sc := range staged {
		in := sc.intent
		if sc.merged {
			// Not a copy (the target has one message for two here), nor a
			// failure to retry at every run: the message stays on this
			// side only, as one too big for the target does.
			if i, ok := pending[in.Src]; ok {
				newSt.Pairs[i].Skip, newSt.Pairs[i].Flags, newSt.Pairs[i].Into = SkipMerged, in.Flags, sc.mergedInto
			} else {
				pr := pairOf(src, in.Src, in.Flags, SkipMerged)
				pr.Into = sc.mergedInto
				newSt.Pairs = append(newSt.Pairs, pr)
			}
			b.log.Warn(fmt.Sprintf("message not copied to the %s side, which merged it into a message of the same Message-ID it holds, paired with another here (as Gmail does); it stays on the %s side only, is removed with that message if it is deleted there, and is copied as a message of its own once flagged or once that message goes otherwise (reported once)", t, src),
				"mailbox", b.name, "side", src.String(), "uid", in.Src, "merged_into", sc.mergedInto, Notice, true)
			if err := b.j.addCopyResult(in); err != nil {
				return nil, err
			}
			continue
		}
		if in.Failed || !in.Done {
			in.Done, in.Failed = true, true
			failed = append(failed, sc.s)
			if errors.Is(sc.err, errMergedAway) && !b.retrying {
				// Made again once the run has removed that message (execute).
				b.mergedAway[t] = append(b.mergedAway[t], sc.c)
				if err := b.j.addCopyResult(in); err != nil {
					return nil, err
				}
				continue
			}
			b.res.Failed[t]++
			if err := cmp.Or(sc.err, cerr); err != nil {
				b.fail(b.copyErr(src, in.Src, t, err, pending, newSt))
			} else {
				b.fail(fmt.Errorf("copying %s UID %d to the %s side failed", src, in.Src, t))
			}
		} else {
			learnt = append(learnt, in.Target)
			b.res.Copied[t]++
			bytesDone += in.Size
			if i, ok := pending[in.Src]; ok {
				newSt.Pairs[i].setUID(t, in.Target)
				newSt.Pairs[i].Flags = in.Flags
			} else {
				p := Pair{Flags: in.Flags}
				p.setUID(src, in.Src)
				p.setUID(t, in.Target)
				newSt.Pairs = append(newSt.Pairs, p)
			}
		}
		if err := b.j.addCopyResult(in); err != nil {
			return nil, err
		}
	}
	if len(failed) > 0 {
		b.mb[t].Discard(failed)
	} else if cerr != nil {
		// Every copy was found in place and made durable after all, but the
		// store met an error on the way (a directory's fsync): say so.
		b.fail(fmt.Errorf("copying to the %s side: %w", t, cerr))
	}
	// The results need no sync of their own: the commit made the messages
	// durable, and a result lost in a crash only makes the replay look at
	// the target (see finish).
	if len(learnt) > 0 {
		b.progress(ProgressEvent{Kind: ProgressCopied, Messages: int64(len(learnt)), Bytes: bytesDone})
	}
	return learnt, nil
}

// arriveLate returns the copies of a batch that were not found on the
// target after a commit whose outcome the store could not learn (the
// connection broke, or the server did not answer within the timeout), as
// against a refusal: those may still arrive. A server carries out an APPEND
// it received in full even when its client has given up on it, and it can
// do so after the search that follows at once on a new connection (it was
// slow enough for the timeout to end the wait). Taken as failed, such a copy
// is made again by the next run and the late one is a message of the
// target's own there, which that run copies back to the source: a duplicate
// on both sides. A copy with a reserved UID (a Maildir) is known either way.
func arriveLate(staged []*stagedCopy) []*stagedCopy {
	var late []*stagedCopy
	for _, sc := range staged {
		in := sc.intent
		if sc.err == nil || in.Reserved != 0 || !in.Failed {
			continue
		}
		if errors.Is(sc.err, ErrRefused) || errors.Is(sc.err, errMergedAway) || errors.Is(sc.err, ErrTooBig) || noSpace(sc.err) || errors.Is(sc.err, ErrValidity) ||
			errors.Is(sc.err, ErrReadOnly) || errors.Is(sc.err, ErrNoMailbox) {
			continue // refused: not appended
		}
		late = append(late, sc)
	}
	return late
}

// errMergedAway: a copy the target merged into a message the run removes
// (see takeReported), made again after the removal.
var errMergedAway = errors.New("not copied")

// takeReported gives the copies that resolveCopies did not find the UID the
// target reported for them (see copyBatch), where the message under that UID
// has the copy's bytes or Message-ID.
//
// A server that keeps one message per Message-ID (Gmail) reports for a
// second message with the ID of one it holds the UID of that one: the copy
// merged into it. Where that message is paired already (with another of the
// source's messages, in the state or in this batch), a second pair on it
// would leave the run after with two pairs on one message: it keeps one, and
// the other message was uploaded again every other run. Such a copy is
// marked merged instead (its intent failed: nothing new is on the target).
func (b *boxRun) takeReported(ctx context.Context, t Side, staged []*stagedCopy, reported map[*copyIntent]UID, newSt *State) error {
	var uids []UID
	for in, u := range reported {
		if in.Failed {
			uids = append(uids, u)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	slices.Sort(uids)
	uids = slices.Compact(uids)
	sums, ids := map[UID]string{}, map[UID]string{}
	err := b.mb[t].Fetch(ctx, uids, func(uid UID, r io.Reader) error {
		sum, id, err := hashMessage(r)
		sums[uid], ids[uid] = sum, id
		return err
	})
	if err != nil {
		return fmt.Errorf("looking at the copies the %s side reported: %w", t, err)
	}
	taken := map[UID]bool{}
	for _, u := range uids {
		taken[u] = false
	}
	for _, p := range newSt.Pairs {
		if _, ok := taken[p.uid(t)]; ok {
			taken[p.uid(t)] = true
		}
	}
	for _, sc := range staged {
		if in := sc.intent; in.Done && !in.Failed {
			if _, ok := taken[in.Target]; ok {
				taken[in.Target] = true
			}
		}
	}
	// In the batch's order, so that which of two merged copies is paired
	// does not depend on a map's.
	for _, sc := range staged {
		in := sc.intent
		u, ok := reported[in]
		if !ok || !in.Failed {
			continue
		}
		if sum, ok := sums[u]; !ok || (sum != in.SHA256 && (in.MessageID == "" || ids[u] != in.MessageID)) {
			continue
		}
		if _, gone := slices.BinarySearch(b.expunging[t], u); gone {
			// Taken into a message this run removes (its partner was
			// removed here): paired with it, the copy's source would go
			// at the next run with it; marked merged, it would stay here
			// alone. It is copied again after the run's removals, when
			// that message is gone, as a message of its own (execute).
			sc.err = fmt.Errorf("%w: the %s side merged it into its UID %d, which this run removes", errMergedAway, t, u)
			continue
		}
		if _, gone := slices.BinarySearch(b.flaggingDeleted[t], u); gone {
			// The same where the run removes that message by flagging it
			// \Deleted (the side is not expunged here: Gmail's own
			// auto-expunge removes it at once).
			sc.err = fmt.Errorf("%w: the %s side merged it into its UID %d, which this run flags deleted", errMergedAway, t, u)
			continue
		}
		if taken[u] {
			sc.merged, sc.mergedInto = true, u
			in.Done = true // and Failed: no new message is on the target
			continue
		}
		taken[u] = true
		in.Done, in.Failed, in.Target = true, false, u
	}
	return nil
}

// resolveCopies finds out, for copies whose outcome is unknown, whether they
// reached the target and under which UID. A copy with a reserved UID happened
// iff the target has that UID. Any other is searched among the target's
// unpaired messages at or above the UIDNEXT seen before it, one to one: by
// size and SHA-256, else (a server that rewrites messages on APPEND) by
// Message-ID, of the same size first. Resolved intents get Done and Target;
// the others Failed (they did not happen: the source will be copied again).
//
// intents may hold copies already known to be done (a result line in the
// journal, a UID from the commit): they are not resolved again, but their
// targets are taken, as the state's pairs are. Two byte-identical messages
// copied in one batch would otherwise both find the first one's target.
//
// A copy found only by looking (a listing shows it) is recorded once the
// target has made what it shows durable (Settler): a Maildir file renamed
// into place by a run killed before its directory's fsync is visible, yet a
// power loss could still take it away, and a state naming it would then
// propagate its loss as a deletion.
func (b *boxRun) resolveCopies(ctx context.Context, t Side, intents []*copyIntent, st *State) error {
	mb := b.mb[t]
	var reserved, searched []*copyIntent
	var maxReserved UID
	minNext := UID(0)
	taken := map[UID]bool{}
	for _, in := range intents {
		if in.Done && !in.Failed && in.Target != 0 {
			taken[in.Target] = true
			continue
		}
		if in.Reserved != 0 {
			reserved = append(reserved, in)
			maxReserved = max(maxReserved, in.Reserved)
		} else {
			searched = append(searched, in)
			if minNext == 0 || in.UIDNext < minNext {
				minNext = in.UIDNext
			}
		}
	}
	if len(reserved) > 0 {
		have, err := mb.UIDs(ctx, maxReserved+1)
		if err != nil {
			return fmt.Errorf("looking for interrupted copies on the %s side: %w", t, err)
		}
		// The UID alone does not prove the copy: a mail client may have
		// moved in another folder's file carrying the same ",U=" after the
		// crash, and the state would pair it with the source, which would
		// then never be copied. Its content must be the copy's.
		var present []UID
		for _, in := range reserved {
			if _, ok := slices.BinarySearch(have, in.Reserved); ok {
				present = append(present, in.Reserved)
			}
		}
		sums := map[UID]string{}
		if len(present) > 0 {
			err := mb.Fetch(ctx, present, func(uid UID, r io.Reader) error {
				sum, _, err := hashMessage(r)
				sums[uid] = sum
				return err
			})
			if err != nil {
				return fmt.Errorf("looking for interrupted copies on the %s side: %w", t, err)
			}
		}
		for _, in := range reserved {
			if sum, ok := sums[in.Reserved]; ok && (in.SHA256 == "" || sum == in.SHA256) {
				in.Done, in.Failed, in.Target = true, false, in.Reserved
			} else {
				in.Done, in.Failed = true, true
			}
		}
	}
	if len(searched) > 0 {
		if err := b.searchCopies(ctx, t, searched, minNext, st, taken); err != nil {
			return err
		}
	}
	for _, in := range slices.Concat(reserved, searched) {
		if in.Done && !in.Failed {
			return b.settle(t)
		}
	}
	return nil
}

// settle makes what side t's listing shows durable, where the store needs
// that (Settler); see resolveCopies.
func (b *boxRun) settle(t Side) error {
	st, ok := b.mb[t].(Settler)
	if !ok {
		return nil
	}
	if err := st.Settle(); err != nil {
		return fmt.Errorf("making the interrupted copies found on the %s side durable: %w", t, err)
	}
	return nil
}

// searchCopies is resolveCopies for copies without a reserved UID.
func (b *boxRun) searchCopies(ctx context.Context, t Side, searched []*copyIntent, minNext UID, st *State, taken map[UID]bool) error {
	mb := b.mb[t]
	if minNext == 0 {
		minNext = 1
	}
	msgs, _, err := mb.List(ctx, ListQuery{From: minNext})
	if err != nil {
		return fmt.Errorf("looking for interrupted copies on the %s side: %w", t, err)
	}
	paired := taken
	for _, p := range st.Pairs {
		if u := p.uid(t); u != 0 {
			paired[u] = true
		}
	}
	sizeOK := func(m Message, in *copyIntent) bool {
		switch {
		case m.Size < 0:
			return true
		case m.SizeIsCRLF:
			return m.Size == in.CRLFSize
		}
		return m.Size == in.Size
	}
	// A candidate is any unpaired message that arrived after an intent's
	// APPEND began and has its size or, for an intent with a Message-ID,
	// any size: a server that adds a header on APPEND changes the size, and
	// without UIDPLUS that copy would otherwise be made again at every run.
	var cand []UID
	for _, m := range msgs {
		if m.UID < minNext || paired[m.UID] {
			continue
		}
		for _, in := range searched {
			if m.UID >= in.UIDNext && (sizeOK(m, in) || in.MessageID != "") {
				cand = append(cand, m.UID)
				break
			}
		}
	}
	sums, ids := map[UID]string{}, map[UID]string{}
	if len(cand) > 0 {
		err := mb.Fetch(ctx, cand, func(uid UID, r io.Reader) error {
			sum, id, err := hashMessage(r)
			sums[uid], ids[uid] = sum, id
			return err
		})
		if err != nil {
			return fmt.Errorf("looking for interrupted copies on the %s side: %w", t, err)
		}
	}
	sizeOf := make(map[UID]Message, len(msgs))
	for _, m := range msgs {
		sizeOf[m.UID] = m
	}
	match := func(in *copyIntent, same func(u UID) bool) {
		for _, u := range cand {
			if !paired[u] && u >= in.UIDNext && same(u) {
				in.Done, in.Failed, in.Target = true, false, u
				paired[u] = true
				return
			}
		}
	}
	for _, in := range searched {
		in.Done, in.Failed, in.Target = true, true, 0
		match(in, func(u UID) bool { return sizeOK(sizeOf[u], in) && sums[u] == in.SHA256 })
	}
	// Only after every exact match is taken: the Message-ID is weaker
	// evidence, and with the size as well stronger than without.
	for _, in := range searched {
		if in.Failed && in.MessageID != "" {
			match(in, func(u UID) bool { return sizeOK(sizeOf[u], in) && ids[u] == in.MessageID })
		}
	}
	for _, in := range searched {
		if in.Failed && in.MessageID != "" {
			match(in, func(u UID) bool { return ids[u] == in.MessageID })
		}
	}
	return nil
}
