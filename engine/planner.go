package engine

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// PlanMailbox is the pure planner: previous state + what each side reports → actions + new state.
// No I/O, deterministic, never panics on any input.
//
// The rules, per pair of the state (pairing is by UID only):
//
//   - Both messages exist: three-way flag merge against Pair.Flags, per flag: a change on
//     far wins, else a change on near, else keep. A change reaches the other side only when
//     that direction has OpFlags. The new base advances only for flags that end up equal on
//     both sides, so a change that was not propagated is still a change in a later run that
//     propagates flags.
//   - One message gone: with OpGone in the direction from the gone side, the survivor gets
//     \Deleted (a deletion beats a flag change) and is expunged where Options.Expunge allows,
//     else it stays as a one-sided SkipGone pair. Without OpGone the pair is kept with the
//     gone UID, so a later run that propagates removals still sees the removal.
//   - Both gone: the pair is dropped.
//   - One-sided pairs (SkipGone, SkipTooBig, SkipRefused, SkipMerged, SkipDeleted) are
//     kept while their message exists and are never retried, except a SkipDeleted or
//     SkipGone one whose \Deleted was taken away (the user's undelete), a SkipTooBig one
//     now flagged (a flagged message is copied whatever max_size says), or a SkipRefused
//     or SkipMerged one flagged since: it is then pending like a new message. A
//     SkipMerged pair that names the message it was merged into (Pair.Into) follows it:
//     removed by its own side, the merged copy is removed as its partner; leaving the
//     state otherwise, or flagged \Deleted by this plan for its partner's removal, the
//     merged copy is pending like a new message (see mergedPair). A
//     one-sided SkipNone pair is a copy not done yet and is retried while that direction
//     has OpNew; a run whose mode does not copy that way leaves the side without a stamp.
//   - A listed message in no pair is new when its UID is above MaxPulled (far) / MaxPushed
//     (near). Unpaired messages at or below it are "old" (mbsync's Sync Old, which we do not
//     offer): they were considered before (for instance a message whose pair was dropped
//     because the copy was deliberately not made) and are left alone.
//   - Expunge acts on its own: every message with \Deleted (after this plan's flag changes)
//     on a side whose Options.Expunge is set is expunged; its partner is then treated as the
//     partner of a gone message in the same plan.
//
// Markers: Report.Unchanged and incremental reports make unlisted messages "as recorded in
// the state". When the new state cannot record a side exactly (a flag change, a removal or a
// new message on that side not propagated in this run), the new state keeps that side's old
// markers instead of the ones from report.Status, so the next run lists those messages again
// and a later run with the direction enabled still sees the change.
//
// Cost: a mailbox of 100 000 pairs is planned in a few milliseconds. No map is built per
// message: each side's listing is read in UID order (a listing that arrives sorted, as IMAP
// UID FETCH results do, is used as it is; any other order is sorted by index), the state's
// pairs look their messages up by a search that starts where the previous one ended (pairs
// are sorted by far UID, and near UIDs mostly follow), the UIDs the state knows are a
// bitmap, and the new state is the state's pairs in their order merged with the new ones.
func PlanMailbox(st State, far, near Report, opt Options) Plan {
	var p planner
	p.init(st, [2]*Report{&far, &near}, opt)
	p.run()
	return p.plan
}

// sideView answers what one side looks like at the start of the run. It only reads the
// report: the caller's slices are never written to.
type sideView struct {
	rep  *Report
	msgs []Message // rep.Messages
	// uids are the listed UIDs ascending, without duplicates or 0 (of a UID listed twice,
	// the first listing wins). msgs[at[i]] is the message of uids[i]; when at is nil,
	// msgs[off+i] is (the listing arrived in order).
	uids []UID
	at   []int32
	off  int
	// flags[i] are the flags of uids[i] (only the six synced): read for every pair, they
	// are kept apart so that a listing out of order does not cost a cache miss a message.
	flags []Flag
	cur   int // where the last search in uids ended
	// existing is rep.Existing ascending, when the report is answered from it.
	existing []UID
	ecur     int
}

