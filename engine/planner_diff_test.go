package engine

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// The fast planner must plan exactly as the reference planner (planner_ref_test.go) does,
// on well-formed input of every size and on damaged input: states unsorted or with a UID in
// two pairs, listings in any order with duplicates and UID 0, UIDs sparse enough to need
// the planner's fallbacks (maps, sorting) and UIDs at the top of their range.

// diffUIDs draws UIDs for one side: dense from a low base, dense near the top of the UID
// range, or sparse over all of it.
type diffUIDs struct {
	rng  *rand.Rand
	base UID
	span uint64
}

func newDiffUIDs(rng *rand.Rand, n int) diffUIDs {
	d := diffUIDs{rng: rng, span: uint64(n)*uint64(1+rng.IntN(3)) + 1}
	switch rng.IntN(6) {
	case 0: // sparse: the planner falls back to maps and sorting
		d.base, d.span = 1, math.MaxUint32-1
	case 1: // at the top of the range
		d.base = UID(math.MaxUint32 - d.span + 1)
	case 2: // mostly dense with a few far outliers
		d.base = 1 + UID(rng.IntN(1000))
	default:
		d.base = 1 + UID(rng.IntN(50))
	}
	return d
}

func (d diffUIDs) next() UID {
	if d.span > 1<<20 && d.rng.IntN(4) != 0 {
		return d.base + UID(d.rng.IntN(1<<12)) // clusters, as in a real sparse mailbox
	}
	return d.base + UID(d.rng.Uint64N(d.span))
}

func diffCase(rng *rand.Rand) (State, Report, Report, Options) {
	n := rng.IntN(40)
	if rng.IntN(10) == 0 {
		n = rng.IntN(3000)
	}
	u := [2]diffUIDs{newDiffUIDs(rng, n), newDiffUIDs(rng, n)}
	flag := func() Flag {
		if rng.IntN(20) == 0 {
			return Flag(rng.IntN(256)) // bits beyond the six flags are ignored
		}
		return Flag(rng.IntN(64))
	}
	var st State
	st.Generation = rng.Uint64N(10)
	st.FarValidity, st.NearValidity = rng.Uint32N(3), rng.Uint32N(3)
	st.Far = Markers{UIDNext: u[Far].next(), Stamp: "f"}
	st.Near = Markers{UIDNext: u[Near].next(), Stamp: "n"}
	for range n {
		pr := Pair{Far: u[Far].next(), Near: u[Near].next(), Flags: flag()}
		switch rng.IntN(8) {
		case 0:
			pr.Far, pr.Skip = 0, SkipReason(rng.IntN(6))
		case 1:
			pr.Near, pr.Skip = 0, SkipReason(rng.IntN(6))
		case 2:
			pr.Skip = SkipReason(rng.IntN(6))
		}
		if pr.Skip == SkipMerged && rng.IntN(4) != 0 {
			// Merged into a message of the other side: mostly one an earlier pair
			// holds, which the reports may show gone, deleted or kept.
			t := Far
			if pr.Near == 0 {
				t = Near
			}
			pr.Into = u[t].next()
			if k := len(st.Pairs); k > 0 && rng.IntN(3) != 0 {
				pr.Into = [2]UID{st.Pairs[rng.IntN(k)].Far, st.Pairs[rng.IntN(k)].Near}[t]
			}
		}
		if rng.IntN(200) == 0 {
			pr.Far, pr.Near = 0, 0
		}
		st.Pairs = append(st.Pairs, pr)
	}
	switch rng.IntN(4) {
	case 0: // as saved: sorted; duplicates happen only by chance
		slices.SortFunc(st.Pairs, comparePairs)
	case 1: // sorted, then a few pairs appended (a state patched after a crash)
		slices.SortFunc(st.Pairs, comparePairs)
		for range rng.IntN(4) {
			if len(st.Pairs) > 0 {
				st.Pairs = append(st.Pairs, st.Pairs[rng.IntN(len(st.Pairs))])
				st.Pairs[len(st.Pairs)-1].Near = u[Near].next()
			}
		}
	}
	// High-water marks: usually at a pair's UID, so some pairs and listings lie above.
	for s, m := range []*UID{&st.MaxPulled, &st.MaxPushed} {
		switch rng.IntN(4) {
		case 0:
			*m = u[s].next()
		case 1:
			*m = math.MaxUint32
		case 2:
			*m = 0
		default:
			if len(st.Pairs) > 0 {
				pr := st.Pairs[rng.IntN(len(st.Pairs))]
				*m = [2]UID{pr.Far, pr.Near}[s]
			}
		}
	}
	report := func(s Side) Report {
		var r Report
		r.Status = Status{UIDValidity: rng.Uint32N(3), UIDNext: u[s].next(), Messages: int64(rng.IntN(2*n+3)) - 1,
			HighestModSeq: rng.Uint64N(100), Stamp: strconv.Itoa(rng.IntN(3))}
		switch rng.IntN(4) {
		case 0:
			r.Unchanged = true
		case 1:
			r.Complete = true
		case 2:
			r.ExistingKnown = true
		}
		if rng.IntN(20) == 0 { // contradictory flags: the planner reads them in a fixed order
			r.Unchanged, r.Complete, r.ExistingKnown = rng.IntN(2) == 0, rng.IntN(2) == 0, rng.IntN(2) == 0
		}
		// Listed: most of the state's messages of this side (some with other flags), some new.
		msg := func(uid UID) Message {
			m := Message{UID: uid, Flags: flag(), Size: int64(rng.IntN(200)) - 1, Date: time.Unix(int64(rng.IntN(1000)), 0)}
			if rng.IntN(3) == 0 {
				m.Size = -1
			}
			return m
		}
		for _, pr := range st.Pairs {
			uid := [2]UID{pr.Far, pr.Near}[s]
			if uid == 0 || rng.IntN(5) == 0 {
				continue
			}
			m := msg(uid)
			if rng.IntN(3) != 0 {
				m.Flags = pr.Flags
			}
			r.Messages = append(r.Messages, m)
			if rng.IntN(4) != 0 {
				r.Existing = append(r.Existing, uid)
			}
		}
		for range rng.IntN(n/4 + 3) {
			r.Messages = append(r.Messages, msg(u[s].next()))
		}
		for range rng.IntN(3) {
			r.Existing = append(r.Existing, u[s].next())
		}
		switch rng.IntN(5) {
		case 0, 1: // in UID order, as IMAP lists
			slices.SortFunc(r.Messages, func(a, b Message) int { return compareUIDs(a.UID, b.UID) })
			r.Messages = slices.CompactFunc(r.Messages, func(a, b Message) bool { return a.UID == b.UID })
		case 2: // in UID order, with duplicates and UID 0 first
			if rng.IntN(2) == 0 {
				r.Messages = append(r.Messages, msg(0))
			}
			slices.SortStableFunc(r.Messages, func(a, b Message) int { return compareUIDs(a.UID, b.UID) })
		case 3: // any order, with duplicates and UID 0 anywhere
			for range rng.IntN(3) {
				if len(r.Messages) > 0 {
					r.Messages = append(r.Messages, msg(r.Messages[rng.IntN(len(r.Messages))].UID))
				}
			}
			if rng.IntN(2) == 0 {
				r.Messages = append(r.Messages, msg(0))
			}
			rng.Shuffle(len(r.Messages), func(i, j int) { r.Messages[i], r.Messages[j] = r.Messages[j], r.Messages[i] })
		default: // any order (Maildir)
			rng.Shuffle(len(r.Messages), func(i, j int) { r.Messages[i], r.Messages[j] = r.Messages[j], r.Messages[i] })
		}
		if rng.IntN(2) == 0 {
			slices.Sort(r.Existing)
		} else {
			rng.Shuffle(len(r.Existing), func(i, j int) { r.Existing[i], r.Existing[j] = r.Existing[j], r.Existing[i] })
		}
		return r
	}
	far, near := report(Far), report(Near)
	ops := func() Ops {
		if rng.IntN(2) == 0 {
			return OpAll
		}
		return Ops(rng.IntN(8))
	}
	opt := Options{Pull: ops(), Push: ops(), Expunge: [2]bool{rng.IntN(2) == 0, rng.IntN(2) == 0}, Force: rng.IntN(3) == 0}
	if rng.IntN(4) == 0 {
		opt.MaxSize = int64(rng.IntN(200))
	}
	return st, far, near, opt
}

