package engine

import (
	"cmp"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"
)

// refPlanMailbox is the planner as it was before it was rewritten for speed
// (commit 06fa5b1), kept verbatim apart from its names: a plain, map-based
// reading of the rules documented on PlanMailbox. The tests compare the two on
// random and damaged inputs, so the fast planner must behave exactly like it.
func refPlanMailbox(st State, far, near Report, opt Options) Plan {
	p := refNewPlanner(st, [2]*Report{&far, &near}, opt)
	p.run()
	return p.plan
}

// refSideView answers what one side looks like at the start of the run.
type refSideView struct {
	rep      *Report
	listed   map[UID]Message
	order    []UID // listed UIDs ascending, without duplicates or 0
	existing map[UID]bool
}

func refNewSideView(r *Report) refSideView {
	v := refSideView{rep: r, listed: make(map[UID]Message, len(r.Messages))}
	for _, m := range r.Messages {
		if m.UID == 0 {
			continue
		}
		if _, dup := v.listed[m.UID]; dup {
			continue // the first listing wins; a store should not list a UID twice
		}
		m.Flags &= AllFlags
		v.listed[m.UID] = m
		v.order = append(v.order, m.UID)
	}
	slices.Sort(v.order)
	if !r.Unchanged && !r.Complete && r.ExistingKnown {
		v.existing = make(map[UID]bool, len(r.Existing))
		for _, u := range r.Existing {
			v.existing[u] = true
		}
	}
	return v
}

// lookup reports whether a message the state knows still exists, and its flags.
func (v *refSideView) lookup(u UID, recorded Flag) (Flag, bool) {
	if m, ok := v.listed[u]; ok {
		return m.Flags, true
	}
	switch {
	case v.rep.Unchanged:
		return recorded, true
	case v.rep.Complete:
		return 0, false
	case v.rep.ExistingKnown:
		return recorded, v.existing[u]
	}
	// The caller established that no known message was removed.
	return recorded, true
}

type refFlagChange struct {
	uid      UID
	from, to Flag
}

type refPlanner struct {
	st    State
	opt   Options
	reps  [2]*Report
	views [2]refSideView
	known [2]map[UID]bool

	// What this plan does, collected per side before grouping.
	changes   [2][]refFlagChange
	expunged  [2]map[UID]bool
	late      map[UID]bool // far expunges that wait for the near side
	goneMarks [2]int       // messages newly given \Deleted because their partner is gone
	// after: every message on a side after the plan, with its flags (copies excluded:
	// they get new UIDs and the flags recorded for them).
	after [2]map[UID]Flag
	// existed counts messages known to exist at the start, per side.
	existed [2]int
	pairs   []Pair
	plan    Plan
	// removedThere[s]: messages of side s that side removed itself in this run;
	// markedGone[s]: those this plan flags \Deleted and keeps one-sided for a partner's
	// removal.
	removedThere, markedGone [2]map[UID]bool
}

func refNewPlanner(st State, reps [2]*Report, opt Options) *refPlanner {
	p := &refPlanner{st: st, opt: opt, reps: reps}
	for s := range 2 {
		p.views[s] = refNewSideView(reps[s])
		p.known[s] = make(map[UID]bool, len(st.Pairs))
		p.expunged[s] = make(map[UID]bool)
		p.late = make(map[UID]bool)
		p.after[s] = make(map[UID]Flag)
		p.removedThere[s] = make(map[UID]bool)
		p.markedGone[s] = make(map[UID]bool)
	}
	return p
}

// ops returns what propagates from side `from` to the other side.
func (p *refPlanner) ops(from Side) Ops {
	if from == Far {
		return p.opt.Pull
	}
	return p.opt.Push
}

func (p *refPlanner) maxSeen(s Side) UID {
	if s == Far {
		return p.st.MaxPulled
	}
	return p.st.MaxPushed
}

// normalize turns the state's pairs into a list in which every UID occurs on its side at
// most once. A damaged state with a UID in two pairs keeps the first pair: dropping the
// other can at worst leave a message unsynced, never copy it twice.
func (p *refPlanner) normalize() []Pair {
	out := make([]Pair, 0, len(p.st.Pairs))
	for _, pr := range p.st.Pairs {
		pr.Flags &= AllFlags
		if pr.Far == 0 && pr.Near == 0 {
			continue
		}
		if (pr.Far != 0 && p.known[Far][pr.Far]) || (pr.Near != 0 && p.known[Near][pr.Near]) {
			continue
		}
		if pr.Far != 0 && pr.Near != 0 {
			pr.Skip = SkipNone // a full pair skips nothing
		}
		if pr.Far != 0 {
			p.known[Far][pr.Far] = true
		}
		if pr.Near != 0 {
			p.known[Near][pr.Near] = true
		}
		out = append(out, pr)
	}
	return out
}

