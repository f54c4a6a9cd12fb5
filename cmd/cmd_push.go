package cmd

import (
	"github.com/spf13/cobra"

	"github.com/quixysync/quixysync/engine"
)

func newPushCommand(g *globalOptions) *cobra.Command {
	return newTransferCommand(g, engine.ModePush, "push",
		"Copy changes from the near side to the far side only",
		`Push propagates what the channel's push list allows, near → far only:
new messages, flag changes and removals. Nothing is changed on the near side,
except that expunge acts on its own on the sides the channel names (as in
mbsync). Missing mailboxes are created only on the far side. A channel whose
push list is empty (push = []) is left out; naming only such channels is a usage
error.
`)
}