func newSideView(r *Report) sideView {
	v := sideView{rep: r, msgs: r.Messages}
	msgs := r.Messages
	off := 0
	for off < len(msgs) && msgs[off].UID == 0 {
		off++
	}
	inOrder := true
	for i := off + 1; i < len(msgs); i++ {
		if msgs[i].UID <= msgs[i-1].UID {
			inOrder = false
			break
		}
	}
	if inOrder {
		v.off = off
		v.uids = make([]UID, len(msgs)-off)
		v.flags = make([]Flag, len(msgs)-off)
		for i := range v.uids {
			v.uids[i], v.flags[i] = msgs[off+i].UID, msgs[off+i].Flags&AllFlags
		}
	} else {
		v.uids, v.at, v.flags = orderListing(msgs)
	}
	if !r.Unchanged && !r.Complete && r.ExistingKnown {
		v.existing = r.Existing
		if !slices.IsSorted(v.existing) {
			v.existing = slices.Clone(v.existing)
			slices.Sort(v.existing)
		}
	}
	return v
}

// orderListing returns the UIDs of a listing that is not in UID order (a Maildir lists in
// directory order), ascending and without duplicates or 0, where each one's message is
// (without moving the messages) and its flags.
func orderListing(msgs []Message) ([]UID, []int32, []Flag) {
	n := 0
	lo, hi := UID(math.MaxUint32), UID(0)
	for i := range msgs {
		if u := msgs[i].UID; u != 0 {
			n++
			lo, hi = min(lo, u), max(hi, u)
		}
	}
	uids := make([]UID, 0, n)
	at := make([]int32, 0, n)
	flags := make([]Flag, 0, n)
	if n == 0 {
		return uids, at, flags
	}
	if span := uint64(hi-lo) + 1; span <= 4*uint64(n)+64 {
		// A mailbox's UIDs are mostly dense: put each message in its UID's slot, then read
		// the slots in order. O(n), where a sort would be O(n log n) with costly compares.
		slot := make([]int32, span) // index+1 of the first message with that UID
		slotFlags := make([]Flag, span)
		for i := range msgs {
			if u := msgs[i].UID; u != 0 && slot[u-lo] == 0 {
				slot[u-lo], slotFlags[u-lo] = int32(i)+1, msgs[i].Flags&AllFlags
			}
		}
		for d, i := range slot {
			if i != 0 {
				uids = append(uids, lo+UID(d))
				at = append(at, i-1)
				flags = append(flags, slotFlags[d])
			}
		}
		return uids, at, flags
	}
	for i := range msgs {
		if msgs[i].UID != 0 {
			at = append(at, int32(i))
		}
	}
	slices.SortFunc(at, func(a, b int32) int {
		if c := cmp.Compare(msgs[a].UID, msgs[b].UID); c != 0 {
			return c
		}
		return cmp.Compare(a, b) // the first listing of a UID wins
	})
	k := 0
	for _, i := range at {
		if k > 0 && msgs[at[k-1]].UID == msgs[i].UID {
			continue
		}
		at[k] = i
		k++
		uids = append(uids, msgs[i].UID)
		flags = append(flags, msgs[i].Flags&AllFlags)
	}
	return uids, at[:k], flags
}

// msg returns the message of uids[i].
func (v *sideView) msg(i int) *Message {
	if v.at != nil {
		return &v.msgs[v.at[i]]
	}
	return &v.msgs[v.off+i]
}

// lookup reports whether a message the state knows still exists, and its flags; i is the
// index of its listing in v.uids, or -1 when it is not listed.
func (v *sideView) lookup(u UID, recorded Flag) (fl Flag, exists bool, i int) {
	if i, ok := search(v.uids, &v.cur, u); ok {
		return v.flags[i], true, i
	}
	switch {
	case v.rep.Unchanged:
		return recorded, true, -1
	case v.rep.Complete:
		return 0, false, -1
	case v.rep.ExistingKnown:
		_, ok := search(v.existing, &v.ecur, u)
		return recorded, ok, -1
	}
	// The caller established that no known message was removed.
	return recorded, true, -1
}