func (p *refPlanner) run() {
	pairs := p.normalize()
	for _, pr := range pairs {
		switch {
		case pr.Far != 0 && pr.Near != 0:
			p.fullPair(pr)
		case pr.Skip == SkipNone:
			s, u := refOneSide(pr)
			p.pending(s, u, pr.Flags, true)
		case pr.Skip == SkipMerged && pr.Into != 0:
			// after every pair: what became of the message it was merged into
		default:
			p.skipped(pr)
		}
	}
	inNew := [2]map[UID]bool{{}, {}} // the messages the new state pairs so far
	for _, pr := range p.pairs {
		for s, u := range [2]UID{pr.Far, pr.Near} {
			if !p.markedGone[s][u] || p.removedThere[s][u] {
				inNew[s][u] = true
			}
		}
	}
	for _, pr := range pairs {
		if pr.Far != 0 && pr.Near != 0 || pr.Skip != SkipMerged || pr.Into == 0 {
			continue
		}
		s, u := refOneSide(pr)
		t := s.Other()
		switch {
		case p.removedThere[t][pr.Into] && p.ops(t)&OpGone != 0:
			// removed by the side that merged it: this one goes with it
			cur, ok := p.views[s].lookup(u, pr.Flags)
			if !ok {
				continue
			}
			p.existed[s]++
			var uid [2]UID
			uid[s] = u
			p.partnerGone(s, uid, cur, cur)
		case !inNew[t][pr.Into]:
			p.pending(s, u, pr.Flags, true) // leaves the state: a message of its own
		default:
			p.skipped(pr)
		}
	}
	// Unpaired listed messages: new ones above the high-water mark, old ones below it.
	for _, s := range []Side{Far, Near} {
		v := &p.views[s]
		for _, u := range v.order {
			if p.known[s][u] {
				continue
			}
			fl := v.listed[u].Flags
			p.existed[s]++
			if u > p.maxSeen(s) {
				p.pending(s, u, fl, false)
				continue
			}
			if p.opt.Expunge[s] && fl.Has(FlagDeleted) {
				p.expunge(s, u)
			} else {
				p.after[s][u] = fl
			}
		}
	}
	p.finish()
}

func refOneSide(pr Pair) (Side, UID) {
	if pr.Far != 0 {
		return Far, pr.Far
	}
	return Near, pr.Near
}

func refPairOf(s Side, u UID, fl Flag, skip SkipReason) Pair {
	pr := Pair{Flags: fl, Skip: skip}
	if s == Far {
		pr.Far = u
	} else {
		pr.Near = u
	}
	return pr
}

func (p *refPlanner) expunge(s Side, u UID) { p.expunged[s][u] = true }

// keep records that message u on side s stays, going from flags cur to fl.
func (p *refPlanner) keep(s Side, u UID, cur, fl Flag) {
	if cur != fl {
		p.changes[s] = append(p.changes[s], refFlagChange{u, cur, fl})
	}
	p.after[s][u] = fl
}

