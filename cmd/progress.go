package cmd

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/quixysync/quixysync/engine"
)

// rateWindow is how far back the copy rate looks: long enough to smooth
// batch-sized steps, short enough to follow a change of pace (a mailbox of
// large attachments after one of short notes).
const rateWindow = 20 * time.Second

// progressState aggregates the engine's progress events of one run (several
// channels, each syncing several mailboxes at once, all reporting from their
// own goroutines) and says where the run stands. It knows nothing of terminals
// so that it can be tested by feeding events and reading lines.
type progressState struct {
	mu       sync.Mutex
	channels int // channels in the run, listed or not yet
	start    time.Time
	chans    map[string]*channelProgress
	// copied totals every channel's copies, for the rate.
	copiedMsgs, copiedBytes int64
	// samples are (time, copied so far) points for the rate; samples[0] is
	// at or before the window's start once the run is older than the window.
	samples []progressSample
}

type channelProgress struct {
	listed bool // MailboxesTotal is known
	total  int
	done   int // the highest MailboxesDone reported
	boxes  map[string]*boxProgress
}

type boxProgress struct {
	planned, done             bool
	plannedMsgs, plannedBytes int64
	copiedMsgs, copiedBytes   int64
}

type progressSample struct {
	t           time.Time
	msgs, bytes int64
}

func newProgressState(channels int, start time.Time) *progressState {
	return &progressState{
		channels: channels,
		start:    start,
		chans:    map[string]*channelProgress{},
		samples:  []progressSample{{t: start}},
	}
}

// apply records one event that happened at now.
func (s *progressState) apply(ev engine.ProgressEvent, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.chans[ev.Channel]
	if ch == nil {
		ch = &channelProgress{boxes: map[string]*boxProgress{}}
		s.chans[ev.Channel] = ch
	}
	box := func() *boxProgress {
		b := ch.boxes[ev.Mailbox]
		if b == nil {
			b = &boxProgress{}
			ch.boxes[ev.Mailbox] = b
		}
		return b
	}
	if ev.MailboxesTotal > 0 || ev.Kind == engine.ProgressListed {
		ch.listed, ch.total = true, ev.MailboxesTotal
	}
	kind := ev.Kind
	if kind == engine.ProgressUnspecified {
		// Events from before Kind existed; a done event may carry counts too.
		if ev.Messages > 0 || ev.Bytes > 0 {
			s.copied(box(), ev, now)
		}
		if ev.MailboxesDone > 0 {
			kind = engine.ProgressMailboxDone
		}
	}
	switch kind {
	case engine.ProgressPlanned:
		b := box()
		// Set, not add: a repeated plan event must not count twice.
		b.planned, b.plannedMsgs, b.plannedBytes = true, max(ev.PlannedMessages, 0), max(ev.PlannedBytes, 0)
	case engine.ProgressCopied:
		s.copied(box(), ev, now)
	case engine.ProgressMailboxDone:
		if ev.Mailbox != "" {
			box().done = true
		}
		ch.done = max(ch.done, ev.MailboxesDone)
	}
}

func (s *progressState) copied(b *boxProgress, ev engine.ProgressEvent, now time.Time) {
	m, n := max(ev.Messages, 0), max(ev.Bytes, 0)
	b.copiedMsgs += m
	b.copiedBytes += n
	s.copiedMsgs += m
	s.copiedBytes += n
	// Coalesce samples closer than a tenth of a second: many connections
	// committing small batches must not grow the list without bound.
	if last := &s.samples[len(s.samples)-1]; len(s.samples) > 1 && now.Sub(last.t) < 100*time.Millisecond {
		last.msgs, last.bytes = s.copiedMsgs, s.copiedBytes
	} else {
		s.samples = append(s.samples, progressSample{t: now, msgs: s.copiedMsgs, bytes: s.copiedBytes})
	}
	s.prune(now)
}

// prune drops samples older than the window, keeping one at or before its start.
func (s *progressState) prune(now time.Time) {
	cut := now.Add(-rateWindow)
	i := 0
	for i+1 < len(s.samples) && !s.samples[i+1].t.After(cut) {
		i++
	}
	s.samples = s.samples[i:]
}

