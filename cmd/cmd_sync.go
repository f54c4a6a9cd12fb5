package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/quixysync/quixysync/channel"
	"github.com/quixysync/quixysync/engine"
)

// maxParallelChannels bounds how many channels sync at once; each one opens
// its own connections (or shares an account's, see sharedAccounts), so more
// would mostly compete for the same servers.
const maxParallelChannels = 4

// SyncOptions are the flags shared by sync, pull and push.
type SyncOptions struct {
	All    bool
	DryRun bool
	Force  bool

	// progress, when set, receives the engine's progress events instead of
	// the terminal display syncTargets starts on its own.
	progress func(engine.ProgressEvent)
	// channels is how many channels run at once (0: one).
	channels int
}

const targetHelp = `TARGET is CHANNEL (every mailbox its patterns select), CHANNEL:MAILBOX[,MAILBOX...]
(only those mailboxes), or GROUP (its channels); --all is every channel.
Channels run concurrently (up to 4 at a time), except those that share a near
side (one Maildir tree, or the same two stores): they run one after another.

--dry-run prints, per mailbox, what would be done (messages to copy each way,
flag changes, deletions, mailboxes to create) and changes nothing: no server
command that writes, no file, no state.

While it runs on a terminal, a line shows how far it is (mailboxes done,
messages and bytes copied, rate, time left); it is gone at the end, and not
shown with -q or when stdout is not a terminal.

At the end one line per channel sums up what happened:
  work: copied ←12 →3, flags ←4 →0, deleted ←0 →1, created 1 mailbox, no errors
(← into the near side, i.e. pulled; → into the far side, i.e. pushed). It says
"no errors", or counts the mailboxes with errors (stderr gives each one's errors), then adds "channel
failed" when an error stopped the whole channel (a login, say), and
"interrupted" (or "N mailboxes interrupted") when the run was.
-v adds a line per mailbox; -q prints only errors, so a cron job mails only
on trouble (with --dry-run, -q still prints the plan, leaving out the summary:
no output then means nothing to do). Errors go to stderr, naming the channel
and mailbox.
`

func newSyncCommand(g *globalOptions) *cobra.Command {
	return newTransferCommand(g, engine.ModeSync, "sync",
		"Sync channels both ways",
		`Sync propagates changes both ways, as each channel's pull and push lists say:
new messages, flag changes and removals, and creates missing mailboxes per
the channel's create setting.
`)
}

// newTransferCommand builds sync, pull and push: the same command with a
// different engine.Mode.
func newTransferCommand(g *globalOptions, mode engine.Mode, name, short, long string) *cobra.Command {
	var opts SyncOptions
	cmd := &cobra.Command{
		Use:               name + " [TARGET...] [--all] [--dry-run] [--force]",
		Short:             short,
		Long:              long + "\n" + targetHelp + syncExitStatus,
		ValidArgsFunction: completeChannels(g),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return runTransfer(cmd.Context(), g, opts, mode, args)
		}),
	}
	f := cmd.Flags()
	f.BoolVarP(&opts.All, "all", "a", false, "every channel")
	f.BoolVarP(&opts.DryRun, "dry-run", "n", false, "print what would be done, change nothing")
	f.BoolVar(&opts.Force, "force", false, "confirm a large deletion the safety guard stopped (not a mailbox gone on one side: that guard's message says how to proceed)")
	return cmd
}

func runTransfer(ctx context.Context, g *globalOptions, opts SyncOptions, mode engine.Mode, args []string) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	// Resolve's messages name what exists, and cover no target and --all with targets.
	targets, err := cfg.Resolve(args, opts.All)
	if err != nil {
		return usagef("%v", err)
	}
	if targets, err = g.withDirection(cfg, targets, mode); err != nil {
		return err
	}
	results := g.syncTargets(ctx, cfg, targets, mode, opts)
	g.warnSplitStates(cfg, results)
	if code := g.printResults(results, opts); code != exitOK {
		return exitStatus(code)
	}
	return nil
}

