// Package cmd is the command-line interface (one file per command).
package cmd

import "os"

// Execute runs the command line and exits with its status.
func Execute() { os.Exit(0) }