// progressSnapshot is where a run stands.
type progressSnapshot struct {
	MailboxesDone, MailboxesTotal int
	// MailboxesFinal: every channel has listed its mailboxes.
	MailboxesFinal          bool
	CopiedMsgs, CopiedBytes int64
	// TotalMsgs, TotalBytes: the copies planned so far (a finished mailbox
	// counts what it really copied, so failures do not leave a gap), zero
	// when nothing was planned yet.
	TotalMsgs, TotalBytes int64
	// TotalsFinal: every mailbox of every channel is planned or finished.
	TotalsFinal bool
	// MsgRate, ByteRate per second over the last rateWindow; zero when
	// not yet measurable.
	MsgRate, ByteRate float64
	// ETA is the time left at the current rate, when there is one.
	ETA    time.Duration
	HasETA bool
}

func (s *progressState) snapshot(now time.Time) progressSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p progressSnapshot
	p.MailboxesFinal = len(s.chans) >= s.channels
	p.TotalsFinal = p.MailboxesFinal
	planned := false
	for _, ch := range s.chans {
		if !ch.listed {
			p.MailboxesFinal, p.TotalsFinal = false, false
		}
		p.MailboxesTotal += ch.total
		known := 0
		done := 0
		for _, b := range ch.boxes {
			switch {
			case b.done:
				done++
				known++
				p.TotalMsgs += b.copiedMsgs
				p.TotalBytes += b.copiedBytes
			case b.planned:
				known++
				planned = true
				p.TotalMsgs += max(b.plannedMsgs, b.copiedMsgs)
				p.TotalBytes += max(b.plannedBytes, b.copiedBytes)
			default:
				p.TotalMsgs += b.copiedMsgs
				p.TotalBytes += b.copiedBytes
			}
		}
		p.MailboxesDone += max(ch.done, done)
		if known < ch.total {
			p.TotalsFinal = false
		}
	}
	p.MailboxesTotal = max(p.MailboxesTotal, p.MailboxesDone)
	if !planned && !p.TotalsFinal {
		// Only copies were reported: there is no total to speak of.
		p.TotalMsgs, p.TotalBytes = 0, 0
	}
	p.CopiedMsgs, p.CopiedBytes = s.copiedMsgs, s.copiedBytes

	s.prune(now)
	base := s.samples[0]
	if span := now.Sub(base.t).Seconds(); span >= 1 {
		p.MsgRate = float64(s.copiedMsgs-base.msgs) / span
		p.ByteRate = float64(s.copiedBytes-base.bytes) / span
	}
	// Bytes predict the time better (a large attachment takes longer than a
	// note); messages are all there is when sizes are unknown.
	var left float64
	switch {
	case p.TotalBytes > 0 && p.ByteRate > 0:
		left = float64(p.TotalBytes-p.CopiedBytes) / p.ByteRate
		p.HasETA = true
	case p.TotalMsgs > 0 && p.MsgRate > 0:
		left = float64(p.TotalMsgs-p.CopiedMsgs) / p.MsgRate
		p.HasETA = true
	}
	if p.HasETA {
		p.ETA = time.Duration(max(left, 0) * float64(time.Second))
	}
	return p
}

// line renders a snapshot as
//
//	[2/20 mailboxes] 1 234/20 000 msgs  56.7 MiB  412 msg/s  ETA 0:45
//
// A "+" after a total (and "≥" before the ETA) says more is still to be
// planned; parts with nothing to say yet are left out.
func (p progressSnapshot) line() string {
	var b strings.Builder
	plus := func(final bool) string {
		if final {
			return ""
		}
		return "+"
	}
	switch {
	case p.MailboxesTotal == 0 && !p.MailboxesFinal:
		fmt.Fprintf(&b, "[%d/? mailboxes]", p.MailboxesDone)
	default:
		fmt.Fprintf(&b, "[%d/%d%s mailboxes]", p.MailboxesDone, p.MailboxesTotal, plus(p.MailboxesFinal))
	}
	if p.TotalMsgs > 0 {
		fmt.Fprintf(&b, " %s/%s%s msgs", groupDigits(p.CopiedMsgs), groupDigits(p.TotalMsgs), plus(p.TotalsFinal))
	} else {
		fmt.Fprintf(&b, " %s msgs", groupDigits(p.CopiedMsgs))
	}
	if p.CopiedBytes > 0 {
		b.WriteString("  " + byteSize(p.CopiedBytes))
	}
	if p.MsgRate > 0 {
		if p.MsgRate < 10 {
			fmt.Fprintf(&b, "  %.1f msg/s", p.MsgRate)
		} else {
			fmt.Fprintf(&b, "  %s msg/s", groupDigits(int64(p.MsgRate+0.5)))
		}
	}
	if p.HasETA {
		ge := "≥"
		if p.TotalsFinal {
			ge = ""
		}
		fmt.Fprintf(&b, "  ETA %s%s", ge, clock(p.ETA))
	}
	return b.String()
}

