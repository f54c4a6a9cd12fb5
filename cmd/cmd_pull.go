package cmd

import (
	"github.com/spf13/cobra"

	"github.com/quixysync/quixysync/engine"
)

func newPullCommand(g *globalOptions) *cobra.Command {
	return newTransferCommand(g, engine.ModePull, "pull",
		"Copy changes from the far side to the near side only",
		`Pull propagates what the channel's pull list allows, far → near only:
new messages, flag changes and removals. Nothing is changed on the far side,
except that expunge acts on its own on the sides the channel names (as in
mbsync). Missing mailboxes are created only on the near side. A channel whose
pull list is empty (pull = []) is left out; naming only such channels is a usage
error.
`)
}