// search finds u in keys (ascending; duplicates allowed): it returns an index of u, or
// where u would be inserted. It gallops from *cur, where the previous search ended, and leaves *cur there:
// the state's pairs come in ascending far UID order and near UIDs mostly follow, so a
// lookup usually costs a comparison or two, and never more than O(log len(keys)).
func search(keys []UID, cur *int, u UID) (int, bool) {
	n := len(keys)
	if n == 0 {
		*cur = 0
		return 0, false
	}
	i := min(*cur, n-1)
	// The answer is in [lo, hi]: every key before lo is < u, and keys[hi] >= u when hi < n.
	var lo, hi int
	switch k := keys[i]; {
	case k == u:
		*cur = i
		return i, true
	case k < u:
		lo, hi = i+1, i+1
		for step := 1; hi < n && keys[hi] < u; step <<= 1 {
			lo = hi + 1
			hi += step
		}
		hi = min(hi, n)
	default:
		lo, hi = i-1, i
		for step := 1; lo >= 0 && keys[lo] >= u; step <<= 1 {
			hi = lo
			lo -= step
		}
		lo = max(lo+1, 0)
	}
	j, _ := slices.BinarySearch(keys[lo:hi], u)
	*cur = lo + j
	return lo + j, lo+j < n && keys[lo+j] == u
}

// knownUIDs is a set of UIDs from a range known in advance: a bitmap when they are dense
// enough (a mailbox's UIDs mostly are), else a map.
type knownUIDs struct {
	lo   UID
	bits []uint64
	m    map[UID]struct{}
	max  UID // the highest UID added
}

// newKnownUIDs makes a set for up to n UIDs in [lo, hi].
func newKnownUIDs(lo, hi UID, n int) knownUIDs {
	if n == 0 {
		return knownUIDs{}
	}
	if span := uint64(hi-lo) + 1; span <= 64*uint64(n)+4096 { // at most 8 bytes a member
		return knownUIDs{lo: lo, bits: make([]uint64, (span+63)/64)}
	}
	return knownUIDs{m: make(map[UID]struct{}, n)}
}

// add adds u, which must be in the range the set was made for.
func (s *knownUIDs) add(u UID) {
	s.max = max(s.max, u)
	if s.m != nil {
		s.m[u] = struct{}{}
		return
	}
	d := u - s.lo
	s.bits[d/64] |= 1 << (d % 64)
}

func (s *knownUIDs) has(u UID) bool {
	if s.m != nil {
		_, ok := s.m[u]
		return ok
	}
	if u < s.lo {
		return false
	}
	d := uint64(u - s.lo)
	return d/64 < uint64(len(s.bits)) && s.bits[d/64]&(1<<(d%64)) != 0
}

type flagChange struct {
	uid      UID
	from, to Flag
}

type planner struct {
	st    State
	opt   Options
	reps  [2]*Report
	views [2]sideView
	// known: the UIDs of each side that the state's pairs hold (of a damaged state,
	// those of the pairs kept).
	known [2]knownUIDs

	// merged are the state's SkipMerged pairs that name the message they were merged
	// into, handled once every pair has been seen (mergedPair). targets[t] holds those
	// messages of side t, with what this plan does to them.
	merged  []Pair
	targets [2]map[UID]targetFate

	// What this plan does, collected per side before grouping.
	changes   [2][]flagChange
	expunged  [2][]UID // no UID twice: every message is kept or expunged at most once
	late      []UID    // far UIDs of expunged[Far] that go after the near side (Plan.ExpungeLast)
	goneMarks [2]int   // messages newly given \Deleted because their partner is gone
	// existed counts messages known to exist at the start, per side.
	existed [2]int
	// inexact[s]: the new state does not describe side s as it will be after the plan
	// (see finish).
	inexact [2]bool
	// waiting[s]: the new state keeps a copy from side s this run did not
	// attempt (its direction does not copy new messages in this mode)
	waiting [2]bool

	// The new state's pairs, in runs merged by finish: pairs with a far UID that come from
	// the state's pairs (in its order, so sorted when it was), those without one, and the
	// new messages' pairs per side (ascending, as the listings are read in order).
	pairs, pairsNoFar []Pair
	newPairs          [2][]Pair
	plan              Plan
}

