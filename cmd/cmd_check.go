package cmd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quixysync/quixysync/channel"
	"github.com/quixysync/quixysync/engine"
)

// CheckOptions are the flags of `check`.
type CheckOptions struct {
	Connect bool
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	var opts CheckOptions
	cmd := &cobra.Command{
		Use:   "check [--connect]",
		Short: "Validate the configuration (and with --connect, log in to every IMAP store)",
		Long: `Check reads and validates the configuration file and prints a summary. Every
problem is reported with the file, line and key, and how to fix it.

With --connect it also logs in to every IMAP store and prints the server's
capabilities, so a wrong host, port, TLS mode, certificate or password shows
up before the first sync.
` + exitStatusHelp("with --connect, a store could not be reached or logged in to", exitOK, exitFailure, exitUsage, exitInterrupted),
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), g, opts)
		}),
	}
	cmd.Flags().BoolVar(&opts.Connect, "connect", false, "log in to every IMAP store and print its capabilities")
	return cmd
}

func runCheck(ctx context.Context, g *globalOptions, opts CheckOptions) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	// The Maildir paths first: "OK" is said only of a configuration that
	// is (a path that is a file is a problem sync would meet).
	code := checkMaildirs(g, cfg)
	verdict := "OK"
	if code != exitOK {
		verdict = "problems (above)"
	}
	g.printf("config %s: %s, %s, %s, %s, %s\n", cfg.File, verdict,
		count(len(cfg.Channels), "channel"), count(len(cfg.IMAP), "IMAP store"),
		count(len(cfg.Maildir), "Maildir store"), count(len(cfg.Groups), "group"))
	if len(cfg.Channels) == 0 {
		g.printf("warning: no channel is defined, so sync has nothing to do; add a [channel.NAME] table pairing a far and a near store (see quixysync.toml.example)\n")
	}
	for _, w := range unusedParts(cfg) {
		g.printf("warning: %s\n", w)
	}
	for _, w := range cfg.SplitStates() {
		g.printf("warning: %s\n", w.Msg)
	}
	if !opts.Connect {
		if code != exitOK {
			return exitStatus(code)
		}
		return nil
	}
	for _, name := range sortedNames(cfg.IMAP) {
		is := cfg.IMAP[name]
		caps, err := checkIMAP(ctx, g, is)
		if err != nil {
			if engine.Interrupted(err) {
				g.errorf("%s: interrupted while connecting", is.Ref())
			} else {
				g.errorf("%v", prefixOnce(is.Ref(), err))
			}
			code = worse(code, exitCode(err))
			continue
		}
		who := "user " + is.User
		if is.User == "" {
			who = "logged in by the tunnel"
		}
		g.printf("%s (%s, tls %s, %s): OK\n  capabilities: %s\n", is.Ref(), is.Addr(), is.TLS, who, strings.Join(caps, " "))
	}
	if code != exitOK {
		return exitStatus(code)
	}
	return nil
}

// checkMaildirs looks at each Maildir store's path: one that does not
// exist is fine (the first sync creates it) but worth a word, since a typo
// there would sync the whole account into a new directory; one that is not
// a directory is an error.
func checkMaildirs(g *globalOptions, cfg *channel.Config) int {
	code := exitOK
	for _, name := range sortedNames(cfg.Maildir) {
		ms := cfg.Maildir[name]
		fi, err := os.Stat(ms.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			g.printf("%s: %s does not exist yet; the first sync creates it (if you expected mail there, check its path)\n", ms.Ref(), ms.Path)
		case err != nil:
			g.errorf("%s: %v", ms.Ref(), err)
			code = worse(code, exitUsage)
		case !fi.IsDir():
			g.errorf("%s: path %s is not a directory: set path to the directory that holds (or will hold) the Maildir folders", ms.Ref(), ms.Path)
			code = worse(code, exitUsage)
		}
		if fi, err := os.Stat(ms.Inbox); err == nil && !fi.IsDir() {
			g.errorf("%s: inbox %s is not a directory: move that file away, or set inbox to the INBOX's Maildir folder (default: path/INBOX; the path itself for maildir++)", ms.Ref(), ms.Inbox)
			code = worse(code, exitUsage)
		}
	}
	return code
}

func checkIMAP(ctx context.Context, g *globalOptions, is *channel.IMAPStore) ([]string, error) {
	s, err := g.openIMAP(is)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Capabilities(ctx)
}

// count is "1 message", "2 messages", "3 mailboxes".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "x") || strings.HasSuffix(what, "s") {
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// unusedParts names what the configuration defines that no run would use:
// a store no channel pairs (a channel's far or near left pointing at an
// older one?), and a channel whose pull and push lists are both empty (it
// copies nothing and changes no flag either way).
func unusedParts(cfg *channel.Config) []string {
	used := map[string]bool{}
	var out []string
	for _, name := range cfg.ChannelNames() {
		c := cfg.Channels[name]
		used[c.Far], used[c.Near] = true, true
		if c.Pull == 0 && c.Push == 0 {
			out = append(out, fmt.Sprintf("channel %s has pull = [] and push = []: it copies no message and changes no flag either way", name))
		}
	}
	if len(cfg.Channels) == 0 {
		return out // said once, above: no channel at all
	}
	for _, name := range sortedNames(cfg.IMAP) {
		if ref := cfg.IMAP[name].Ref(); !used[ref] {
			out = append(out, fmt.Sprintf("%s is not used by any channel", ref))
		}
	}
	for _, name := range sortedNames(cfg.Maildir) {
		if ref := cfg.Maildir[name].Ref(); !used[ref] {
			out = append(out, fmt.Sprintf("%s is not used by any channel", ref))
		}
	}
	return out
}
