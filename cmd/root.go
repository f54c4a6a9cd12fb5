// Package cmd is the command-line interface (one file per command). Commands
// are thin: flags fill an options struct, a run function does the work
// through packages channel, engine and the stores.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/quixysync/quixysync/channel"
	"github.com/quixysync/quixysync/engine"
)

// Exit statuses, the same meaning in every command.
const (
	exitOK          = 0
	exitFailure     = 1 // some mailbox or message failed (the others went through)
	exitUsage       = 2 // usage or configuration error
	exitLocked      = 3 // another run holds the lock
	exitGuard       = 4 // a safety guard stopped a mailbox
	exitInterrupted = 130
)

// failedSync is what status 1 means for the commands that sync.
const failedSync = "at least one mailbox or message failed (the others still went through)"

// exitStatusHelp is the EXIT STATUS section of a command's help, listing
// only the statuses the command can end with; fail says what 1 means for it
// ("" when it cannot end with 1).
func exitStatusHelp(fail string, codes ...int) string {
	text := map[int]string{
		exitOK:          "success",
		exitFailure:     fail,
		exitUsage:       "usage or configuration error",
		exitLocked:      "another run holds a lock (the message names its PID)",
		exitGuard:       "a safety guard stopped a mailbox before deleting: --force confirms a large deletion; it does not pass the guard for a mailbox gone on one side, whose message says how to proceed",
		exitInterrupted: "interrupted (Ctrl-C, SIGTERM)",
	}
	var b strings.Builder
	b.WriteString("\nEXIT STATUS")
	for _, c := range codes {
		fmt.Fprintf(&b, "\n  %-4d %s", c, text[c])
	}
	return b.String()
}

// syncExitStatus is the section of the commands that sync, and of the root.
var syncExitStatus = exitStatusHelp(failedSync, exitOK, exitFailure, exitUsage, exitLocked, exitGuard, exitInterrupted)

// globalOptions are the root command's flags and what is derived from them.
type globalOptions struct {
	ConfigFile string
	Verbose    bool
	Quiet      bool
	Debug      bool

	stdout io.Writer
	stderr io.Writer // shared by logs, traces and error messages: use errorf
	log    *slog.Logger
}

// Execute runs the command line and exits with its status.
func Execute() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// A second Ctrl-C should kill at once, as users expect.
		stop()
	}()
	stopProfile := startCPUProfile(os.Getenv("QUIXYSYNC_CPUPROFILE"))
	stopAllocs := startAllocProfile(os.Getenv("QUIXYSYNC_ALLOCPROFILE"))
	stopTrace := startTrace(os.Getenv("QUIXYSYNC_TRACE"))
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopTrace()
	stopAllocs()
	stopProfile()
	stop()
	os.Exit(code)
}

// startCPUProfile writes a pprof CPU profile of the whole run to path, for
// the benchmark's "profile before optimizing" (bench/README.md). Empty: off.
func startCPUProfile(path string) (stop func()) {
	return startWriting("QUIXYSYNC_CPUPROFILE", path, pprof.StartCPUProfile, pprof.StopCPUProfile)
}

// startTrace writes a Go execution trace of the whole run to path (`go tool
// trace`): where each goroutine waited — on the server, a flush, a lock —
// which a CPU profile cannot show. Empty: off.
func startTrace(path string) (stop func()) {
	return startWriting("QUIXYSYNC_TRACE", path, trace.Start, trace.Stop)
}

// startWriting creates path and starts a recorder writing to it; stop ends
// the recording and closes the file. A failure is reported on stderr under
// the environment variable's name, and the run goes on unrecorded.
func startWriting(env, path string, start func(io.Writer) error, end func()) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "quixysync: %s: %v\n", env, err)
		return func() {}
	}
	if err := start(f); err != nil {
		fmt.Fprintf(os.Stderr, "quixysync: %s: %v\n", env, err)
		f.Close()
		return func() {}
	}
	return func() {
		end()
		f.Close()
	}
}

// startAllocProfile records every allocation of the run (MemProfileRate 1:
// slow, for profiling only) and writes them as a pprof allocs profile to
// path at the end. Empty: off.
func startAllocProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	runtime.MemProfileRate = 1
	return func() {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.Lookup("allocs").WriteTo(f, 0)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "quixysync: QUIXYSYNC_ALLOCPROFILE: %v\n", err)
		}
	}
}