// fraction is how far the run is, for the bar: by messages once totals are
// known, else by mailboxes.
func (p progressSnapshot) fraction() float64 {
	switch {
	case p.TotalBytes > 0 && p.TotalsFinal:
		return min(float64(p.CopiedBytes)/float64(p.TotalBytes), 1)
	case p.TotalMsgs > 0 && p.TotalsFinal:
		return min(float64(p.CopiedMsgs)/float64(p.TotalMsgs), 1)
	case p.MailboxesTotal > 0:
		return float64(p.MailboxesDone) / float64(p.MailboxesTotal)
	}
	return 0
}

// groupDigits writes 20000 as "20 000" (a space groups in every locale).
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// clock writes a duration as 0:45, 12:03 or 1:02:03 (rounded to seconds).
func clock(d time.Duration) string {
	sec := int64(d.Round(time.Second) / time.Second)
	h, m, s := sec/3600, sec/60%60, sec%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

// progressDisplay draws a progressState as one live line on a terminal,
// with github.com/vbauerster/mpb/v8. While it runs, what is written to the
// diverted stderr (logs, traces) is printed above the line instead of
// through it.
//
// It starts drawing at the first event, which comes after a channel has
// connected and listed its mailboxes: a run that is over at once shows
// nothing, and a password_cmd asking on the terminal is not drawn over.
type progressDisplay struct {
	st     *progressState
	out    io.Writer
	divert *lockedWriter
	opts   []mpb.ContainerOption

	mu      sync.Mutex
	stopped bool
	p       *mpb.Progress
	bar     *mpb.Bar
	restore func()
}

// barScale is the bar's total: the fraction is drawn in thousandths.
const barScale = 1000

// newProgressDisplay prepares drawing to out. divert, when non-nil, is the
// stderr to route through the display while it draws.
func newProgressDisplay(out io.Writer, divert *lockedWriter, channels int, opts ...mpb.ContainerOption) *progressDisplay {
	return &progressDisplay{st: newProgressState(channels, time.Now()), out: out, divert: divert, opts: opts}
}

// start begins drawing; d.mu is held.
func (d *progressDisplay) start() {
	d.p = mpb.New(append([]mpb.ContainerOption{mpb.WithOutput(d.out), mpb.WithRefreshRate(200 * time.Millisecond)}, d.opts...)...)
	// The bar is never completed by counting (total 0 at creation): the
	// filler draws the state's fraction, so events never wait on mpb.
	d.bar = d.p.New(0,
		mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Rbound("]"),
		mpb.BarWidth(30),
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			return d.st.snapshot(time.Now()).line()
		})),
		mpb.BarFillerMiddleware(func(base mpb.BarFiller) mpb.BarFiller {
			return mpb.BarFillerFunc(func(w io.Writer, stat decor.Statistics) error {
				stat.Total = barScale
				stat.Current = int64(d.st.snapshot(time.Now()).fraction() * barScale)
				return base.Fill(w, stat)
			})
		}),
	)
	if d.divert != nil {
		d.restore = d.divert.divert(d.p)
	}
}

// event is the engine's RunOptions.Progress.
func (d *progressDisplay) event(ev engine.ProgressEvent) {
	d.st.apply(ev, time.Now())
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.p == nil && !d.stopped {
		d.start()
	}
}

// stop removes the line and gives stderr back; what follows (summaries,
// errors) prints on a clean terminal. It may be called more than once.
func (d *progressDisplay) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.stopped = true
	if d.p == nil {
		return
	}
	if d.restore != nil {
		d.restore()
	}
	d.bar.Abort(true)
	d.p.Wait()
}

// startProgress returns a progress display for a run over that many
// channels, or nil when there should be none: with -q, or when stdout is not
// a terminal (a cron job or a pipe gets only the summary).
func (g *globalOptions) startProgress(channels int) *progressDisplay {
	if g.Quiet || !isTerminal(g.stdout) {
		return nil
	}
	// Logs on the same terminal would tear the line: route them through the
	// display. Logs going to a file or a pipe stay where they go.
	var divert *lockedWriter
	if lw, ok := g.stderr.(*lockedWriter); ok && isTerminal(lw.target()) {
		divert = lw
	}
	return newProgressDisplay(g.stdout, divert, channels)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
