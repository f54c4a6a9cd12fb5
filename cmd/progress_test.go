package cmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"

	"github.com/quixysync/quixysync/engine"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func TestProgressLineAsTheRunUnfolds(t *testing.T) {
	st := newProgressState(2, t0)
	line := func(sec float64) string { return st.snapshot(at(sec)).line() }
	check := func(sec float64, want string) {
		t.Helper()
		if got := line(sec); got != want {
			t.Errorf("at %gs:\n got %q\nwant %q", sec, got, want)
		}
	}
	check(0, "[0/? mailboxes] 0 msgs")

	// Channel a lists 3 mailboxes; b has not started.
	st.apply(engine.ProgressEvent{Kind: engine.ProgressListed, Channel: "a", MailboxesTotal: 3}, at(0.1))
	check(0.2, "[0/3+ mailboxes] 0 msgs")
	st.apply(engine.ProgressEvent{Kind: engine.ProgressPlanned, Channel: "a", Mailbox: "INBOX", PlannedMessages: 1000, PlannedBytes: 10 << 20}, at(0.5))
	st.apply(engine.ProgressEvent{Kind: engine.ProgressCopied, Channel: "a", Mailbox: "INBOX", Messages: 200, Bytes: 2 << 20}, at(1))
	// Under a second of history: no rate yet.
	check(0.9, "[0/3+ mailboxes] 200/1 000+ msgs  2.0 MiB")
	// 200 messages (2 MiB) in 2 s: 100 msg/s; 8 MiB left at 1 MiB/s is a lower bound.
	check(2, "[0/3+ mailboxes] 200/1 000+ msgs  2.0 MiB  100 msg/s  ETA ≥0:08")

	// b lists 1 mailbox, everything gets planned: totals are final.
	st.apply(engine.ProgressEvent{Kind: engine.ProgressListed, Channel: "b", MailboxesTotal: 1}, at(2))
	st.apply(engine.ProgressEvent{Kind: engine.ProgressPlanned, Channel: "b", Mailbox: "INBOX", PlannedMessages: 19000, PlannedBytes: 190 << 20}, at(2))
	st.apply(engine.ProgressEvent{Kind: engine.ProgressPlanned, Channel: "a", Mailbox: "Sent"}, at(2))
	check(2, "[0/4 mailboxes] 200/20 000+ msgs  2.0 MiB  100 msg/s  ETA ≥3:18")
	st.apply(engine.ProgressEvent{Kind: engine.ProgressPlanned, Channel: "a", Mailbox: "Archive", PlannedMessages: 0}, at(2))
	st.apply(engine.ProgressEvent{Kind: engine.ProgressMailboxDone, Channel: "a", Mailbox: "Sent", MailboxesDone: 1, MailboxesTotal: 3}, at(2))
	st.apply(engine.ProgressEvent{Kind: engine.ProgressMailboxDone, Channel: "a", Mailbox: "Archive", MailboxesDone: 2, MailboxesTotal: 3}, at(2))
	check(2, "[2/4 mailboxes] 200/20 000 msgs  2.0 MiB  100 msg/s  ETA 3:18")
	if f := st.snapshot(at(2)).fraction(); f < 0.0099 || f > 0.0101 {
		t.Errorf("fraction = %v, want 0.01 (bytes)", f)
	}

	// A repeated plan event does not count twice.
	st.apply(engine.ProgressEvent{Kind: engine.ProgressPlanned, Channel: "b", Mailbox: "INBOX", PlannedMessages: 19000, PlannedBytes: 190 << 20}, at(2))
	check(2, "[2/4 mailboxes] 200/20 000 msgs  2.0 MiB  100 msg/s  ETA 3:18")

	// a/INBOX finishes with 100 of its messages failed: the total drops, so
	// the run can still reach it.
	st.apply(engine.ProgressEvent{Kind: engine.ProgressCopied, Channel: "a", Mailbox: "INBOX", Messages: 700, Bytes: 7 << 20}, at(5))
	st.apply(engine.ProgressEvent{Kind: engine.ProgressMailboxDone, Channel: "a", Mailbox: "INBOX", MailboxesDone: 3, MailboxesTotal: 3}, at(5))
	check(5, "[3/4 mailboxes] 900/19 900 msgs  9.0 MiB  180 msg/s  ETA 1:46")

	// The rate follows the last 20 seconds, not the whole run: b copies
	// 1 000 msg/s (10 MiB/s) for 18 s, then nothing for 2 s.
	for i := 1; i <= 18; i++ {
		st.apply(engine.ProgressEvent{Kind: engine.ProgressCopied, Channel: "b", Mailbox: "INBOX", Messages: 1000, Bytes: 10 << 20}, at(5+float64(i)))
	}
	st.apply(engine.ProgressEvent{Kind: engine.ProgressCopied, Channel: "b", Mailbox: "INBOX", Messages: -1}, at(25)) // nonsense is ignored
	check(25, "[3/4 mailboxes] 18 900/19 900 msgs  189.0 MiB  900 msg/s  ETA 0:01")
	if n := len(st.samples); n > 25 {
		t.Errorf("%d rate samples kept, want them pruned to the window", n)
	}
	st.apply(engine.ProgressEvent{Kind: engine.ProgressCopied, Channel: "b", Mailbox: "INBOX", Messages: 1000, Bytes: 10 << 20}, at(26))
	st.apply(engine.ProgressEvent{Kind: engine.ProgressMailboxDone, Channel: "b", Mailbox: "INBOX", MailboxesDone: 1, MailboxesTotal: 1}, at(26))
	check(26, "[4/4 mailboxes] 19 900/19 900 msgs  199.0 MiB  900 msg/s  ETA 0:00")
	if f := st.snapshot(at(26)).fraction(); f != 1 {
		t.Errorf("fraction at the end = %v, want 1", f)
	}
}

