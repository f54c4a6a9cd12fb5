package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// BenchmarkFillIdents100k: the idents of a 100 000-pair state written back
// after a run that changed a few hundred pairs (the new state's pairs built
// by the planner, without idents), without and with 100 new copies (the
// server changes of the side-by-side benchmark).
func BenchmarkFillIdents100k(b *testing.B) {
	for _, added := range []int{0, 100} {
		b.Run(fmt.Sprintf("new=%d", added), func(b *testing.B) {
			const n = 100_000
			old := make([]Pair, n)
			for i := range old {
				old[i] = Pair{Far: UID(i + 1), Near: UID(i + 1), Ident: [2]uint32{0, uint32(i)*2654435761 | 1}}
			}
			br := &boxRun{st: State{Pairs: old}, mb: [2]Mailbox{nil, identKeeperFunc{of: func(u UID) (uint32, bool) { return uint32(u), true }}}}
			st := State{Pairs: make([]Pair, n+added)}
			for b.Loop() {
				for i, p := range old {
					st.Pairs[i] = Pair{Far: p.Far, Near: p.Near, Flags: p.Flags}
				}
				for i := range added {
					st.Pairs[n+i] = Pair{Far: UID(n + 1 + i), Near: UID(n + 1 + i)}
				}
				br.fillIdents(&st)
			}
			if st.Pairs[n-1].Ident != old[n-1].Ident {
				b.Fatalf("ident %v, want %v", st.Pairs[n-1].Ident, old[n-1].Ident)
			}
			if added > 0 && st.Pairs[n].Ident[Near] != n+1 {
				b.Fatalf("new pair's ident %v, want the mailbox's %d", st.Pairs[n].Ident, n+1)
			}
		})
	}
}

// identKeeperFunc is an IdentKeeper answering from a function.
type identKeeperFunc struct {
	Mailbox
	of func(UID) (uint32, bool)
}

func (k identKeeperFunc) IdentOf(u UID) (uint32, bool)    { return k.of(u) }
func (k identKeeperFunc) SetKnownIdents(func(UID) uint32) {}

// TestFillIdentsWalk: the walk through both states gives every pair the
// ident a lookup by UID in the old state gives (else the mailbox's), for new
// states made from old ones by the changes a run makes — pairs kept, removed,
// copied anew, one side replaced — with the old state in order or not.
func TestFillIdentsWalk(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 11))
		var old []Pair
		far, near := UID(0), UID(0)
		for range rng.IntN(60) {
			far += UID(1 + rng.IntN(3))
			near += UID(1 + rng.IntN(3))
			p := Pair{Far: far, Near: near}
			switch rng.IntN(6) {
			case 0:
				p.Far = 0
			case 1:
				p.Near = 0
			}
			if p.Far == 0 && p.Near == 0 {
				continue
			}
			for s := range 2 {
				if rng.IntN(4) != 0 {
					p.Ident[s] = uint32(rng.IntN(1000))
				}
			}
			old = append(old, p)
		}
		slices.SortFunc(old, comparePairs)
		var next []Pair
		for _, p := range old {
			switch rng.IntN(8) {
			case 0: // removed
				continue
			case 1: // near side replaced by a new copy
				if p.Far != 0 {
					p.Near = near + UID(1+rng.IntN(50))
				}
			}
			next = append(next, Pair{Far: p.Far, Near: p.Near, Flags: p.Flags, Ident: [2]uint32{7, 7}})
		}
		for range rng.IntN(5) {
			far++
			next = append(next, Pair{Far: far, Near: near + UID(100+rng.IntN(50))})
		}
		slices.SortFunc(next, comparePairs)
		next = slices.CompactFunc(next, func(a, b Pair) bool { return a.Far == b.Far && a.Far != 0 || a.Near == b.Near && a.Near != 0 })
		if rng.IntN(5) == 0 { // an old state not in order (edited by hand)
			rng.Shuffle(len(old), func(i, j int) { old[i], old[j] = old[j], old[i] })
		}
		mailboxIdent := func(u UID) (uint32, bool) { return uint32(u)%5 + 2000, true }
		br := &boxRun{st: State{Pairs: old}}
		if rng.IntN(2) == 0 {
			br.mb[Near] = identKeeperFunc{of: mailboxIdent}
		}
		got := State{Pairs: slices.Clone(next)}
		br.fillIdents(&got)
		for i, p := range got.Pairs {
			for s := range 2 {
				u := p.uid(Side(s))
				var want uint32
				if u != 0 {
					for _, o := range old {
						if o.uid(Side(s)) == u && o.Ident[s] != 0 {
							want = o.Ident[s]
						}
					}
					if want == 0 && br.mb[Near] != nil && Side(s) == Near {
						want, _ = mailboxIdent(u)
					}
				}
				if p.Ident[s] != want {
					t.Fatalf("seed %d: pair %d %+v side %d: ident %d, want %d\nold %+v", seed, i, next[i], s, p.Ident[s], want, old)
				}
			}
		}
	}
}