// withDirection leaves out, for pull and push, the channels whose pull or
// push list is empty: run anyway, they would copy nothing that way, yet
// still create mailboxes. When that leaves nothing, the command line asked
// for nothing: a usage error that says which key to set.
func (g *globalOptions) withDirection(cfg *channel.Config, targets []channel.Target, mode engine.Mode) ([]channel.Target, error) {
	if mode == engine.ModeSync {
		return targets, nil
	}
	key, other := "pull", "push"
	if mode == engine.ModePush {
		key, other = "push", "pull"
	}
	var keep []channel.Target
	var idle []string
	for _, t := range targets {
		ops := t.Channel.Pull
		if mode == engine.ModePush {
			ops = t.Channel.Push
		}
		if ops == 0 {
			idle = append(idle, t.Channel.Name)
			g.logger().Info("skipped: its "+key+" list is empty", "channel", t.Channel.Name)
			continue
		}
		keep = append(keep, t)
	}
	if len(keep) > 0 {
		return keep, nil
	}
	which := "channel " + idle[0] + " has"
	if len(idle) > 1 {
		which = "channels " + strings.Join(idle, ", ") + " have"
	}
	return nil, usagef("%s %s = [] in %s, so %q has nothing to do; set %s = [\"new\", \"flags\", \"gone\"] in the channel's table, or run \"sync\" or %q",
		which, key, cfg.File, key, key, other)
}

// syncTargets runs every target's channel, up to maxParallelChannels at a
// time, and returns the results in the targets' order. On a terminal it shows
// live progress meanwhile, gone before it returns.
func (g *globalOptions) syncTargets(ctx context.Context, cfg *channel.Config, targets []channel.Target, mode engine.Mode, opts SyncOptions) []engine.ChannelResult {
	if opts.progress == nil {
		if d := g.startProgress(len(targets)); d != nil {
			defer d.stop()
			opts.progress = d.event
		}
	}
	if lean := startLean(); lean != nil {
		defer lean.stop()
		show := opts.progress
		opts.progress = func(ev engine.ProgressEvent) {
			lean.observe(ev)
			if show != nil {
				show(ev)
			}
		}
	}
	results := make([]engine.ChannelResult, len(targets))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelChannels)
	shared := g.shareAccounts(targets)
	groups := sameLocalSide(cfg, targets)
	opts.channels = min(len(groups), maxParallelChannels)
	for _, idx := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range idx {
				sem <- struct{}{}
				results[i] = g.syncTarget(ctx, cfg, targets[i], mode, opts, shared)
				<-sem
			}
		}()
	}
	wg.Wait()
	return results
}