func (p *planner) init(st State, reps [2]*Report, opt Options) {
	p.st, p.opt, p.reps = st, opt, reps
	lo := [2]UID{math.MaxUint32, math.MaxUint32}
	var hi [2]UID
	var n [2]int
	for _, pr := range st.Pairs {
		if pr.Far != 0 {
			n[Far]++
			lo[Far], hi[Far] = min(lo[Far], pr.Far), max(hi[Far], pr.Far)
		}
		if pr.Near != 0 {
			n[Near]++
			lo[Near], hi[Near] = min(lo[Near], pr.Near), max(hi[Near], pr.Near)
		}
		if pr.Skip == SkipMerged && pr.Into != 0 && (pr.Far == 0) != (pr.Near == 0) {
			t, _ := oneSide(pr)
			t = t.Other()
			if p.targets[t] == nil {
				p.targets[t] = map[UID]targetFate{}
			}
			p.targets[t][pr.Into] = targetKept
		}
	}
	fresh := 0 // at most this many new messages get a pair
	for s := range 2 {
		p.views[s] = newSideView(reps[s])
		p.known[s] = newKnownUIDs(lo[s], hi[s], n[s])
		uids := p.views[s].uids
		i, found := slices.BinarySearch(uids, p.maxSeen(Side(s)))
		if found {
			i++
		}
		fresh += len(uids) - i
	}
	// Every pair of the state gives at most one pair of the new state.
	p.pairs = make([]Pair, 0, len(st.Pairs)+fresh)
}

// ops returns what propagates from side `from` to the other side.
func (p *planner) ops(from Side) Ops {
	if from == Far {
		return p.opt.Pull
	}
	return p.opt.Push
}

func (p *planner) maxSeen(s Side) UID {
	if s == Far {
		return p.st.MaxPulled
	}
	return p.st.MaxPushed
}

func (p *planner) run() {
	for _, pr := range p.st.Pairs {
		pr.Flags &= AllFlags
		if pr.Far == 0 && pr.Near == 0 {
			continue
		}
		// A damaged state with a UID in two pairs keeps the first pair: dropping the
		// other can at worst leave a message unsynced, never copy it twice.
		if (pr.Far != 0 && p.known[Far].has(pr.Far)) || (pr.Near != 0 && p.known[Near].has(pr.Near)) {
			continue
		}
		if pr.Far != 0 {
			p.known[Far].add(pr.Far)
		}
		if pr.Near != 0 {
			p.known[Near].add(pr.Near)
		}
		switch {
		case pr.Far != 0 && pr.Near != 0:
			pr.Skip = SkipNone // a full pair skips nothing
			p.fullPair(pr)
		case pr.Skip == SkipNone:
			s, u := oneSide(pr)
			p.pending(s, u, pr.Flags, true, -1)
		case pr.Skip == SkipMerged && pr.Into != 0:
			p.merged = append(p.merged, pr)
		default:
			p.skipped(pr)
		}
	}
	if len(p.merged) > 0 {
		// Which of the messages merged into stay in the new state, other than
		// as a deletion mark this plan makes.
		var stays [2]map[UID]bool
		for s := range 2 {
			stays[s] = map[UID]bool{}
		}
		for _, ps := range [][]Pair{p.pairs, p.pairsNoFar} {
			for _, pr := range ps {
				for s, u := range [2]UID{pr.Far, pr.Near} {
					if f, ok := p.targets[s][u]; ok && u != 0 && f != targetMarked {
						stays[s][u] = true
					}
				}
			}
		}
		for _, pr := range p.merged {
			p.mergedPair(pr, stays)
		}
	}
	// Unpaired listed messages: new ones above the high-water mark, old ones below it.
	for _, s := range []Side{Far, Near} {
		v := &p.views[s]
		seen := p.maxSeen(s)
		for i, u := range v.uids {
			if p.known[s].has(u) {
				continue
			}
			fl := v.flags[i]
			p.existed[s]++
			if u > seen {
				p.pending(s, u, fl, false, i)
				continue
			}
			if p.opt.Expunge[s] && fl.Has(FlagDeleted) {
				p.expunge(s, u)
			}
		}
	}
	p.finish()
}

func oneSide(pr Pair) (Side, UID) {
	if pr.Far != 0 {
		return Far, pr.Far
	}
	return Near, pr.Near
}

func pairOf(s Side, u UID, fl Flag, skip SkipReason) Pair {
	pr := Pair{Flags: fl, Skip: skip}
	if s == Far {
		pr.Far = u
	} else {
		pr.Near = u
	}
	return pr
}

