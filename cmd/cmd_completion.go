package cmd

import (
	"github.com/spf13/cobra"
)

func newCompletionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print a completion script for the shell. Channel and group names are
completed from the configuration.

  bash:        source <(quixysync completion bash)
  zsh:         quixysync completion zsh > "${fpath[1]}/_quixysync"
  fish:        quixysync completion fish > ~/.config/fish/completions/quixysync.fish
  powershell:  quixysync completion powershell | Out-String | Invoke-Expression
` + exitStatusHelp("", exitOK, exitUsage),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), g.stdout
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			default:
				return root.GenPowerShellCompletionWithDesc(out)
			}
		}),
	}
}
