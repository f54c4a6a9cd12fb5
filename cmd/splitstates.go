package cmd

import (
	"slices"
	"strings"

	"github.com/quixysync/quixysync/channel"
	"github.com/quixysync/quixysync/engine"
)

// warnSplitStates warns, after a run, of the mailboxes it synced that two
// channels keeping their states apart over the same stores both select
// (channel.SplitState): each copies the other's copies there, every run.
// Checked against what ran rather than said of the configuration at every
// run: channels that split the stores' mailboxes between them (Sent in
// one, Archive/* in the other) are a sound setup, and a warning a cron
// job mails every time would teach users to ignore warnings. The partner
// channel need not have run: its patterns say what it selects.
func (g *globalOptions) warnSplitStates(cfg *channel.Config, results []engine.ChannelResult) {
	splits := cfg.SplitStates()
	if len(splits) == 0 {
		return
	}
	synced := map[string][]string{}
	for _, r := range results {
		for _, m := range r.Mailboxes {
			synced[r.Channel] = append(synced[r.Channel], m.Mailbox)
		}
	}
	for _, sp := range splits {
		var both []string
		for _, ab := range [][2]string{{sp.A, sp.B}, {sp.B, sp.A}} {
			other := cfg.Channels[ab[1]]
			for _, name := range synced[ab[0]] {
				if other.Match(name) && !slices.Contains(both, name) {
					both = append(both, name)
				}
			}
		}
		if len(both) == 0 {
			continue
		}
		slices.Sort(both)
		g.logger().Warn(sp.Msg+"; both select "+strings.Join(both, ", "), engine.Notice, true)
	}
}
