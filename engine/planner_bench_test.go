package engine

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkPlannerUnordered100k plans 100 000 pairs in the cases the planner cannot take
// in one ordered pass (BenchmarkPlanner100k has the ordered ones): a complete listing in
// directory order (Maildir), near UIDs that do not follow far UIDs (a mailbox synced both
// ways over years), and 1 000 far removals that leave one-sided pairs behind.
func BenchmarkPlannerUnordered100k(b *testing.B) {
	const n = 100_000
	rng := rand.New(rand.NewPCG(1, 2))
	st := State{MaxPulled: n + 10, MaxPushed: n + 10}
	// Near UIDs follow far ones in runs of 100 (copies made in batches), the runs in no order.
	runs := rng.Perm(n / 100)
	for i := range n {
		st.Pairs = append(st.Pairs, Pair{Far: UID(i + 1), Near: UID(runs[i/100]*100 + i%100 + 1), Flags: FlagSeen})
	}
	far := Report{Complete: true}
	nearRep := Report{Complete: true}
	for i, pr := range st.Pairs {
		if i%100 != 50 { // 1 000 removed on far
			far.Messages = append(far.Messages, Message{UID: pr.Far, Flags: FlagSeen, Size: 4000})
		}
		nearRep.Messages = append(nearRep.Messages, Message{UID: pr.Near, Flags: FlagSeen, Size: 4000})
	}
	rng.Shuffle(len(nearRep.Messages), func(i, j int) {
		nearRep.Messages[i], nearRep.Messages[j] = nearRep.Messages[j], nearRep.Messages[i]
	})
	opt := Options{Pull: OpAll, Push: OpAll, Force: true}
	b.ReportAllocs()
	for b.Loop() {
		pl := PlanMailbox(st, far, nearRep, opt)
		if pl.Removals[Near] != 1000 {
			b.Fatalf("%d removals", pl.Removals[Near])
		}
	}
}