// addPair adds a pair made from a pair of the state to the new state.
func (p *planner) addPair(pr Pair) {
	if pr.Far != 0 {
		p.pairs = append(p.pairs, pr)
	} else {
		p.pairsNoFar = append(p.pairsNoFar, pr)
	}
}

func (p *planner) expunge(s Side, u UID) { p.expunged[s] = append(p.expunged[s], u) }

// keep records that message u on side s stays, going from flags cur to fl.
func (p *planner) keep(s Side, u UID, cur, fl Flag) {
	if cur != fl {
		p.changes[s] = append(p.changes[s], flagChange{u, cur, fl})
	}
}

func (p *planner) fullPair(pr Pair) {
	base := pr.Flags
	var cur [2]Flag
	var ok [2]bool
	cur[Far], ok[Far], _ = p.views[Far].lookup(pr.Far, base)
	cur[Near], ok[Near], _ = p.views[Near].lookup(pr.Near, base)
	uid := [2]UID{pr.Far, pr.Near}
	for s := range 2 {
		if ok[s] {
			p.existed[s]++
		}
	}
	for s := range 2 {
		if !ok[s] {
			p.removedThere(Side(s), uid[s])
		}
	}
	switch {
	case !ok[Far] && !ok[Near]:
		return // removed on both sides: nothing left to do
	case !ok[Far]:
		p.partnerGone(Near, uid, cur[Near], cur[Near])
		return
	case !ok[Near]:
		p.partnerGone(Far, uid, cur[Far], cur[Far])
		return
	}

	// Per flag, a boolean can only have flipped away from the base, so "both changed"
	// means both made the same change: the merge is the base with every change applied.
	merged := base ^ ((cur[Far] ^ base) | (cur[Near] ^ base))
	fin := cur
	if p.opt.Pull&OpFlags != 0 {
		fin[Near] = merged
	}
	if p.opt.Push&OpFlags != 0 {
		fin[Far] = merged
	}
	x := [2]bool{
		p.opt.Expunge[Far] && fin[Far].Has(FlagDeleted),
		p.opt.Expunge[Near] && fin[Near].Has(FlagDeleted),
	}
	if x[Far] || x[Near] {
		// The pair goes: a side that gave its message \Deleted since the last run
		// removes it itself.
		for s := range 2 {
			if cur[s].Has(FlagDeleted) && !base.Has(FlagDeleted) {
				p.removedThere(Side(s), uid[s])
			}
		}
	}
	switch {
	case x[Far] && x[Near]:
		p.expunge(Far, pr.Far)
		p.expunge(Near, pr.Near)
		if !cur[Far].Has(FlagDeleted) {
			p.late = append(p.late, pr.Far) // its \Deleted is the near side's
		}
	case x[Far]:
		p.expunge(Far, pr.Far)
		p.partnerGone(Near, uid, cur[Near], fin[Near])
	case x[Near]:
		p.expunge(Near, pr.Near)
		n := len(p.expunged[Far])
		p.partnerGone(Far, uid, cur[Far], fin[Far])
		if len(p.expunged[Far]) > n && !cur[Far].Has(FlagDeleted) {
			p.late = append(p.late, pr.Far)
		}
	default:
		p.keep(Far, pr.Far, cur[Far], fin[Far])
		p.keep(Near, pr.Near, cur[Near], fin[Near])
		diff := fin[Far] ^ fin[Near]
		newBase := (fin[Far] &^ diff) | (base & diff)
		// A side whose flags end up other than the recorded base is not described exactly.
		for s := range 2 {
			if fin[s] != newBase {
				p.inexact[s] = true
			}
		}
		p.addPair(Pair{Far: pr.Far, Near: pr.Near, Flags: newBase})
	}
}