// Events without a Kind (the engine before Kind existed) still count.
func TestProgressUnspecifiedEvents(t *testing.T) {
	st := newProgressState(1, t0)
	st.apply(engine.ProgressEvent{Channel: "a", Mailbox: "INBOX", Messages: 30}, at(1))
	st.apply(engine.ProgressEvent{Channel: "a", Mailbox: "INBOX", Messages: 20}, at(2))
	want := "[0/? mailboxes] 50 msgs  25 msg/s"
	if got := st.snapshot(at(2)).line(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	st.apply(engine.ProgressEvent{Channel: "a", Mailbox: "INBOX", MailboxesDone: 1, MailboxesTotal: 5}, at(2))
	// Four mailboxes are neither planned nor done: no total, no ETA.
	want = "[1/5 mailboxes] 50 msgs  25 msg/s"
	if got := st.snapshot(at(2)).line(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if f := st.snapshot(at(2)).fraction(); f != 0.2 {
		t.Errorf("fraction = %v, want 0.2 (by mailboxes)", f)
	}
	// A channel with nothing selected is final at 0/0.
	st0 := newProgressState(1, t0)
	st0.apply(engine.ProgressEvent{Kind: engine.ProgressListed, Channel: "a"}, at(0))
	if got := st0.snapshot(at(1)).line(); got != "[0/0 mailboxes] 0 msgs" {
		t.Errorf("empty channel: %q", got)
	}
}

// Channels and their mailboxes report from many goroutines at once (run
// with -race).
func TestProgressConcurrentEvents(t *testing.T) {
	const chans, boxes, batches = 4, 8, 50
	st := newProgressState(chans, time.Now())
	var wg sync.WaitGroup
	for c := 0; c < chans; c++ {
		ch := fmt.Sprint("ch", c)
		st.apply(engine.ProgressEvent{Kind: engine.ProgressListed, Channel: ch, MailboxesTotal: boxes}, time.Now())
		var done sync.Mutex
		n := 0
		for b := 0; b < boxes; b++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				box := fmt.Sprint("box", b)
				st.apply(engine.ProgressEvent{Kind: engine.ProgressPlanned, Channel: ch, Mailbox: box, PlannedMessages: batches * 10, PlannedBytes: batches * 1000}, time.Now())
				for i := 0; i < batches; i++ {
					st.apply(engine.ProgressEvent{Kind: engine.ProgressCopied, Channel: ch, Mailbox: box, Messages: 10, Bytes: 1000}, time.Now())
					_ = st.snapshot(time.Now()).line() // the display reads meanwhile
				}
				done.Lock()
				n++
				k := n
				done.Unlock()
				st.apply(engine.ProgressEvent{Kind: engine.ProgressMailboxDone, Channel: ch, Mailbox: box, MailboxesDone: k, MailboxesTotal: boxes}, time.Now())
			}()
		}
	}
	wg.Wait()
	p := st.snapshot(time.Now())
	const msgs = chans * boxes * batches * 10
	if p.MailboxesDone != chans*boxes || p.MailboxesTotal != chans*boxes || !p.MailboxesFinal {
		t.Errorf("mailboxes %d/%d final=%v, want %d/%d final", p.MailboxesDone, p.MailboxesTotal, p.MailboxesFinal, chans*boxes, chans*boxes)
	}
	if p.CopiedMsgs != msgs || p.TotalMsgs != msgs || !p.TotalsFinal || p.CopiedBytes != msgs*100 || p.TotalBytes != msgs*100 {
		t.Errorf("snapshot %+v, want %d of %d messages, final", p, msgs, msgs)
	}
}

