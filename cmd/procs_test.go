package cmd

import (
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"slices"
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
	// Copies into a local store give it back past their own, lower bound,
	// once more than one pair makes them; a plan without them does not
	// count as a second.
	l = startLean()
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 2 * leanMaxLocal, PlannedLocal: 2 * leanMaxLocal})
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1})
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS %d after %d local copies by one pair, want 1", n, 2*leanMaxLocal)
	}
	l.observe(engine.ProgressEvent{Kind: engine.ProgressPlanned, PlannedMessages: 1, PlannedLocal: 1})
	if n := runtime.GOMAXPROCS(0); n != full {
		t.Fatalf("GOMAXPROCS %d past the local copies' bound by two pairs, want %d", n, full)
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
// store): a run that copies a few messages does so on one processor, and so
// does one pair that pulls more than the local copies' bound; two pairs that
// do together have every processor from the second one's plan on, as does a
// run that copies more than the general bound; every run ends with every
// processor.
func TestLeanProcsInSync(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	full := defaultProcs(t)
	for _, tc := range []struct {
		start          int // GOMAXPROCS when the run starts: 1 as oneproc leaves it, or the default
		inbox, archive int // messages to pull into each folder
		full           bool
	}{
		{1, 3, 0, false},
		{1, leanMaxLocal + 1, 0, false},
		{1, leanMaxLocal/2 + 1, leanMaxLocal/2 + 1, true},
		{1, leanMaxMessages + 1, 0, true},
		{full, 3, 0, false},
		{full, leanMaxLocal/2 + 1, leanMaxLocal/2 + 1, true},
	} {
		runtime.GOMAXPROCS(tc.start)
		dir := isolate(t)
		cfgPath, far, _ := maildirPair(t, dir, tc.inbox)
		if tc.archive > 0 {
			mkMaildir(t, filepath.Join(far, "Archive"))
			for i := range tc.archive {
				writeFile(t, filepath.Join(far, "Archive", "new", fmt.Sprintf("200%d.M%dP1.test", i, i)),
					fmt.Sprintf("From: a@example.com\nSubject: old %d\nMessage-ID: <a%d@test>\n\nbody %d\n", i, i, i))
			}
		}
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
		what := fmt.Sprintf("start %d, %d + %d messages", tc.start, tc.inbox, tc.archive)
		if len(res) != 1 || res[0].Err != nil || res[0].Counts.Copied[engine.Near] != tc.inbox+tc.archive {
			t.Fatalf("%s: %+v", what, res)
		}
		if len(at) == 0 {
			t.Fatalf("%s: no copy reported", what)
		}
		// With two pairs, the first one's copies may come before the
		// second one's plan: only the second one's are sure to see every
		// processor.
		if tc.full && !slices.Contains(at, full) {
			t.Errorf("%s: GOMAXPROCS %v while copying, want %d at least for the last pair planned", what, at, full)
		}
		if !tc.full && slices.ContainsFunc(at, func(n int) bool { return n != 1 }) {
			t.Errorf("%s: GOMAXPROCS %v while copying, want 1", what, at)
		}
		if n := runtime.GOMAXPROCS(0); n != full {
			t.Errorf("%s: GOMAXPROCS %d after the run, want %d", what, n, full)
		}
	}
}