// execute runs one command line with the given outputs and returns the exit status.
func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globalOptions{stdout: stdout, stderr: &lockedWriter{w: stderr}}
	root := newRootCommand(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return g.report(cmd, err)
}

// report prints err (unless it was printed already) and returns the exit status.
func (g *globalOptions) report(cmd *cobra.Command, err error) int {
	var st exitStatus
	if errors.As(err, &st) {
		return int(st)
	}
	var re *runError
	if !errors.As(err, &re) {
		// Anything cobra itself refused (unknown command or flag, wrong
		// number of arguments, -v with -q) is a usage error.
		name := "quixysync"
		if cmd != nil {
			name = cmd.CommandPath()
		}
		g.errorf("%v", err)
		fmt.Fprintf(g.stderr, "Run '%s --help' for usage.\n", name)
		return exitUsage
	}
	err = re.err
	var ue *usageError
	switch {
	case errors.As(err, &ue):
		g.errorf("%s", ue.msg)
		if cmd != nil {
			fmt.Fprintf(g.stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitUsage
	case len(channel.ConfigErrors(err)) > 0:
		for _, ce := range channel.ConfigErrors(err) {
			g.errorf("%v", ce)
		}
		return exitUsage
	}
	g.errorf("%v", err)
	return exitCode(err)
}

// exitCode classifies an error that stopped a channel, a mailbox or a command.
func exitCode(err error) int {
	var ge *engine.GuardError
	switch {
	case err == nil:
		return exitOK
	case engine.Interrupted(err):
		return exitInterrupted
	case errors.Is(err, engine.ErrLocked):
		return exitLocked
	case errors.Is(err, engine.ErrGuard), errors.As(err, &ge):
		return exitGuard
	case len(channel.ConfigErrors(err)) > 0:
		return exitUsage
	}
	return exitFailure
}

// worse returns the status that matters more: an interruption, then the
// highest of the others (a guard needs a person, a lock only a retry).
func worse(a, b int) int {
	if a == exitInterrupted || b == exitInterrupted {
		return exitInterrupted
	}
	return max(a, b)
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "quixysync",
		Short: "Keep a Maildir and an IMAP account in sync, both ways",
		Long: `quixysync syncs mailboxes between two stores (an IMAP account and a local
Maildir, or any two of them) both ways, like mbsync, with crash-safe state,
safety guards against mass deletion, and incremental runs.

The configuration is read from -c FILE, else $QUIXYSYNC_CONFIG, else
$XDG_CONFIG_HOME/quixysync/config.toml (~/.config/quixysync/config.toml).
Try it without an account: quixysync demo
` + syncExitStatus,
		SilenceUsage:      true,
		SilenceErrors:     true,
		DisableAutoGenTag: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.Verbose && g.Quiet {
				return errors.New("-v/--verbose and -q/--quiet exclude each other: give one of them")
			}
			if f := cmd.Flag("config"); f != nil && f.Changed && g.ConfigFile == "" {
				// Most likely -c "$VAR" with VAR unset: falling back to the
				// default file would sync another configuration's channels.
				return errors.New("-c/--config: the file name is empty; give the configuration file, or leave -c out to use $QUIXYSYNC_CONFIG or the default")
			}
			g.setup()
			return nil
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	f := root.PersistentFlags()
	f.StringVarP(&g.ConfigFile, "config", "c", "", "configuration `FILE` (default $QUIXYSYNC_CONFIG, else ~/.config/quixysync/config.toml)")
	f.BoolVarP(&g.Verbose, "verbose", "v", false, "say more: a line per mailbox, informational logs")
	f.BoolVarP(&g.Quiet, "quiet", "q", false, "print only errors (and a --dry-run's plan), and the few warnings a run gives once (a message skipped for max_size) or that mean it can do nothing")
	f.BoolVar(&g.Debug, "debug", false, "debug logs and an IMAP protocol trace on stderr (credentials redacted)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return err })

	root.AddCommand(
		newSyncCommand(g),
		newPullCommand(g),
		newPushCommand(g),
		newListCommand(g),
		newCheckCommand(g),
		newDemoCommand(g),
		newVersionCommand(g),
		newCompletionCommand(g),
	)
	return root
}

// setup derives the logger from the flags.
func (g *globalOptions) setup() {
	level := slog.LevelWarn
	switch {
	case g.Debug:
		level = slog.LevelDebug
	case g.Verbose:
		level = slog.LevelInfo
	case g.Quiet:
		level = slog.LevelError
	}
	if g.Quiet {
		// Errors, and the few warnings marked engine.Notice (reported once,
		// or a run that can do nothing): cron mail is the only place a
		// quiet user would learn of them.
		level = slog.LevelWarn
	}
	var h slog.Handler = newHumanHandler(g.stderr, level)
	if g.Debug || g.Verbose {
		h = slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level})
	}
	g.log = slog.New(noticeHandler{h, g.Quiet})
}

// noticeHandler leaves out the engine.Notice attribute, and with quiet
// every record below an error that does not carry it.
type noticeHandler struct {
	slog.Handler
	quiet bool
}

func (h noticeHandler) Handle(ctx context.Context, r slog.Record) error {
	notice := false
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == engine.Notice {
			notice = a.Value.Kind() == slog.KindBool && a.Value.Bool()
		} else {
			out.AddAttrs(a)
		}
		return true
	})
	if h.quiet && !notice && r.Level < slog.LevelError {
		return nil
	}
	return h.Handler.Handle(ctx, out)
}