func TestProgressFormatting(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1 000", 20000: "20 000", 1234567: "1 234 567", -4500: "-4 500"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{0: "0:00", 45 * time.Second: "0:45", 723*time.Second + 400*time.Millisecond: "12:03", 3723 * time.Second: "1:02:03"} {
		if got := clock(d); got != want {
			t.Errorf("clock(%v) = %q, want %q", d, got, want)
		}
	}
}

// The display draws the state and prints what is written to the diverted
// stderr above its line; once stopped, stderr is back where it was.
func TestProgressDisplayRoutesLogs(t *testing.T) {
	var out, realErr bytes.Buffer
	lw := &lockedWriter{w: &realErr}
	d := newProgressDisplay(&out, lw, 1, mpb.WithAutoRefresh(), mpb.WithRefreshRate(10*time.Millisecond))
	fmt.Fprintln(lw, "before") // nothing is drawn before the first event
	time.Sleep(30 * time.Millisecond)
	if out.Len() != 0 {
		t.Errorf("drawn before any event: %q", out.String())
	}
	d.event(engine.ProgressEvent{Kind: engine.ProgressListed, Channel: "a", MailboxesTotal: 2})
	d.event(engine.ProgressEvent{Kind: engine.ProgressPlanned, Channel: "a", Mailbox: "INBOX", PlannedMessages: 1234})
	d.event(engine.ProgressEvent{Kind: engine.ProgressCopied, Channel: "a", Mailbox: "INBOX", Messages: 34})
	fmt.Fprintln(lw, "level=WARN msg=\"a log line\"")
	time.Sleep(100 * time.Millisecond)
	d.stop()
	d.stop() // idempotent
	fmt.Fprintln(lw, "after")

	got := out.String()
	if !strings.Contains(got, "[0/2 mailboxes] 34/1 234+ msgs") {
		t.Errorf("no progress line drawn:\n%s", got)
	}
	if !strings.Contains(got, "level=WARN msg=\"a log line\"\n") {
		t.Errorf("the log line was not printed through the display:\n%s", got)
	}
	if realErr.String() != "before\nafter\n" {
		t.Errorf("stderr got %q, want only what was written before the first event and after the display stopped", realErr.String())
	}
}

// Without a terminal (a file, a pipe, a buffer) or with -q there is no
// display: only the summary is printed.
func TestNoProgressWithoutTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []io.Writer{f, &bytes.Buffer{}} {
		g := &globalOptions{stdout: w, stderr: &lockedWriter{w: f}}
		if d := g.startProgress(1); d != nil {
			d.stop()
			t.Errorf("a progress display on %T", w)
		}
	}

	// A real run with stdout and stderr going to a file.
	dir := isolate(t)
	cfg, _, _ := maildirPair(t, dir, 120)
	code := execute(t.Context(), []string{"-c", cfg, "sync", "mm"}, f, f)
	if code != exitOK {
		t.Fatalf("sync: exit %d", code)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	want := "mm: copied ←120 →0, flags ←0 →0, deleted ←0 →0, created 1 mailbox, no errors\n"
	if string(b) != want {
		t.Errorf("output to a file:\n%q\nwant only the summary\n%q", b, want)
	}
}
