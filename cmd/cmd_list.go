package cmd

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/quixysync/quixysync/channel"
	"github.com/quixysync/quixysync/engine"
)

// ListOptions are the flags of `list` (none yet besides the global ones).
type ListOptions struct{}

func newListCommand(g *globalOptions) *cobra.Command {
	var opts ListOptions
	return &cobra.Command{
		Use:   "list [CHANNEL|GROUP...]",
		Short: "Show each channel's mailboxes on both sides",
		Long: `List the mailboxes of each channel (all channels when none is named) on both
of its stores: whether a mailbox exists on both sides, the far side only or
the near side only, and whether the channel's mailboxes patterns select it
(matched) or not (excluded). Nothing is changed.
` + exitStatusHelp("a store could not be reached or its mailboxes listed", exitOK, exitFailure, exitUsage, exitInterrupted),
		ValidArgsFunction: completeChannels(g),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			return runList(cmd.Context(), g, opts, args)
		}),
	}
}

// listEntry is one mailbox of a channel's listing.
type listEntry struct {
	Name      string
	Far, Near bool
	Matched   bool
}

func (e listEntry) where() string {
	switch {
	case e.Far && e.Near:
		return "both"
	case e.Far:
		return "far only"
	}
	return "near only"
}

func runList(ctx context.Context, g *globalOptions, opts ListOptions, args []string) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	chans, err := channelsByName(cfg, args)
	if err != nil {
		return err
	}
	outs := make([]bytes.Buffer, len(chans))
	errs := make([]error, len(chans))
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelChannels)
	for i, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			entries, err := listChannel(ctx, g, cfg, ch)
			if err != nil {
				errs[i] = fmt.Errorf("channel %s: %w", ch.Name, err)
				return
			}
			writeListing(&outs[i], ch, entries)
		}()
	}
	wg.Wait()
	code := exitOK
	for i := range chans {
		if errs[i] != nil {
			if engine.Interrupted(errs[i]) {
				// As sync says it: not the connection's "context canceled".
				g.errorf("channel %s: interrupted", chans[i].Name)
			} else {
				g.errorf("%v", errs[i])
			}
			code = worse(code, exitCode(errs[i]))
			continue
		}
		g.stdout.Write(outs[i].Bytes())
	}
	if code != exitOK {
		return exitStatus(code)
	}
	return nil
}

// channelsByName resolves list's arguments (channels or groups; none = all).
func channelsByName(cfg *channel.Config, args []string) ([]*channel.Channel, error) {
	if len(args) == 0 {
		var out []*channel.Channel
		for _, n := range cfg.ChannelNames() {
			out = append(out, cfg.Channels[n])
		}
		return out, nil
	}
	var out []*channel.Channel
	seen := map[string]bool{}
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, cfg.Channels[n])
		}
	}
	for _, a := range args {
		if ch := cfg.Channels[a]; ch != nil {
			add(a)
			continue
		}
		if gr := cfg.Groups[a]; gr != nil {
			for _, n := range gr.Channels {
				add(n)
			}
			continue
		}
		return nil, usagef("no channel or group %q in %s (%s)", a, cfg.File, channelList(cfg))
	}
	return out, nil
}

func listChannel(ctx context.Context, g *globalOptions, cfg *channel.Config, ch *channel.Channel) ([]listEntry, error) {
	far, near, err := g.openChannel(cfg, ch)
	if err != nil {
		return nil, err
	}
	defer g.closeStores(far, near)
	farBoxes, nearBoxes, err := listBoth(ctx, far, near)
	if err != nil {
		return nil, err
	}
	byName := map[string]*listEntry{}
	get := func(name string) *listEntry {
		e := byName[name]
		if e == nil {
			e = &listEntry{Name: name, Matched: ch.Match(name)}
			byName[name] = e
		}
		return e
	}
	for _, mb := range farBoxes {
		get(mb.Name).Far = true
	}
	for _, mb := range nearBoxes {
		get(mb.Name).Near = true
	}
	out := make([]listEntry, 0, len(byName))
	for _, e := range byName {
		out = append(out, *e)
	}
	sortMailboxes(out, func(e listEntry) string { return e.Name })
	return out, nil
}

// sortMailboxes sorts by name with INBOX (and its children) first.
func sortMailboxes[T any](s []T, name func(T) string) {
	key := func(n string) (int, string) {
		if n == "INBOX" || strings.HasPrefix(n, "INBOX/") {
			return 0, n
		}
		return 1, n
	}
	sort.SliceStable(s, func(i, j int) bool {
		ri, ni := key(name(s[i]))
		rj, nj := key(name(s[j]))
		if ri != rj {
			return ri < rj
		}
		return ni < nj
	})
}

func writeListing(b *bytes.Buffer, ch *channel.Channel, entries []listEntry) {
	fmt.Fprintf(b, "%s (far %s, near %s, mailboxes %s):\n", ch.Name, ch.Far, ch.Near, quoteList(ch.Patterns))
	if len(entries) == 0 {
		b.WriteString("  no mailboxes on either side\n")
		return
	}
	tw := tabwriter.NewWriter(b, 0, 0, 3, ' ', 0)
	for _, e := range entries {
		m := "matched"
		if !e.Matched {
			m = "excluded"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", e.Name, e.where(), m)
	}
	tw.Flush()
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
