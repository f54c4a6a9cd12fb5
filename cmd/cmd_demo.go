package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/spf13/cobra"

	"github.com/quixysync/quixysync/channel"
	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/demo"
)

// DemoOptions are the flags of `demo` (none yet besides the global ones).
type DemoOptions struct{}

func newDemoCommand(g *globalOptions) *cobra.Command {
	var opts DemoOptions
	return &cobra.Command{
		Use:   "demo [DIR]",
		Short: "Sync a built-in demo account into DIR/Mail (no account or network needed)",
		Long: `Demo shows what quixysync does without touching any real account. It starts
an IMAP server in memory on 127.0.0.1 (a random port), fills it with a small
mailbox tree (INBOX, Archive/2025, Sent, Entwürfe: a few dozen messages, some
with attachments and flags), writes the configuration it uses to
DIR/quixysync.toml, and syncs into DIR/Mail. Then it changes something on each
side (a new message and a flag on the server; a message marked read and a
sent message in the Maildir), syncs again and tells what happened.

DIR defaults to a new temporary directory; DIR/Mail must not exist yet or be
empty, and DIR/quixysync.toml must not exist or be the unchanged file of an
earlier demo (one you edited is never overwritten). The server stops when the
demo ends; DIR stays for you to look at.
` + exitStatusHelp("the demo failed (the message says where)", exitOK, exitFailure, exitUsage, exitInterrupted),
		Args: cobra.MaximumNArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), g, opts, args)
		}),
	}
}

func runDemo(ctx context.Context, g *globalOptions, opts DemoOptions, args []string) error {
	dir, err := demoDir(args)
	if err != nil {
		return err
	}
	mailDir := filepath.Join(dir, "Mail")
	if ok, err := demo.EmptyOrMissing(mailDir); err != nil {
		return fmt.Errorf("demo: %w", err)
	} else if !ok {
		return usagef("%s already holds mail (from an earlier demo?): choose a new DIR, or remove it", mailDir)
	}

	srvOpt := demo.ServerOptions{}
	if g.Debug {
		srvOpt.ErrorLog = g.stderr
	}
	srv, err := demo.Start(srvOpt)
	if err != nil {
		return err
	}
	defer srv.Close()
	n, err := srv.Seed()
	if err != nil {
		return err
	}
	cfgPath, err := demo.WriteConfig(dir, mailDir, srv)
	if ce := (*demo.ConfigExistsError)(nil); errors.As(err, &ce) {
		// Like a DIR/Mail in use: the command line's DIR is the thing to change.
		return usagef("%v", err)
	} else if err != nil {
		return err
	}
	cfg, err := channel.Load(cfgPath)
	if err != nil {
		return err
	}
	targets, err := cfg.Resolve([]string{demo.Channel}, false)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	say := g.printf

	say("quixysync demo in %s\n\n", dir)
	say("Started an IMAP server on %s (user %q, password %q) holding %s in %s:\n  %s\n",
		srv.Addr(), srv.User, srv.Password, count(n, "message"), count(len(demo.Tree()), "mailbox"), treeNames())
	say("Wrote the configuration to %s.\n\n", cfgPath)

	// The demo's syncs go through exactly the code path of `quixysync sync`.
	syncOpts := SyncOptions{}
	say("1. First sync: everything is new.\n")
	first := g.syncTargets(ctx, cfg, targets, engine.ModeSync, syncOpts)
	if code := g.printResults(first, syncOpts); code != exitOK {
		say("\nThe first sync failed (see the errors above).\n")
		return exitStatus(code)
	}
	say("   → %s\n\n", describe(first))

	say("2. Changes on both sides:\n")
	arrival := demo.NewArrival()
	if _, err := srv.Append("INBOX", arrival.Raw, nil, arrival.Date); err != nil {
		return err
	}
	say("   server: a new message arrived in INBOX\n")
	if err := srv.AddFlags(ctx, "INBOX", 1, goimap.FlagFlagged); err != nil {
		return err
	}
	say("   server: the oldest message in INBOX was flagged (\\Flagged)\n")
	md := cfg.Maildir[demo.Channel]
	seenPath, err := demo.MarkSeen(md.Inbox)
	if err != nil {
		return err
	}
	say("   local:  a message in INBOX was marked read (renamed to %s)\n", relTo(dir, seenPath))
	sentPath, err := demo.Deliver(filepath.Join(md.Path, "Sent"), demo.LocalSent())
	if err != nil {
		return err
	}
	say("   local:  a mail client filed a sent message (%s)\n\n", relTo(dir, sentPath))

	say("3. Second sync: only the changes travel.\n")
	second := g.syncTargets(ctx, cfg, targets, engine.ModeSync, syncOpts)
	code := g.printResults(second, syncOpts)
	if code != exitOK {
		say("\nThe second sync failed (see the errors above).\n")
		return exitStatus(code)
	}
	say("   → %s\n\n", describe(second))

	if !g.Quiet {
		say("The local Maildir now:\n")
		if err := demo.PrintTree(g.stdout, mailDir); err != nil {
			return err
		}
	}
	say(`
Look around: the messages are plain files, readable by any Maildir mail client
(mutt, aerc, neomutt, notmuch).

The demo server stopped with the demo, so that configuration now needs a real
account. To sync one, edit %[1]s:
  in [imap.demo], set host, port and tls ("implicit" on port 993), user, and
  replace password with password_cmd (e.g. "pass show mail/work");
  in [maildir.demo], set path to where the mail should go.
Then see what would be synced, and sync:
  quixysync -c %[1]s list
  quixysync -c %[1]s sync --all
`, cfgPath)
	return nil
}

