package engine_test

// Benchmarks of the engine's hot paths. They live in the external test
// package (they use the Maildir store); run them with -short so TestMain
// does not start Dovecot:
//
//	go test -short -run '^$' -bench . -benchmem ./engine/
//
// BenchmarkLocalChanges100k and BenchmarkNoopRun100k build a 100 000-message
// Maildir pair first (about half a minute); -bench 'State|Planner|NoopRun$'
// leaves them out.

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
)

const bench100k = 100_000

// bigState is a state of n pairs as a long-used mailbox has: mostly seen,
// some flagged, a few one-sided.
func bigState(n int) engine.State {
	st := engine.State{Generation: 42, FarValidity: 1700000000, NearValidity: 1700000001,
		MaxPulled: engine.UID(n + 10), MaxPushed: engine.UID(n + 5),
		Far:  engine.Markers{UIDNext: engine.UID(n + 11), HighestModSeq: 987654, Messages: int64(n), Stamp: "1700000000/100011/100000/987654"},
		Near: engine.Markers{UIDNext: engine.UID(n + 6), Messages: -1, Stamp: "1732577000123456789.1732577000223456789"},
	}
	st.Pairs = make([]engine.Pair, n)
	for i := range st.Pairs {
		p := engine.Pair{Far: engine.UID(i + 10), Near: engine.UID(i + 5), Flags: engine.FlagSeen}
		switch {
		case i%50 == 0:
			p.Flags |= engine.FlagFlagged
		case i%97 == 0:
			p.Flags |= engine.FlagReplied
		case i%1000 == 999:
			p.Near, p.Skip = 0, engine.SkipTooBig
		}
		st.Pairs[i] = p
	}
	return st
}

func BenchmarkStateSave100k(b *testing.B) {
	st := bigState(bench100k)
	path := filepath.Join(b.TempDir(), engine.StateFileName)
	b.ReportAllocs()
	for b.Loop() {
		if err := engine.SaveState(path, st); err != nil {
			b.Fatal(err)
		}
	}
	fi, _ := os.Stat(path)
	b.ReportMetric(float64(fi.Size()), "file-bytes")
}

// BenchmarkStateWrite100k is the save without the file system (no fsync).
func BenchmarkStateWrite100k(b *testing.B) {
	st := bigState(bench100k)
	b.ReportAllocs()
	for b.Loop() {
		if err := engine.WriteState(io.Discard, st); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStateLoad100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), engine.StateFileName)
	if err := engine.SaveState(path, bigState(bench100k)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var st engine.State
	for b.Loop() {
		var err error
		if st, err = engine.LoadState(path); err != nil {
			b.Fatal(err)
		}
	}
	if len(st.Pairs) != bench100k {
		b.Fatalf("%d pairs", len(st.Pairs))
	}
	// What the loaded state occupies: measured, not computed.
	b.ReportMetric(float64(heapOf(func() any { s, _ := engine.LoadState(path); return s }))/(1<<20), "state-MiB")
}

func BenchmarkStateHeader100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), engine.StateFileName)
	if err := engine.SaveState(path, bigState(bench100k)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := engine.LoadStateHeader(path); err != nil {
			b.Fatal(err)
		}
	}
}

// heapOf returns how much live heap the value built by mk holds.
func heapOf(mk func() any) uint64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	v := mk()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	runtime.KeepAlive(v)
	if m1.HeapAlloc < m0.HeapAlloc {
		return 0
	}
	return m1.HeapAlloc - m0.HeapAlloc
}

