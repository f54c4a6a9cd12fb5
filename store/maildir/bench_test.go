package maildir

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/engine"
)

// The benchmarks create their folders in b.TempDir(): run them with TMPDIR
// on the file system you care about (a journaled ext4 for numbers users see),
// e.g. TMPDIR=/var/tmp/x go test -run '^$' -bench . ./store/maildir/

// benchFolder lays out n message files in INBOX/cur as mbsync leaves them
// (no ",S="), or as Dovecot does (with ",S=") when withSize, and returns a
// store on it.
func benchFolder(b *testing.B, n int, withSize bool) *Store {
	b.Helper()
	root := b.TempDir()
	dir := filepath.Join(root, "INBOX")
	mkMaildir(b, dir)
	writeFile(b, filepath.Join(dir, uidFile), fmt.Sprintf("1700000000\n%d\n", n))
	body := []byte("Subject: x\n\nbody\n")
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("1700%06d.%d_%d.host,U=%d:2,S", i%1000000, 4242, i, i)
		if withSize {
			name = fmt.Sprintf("1700%06d.M%dP4242.host,S=%d,W=%d,U=%d:2,S", i%1000000, i, len(body), len(body)+1, i)
		}
		if err := os.WriteFile(filepath.Join(dir, "cur", name), body, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	s, err := New("maildir.bench", root, "", LayoutVerbatim, Options{})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchScan(b *testing.B, withSize bool, need func(engine.UID) bool) {
	const n = 100_000
	s := benchFolder(b, n, withSize)
	ctx := context.Background()
	cpu0 := cpuTime(b)
	for b.Loop() {
		mb, err := s.OpenMailbox(ctx, "INBOX", true)
		if err != nil {
			b.Fatal(err)
		}
		msgs, _, err := mb.List(ctx, engine.ListQuery{All: true, NeedDetails: need})
		if err != nil {
			b.Fatal(err)
		}
		if len(msgs) != n || msgs[n-1].Size != 17 {
			b.Fatalf("listed %d messages, last %+v", len(msgs), msgs[len(msgs)-1])
		}
	}
	b.ReportMetric(float64((cpuTime(b)-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// cpuTime is the process's user+system CPU time: on a shared machine it is
// steadier than wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScan100k: open and List(All) a folder of 100 000 files in cur/
// named as mbsync names them (the size needs a stat).
func BenchmarkScan100k(b *testing.B) { benchScan(b, false, nil) }

// BenchmarkScan100kDetails100: the same when the engine needs Size and Date
// of only 100 messages (the new ones; the rest are paired already).
func BenchmarkScan100kDetails100(b *testing.B) {
	benchScan(b, false, func(u engine.UID) bool { return u > 100_000-100 })
}

// BenchmarkScan100kSizeInName: the same with Dovecot's ",S=" in every name.
func BenchmarkScan100kSizeInName(b *testing.B) { benchScan(b, true, nil) }

// BenchmarkStageCommit stages and commits batches of 100 small messages with
// Fsync on (the engine's batch size), half of them seen (cur/), half new/.
func BenchmarkStageCommit(b *testing.B) {
	const batch = 100
	root := b.TempDir()
	s, err := New("maildir.bench", root, "", LayoutVerbatim, Options{Fsync: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, "INBOX"); err != nil {
		b.Fatal(err)
	}
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("Subject: benchmark\n\n"+strings.Repeat("x", 70)+"\n", 40) // ~3.6 kB
	b.SetBytes(int64(batch * len(body)))
	for b.Loop() {
		list := make([]engine.Staged, 0, batch)
		for i := 0; i < batch; i++ {
			var f engine.Flag
			if i%2 == 0 {
				f = engine.FlagSeen
			}
			st, err := mb.Stage(ctx, engine.NewMessage{Flags: f, Body: strings.NewReader(body)})
			if err != nil {
				b.Fatal(err)
			}
			list = append(list, st)
		}
		res, err := mb.Commit(ctx, list)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N*batch), "ms/msg")
}

// BenchmarkSetFlags1000 flags and unflags 1000 messages (one SetFlags call
// each way) with Fsync on.
func BenchmarkSetFlags1000(b *testing.B) {
	const n = 1000
	root := b.TempDir()
	dir := filepath.Join(root, "INBOX")
	mkMaildir(b, dir)
	writeFile(b, filepath.Join(dir, uidFile), fmt.Sprintf("1700000000\n%d\n", n))
	uids := make([]engine.UID, n)
	for i := 1; i <= n; i++ {
		uids[i-1] = engine.UID(i)
		writeFile(b, filepath.Join(dir, "cur", fmt.Sprintf("1700%06d.%d_%d.host,U=%d:2,S", i, 4242, i, i)), "x\n")
	}
	s, err := New("maildir.bench", root, "", LayoutVerbatim, Options{Fsync: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := mb.List(ctx, engine.ListQuery{All: true}); err != nil {
		b.Fatal(err)
	}
	flip := false
	for b.Loop() {
		add, remove := toggleFlagged(&flip)
		if err := mb.SetFlags(ctx, uids, add, remove); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetFlagsUnlisted100k: a flag change on 100 messages of a
// 100 000-file folder the engine did not list (nothing changed there since
// the last run), as when the far side changed flags: with the UIDs announced
// (engine.TouchHinter) the store picks out their files; without, it scans.
func BenchmarkSetFlagsUnlisted100k(b *testing.B) {
	const n = 100_000
	s := benchFolder(b, n, false)
	dir := filepath.Join(s.root, "INBOX")
	var uids []engine.UID
	for u := engine.UID(1); u <= n; u += n / 100 {
		uids = append(uids, u)
	}
	ctx := context.Background()
	for _, mode := range []string{"scan", "announced", "prefetched"} {
		hint := mode != "scan"
		b.Run(mode, func(b *testing.B) {
			flip := false
			cpu0 := cpuTime(b)
			for b.Loop() {
				b.StopTimer()
				old := time.Now().Add(-time.Hour) // an untouched folder
				for _, sub := range []string{"new", "cur"} {
					if err := os.Chtimes(filepath.Join(dir, sub), old, old); err != nil {
						b.Fatal(err)
					}
				}
				mb, err := s.OpenMailbox(ctx, "INBOX", false)
				if err != nil {
					b.Fatal(err)
				}
				if mode == "prefetched" {
					// The names are read while the server answers: only
					// what is left after them is timed.
					m := mb.(*Mailbox)
					if !m.PrefetchNames(ctx) {
						b.Fatal("PrefetchNames refused")
					}
					<-m.names.done
				}
				b.StartTimer()
				if hint {
					mb.(*Mailbox).WillTouch(uids)
				}
				add, remove := toggleFlagged(&flip)
				if err := mb.SetFlags(ctx, uids, add, remove); err != nil {
					b.Fatal(err)
				}
				if mb.(*Mailbox).scanned == hint {
					b.Fatalf("scanned %v with hint %v", mb.(*Mailbox).scanned, hint)
				}
				mb.Close()
			}
			b.ReportMetric(float64((cpuTime(b)-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
		})
	}
}

// toggleFlagged returns the flag change of the next round of a benchmark that
// sets \Flagged and clears it again, turn by turn.
func toggleFlagged(flip *bool) (add, remove engine.Flag) {
	add, remove = engine.FlagFlagged, 0
	if *flip {
		add, remove = remove, add
	}
	*flip = !*flip
	return add, remove
}
