// Package oneproc starts the program on one processor (GOMAXPROCS 1) before
// nearly every other package's init runs, unless GOMAXPROCS is set in the
// environment.
// cmd imports it for that effect; its init depends on nothing but runtime and
// syscall, so Go runs it among the first. cmd's lean governor gives the
// processors back once a run's plans add up to real copying.
//
// Why so early: a sync with little to do spends its life waiting on the
// server and on fsync. With two processors Go's scheduler starts and spins
// threads at every such wait, from the runtime's own start-up on. Lowering
// later (at the first plan, as cmd did before) stops the world and flushes a
// processor's caches that are by then full; lowering here costs a third of a
// millisecond, while nothing has run yet. A run with nothing to do (2 000
// messages in 10 folders, 60 runs each, alternating, 2026-11-26) took a
// median 25.9 ms of CPU instead of 28.1 ms, against 24.7 ms with GOMAXPROCS=1
// in the environment; the rest is the runtime's own start on two processors.
package oneproc

import (
	"runtime"
	"syscall"
)

// lowered is written once, by init, before main runs.
var lowered = lower()

func lower() bool {
	if _, set := syscall.Getenv("GOMAXPROCS"); set || runtime.GOMAXPROCS(0) == 1 {
		return false
	}
	runtime.GOMAXPROCS(1)
	return true
}

// Lowered reports whether this package put the program on one processor.
func Lowered() bool { return lowered }