// BenchmarkPlanner100k plans a 100 000-pair mailbox with 100 changes on a
// side: incremental (an IMAP side with CONDSTORE reports only the changed and
// new messages) and complete (a Maildir side is listed whole).
func BenchmarkPlanner100k(b *testing.B) {
	st := bigState(bench100k)
	opts := engine.Options{Pull: engine.OpAll, Push: engine.OpAll, Expunge: [2]bool{true, true}}
	flagsOf := func(p engine.Pair) engine.Flag { return p.Flags }

	b.Run("incremental", func(b *testing.B) {
		far := engine.Report{Status: engine.Status{UIDValidity: st.FarValidity, UIDNext: st.Far.UIDNext + 50,
			Messages: int64(bench100k + 50), HighestModSeq: 999999, Stamp: "x"}}
		for i := 0; i < 50; i++ { // 50 flag changes
			p := st.Pairs[i*1000+1]
			far.Messages = append(far.Messages, engine.Message{UID: p.Far, Flags: flagsOf(p) | engine.FlagFlagged, Size: 4000})
		}
		for i := 0; i < 50; i++ { // 50 new
			far.Messages = append(far.Messages, engine.Message{UID: st.Far.UIDNext + engine.UID(i), Size: 4000})
		}
		near := engine.Report{Status: engine.Status{UIDValidity: st.NearValidity, Stamp: st.Near.Stamp}, Unchanged: true}
		b.ReportAllocs()
		for b.Loop() {
			pl := engine.PlanMailbox(st, far, near, opts)
			if len(pl.Copies[engine.Near]) != 50 {
				b.Fatalf("%d copies", len(pl.Copies[engine.Near]))
			}
		}
	})
	b.Run("complete", func(b *testing.B) {
		far := engine.Report{Status: engine.Status{UIDValidity: st.FarValidity, Stamp: st.Far.Stamp}, Unchanged: true}
		near := engine.Report{Status: engine.Status{UIDValidity: st.NearValidity, UIDNext: st.Near.UIDNext + 100, Messages: -1}, Complete: true}
		near.Messages = make([]engine.Message, 0, bench100k+100)
		for i, p := range st.Pairs {
			if p.Near == 0 {
				continue
			}
			switch {
			case i%1000 == 3: // 100 deletions
				continue
			case i%1000 == 7: // 100 flag changes
				near.Messages = append(near.Messages, engine.Message{UID: p.Near, Flags: p.Flags ^ engine.FlagSeen, Size: 4000})
			default:
				near.Messages = append(near.Messages, engine.Message{UID: p.Near, Flags: p.Flags, Size: 4000})
			}
		}
		for i := 0; i < 100; i++ { // 100 new
			near.Messages = append(near.Messages, engine.Message{UID: st.Near.UIDNext + engine.UID(i), Size: 4000})
		}
		b.ReportAllocs()
		for b.Loop() {
			pl := engine.PlanMailbox(st, far, near, opts)
			if len(pl.Copies[engine.Far]) != 100 {
				b.Fatalf("%d copies", len(pl.Copies[engine.Far]))
			}
		}
	})
}

func benchMaildir(b testing.TB, name, root string) *maildir.Store {
	s, err := maildir.New(name, root, "", maildir.LayoutVerbatim, maildir.Options{Fsync: false})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// fillMailbox adds n small messages to a mailbox, committing in batches.
func fillMailbox(b testing.TB, s engine.Store, box string, n int, flags engine.Flag) {
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, box); err != nil {
		b.Fatal(err)
	}
	mb, err := s.OpenMailbox(ctx, box, false)
	if err != nil {
		b.Fatal(err)
	}
	defer mb.Close()
	const batch = 2000
	for done := 0; done < n; {
		var ss []engine.Staged
		for i := 0; i < batch && done < n; i, done = i+1, done+1 {
			body := fmt.Sprintf("From: a@example.org\nMessage-ID: <%s-%d@bench>\nSubject: message %d\n\n%s\n",
				box, done, done, strings.Repeat("body text ", 40))
			st, err := mb.Stage(ctx, engine.NewMessage{Flags: flags, Body: strings.NewReader(body)})
			if err != nil {
				b.Fatal(err)
			}
			ss = append(ss, st)
		}
		if _, err := mb.Commit(ctx, ss); err != nil {
			b.Fatal(err)
		}
	}
}

// benchPair is a Maildir↔Maildir channel, synced and settled: the next run
// has nothing to do.
func benchPair(b testing.TB, dir string, boxes []string, perBox int) (engine.ChannelSpec, *ager) {
	far := benchMaildir(b, "far", filepath.Join(dir, "far"))
	near := benchMaildir(b, "near", filepath.Join(dir, "near"))
	for _, box := range boxes {
		fillMailbox(b, far, box, perBox, engine.FlagSeen)
	}
	spec := engine.TestSpecFor(dir, far, near)
	a := newAger()
	roots := []string{filepath.Join(dir, "far"), filepath.Join(dir, "near")}
	for i := 0; i < 3; i++ {
		a.age(b, roots...)
		if err := mailboxErr(engine.SyncChannel(context.Background(), spec, engine.RunOptions{})); err != nil {
			b.Fatal(err)
		}
	}
	a.age(b, roots...)
	return spec, a
}

func noopRun(b *testing.B, spec engine.ChannelSpec) {
	for b.Loop() {
		res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
		if err := mailboxErr(res); err != nil {
			b.Fatal(err)
		}
		for _, m := range res.Mailboxes {
			if m.Skipped != "unchanged" {
				b.Fatalf("%s not unchanged: %+v", m.Mailbox, m)
			}
		}
	}
}

// BenchmarkNoopRun: a Maildir↔Maildir channel of 10 mailboxes with nothing to
// do, one whole run each.
func BenchmarkNoopRun(b *testing.B) {
	boxes := []string{"INBOX"}
	for i := 1; i < 10; i++ {
		boxes = append(boxes, fmt.Sprintf("Box%d", i))
	}
	spec, _ := benchPair(b, b.TempDir(), boxes, 200)
	b.ReportAllocs()
	noopRun(b, spec)
}

// BenchmarkNoopRun100k: the same with one mailbox of 100 000 messages: the
// no-op must not depend on the mailbox's size.
func BenchmarkNoopRun100k(b *testing.B) {
	spec, _ := benchPair(b, b.TempDir(), []string{"INBOX"}, bench100k)
	b.ReportAllocs()
	noopRun(b, spec)
}