// demoDir is DIR (created when missing) or a new temporary directory, absolute.
func demoDir(args []string) (string, error) {
	if len(args) == 0 {
		dir, err := os.MkdirTemp("", "quixysync-demo-")
		if err != nil {
			return "", fmt.Errorf("demo: %w", err)
		}
		return dir, nil
	}
	dir, err := filepath.Abs(args[0])
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		// The DIR given is unusable (a file, a read-only place): the
		// command line's fault, and the user's to fix.
		return "", usagef("demo: cannot use %s as DIR: %v; give a directory that exists or can be created", args[0], err)
	}
	return dir, nil
}

func treeNames() string {
	var parts []string
	for _, mb := range demo.Tree() {
		parts = append(parts, fmt.Sprintf("%s (%d)", mb.Name, len(mb.Messages)))
	}
	return strings.Join(parts, ", ")
}

func relTo(base, path string) string {
	if rel, err := filepath.Rel(base, path); err == nil {
		return rel
	}
	return path
}

// describe says in words what a run did.
func describe(results []engine.ChannelResult) string {
	var c engine.Counts
	for _, r := range results {
		rc := channelCounts(r, false)
		for s := 0; s < 2; s++ {
			c.Copied[s] += rc.Copied[s]
			c.Flagged[s] += rc.Flagged[s]
			c.Deleted[s] += rc.Deleted[s]
			c.Created[s] += rc.Created[s]
		}
	}
	near, far := engine.Near, engine.Far
	var parts []string
	addIf := func(n int, format string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf(format, count(n, "message")))
		}
	}
	if n := c.Created[near]; n > 0 {
		parts = append(parts, "created "+count(n, "local folder"))
	}
	if n := c.Created[far]; n > 0 {
		parts = append(parts, "created "+count(n, "mailbox")+" on the server")
	}
	addIf(c.Copied[near], "downloaded %s")
	addIf(c.Copied[far], "uploaded %s to the server")
	addIf(c.Flagged[near], "updated the flags of %s locally")
	addIf(c.Flagged[far], "updated the flags of %s on the server")
	addIf(c.Deleted[near], "deleted %s locally")
	addIf(c.Deleted[far], "deleted %s on the server")
	if len(parts) == 0 {
		return "nothing to do: both sides were already in sync"
	}
	s := strings.Join(parts, ", ")
	return strings.ToUpper(s[:1]) + s[1:] + "."
}