func (h noticeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return noticeHandler{h.Handler.WithAttrs(as), h.quiet}
}

func (h noticeHandler) WithGroup(name string) slog.Handler {
	return noticeHandler{h.Handler.WithGroup(name), h.quiet}
}

func (g *globalOptions) logger() *slog.Logger {
	if g.log == nil {
		g.setup()
	}
	return g.log
}

// configPath is -c, else $QUIXYSYNC_CONFIG, else the default location.
func (g *globalOptions) configPath() string {
	if g.ConfigFile != "" {
		return g.ConfigFile
	}
	return channel.DefaultPath()
}

// loadConfig reads the configuration; its errors are configuration errors (exit 2).
func (g *globalOptions) loadConfig() (*channel.Config, error) {
	return channel.Load(g.configPath())
}

// errorf prints one error line to stderr.
func (g *globalOptions) errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
		b.WriteString("quixysync: " + line + "\n")
	}
	io.WriteString(g.stderr, b.String())
}

// printf writes to stdout unless -q.
func (g *globalOptions) printf(format string, args ...any) {
	if g.Quiet {
		return
	}
	fmt.Fprintf(g.stdout, format, args...)
}

// runE wraps a command's run function so that report can tell its errors
// (classified by exitCode) from cobra's own usage errors.
func runE(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := fn(cmd, args); err != nil {
			return &runError{err: err}
		}
		return nil
	}
}

type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// usageError is a wrong command line noticed by a run function.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitStatus is returned when everything was already printed and only the
// status remains to be set.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// lockedWriter serialises writes so that concurrent channels' logs, traces
// and messages do not interleave within a line.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// target is where writes go now.
func (l *lockedWriter) target() io.Writer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w
}

// divert sends writes to w until the returned function is called (a
// progress display prints them above its line).
func (l *lockedWriter) divert(w io.Writer) (restore func()) {
	l.mu.Lock()
	old := l.w
	l.w = w
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		l.w = old
		l.mu.Unlock()
	}
}

// channelList is "a, b, c" for messages that tell what exists.
func channelList(cfg *channel.Config) string {
	var b strings.Builder
	names := cfg.ChannelNames()
	if len(names) == 0 {
		return "the configuration " + cfg.File + " defines no channel"
	}
	b.WriteString("channels: " + strings.Join(names, ", "))
	if gs := cfg.GroupNames(); len(gs) > 0 {
		b.WriteString("; groups: " + strings.Join(gs, ", "))
	}
	return b.String()
}

// completeChannels completes channel and group names from the configuration.
func completeChannels(g *globalOptions) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		cfg, err := g.loadConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return append(cfg.ChannelNames(), cfg.GroupNames()...), cobra.ShellCompDirectiveNoFileComp
	}
}
