// Command quixysync keeps a Maildir and an IMAP account in sync both ways.
package main

import "github.com/quixysync/quixysync/cmd"

func main() { cmd.Execute() }
