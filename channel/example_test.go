package channel

import (
	"os"
	"regexp"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// The shipped example must always be a valid configuration.
func TestExampleParses(t *testing.T) {
	t.Setenv("HOME", "/home/test")
	t.Setenv("XDG_STATE_HOME", "")
	cfg, err := Load("../quixysync.toml.example")
	if err != nil {
		t.Fatalf("example does not parse:\n%v", err)
	}
	if got := cfg.ChannelNames(); len(got) != 2 || got[0] != "gmail" || got[1] != "work" {
		t.Errorf("channels = %v", got)
	}
	w := cfg.IMAP["work"]
	if w.PasswordCmd != "pass show mail/work" || w.Port != 993 || w.TLS != TLSImplicit {
		t.Errorf("imap.work = %+v", w)
	}
	if md := cfg.Maildir["gmail"]; md.Inbox != "/home/test/Mail/gmail/INBOX" || md.Layout != LayoutVerbatim {
		t.Errorf("maildir.gmail = %+v", md)
	}
	g := cfg.Channels["gmail"]
	if g.Push != engine.OpFlags || g.Pull != engine.OpAll || g.MaxSize != 25<<20 || g.Create != SideNear {
		t.Errorf("channel.gmail = %+v", g)
	}
	if g.Match("[Gmail]/All Mail") || !g.Match("[Gmail]/Sent Mail") || !g.Match("INBOX") {
		t.Errorf("gmail patterns select the wrong mailboxes")
	}
	if g.StateDir != "/home/test/.local/state/quixysync/gmail" {
		t.Errorf("state dir = %q", g.StateDir)
	}
	if grp := cfg.Groups["everything"]; grp == nil || len(grp.Channels) != 2 {
		t.Errorf("group = %+v", grp)
	}
}

// Every key the parser accepts is documented in the example (set, or shown
// commented out).
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../quixysync.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, list := range [][]string{imapKeys, maildirKeys, channelKeys, groupKeys} {
		for _, k := range list {
			if !regexp.MustCompile(`(?m)^#?\s*` + k + `\s*= `).Match(data) {
				t.Errorf("key %q is not shown in the example", k)
			}
		}
	}
}