func compareUIDs(a, b UID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestPlannerSameAsReference(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("QUIXY_PLANNER_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("QUIXY_PLANNER_SEED: %v", err)
		}
	}
	cases := plannerCount(t, 10000, 2000)
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	for i := range cases {
		st, far, near, opt := diffCase(rng)
		// The planner must not write to its input: plan on copies, compare with the originals.
		st0, far0, near0 := cloneState(st), cloneReport(far), cloneReport(near)
		pl := PlanMailbox(st, far, near, opt)
		if !sameInput(st, st0, far, far0, near, near0) {
			t.Fatalf("case %d (seed %d): PlanMailbox changed its input", i, seed)
		}
		checkPlanShape(t, &pl, far, near, st)
		checkSameAsRef(t, &pl, st, far, near, opt)
		if t.Failed() {
			t.Fatalf("case %d of seed %d (QUIXY_PLANNER_SEED=%d)", i, seed, seed)
		}
	}
}

func cloneState(st State) State { st.Pairs = slices.Clone(st.Pairs); return st }

func cloneReport(r Report) Report {
	r.Messages, r.Existing = slices.Clone(r.Messages), slices.Clone(r.Existing)
	return r
}

func sameInput(st, st0 State, far, far0, near, near0 Report) bool {
	return slices.Equal(st.Pairs, st0.Pairs) &&
		slices.Equal(far.Messages, far0.Messages) && slices.Equal(far.Existing, far0.Existing) &&
		slices.Equal(near.Messages, near0.Messages) && slices.Equal(near.Existing, near0.Existing)
}

// TestPlannerSearch checks the galloping search against a linear scan, from every start.
func TestPlannerSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		keys := make([]UID, rng.IntN(40))
		for i := range keys {
			keys[i] = UID(rng.IntN(60))
		}
		slices.Sort(keys)
		if rng.IntN(2) == 0 {
			keys = slices.Compact(keys)
		}
		for start := range len(keys) + 2 {
			for u := UID(0); u < 62; u++ {
				cur := start
				i, found := search(keys, &cur, u)
				want := 0
				for want < len(keys) && keys[want] < u {
					want++
				}
				has := want < len(keys) && keys[want] == u
				if found != has || cur != i || (found && keys[i] != u) || (!found && i != want) {
					t.Fatalf("search(%v, from %d, %d) = %d, %v (cur %d); want %d", keys, start, u, i, found, cur, want)
				}
			}
		}
	}
}
