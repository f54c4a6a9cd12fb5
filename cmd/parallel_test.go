package cmd

import (
	"testing"

	"github.com/quixysync/quixysync/channel"
)

// A pair holds a connection of every IMAP store it uses while it works on
// that side. With one IMAP side, twice its limit of pairs run (those over it
// wait while opening, their Maildir side is scanned meanwhile); with two,
// never more than the smaller limit, or pairs could wait on each other.
func TestMaxParallelFollowsConnections(t *testing.T) {
	cfg := &channel.Config{IMAP: map[string]*channel.IMAPStore{
		"a": {Name: "a", Connections: 6},
		"b": {Name: "b", Connections: 2},
	}}
	for _, c := range []struct {
		far, near string
		want      int
	}{
		{"imap.a", "maildir.m", 12},
		{"maildir.m", "imap.b", 4},
		{"imap.a", "imap.b", 2},
		{"maildir.x", "maildir.y", 0}, // the engine's default
	} {
		ch := &channel.Channel{Name: "c", Far: c.far, Near: c.near}
		if got := maxParallel(cfg, ch); got != c.want {
			t.Errorf("%s <-> %s: %d mailboxes at once, want %d", c.far, c.near, got, c.want)
		}
	}
}
