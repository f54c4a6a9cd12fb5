package cmd

import (
	"testing"

	"github.com/quixysync/quixysync/channel"
)

// Each running mailbox pair holds a connection of every IMAP store it uses,
// so a channel never runs more pairs than its smallest connection limit.
func TestMaxParallelFollowsConnections(t *testing.T) {
	cfg := &channel.Config{IMAP: map[string]*channel.IMAPStore{
		"a": {Name: "a", Connections: 6},
		"b": {Name: "b", Connections: 2},
	}}
	for _, c := range []struct {
		far, near string
		want      int
	}{
		{"imap.a", "maildir.m", 6},
		{"imap.a", "imap.b", 2},
		{"maildir.x", "maildir.y", 0}, // the engine's default
	} {
		ch := &channel.Channel{Name: "c", Far: c.far, Near: c.near}
		if got := maxParallel(cfg, ch); got != c.want {
			t.Errorf("%s <-> %s: %d mailboxes at once, want %d", c.far, c.near, got, c.want)
		}
	}
}
