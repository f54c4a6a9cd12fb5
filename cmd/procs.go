package cmd

import (
	"os"
	"runtime"
	"sync"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/oneproc"
)

// Below these, summed over the run's plans so far, a sync stays on one
// processor. At ~0.25 ms of client CPU per message copied (initial pull,
// 2 000 messages, measured 2026-11-26), 256 messages are ~60 ms of work:
// about where a second processor starts to pay for what it costs.
//
// Copies into local stores by several mailbox pairs count apart, against a
// far lower bound: pairs that pull at once each write their messages here
// while the connections' readers parse the next ones, strands of CPU work
// that a second processor runs side by side. At 2 000 messages in 10
// folders (2026-11-28, 11 runs each), with every processor from the start:
// 100 messages pulled (with 100 flag changes and 100 deletions) 71 → 65 ms,
// pull-only 79 → 70 ms, client CPU the same; a push of as many, which waits
// on the server, 130 → 141 ms (within its noise), a run with nothing to do
// 2 ms more CPU. With this bound (the second processor from the second
// folder's plan on), two runs: 75 → 68 and 85 → 82 ms, pull-only 82 → 75
// and 82 → 73 ms; the push, local changes and the no-op within the noise.
// One pair alone gains nothing from it: 100 messages pulled into a folder of
// 100 000, the second processor from its plan on, took 237 → 256 ms (11 runs
// each; 230 → 246 ms in another run of 5).
const (
	leanMaxMessages = 256
	leanMaxBytes    = 16 << 20
	leanMaxLocal    = 16
)

// leanProcs keeps a sync on one processor (GOMAXPROCS 1) while its plans
// show little to copy, and gives back the default once they add up to real
// copying, or to more than a few messages pulled into local stores by more
// than one mailbox pair.
//
// Why: a sync with little to do waits on the server and on fsync nearly all
// the time. With more processors, Go's scheduler spins idle threads looking
// for work at every such wait and hands goroutines between threads; on the
// 2 000 messages / 10 folders runs with 100 changes that was 20-30% of the
// client's CPU (0.142 → 0.113 s with one processor, same wall time). A run
// that copies hundreds of messages is the other way round: the initial pull
// took 19% longer on one processor. The program starts on one processor:
// internal/oneproc, which this package imports, lowers GOMAXPROCS in an init
// that runs before nearly every other package's, because lowering later
// stops the world and flushes a processor's caches (about 2 ms of CPU, 6% of
// a run with nothing to do). Where a run finds the default already given
// back (a second run in one process, as in tests), its first small plan
// lowers it. A GOMAXPROCS in the environment is obeyed and left alone.
type leanProcs struct {
	mu       sync.Mutex
	on       bool // lowered and not yet given back
	done     bool // decided for good: the default stays
	messages int64
	bytes    int64
	local    int64 // copies into a local store
	pulling  int   // plans with such copies
}

// startLean returns the governor of one run, or nil when the environment
// sets GOMAXPROCS or there is one processor anyway.
func startLean() *leanProcs {
	return newLean(oneproc.Lowered() && runtime.GOMAXPROCS(0) == 1)
}

// newLean is startLean with the start-up's doing passed in: lowered says the
// program is on one processor because internal/oneproc put it there.
func newLean(lowered bool) *leanProcs {
	if lowered {
		return &leanProcs{on: true}
	}
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) == 1 {
		return nil
	}
	return &leanProcs{}
}

// observe is fed every progress event; the plans' copies add up, and the
// run is lowered to one processor while they stay under the thresholds.
func (l *leanProcs) observe(ev engine.ProgressEvent) {
	if l == nil || ev.Kind != engine.ProgressPlanned {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.messages += ev.PlannedMessages
	l.bytes += ev.PlannedBytes
	l.local += ev.PlannedLocal
	if ev.PlannedLocal > 0 {
		l.pulling++
	}
	switch {
	case l.messages > leanMaxMessages || l.bytes > leanMaxBytes || (l.local > leanMaxLocal && l.pulling > 1):
		l.giveBack()
	case !l.on:
		l.on = true
		runtime.GOMAXPROCS(1)
	}
}

// stop gives back every processor if observe has not.
func (l *leanProcs) stop() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.giveBack()
}

func (l *leanProcs) giveBack() {
	l.done = true
	if l.on {
		l.on = false
		runtime.SetDefaultGOMAXPROCS()
	}
}