// BenchmarkLocalChanges100k: 100 000 messages, then per run K=100 new
// files, 100 flag renames and 100 deletions in the near Maildir (as a mail
// client makes them), and one sync.
//
// QUIXYSYNC_BENCH_DIR=dir keeps the 100 000-message pair in dir between
// invocations (built when missing); QUIXYSYNC_BENCH_CPUPROFILE=file profiles
// the timed syncs only.
func BenchmarkLocalChanges100k(b *testing.B) {
	dir := os.Getenv("QUIXYSYNC_BENCH_DIR")
	var spec engine.ChannelSpec
	var a *ager
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "near")); err == nil {
			spec = engine.TestSpecFor(dir, benchMaildir(b, "far", filepath.Join(dir, "far")), benchMaildir(b, "near", filepath.Join(dir, "near")))
			a = newAger()
		}
	} else {
		dir = b.TempDir()
	}
	if a == nil {
		spec, a = benchPair(b, dir, []string{"INBOX"}, bench100k)
	}
	near := spec.Near
	roots := []string{filepath.Join(dir, "far"), filepath.Join(dir, "near")}
	ctx := context.Background()
	a.age(b, roots...)
	if err := mailboxErr(engine.SyncChannel(ctx, spec, engine.RunOptions{})); err != nil {
		b.Fatal(err)
	}
	a.age(b, roots...)
	mb, err := near.OpenMailbox(ctx, "INBOX", true)
	if err != nil {
		b.Fatal(err)
	}
	msgs, _, err := mb.List(ctx, engine.ListQuery{All: true})
	mb.Close()
	if err != nil {
		b.Fatal(err)
	}
	var uids []engine.UID // not flagged yet: each round flags some, deletes others
	for _, m := range msgs {
		if m.Flags&engine.FlagFlagged == 0 {
			uids = append(uids, m.UID)
		}
	}
	if prof := os.Getenv("QUIXYSYNC_BENCH_CPUPROFILE"); prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	const k = 100
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		if (2*round+2)*k > len(uids) {
			b.Fatal("out of messages to change")
		}
		flagged := uids[2*round*k : (2*round+1)*k]
		deleted := uids[(2*round+1)*k : (2*round+2)*k]
		round++
		mb, err := near.OpenMailbox(ctx, "INBOX", false)
		if err != nil {
			b.Fatal(err)
		}
		if err := mb.SetFlags(ctx, flagged, engine.FlagFlagged, 0); err != nil {
			b.Fatal(err)
		}
		if err := mb.Expunge(ctx, deleted); err != nil {
			b.Fatal(err)
		}
		mb.Close()
		fillMailbox(b, near, "INBOX", k, 0)
		a.age(b, roots...)
		b.StartTimer()
		pprofOn(true)
		res := engine.SyncChannel(ctx, spec, engine.RunOptions{})
		pprofOn(false)
		b.StopTimer()
		if err := mailboxErr(res); err != nil {
			b.Fatal(err)
		}
		if res.Copied[engine.Far] != k || res.Flagged[engine.Far] != k || res.Deleted[engine.Far] != k {
			b.Fatalf("counts %+v", res.Counts)
		}
		// Let the next round start from a settled pair, as a user's next
		// change would (this run changed the far side's directories).
		a.age(b, roots...)
		if err := mailboxErr(engine.SyncChannel(ctx, spec, engine.RunOptions{})); err != nil {
			b.Fatal(err)
		}
		a.age(b, roots...)
		b.StartTimer()
	}
	_ = time.Now
}

// pprofOn labels the timed part, so a profile of the whole benchmark can be
// narrowed to it with -tagfocus=timed=yes.
func pprofOn(on bool) {
	if on {
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("timed", "yes")))
	} else {
		pprof.SetGoroutineLabels(context.Background())
	}
}

// BenchmarkFirstSyncPairing100k: a Maildir↔Maildir pair of 100 000 messages
// each, synced before, whose state file is removed before each run: the run
// pairs every message by Message-ID and size (reading every file of both
// sides) and copies none. QUIXYSYNC_BENCH_DIR as for BenchmarkLocalChanges100k.
func BenchmarkFirstSyncPairing100k(b *testing.B) {
	dir := os.Getenv("QUIXYSYNC_BENCH_DIR")
	var spec engine.ChannelSpec
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "near")); err == nil {
			spec = engine.TestSpecFor(dir, benchMaildir(b, "far", filepath.Join(dir, "far")), benchMaildir(b, "near", filepath.Join(dir, "near")))
		}
	} else {
		dir = b.TempDir()
	}
	if spec.Near == nil {
		spec, _ = benchPair(b, dir, []string{"INBOX"}, bench100k)
	}
	statePath, err := engine.StatePath(spec, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := os.Remove(statePath); err != nil {
			b.Fatal(err)
		}
		res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
		if err := mailboxErr(res); err != nil {
			b.Fatal(err)
		}
		if res.Counts.Copied != [2]int{} {
			b.Fatalf("copied %v: not paired", res.Counts.Copied)
		}
	}
}
