package cmd

import (
	"io"
	"runtime"
	"sync"
	"testing"

	"github.com/quixysync/quixysync/channel"
	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/oneproc"
)

// A run stays on one processor while its plans copy little, and gets every
// processor back once they add up to real work, or when it ends.
func TestLeanProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	full := defaultProcs(t)
	l := startLean()
	if l == nil || runtime.GOMAXPROCS(0) != full {
		t.Fatalf("startLean: GOMAXPROCS %d, want %d until a plan", runtime.GOMAXPROCS(0), full)
	}
	l.observe(engine.ProgressEvent{Kind: engine.ProgressListed, MailboxesTotal: 3}) // not a plan
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS %d before any plan, want %d", n, full)
	}
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: leanMaxMessages / 2, PlannedBytes: 1 << 20})
	l.observe(engine.ProgressEvent{Kind: engine.ProgressCopied, Messages: 10 * leanMaxMessages}) // not a plan
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: leanMaxMessages / 2})
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d after %d planned messages, want 1", n, leanMaxMessages)
	}
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1})
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS %d past the threshold, want %d", n, full)
	}

	// Decided for good: a later small plan does not lower it again.
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1})
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS %d after a small plan past the threshold, want %d", n, full)
	}

	// A first plan over the byte threshold never lowers it.
	l = startLean()
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1, PlannedBytes: leanMaxBytes + 1})
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS %d past the byte threshold, want %d", n, full)
	}
	// Copies into a local store give it back past their own, lower bound.
	l = startLean()
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: leanMaxLocal, PlannedLocal: leanMaxLocal})
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d after %d local copies, want 1", n, leanMaxLocal)
	}
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1, PlannedLocal: 1})
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS %d past the local copies' bound, want %d", n, full)
	}

	// stop gives back what observe did not.
	l = startLean()
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1})
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d after a small plan, want 1", n)
	}
	l.stop()
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS %d after stop, want %d", n, full)
	}
	l.stop() // twice is harmless
}

// defaultProcs puts the test on the default GOMAXPROCS and returns it,
// restoring what there was (one processor, as internal/oneproc starts the
// test binary too) when the test ends. It skips on one processor.
func defaultProcs(t *testing.T) int {
	t.Helper()
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	runtime.SetDefaultGOMAXPROCS()
	full := runtime.GOMAXPROCS(0)
	if full == 1 {
		t.Skip("one processor: nothing to lower")
	}
	return full
}

// Started on one processor by internal/oneproc, a run stays there while its
// plans copy little and gets every processor back past the threshold, or
// when it ends.
func TestLeanProcsFromStart(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	full := defaultProcs(t)
	runtime.GOMAXPROCS(1)
	l := newLean(true)
	l.observe(engine.ProgressEvent{Kind: engine.ProgressListed, MailboxesTotal: 3})
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: leanMaxMessages})
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d after %d planned messages, want 1", n, leanMaxMessages)
	}
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1})
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS %d past the threshold, want %d", n, full)
	}
	l.stop()

	runtime.GOMAXPROCS(1)
	l = newLean(true)
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1})
	l.stop()
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS %d after stop, want %d", n, full)
	}

	// What startLean finds in a program oneproc lowered: the same governor.
	if !oneproc.Lowered() {
		return // GOMAXPROCS was set for the test run; oneproc's own test covers it
	}
	runtime.GOMAXPROCS(1)
	if l := startLean(); l == nil || !l.on {
		t.Fatalf("startLean on one processor after oneproc: %+v, want a lowered governor", l)
	}
}

// A GOMAXPROCS the user set is left alone.
func TestLeanProcsObeysEnvironment(t *testing.T) {
	defaultProcs(t) // as a program started with GOMAXPROCS set finds itself
	t.Setenv("GOMAXPROCS", "2")
	before := runtime.GOMAXPROCS(0)
	if l := startLean(); l != nil {
		l.stop()
		t.Fatal("startLean lowered GOMAXPROCS set in the environment")
	}
	if n := runtime.GOMAXPROCS(0); n != before {
		t.Fatalf("GOMAXPROCS %d, was %d", n, before)
	}
	var l *leanProcs
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1 << 20}) // nil is inert
	l.stop()
}

// Through a real sync (Maildir to Maildir: every copy goes into a local
// store): a run that copies a few messages does so on one processor; one
// that copies more than the local copies' bound has every processor from its
// first plan on; both end with every processor.
func TestLeanProcsInSync(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	full := defaultProcs(t)
	for _, tc := range []struct {
		start    int // GOMAXPROCS when the run starts: 1 as oneproc leaves it, or the default
		messages int
		want     int // GOMAXPROCS when the copies are committed
	}{{1, 3, 1}, {1, leanMaxLocal + 1, full}, {full, 3, 1}, {full, leanMaxLocal + 1, full}} {
		runtime.GOMAXPROCS(tc.start)
		dir := isolate(t)
		cfgPath, _, _ := maildirPair(t, dir, tc.messages)
		cfg, err := channel.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		targets, err := cfg.Resolve([]string{"mm"}, false)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var at []int
		opts := SyncOptions{progress: func(ev engine.ProgressEvent) {
			if ev.Kind == engine.ProgressCopied {
				mu.Lock()
				at = append(at, runtime.GOMAXPROCS(0))
				mu.Unlock()
			}
		}}
		g := &globalOptions{stdout: io.Discard, stderr: &lockedWriter{w: io.Discard}}
		g.setup()
		res := g.syncTargets(t.Context(), cfg, targets, engine.ModeSync, opts)
		if len(res) != 1 || res[0].Err != nil || res[0].Counts.Copied[engine.Near] != tc.messages {
			t.Fatalf("start %d, %d messages: %+v", tc.start, tc.messages, res)
		}
		if len(at) == 0 {
			t.Fatalf("start %d, %d messages: no copy reported", tc.start, tc.messages)
		}
		for _, n := range at {
			if n != tc.want {
				t.Errorf("start %d, %d messages: GOMAXPROCS %d while copying, want %d", tc.start, tc.messages, n, tc.want)
			}
		}
		if n := runtime.GOMAXPROCS(0); n != full {
			t.Errorf("start %d, %d messages: GOMAXPROCS %d after the run, want %d", tc.start, tc.messages, n, full)
		}
	}
}