func (p *refPlanner) fullPair(pr Pair) {
	base := pr.Flags
	var cur [2]Flag
	var ok [2]bool
	cur[Far], ok[Far] = p.views[Far].lookup(pr.Far, base)
	cur[Near], ok[Near] = p.views[Near].lookup(pr.Near, base)
	uid := [2]UID{pr.Far, pr.Near}
	for s := range 2 {
		if ok[s] {
			p.existed[s]++
		} else {
			p.removedThere[s][uid[s]] = true
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
	for s := range 2 {
		if (x[Far] || x[Near]) && cur[s].Has(FlagDeleted) && !base.Has(FlagDeleted) {
			p.removedThere[s][uid[s]] = true // deleted there since the last run
		}
	}
	switch {
	case x[Far] && x[Near]:
		p.expunge(Far, pr.Far)
		p.expunge(Near, pr.Near)
		if !cur[Far].Has(FlagDeleted) {
			p.late[pr.Far] = true
		}
	case x[Far]:
		p.expunge(Far, pr.Far)
		p.partnerGone(Near, uid, cur[Near], fin[Near])
	case x[Near]:
		p.expunge(Near, pr.Near)
		had := p.expunged[Far][pr.Far]
		p.partnerGone(Far, uid, cur[Far], fin[Far])
		if !had && p.expunged[Far][pr.Far] && !cur[Far].Has(FlagDeleted) {
			p.late[pr.Far] = true
		}
	default:
		p.keep(Far, pr.Far, cur[Far], fin[Far])
		p.keep(Near, pr.Near, cur[Near], fin[Near])
		diff := fin[Far] ^ fin[Near]
		newBase := (fin[Far] &^ diff) | (base & diff)
		p.pairs = append(p.pairs, Pair{Far: pr.Far, Near: pr.Near, Flags: newBase})
	}
}

// partnerGone handles a pair whose message on side r survives (flags cur now, fl after
// this plan's merge) while its partner is gone or being expunged.
func (p *refPlanner) partnerGone(r Side, uid [2]UID, cur, fl Flag) {
	g := r.Other()
	if p.ops(g)&OpGone == 0 {
		// Not propagating removals now: keep the pair with the gone UID so that a run
		// that does propagate them still sees this one. (Its markers stay old: see finish.)
		if p.opt.Expunge[r] && fl.Has(FlagDeleted) {
			p.expunge(r, uid[r])
			return
		}
		p.keep(r, uid[r], cur, fl)
		p.pairs = append(p.pairs, Pair{Far: uid[Far], Near: uid[Near], Flags: fl})
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
	p.pairs = append(p.pairs, refPairOf(r, uid[r], fl, SkipGone))
	p.markedGone[r][uid[r]] = true
}

// skipped handles a one-sided pair kept on purpose: it stays (never retried) while its
// message exists, unless expunge removes the message.
func (p *refPlanner) skipped(pr Pair) {
	s, u := refOneSide(pr)
	cur, ok := p.views[s].lookup(u, pr.Flags)
	if !ok {
		return
	}
	if pr.Skip == SkipTooBig && cur.Has(FlagFlagged) ||
		(pr.Skip == SkipRefused || pr.Skip == SkipMerged) && cur.Has(FlagFlagged) && !pr.Flags.Has(FlagFlagged) {
		p.pending(s, u, pr.Flags, true) // flagged: wanted whatever max_size says; refused or merged: once per flagging
		return
	}
	if (pr.Skip == SkipDeleted || pr.Skip == SkipGone) && pr.Flags.Has(FlagDeleted) && !cur.Has(FlagDeleted) {
		p.pending(s, u, pr.Flags, true) // undeleted: a message to copy after all
		return
	}
	p.existed[s]++
	if p.opt.Expunge[s] && cur.Has(FlagDeleted) {
		p.expunge(s, u)
		return
	}
	p.keep(s, u, cur, cur)
	pr.Flags = cur
	p.pairs = append(p.pairs, pr)
}

// pending handles a message on side s without a partner: a copy not done yet (inState)
// or a new message (listed, not in the state).
func (p *refPlanner) pending(s Side, u UID, recorded Flag, inState bool) {
	cur, ok := recorded, true
	if inState {
		cur, ok = p.views[s].lookup(u, recorded)
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
	t := s.Other()
	if p.ops(s)&OpNew == 0 {
		if inState {
			p.pairs = append(p.pairs, refPairOf(s, u, cur, SkipNone))
		}
		return
	}
	size := int64(-1)
	var date time.Time
	if m, listed := p.views[s].listed[u]; listed {
		size, date = m.Size, m.Date
	}
	switch {
	case p.opt.MaxSize > 0 && size > p.opt.MaxSize && !cur.Has(FlagFlagged):
		p.plan.TooBig[t] = append(p.plan.TooBig[t], u)
		p.pairs = append(p.pairs, refPairOf(s, u, cur, SkipTooBig))
	case cur.Has(FlagDeleted) && p.opt.Expunge[t]:
		p.pairs = append(p.pairs, refPairOf(s, u, cur, SkipDeleted))
	default:
		p.plan.Copies[t] = append(p.plan.Copies[t], Copy{UID: u, Flags: cur, Date: date, Size: size})
		p.pairs = append(p.pairs, refPairOf(s, u, cur, SkipNone))
	}
}

// finish groups the actions, builds the new state and applies the guard.
func (p *refPlanner) finish() {
	pl := &p.plan
	for s := range 2 {
		pl.Expunges[s] = refSortedKeys(p.expunged[s])
		if s == int(Far) && len(p.late) > 0 {
			pl.ExpungeLast = refSortedKeys(p.late)
		}
		pl.Flags[s] = refGroupFlags(p.changes[s], p.expunged[s])
		slices.SortFunc(pl.Copies[s], func(a, b Copy) int { return cmp.Compare(a.UID, b.UID) })
		slices.Sort(pl.TooBig[s])
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
		Pairs:        p.pairs,
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
	slices.SortFunc(ns.Pairs, refComparePairs)
	ns.Far, ns.Near = p.st.Far, p.st.Near
	if p.exact(Far, &ns) {
		ns.Far = MarkersOf(p.reps[Far].Status)
		pl.Exact[Far] = true
	}
	if p.exact(Near, &ns) {
		ns.Near = MarkersOf(p.reps[Near].Status)
		pl.Exact[Near] = true
	}
	// A copy the new state keeps waiting (its direction copies nothing
	// new in this mode) leaves its source side without a stamp.
	for _, pr := range ns.Pairs {
		if pr.Skip != SkipNone || (pr.Far == 0) == (pr.Near == 0) {
			continue
		}
		if pr.Far != 0 && p.ops(Far)&OpNew == 0 {
			ns.Far.Stamp = ""
			pl.Exact[Far] = false
		}
		if pr.Near != 0 && p.ops(Near)&OpNew == 0 {
			ns.Near.Stamp = ""
			pl.Exact[Near] = false
		}
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

// highest is the highest UID of side s that this run has seen or that the state pairs.
func (p *refPlanner) highest(s Side) UID {
	var m UID
	if n := len(p.views[s].order); n > 0 {
		m = p.views[s].order[n-1]
	}
	for u := range p.known[s] {
		m = max(m, u)
	}
	return m
}

// exact reports whether the new state describes side s exactly as it will be after the
// plan: every UID it pairs on s exists with the recorded flags, and no message it saw there
// is left new-but-unconsidered. Only then may the new state take the side's current markers;
// otherwise the old markers make the next run list what the state does not capture.
func (p *refPlanner) exact(s Side, ns *State) bool {
	paired := make(map[UID]bool, len(ns.Pairs))
	for _, pr := range ns.Pairs {
		u := pr.Far
		if s == Near {
			u = pr.Near
		}
		if u == 0 {
			continue
		}
		fl, ok := p.after[s][u]
		if !ok || fl != pr.Flags {
			return false
		}
		paired[u] = true
	}
	hi := ns.MaxPulled
	if s == Near {
		hi = ns.MaxPushed
	}
	for _, u := range p.views[s].order {
		if u > hi && !paired[u] && !p.expunged[s][u] {
			return false
		}
	}
	return true
}

func refComparePairs(a, b Pair) int {
	switch {
	case a.Far == 0 && b.Far != 0:
		return 1
	case a.Far != 0 && b.Far == 0:
		return -1
	}
	if c := cmp.Compare(a.Far, b.Far); c != 0 {
		return c
	}
	return cmp.Compare(a.Near, b.Near)
}

func refSortedKeys(m map[UID]bool) []UID {
	if len(m) == 0 {
		return nil
	}
	out := make([]UID, 0, len(m))
	for u := range m {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// refGroupFlags turns per-message changes into one update per distinct (add, remove),
// leaving out messages expunged anyway.
func refGroupFlags(changes []refFlagChange, expunged map[UID]bool) []FlagUpdate {
	type key struct{ add, remove Flag }
	groups := make(map[key][]UID)
	for _, c := range changes {
		if expunged[c.uid] {
			continue
		}
		k := key{c.to &^ c.from, c.from &^ c.to}
		groups[k] = append(groups[k], c.uid)
	}
	if len(groups) == 0 {
		return nil
	}
	out := make([]FlagUpdate, 0, len(groups))
	for k, uids := range groups {
		slices.Sort(uids)
		out = append(out, FlagUpdate{UIDs: uids, Add: k.add, Remove: k.remove})
	}
	slices.SortFunc(out, func(a, b FlagUpdate) int {
		if c := cmp.Compare(a.Add, b.Add); c != 0 {
			return c
		}
		return cmp.Compare(a.Remove, b.Remove)
	})
	return out
}

// checkSameAsRef fails the test when PlanMailbox's plan pl differs in anything
// from the reference planner's on the same input.
func checkSameAsRef(t testing.TB, pl *Plan, st State, far, near Report, opt Options) {
	t.Helper()
	ref := refPlanMailbox(st, far, near, opt)
	if reflect.DeepEqual(*pl, ref) {
		return
	}
	t.Fatalf("PlanMailbox differs from the reference planner\nstate %+v\nfar %+v\nnear %+v\nopt %+v\ngot  %+v\nwant %+v",
		st, far, near, opt, *pl, ref)
}
