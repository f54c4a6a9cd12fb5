package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/quixysync/quixysync/internal/dovecottest"
)

// TestE2EChannelsShareAccount: two channels on one IMAP account, synced in
// one run, share its store: one password_cmd (a passphrase prompt once, not
// per channel) and one pool of connections, so that `connections` bounds
// them all. The server lets the user have one connection at a time
// (mail_max_userip_connections; a user's other mail clients count toward
// it too), and both channels must still sync everything.
func TestE2EChannelsShareAccount(t *testing.T) {
	needDovecot(t)
	s, err := dovecottest.Start(dovecottest.Options{ExtraConf: "mail_max_userip_connections = 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	raw, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Login("alice", s.Password("alice")).Wait(); err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, c: raw}
	// Enough mail that the channels' runs overlap.
	boxes := map[string]string{"INBOX": "a"}
	for i := range 6 {
		boxes[fmt.Sprintf("Work%d", i)] = "a"
		boxes[fmt.Sprintf("Lists/l%d", i)] = "b"
	}
	for box := range boxes {
		if box != "INBOX" {
			c.create(box)
		}
		for i := range 20 {
			c.add(box, fmt.Sprintf("%s-%d", box, i))
		}
	}
	raw.Logout().Wait()
	raw.Close()

	dir := isolate(t)
	calls := filepath.Join(dir, "password-calls")
	cfg := writeFile(t, filepath.Join(dir, "quixysync.toml"), fmt.Sprintf(`
[imap.dove]
host = %q
port = %d
tls = "none"
user = "alice"
password_cmd = "echo x >> %s; echo %s"
timeout = "10s"

[maildir.a]
path = %q

[maildir.b]
path = %q

[channel.a]
far = "imap.dove"
near = "maildir.a"
mailboxes = ["INBOX", "Work*"]

[channel.b]
far = "imap.dove"
near = "maildir.b"
mailboxes = ["Lists*"]
`, s.Host, s.Port, calls, s.Password("alice"), filepath.Join(dir, "a"), filepath.Join(dir, "b")))
	for range 2 {
		stdout, stderr, code := run(t, "-c", cfg, "sync", "--all")
		if code != exitOK {
			t.Fatalf("sync --all: exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr, stdout)
		}
	}
	for box, root := range boxes {
		n := 0
		for _, sub := range []string{"new", "cur"} {
			ents, err := os.ReadDir(filepath.Join(dir, root, filepath.FromSlash(box), sub))
			if err != nil {
				t.Fatal(err)
			}
			n += len(ents)
		}
		if n != 20 {
			t.Errorf("%s in %s: %d messages, want 20", box, root, n)
		}
	}
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "x"); n != 2 {
		t.Errorf("password_cmd ran %d times in two runs of two channels, want once a run", n)
	}
}