// partnerGone handles a pair whose message on side r survives (flags cur now, fl after
// this plan's merge) while its partner is gone or being expunged.
func (p *planner) partnerGone(r Side, uid [2]UID, cur, fl Flag) {
	g := r.Other()
	if p.ops(g)&OpGone == 0 {
		// Not propagating removals now: keep the pair with the gone UID so that a run
		// that does propagate them still sees this one. (Its markers stay old: see finish.)
		if p.opt.Expunge[r] && fl.Has(FlagDeleted) {
			p.expunge(r, uid[r])
			return
		}
		p.keep(r, uid[r], cur, fl)
		p.inexact[g] = true // the state pairs a message of g that is gone
		p.addPair(Pair{Far: uid[Far], Near: uid[Near], Flags: fl})
		return
	}
	if !fl.Has(FlagDeleted) {
		fl |= FlagDeleted
		if !p.opt.Expunge[r] {
			p.goneMarks[r]++ // expunges are counted separately
		}
	}
	if p.opt.Expunge[r] {
		p.expunge(r, uid[r])
		return
	}
	p.keep(r, uid[r], cur, fl)
	p.addPair(pairOf(r, uid[r], fl, SkipGone))
	if f, ok := p.targets[r][uid[r]]; ok && f == targetKept {
		p.targets[r][uid[r]] = targetMarked
	}
}

// targetFate is what a plan does to a message a merged pair names.
type targetFate uint8

const (
	targetKept    targetFate = iota
	targetRemoved            // by its own side (see removedThere)
	targetMarked             // \Deleted and kept one-sided (SkipGone) by this plan, for its partner's removal
)

// removedThere notes that side s removes its message u itself (gone from its listing,
// or expunged with a \Deleted it had), for the merged pairs that name u.
func (p *planner) removedThere(s Side, u UID) {
	if _, ok := p.targets[s][u]; ok {
		p.targets[s][u] = targetRemoved
	}
}

// mergedPair handles a SkipMerged pair whose copy side t merged into its message
// pr.Into. That message stands for this one there: removed by side t itself (a
// deletion on the server), this one goes too, as a partner would. Leaving the state
// otherwise (removed for its partner here, which the user deleted, or gone after this
// side flagged it \Deleted), or flagged \Deleted by this plan for that reason, it leaves
// this one on this side only: copied again, in this plan, so that the run converges
// (the executor makes a copy the target merges into a message the run removes or flags
// again after that change). While that message stays in the new state otherwise
// (stays), the pair is skipped as any other: a merge into a message flagged \Deleted
// by an earlier run is not tried again at every run.
func (p *planner) mergedPair(pr Pair, stays [2]map[UID]bool) {
	s, u := oneSide(pr)
	t := s.Other()
	switch {
	case p.targets[t][pr.Into] == targetRemoved && p.ops(t)&OpGone != 0:
		cur, ok, _ := p.views[s].lookup(u, pr.Flags)
		if !ok {
			return
		}
		p.existed[s]++
		var uid [2]UID
		uid[s] = u
		p.partnerGone(s, uid, cur, cur)
	case !stays[t][pr.Into]:
		p.pending(s, u, pr.Flags, true, -1)
	default:
		p.skipped(pr)
	}
}

// skipped handles a one-sided pair kept on purpose: it stays (never retried) while its
// message exists, unless expunge removes the message.
func (p *planner) skipped(pr Pair) {
	s, u := oneSide(pr)
	cur, ok, _ := p.views[s].lookup(u, pr.Flags)
	if !ok {
		return
	}
	if pr.Skip == SkipTooBig && cur.Has(FlagFlagged) ||
		(pr.Skip == SkipRefused || pr.Skip == SkipMerged) && cur.Has(FlagFlagged) && !pr.Flags.Has(FlagFlagged) {
		// Skipped for max_size, and flagged: a request for the message
		// (mbsync's placeholders are fetched the same way), which a flag
		// lets past max_size. Refused by the other side for its size, or
		// merged by it into a message it holds, and flagged since: tried
		// once more per flagging (a refusal or merge again is recorded
		// with the \Flagged, and not retried at every run).
		p.pending(s, u, pr.Flags, true, -1)
		return
	}
	if (pr.Skip == SkipDeleted || pr.Skip == SkipGone) && pr.Flags.Has(FlagDeleted) && !cur.Has(FlagDeleted) {
		// Not copied because it arrived already deleted, or kept here with
		// \Deleted after its partner was removed; the user took the deletion
		// back (a webmail's undo before the expunge): it is a message to copy
		// like any other. (The \Deleted of a SkipGone pair is recorded only
		// once the store took it: a failed STORE reverts the pair.)
		p.pending(s, u, pr.Flags, true, -1)
		return
	}
	p.existed[s]++
	if p.opt.Expunge[s] && cur.Has(FlagDeleted) {
		p.expunge(s, u)
		return
	}
	p.keep(s, u, cur, cur)
	pr.Flags = cur
	p.addPair(pr)
}