// sameLocalSide groups the targets (their indexes, in order) whose channels
// share a near side: the same Maildir tree, or the same two stores. Those
// run one after another, as mbsync -a runs every channel; others at once.
// Two channels over one folder (an INBOX-only channel beside an
// all-mailboxes one, a common mbsync split) would otherwise meet at the
// folder's state lock, and the one that lost it would fail as if another
// run held it.
func sameLocalSide(cfg *channel.Config, targets []channel.Target) [][]int {
	var groups [][]int
	at := map[string]int{}
	for i, t := range targets {
		key := t.Channel.Far + "\x00" + t.Channel.Near
		if _, md, err := cfg.Store(t.Channel.Near); err == nil && md != nil {
			key = "maildir\x00" + filepath.Clean(md.Path)
		}
		g, ok := at[key]
		if !ok {
			g = len(groups)
			at[key] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

func (g *globalOptions) syncTarget(ctx context.Context, cfg *channel.Config, t channel.Target, mode engine.Mode, opts SyncOptions, shared *sharedAccounts) engine.ChannelResult {
	ch := t.Channel
	if err := ctx.Err(); err != nil {
		shared.skip(ch)
		return engine.ChannelResult{Channel: ch.Name, Err: fmt.Errorf("%w before starting", engine.ErrStopped)}
	}
	far, near, release, err := shared.openChannel(cfg, ch)
	defer release()
	if err != nil {
		return engine.ChannelResult{Channel: ch.Name, Err: err}
	}
	// Log in while the engine takes its locks and lists the local side: on a
	// run with little to do, the login is most of the time.
	for _, st := range []engine.Store{far, near} {
		if w, ok := st.(interface{ Warm(context.Context) }); ok {
			w.Warm(ctx)
		}
	}
	spec := channelSpec(ch, t.Mailboxes, far, near)
	spec.MaxParallel = maxParallel(cfg, ch, max(opts.channels, 1))
	return engine.SyncChannel(ctx, spec, engine.RunOptions{
		Mode:     mode,
		DryRun:   opts.DryRun,
		Force:    opts.Force,
		Log:      g.logger().With("channel", ch.Name),
		Progress: opts.progress,
	})
}

// maxParallel is how many mailbox pairs of a channel sync at once. A pair
// holds one connection of each IMAP store from opening its mailbox until it
// has done everything on that side; then (before its local commit and state
// save, see engine's release) the connection serves the next pair. With
// one IMAP side, twice its `connections` pairs run, so that pairs finishing
// locally or scanning their Maildir folder do not keep the connections idle;
// those over the limit wait for a connection while they open. With two IMAP
// sides, no more than the smaller limit, since a pair needs one connection
// of each (the engine takes them far first, then near, so that two pairs
// cannot each hold what the other waits for; a near server's pool of two
// can still be smaller than this). 0 (no IMAP side) means the engine's
// default.
// It is bounded further so that channels channels at once fit in the
// process's open files (see fitOpenFiles).
func maxParallel(cfg *channel.Config, ch *channel.Channel, channels int) int {
	n, sides, conns := 0, 0, 0
	for _, ref := range []string{ch.Far, ch.Near} {
		name, ok := strings.CutPrefix(ref, "imap.")
		if !ok {
			continue
		}
		sides++
		if st := cfg.IMAP[name]; st != nil && st.Connections > 0 && (n == 0 || st.Connections < n) {
			n = st.Connections
		}
		if st := cfg.IMAP[name]; st != nil {
			conns += st.Connections
		}
	}
	pairs := n
	if sides == 1 {
		pairs = 2 * n
	}
	if pairs == 0 {
		return 0
	}
	return fitOpenFiles(pairs, conns, channels, openFilesLimit())
}

// Open files. A pair that syncs holds a few files open (its state's lock,
// its journal, an inotify watch, a directory being read or synced: about
// 4, measured; 6 leaves room), and each connection one. A run with
// connections = 64 held 558 at once, so that under a limit of 256 (ulimit
// -n; Go raises the soft limit to the hard one at start) 908 of 1 001
// mailboxes failed with "too many open files". Channels that run at once
// each have their own pairs.
const (
	filesPerPair  = 6
	filesReserved = 64 // standard streams, listings, the channel lock, the Go runtime
)

// fitOpenFiles bounds a channel's pairs at once (of conns connections) so
// that channels such channels at once fit in limit open files (at least
// one pair each).
func fitOpenFiles(pairs, conns, channels int, limit uint64) int {
	if limit == 0 || limit > 1<<20 {
		return pairs
	}
	budget := (int(limit)-filesReserved)/max(channels, 1) - conns
	return max(min(pairs, budget/filesPerPair), 1)
}

// openFilesLimit is the process's limit of open files, 0 when unknown.
func openFilesLimit() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil || rl.Cur == ^uint64(0) {
		return 0
	}
	return rl.Cur
}

// channelSpec is what the engine needs from a configured channel.
func channelSpec(ch *channel.Channel, mailboxes []string, far, near engine.Store) engine.ChannelSpec {
	return engine.ChannelSpec{
		Name:            ch.Name,
		Far:             far,
		Near:            near,
		Match:           ch.Match,
		Mailboxes:       mailboxes,
		Pull:            ch.Pull,
		Push:            ch.Push,
		Expunge:         ch.Expunge.Array(),
		MaxSize:         ch.MaxSize,
		Create:          ch.Create.Array(),
		Remove:          ch.Remove.Array(),
		CopyArrivalDate: ch.CopyArrivalDate,
		StateDir:        stateDir(ch),
	}
}

// stateDir is the channel's state_dir, else $XDG_STATE_HOME/quixysync/<channel>
// (~/.local/state/quixysync/<channel>).
func stateDir(ch *channel.Channel) string {
	if ch.StateDir != "" {
		return ch.StateDir
	}
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "" // the engine then says it has nowhere to keep state
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "quixysync", ch.Name)
}

// printResults prints errors, dry-run plans, per-mailbox lines (-v) and the
// summary lines, and returns the exit status the results call for.
func (g *globalOptions) printResults(results []engine.ChannelResult, opts SyncOptions) int {
	code := exitOK
	for _, r := range results {
		var o outcome
		o.interrupted = r.Err != nil && engine.Interrupted(r.Err)
		if r.Err != nil && !o.interrupted {
			o.channelFailed = true
			g.errorf("%v", channelErr(r.Channel, r.Err))
		}
		if r.Err != nil {
			code = worse(code, exitCode(r.Err))
		}
		mbs := append([]engine.MailboxResult(nil), r.Mailboxes...)
		sortMailboxes(mbs, func(m engine.MailboxResult) string { return m.Mailbox })
		for _, mr := range mbs {
			stopped := mr.Err != nil && engine.Interrupted(mr.Err)
			if stopped || mr.Stopped {
				// Interrupted: said once for the channel, below. A
				// mailbox that met an error of its own first was cut short
				// all the same: counted here too, its error printed below.
				o.stopped++
				code = worse(code, exitInterrupted)
			}
			switch {
			case stopped:
			case mr.Err != nil:
				o.failed++
				g.errorf("%s:%s: %s", r.Channel, mr.Mailbox, withGuardHint(mr.Mailbox, mr.Err))
				code = worse(code, exitCode(mr.Err))
			case mr.Plan != nil && mr.Plan.Guard != nil && !opts.Force:
				// A dry run reports the guard in the plan: the real run would stop.
				code = worse(code, exitGuard)
			}
			if opts.DryRun {
				// The plan is what a dry run is asked for, so -q does not
				// hide it (only progress, logs and the summary).
				writePlan(g.stdout, r.Channel, mr, g.Verbose)
			} else if g.Verbose {
				fmt.Fprintf(g.stdout, "  %s:%s: %s\n", r.Channel, mr.Mailbox, mailboxLine(mr))
			}
		}
		if o.interrupted {
			// The error itself ("context canceled" from a dial or a login
			// cut short) says nothing the user does not know.
			if o.stopped > 0 {
				g.errorf("channel %s: interrupted: %s not finished; what was done is kept, and the next run goes on from there", r.Channel, count(o.stopped, "mailbox"))
			} else {
				g.errorf("channel %s: interrupted; what was done is kept, and the next run goes on from there", r.Channel)
			}
		}
		name := r.Channel
		if opts.DryRun {
			name += " (dry run)"
		}
		g.printf("%s\n", summaryLine(name, channelCounts(r, opts.DryRun), o))
	}
	return code
}

// channelErr names the channel in err unless the engine did.
func channelErr(name string, err error) error {
	if strings.HasPrefix(err.Error(), "channel "+name+":") {
		return err
	}
	return fmt.Errorf("channel %s: %w", name, err)
}

// withGuardHint spells a mailbox error for a line that already names the
// channel and mailbox, adding how to get past a safety guard.
func withGuardHint(mailbox string, err error) string {
	msg := strings.TrimPrefix(err.Error(), "mailbox "+mailbox+": ")
	var ge *engine.GuardError
	if errors.As(err, &ge) && !strings.Contains(msg, "--force") {
		msg += " (nothing was deleted; if this is what you want, run again with --force)"
	}
	return msg
}

func mailboxLine(mr engine.MailboxResult) string {
	switch {
	case mr.Err != nil && engine.Interrupted(mr.Err):
		// No line above says more: the channel's says it once.
		return "interrupted"
	case mr.Err != nil:
		return "failed (see above)"
	case mr.Skipped != "":
		return mr.Skipped
	}
	c := mr.Counts
	return fmt.Sprintf("copied ←%d →%d, flags ←%d →%d, deleted ←%d →%d%s%s",
		c.Copied[engine.Near], c.Copied[engine.Far], c.Flagged[engine.Near], c.Flagged[engine.Far],
		c.Deleted[engine.Near], c.Deleted[engine.Far], createdNote(c), pairedNote(c))
}

// pairedNote tells, after a first sync, how many messages both sides already
// held: what a user moving from another tool wants to see was not copied.
func pairedNote(c engine.Counts) string {
	if c.Paired == 0 {
		return ""
	}
	return fmt.Sprintf(", %s already on both sides", count(c.Paired, "message"))
}

func createdNote(c engine.Counts) string {
	var parts []string
	if c.Created[engine.Near] > 0 {
		parts = append(parts, "created near")
	}
	if c.Created[engine.Far] > 0 {
		parts = append(parts, "created far")
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}

// outcome is how a channel's run ended, for its summary line.
type outcome struct {
	failed        int  // mailboxes with errors (any number of errors each)
	channelFailed bool // an error stopped the channel itself (connect, list)
	stopped       int  // mailboxes the interruption cut short
	interrupted   bool // the run was interrupted (Ctrl-C, SIGTERM)
}

// String counts mailboxes, not errors: one mailbox's "3 errors, the first:
// ..." on stderr is one mailbox with errors here. An interrupted run says
// so instead of a reassuring "no errors".
func (o outcome) String() string {
	var parts []string
	switch {
	case o.failed > 0:
		parts = append(parts, count(o.failed, "mailbox")+" with errors")
	case !o.channelFailed && !o.interrupted && o.stopped == 0:
		parts = append(parts, "no errors")
	}
	if o.channelFailed {
		parts = append(parts, "channel failed")
	}
	switch {
	case o.stopped > 0:
		parts = append(parts, count(o.stopped, "mailbox")+" interrupted")
	case o.interrupted:
		parts = append(parts, "interrupted")
	}
	return strings.Join(parts, ", ")
}

func summaryLine(name string, c engine.Counts, o outcome) string {
	return fmt.Sprintf("%s: copied ←%d →%d, flags ←%d →%d, deleted ←%d →%d, created %s, %s%s",
		name, c.Copied[engine.Near], c.Copied[engine.Far], c.Flagged[engine.Near], c.Flagged[engine.Far],
		c.Deleted[engine.Near], c.Deleted[engine.Far],
		count(c.Created[engine.Near]+c.Created[engine.Far], "mailbox"),
		o, pairedNote(c))
}

// channelCounts totals a channel's counts. The engine counts per mailbox
// and sums into the channel; each field takes the larger of the channel's
// figure and the mailboxes' sum, so a count kept only at the channel level is
// not lost and nothing is counted twice. A dry run counts from the plans,
// leaving out failed mailboxes (a guard stopped them: nothing would happen).
func channelCounts(r engine.ChannelResult, dry bool) engine.Counts {
	var sum engine.Counts
	for _, mr := range r.Mailboxes {
		c := mr.Counts
		if dry {
			if mr.Err != nil {
				continue
			}
			if mr.Plan != nil {
				c = planCounts(mr.Plan, c)
			}
		}
		for s := 0; s < 2; s++ {
			sum.Copied[s] += c.Copied[s]
			sum.Flagged[s] += c.Flagged[s]
			sum.Deleted[s] += c.Deleted[s]
			sum.Created[s] += c.Created[s]
		}
		sum.Paired += c.Paired
	}
	if dry {
		return sum
	}
	for s := 0; s < 2; s++ {
		sum.Copied[s] = max(sum.Copied[s], r.Copied[s])
		sum.Flagged[s] = max(sum.Flagged[s], r.Flagged[s])
		sum.Deleted[s] = max(sum.Deleted[s], r.Deleted[s])
		sum.Created[s] = max(sum.Created[s], r.Created[s])
	}
	return sum
}

// planCounts is what a plan would do; creation is not part of a plan, so it
// is kept from the engine's counts.
func planCounts(p *engine.Plan, c engine.Counts) engine.Counts {
	out := engine.Counts{Created: c.Created, Paired: c.Paired}
	for s := 0; s < 2; s++ {
		out.Copied[s] = len(p.Copies[s])
		out.Flagged[s] = len(flaggedUIDs(p.Flags[s]))
		out.Deleted[s] = len(p.Expunges[s])
	}
	return out
}

func flaggedUIDs(ups []engine.FlagUpdate) []engine.UID {
	seen := map[engine.UID]bool{}
	var out []engine.UID
	for _, u := range ups {
		for _, uid := range u.UIDs {
			if !seen[uid] {
				seen[uid] = true
				out = append(out, uid)
			}
		}
	}
	return out
}

// writePlan prints what a dry run would do to one mailbox pair. Mailboxes
// with nothing to do are listed only with -v.
func writePlan(w io.Writer, ch string, mr engine.MailboxResult, verbose bool) {
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	for _, s := range []engine.Side{engine.Near, engine.Far} {
		if mr.Created[s] > 0 {
			add("create the mailbox on the %s side", s)
		}
	}
	if mr.Paired > 0 {
		add("pair %s both sides already hold (same Message-ID, date, subject and size, or same content): not copied", count(mr.Paired, "message"))
	}
	if p := mr.Plan; p != nil {
		for _, s := range []engine.Side{engine.Near, engine.Far} {
			if cs := p.Copies[s]; len(cs) > 0 {
				uids := make([]engine.UID, len(cs))
				var size int64
				for i, c := range cs {
					uids[i] = c.UID
					if c.Size > 0 {
						size += c.Size
					}
				}
				add("copy %s → %s: %s (%s UIDs %s, %s)", s.Other(), s, count(len(cs), "message"), s.Other(), uidSet(uids), byteSize(size))
			}
		}
		for _, s := range []engine.Side{engine.Near, engine.Far} {
			for _, u := range p.Flags[s] {
				add("flags on the %s side: %s on %s (UIDs %s)", s, flagChange(u.Add, u.Remove), count(len(u.UIDs), "message"), uidSet(u.UIDs))
			}
		}
		for _, s := range []engine.Side{engine.Near, engine.Far} {
			if ex := p.Expunges[s]; len(ex) > 0 {
				add("delete on the %s side: %s (UIDs %s)", s, count(len(ex), "message"), uidSet(ex))
			}
		}
		for _, s := range []engine.Side{engine.Near, engine.Far} {
			if tb := p.TooBig[s]; len(tb) > 0 {
				add("not copied %s → %s, larger than max_size: %s (%s UIDs %s)", s.Other(), s, count(len(tb), "message"), s.Other(), uidSet(tb))
			}
		}
		if p.Guard != nil {
			add("stopped by the safety guard: %s", p.Guard.Reason)
		}
	}
	switch {
	case mr.Err != nil:
		return // reported on stderr
	case len(lines) == 0 && strings.HasPrefix(mr.Skipped, "would "):
		// A dry run's note about what the real run does to a whole mailbox
		// (e.g. removing one that vanished on the other side) is an action.
		fmt.Fprintf(w, "%s:%s: %s\n", ch, mr.Mailbox, mr.Skipped)
		return
	case len(lines) == 0 && !verbose:
		return
	case len(lines) == 0:
		reason := "nothing to do"
		if mr.Skipped != "" {
			reason += " (" + mr.Skipped + ")"
		}
		fmt.Fprintf(w, "%s:%s: %s\n", ch, mr.Mailbox, reason)
		return
	}
	fmt.Fprintf(w, "%s:%s:\n", ch, mr.Mailbox)
	for _, l := range lines {
		fmt.Fprintf(w, "  %s\n", l)
	}
}

var flagNames = []struct {
	f    engine.Flag
	name string
}{
	{engine.FlagSeen, "seen"},
	{engine.FlagFlagged, "flagged"},
	{engine.FlagReplied, "answered"},
	{engine.FlagPassed, "forwarded"},
	{engine.FlagDraft, "draft"},
	{engine.FlagDeleted, "deleted"},
}

// flagChange spells a flag change as "+seen -flagged".
func flagChange(add, remove engine.Flag) string {
	var parts []string
	for _, fn := range flagNames {
		if add.Has(fn.f) {
			parts = append(parts, "+"+fn.name)
		}
	}
	for _, fn := range flagNames {
		if remove.Has(fn.f) {
			parts = append(parts, "-"+fn.name)
		}
	}
	return strings.Join(parts, " ")
}

// uidSet formats UIDs compactly as IMAP does: "1:3,7,9:10".
func uidSet(uids []engine.UID) string {
	s := append([]engine.UID(nil), uids...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && (s[j+1] == s[j] || s[j+1] == s[j]+1) {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(s[i]), 10))
		if s[j] != s[i] {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(s[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

func byteSize(n int64) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d B", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	case n < 1024*1024*1024:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1024*1024))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1024*1024*1024))
}