// pending handles a message on side s without a partner: a copy not done yet (inState)
// or a new message (listed as p.views[s].uids[i], not in the state).
func (p *planner) pending(s Side, u UID, recorded Flag, inState bool, i int) {
	cur, ok := recorded, true
	if inState {
		cur, ok, i = p.views[s].lookup(u, recorded)
		if !ok {
			return // the source is gone: nothing to copy any more
		}
		p.existed[s]++
	}
	if p.opt.Expunge[s] && cur.Has(FlagDeleted) {
		p.expunge(s, u)
		return
	}
	p.keep(s, u, cur, cur)
	add := p.addPair
	if !inState {
		add = func(pr Pair) { p.newPairs[s] = append(p.newPairs[s], pr) }
	}
	t := s.Other()
	if p.ops(s)&OpNew == 0 {
		if inState {
			add(pairOf(s, u, cur, SkipNone))
			p.waiting[s] = true
		} else {
			// A new message left for a later run: the next run must list it again.
			p.inexact[s] = true
		}
		return
	}
	size := int64(-1)
	var date time.Time
	if i >= 0 {
		m := p.views[s].msg(i)
		size, date = m.Size, m.Date
	}
	switch {
	case p.opt.MaxSize > 0 && size > p.opt.MaxSize && !cur.Has(FlagFlagged):
		// A flagged message is copied whatever its size, as mbsync 1.4
		// does (max_size keeps big mail out of the way; a flag says this
		// one is wanted).
		p.plan.TooBig[t] = append(p.plan.TooBig[t], u)
		add(pairOf(s, u, cur, SkipTooBig))
	case cur.Has(FlagDeleted) && p.opt.Expunge[t]:
		add(pairOf(s, u, cur, SkipDeleted))
	default:
		p.plan.Copies[t] = append(p.plan.Copies[t], Copy{UID: u, Flags: cur, Date: date, Size: size})
		add(pairOf(s, u, cur, SkipNone))
	}
}

// finish groups the actions, builds the new state and applies the guard.
func (p *planner) finish() {
	pl := &p.plan
	for s := range 2 {
		if !slices.IsSorted(p.expunged[s]) {
			slices.Sort(p.expunged[s])
		}
		pl.Expunges[s] = p.expunged[s]
		if s == int(Far) && len(p.late) > 0 {
			slices.Sort(p.late)
			pl.ExpungeLast = p.late
		}
		pl.Flags[s] = groupFlags(p.changes[s])
		if !slices.IsSortedFunc(pl.Copies[s], compareCopies) {
			slices.SortFunc(pl.Copies[s], compareCopies)
		}
		if !slices.IsSorted(pl.TooBig[s]) {
			slices.Sort(pl.TooBig[s])
		}
		pl.Removals[s] = len(pl.Expunges[s]) + p.goneMarks[s]
		pl.Sizes[s] = p.existed[s]
		if n := p.reps[s].Status.Messages; n > int64(pl.Sizes[s]) && n <= math.MaxInt {
			pl.Sizes[s] = int(n)
		}
	}

	ns := State{
		Generation:   p.st.Generation,
		FarValidity:  p.st.FarValidity,
		NearValidity: p.st.NearValidity,
		MaxPulled:    p.st.MaxPulled,
		MaxPushed:    p.st.MaxPushed,
		Pairs:        p.newStatePairs(),
	}
	if v := p.reps[Far].Status.UIDValidity; v != 0 {
		ns.FarValidity = v
	}
	if v := p.reps[Near].Status.UIDValidity; v != 0 {
		ns.NearValidity = v
	}
	// A direction that copies new messages has considered every message it saw on the
	// source side; one that does not must leave them "new" for a later run.
	if p.opt.Pull&OpNew != 0 {
		ns.MaxPulled = max(ns.MaxPulled, p.highest(Far))
	}
	if p.opt.Push&OpNew != 0 {
		ns.MaxPushed = max(ns.MaxPushed, p.highest(Near))
	}
	// The new state may take a side's current markers only when it describes the side
	// exactly as it will be after the plan: every message it pairs there exists with the
	// recorded flags, and no message seen there is left new-but-unconsidered. Otherwise
	// the old markers make the next run list what the state does not capture.
	ns.Far, ns.Near = p.st.Far, p.st.Near
	if !p.inexact[Far] {
		ns.Far = MarkersOf(p.reps[Far].Status)
	}
	if !p.inexact[Near] {
		ns.Near = MarkersOf(p.reps[Near].Status)
	}
	// A copy left waiting must not be hidden by a side that looks unchanged
	// next time (the pair would be skipped unopened): no stamp, so that side
	// is listed, incrementally, and the copy is made.
	if p.waiting[Far] {
		ns.Far.Stamp = ""
	}
	if p.waiting[Near] {
		ns.Near.Stamp = ""
	}
	for s := range 2 {
		pl.Exact[s] = !p.inexact[s] && !p.waiting[s]
	}
	pl.State = ns

	if p.opt.Force {
		return
	}
	for _, s := range []Side{Far, Near} {
		n, of := pl.Removals[s], pl.Sizes[s]
		if n > 10 && n*2 > of {
			pl.Guard = &GuardError{Side: s, Removes: n, Of: of, Reason: fmt.Sprintf(
				"would delete %d of %d messages in the %s mailbox; if that is what you want, run again with --force",
				n, of, s)}
			return
		}
	}
}

// newStatePairs merges the new state's pairs into the order of State.Pairs. Every UID
// occurs at most once on its side, so the order is total.
func (p *planner) newStatePairs() []Pair {
	out := p.pairs
	sortPairs(out) // only a state that was not sorted
	out = mergePairs(out, p.newPairs[Far])
	sortPairs(p.pairsNoFar) // pairs whose far message went
	// Pairs without a far UID sort after all others, so these merges leave out[:n] alone.
	out = append(out, p.pairsNoFar...)
	out = mergePairs(out, p.newPairs[Near])
	if len(out) == 0 {
		return nil
	}
	return out
}

// mergePairs appends the sorted b to the sorted a, keeping it sorted. It merges from the
// back, in place when a has room, so pairs of a above b's first are the only ones moved.
func mergePairs(a, b []Pair) []Pair {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 || comparePairs(a[len(a)-1], b[0]) < 0 {
		return append(a, b...)
	}
	i, j := len(a)-1, len(b)-1
	a = append(a, b...) // room for b; its copy at the end is overwritten by the merge
	for k := len(a) - 1; j >= 0; k-- {
		if i >= 0 && comparePairs(a[i], b[j]) > 0 {
			a[k] = a[i]
			i--
		} else {
			a[k] = b[j]
			j--
		}
	}
	return a
}

// highest is the highest UID of side s that this run has seen or that the state pairs.
func (p *planner) highest(s Side) UID {
	m := p.known[s].max
	if n := len(p.views[s].uids); n > 0 {
		m = max(m, p.views[s].uids[n-1])
	}
	return m
}

func comparePairs(a, b Pair) int { return cmpPairKey(a, b) }

func compareCopies(a, b Copy) int { return cmp.Compare(a.UID, b.UID) }

// groupFlags turns per-message changes into one update per distinct (add, remove). No
// message changes that is also expunged: the planner keeps or expunges each at most once.
func groupFlags(changes []flagChange) []FlagUpdate {
	if len(changes) == 0 {
		return nil
	}
	// slot[add<<6|remove] is 1 + the index of that update in out (flags are 6 bits).
	var slot [1 << 12]uint16
	var out []FlagUpdate
	for _, c := range changes {
		add, remove := (c.to&^c.from)&AllFlags, (c.from&^c.to)&AllFlags
		k := int(add)<<6 | int(remove)
		if slot[k] == 0 {
			out = append(out, FlagUpdate{Add: add, Remove: remove})
			slot[k] = uint16(len(out))
		}
		u := &out[slot[k]-1]
		u.UIDs = append(u.UIDs, c.uid)
	}
	for _, u := range out {
		if !slices.IsSorted(u.UIDs) {
			slices.Sort(u.UIDs)
		}
	}
	slices.SortFunc(out, func(a, b FlagUpdate) int {
		if c := cmp.Compare(a.Add, b.Add); c != 0 {
			return c
		}
		return cmp.Compare(a.Remove, b.Remove)
	})
	return out
}
