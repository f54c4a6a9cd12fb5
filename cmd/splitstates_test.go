package cmd

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/internal/demo"
)

// Two channels over the same two IMAP stores keep their states apart (one
// state_dir each, the default). When their mailboxes do not overlap that is
// a sound setup, and a cron job's -q run must stay silent; when a mailbox
// is selected by both, the run says so, naming it.
func TestSplitStatesWarnedOnlyWhenMailboxesOverlap(t *testing.T) {
	for _, tc := range []struct {
		name, first, second, want string
	}{
		{"apart", `["Sent"]`, `["Archive/*"]`, ""},
		{"overlapping", `["*"]`, `["INBOX"]`, "both select INBOX"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := isolate(t)
			var ports [2]int
			for i := range ports {
				srv, err := demo.Start(demo.ServerOptions{})
				if err != nil {
					t.Fatal(err)
				}
				defer srv.Close()
				if i == 0 {
					if _, err := srv.Seed(); err != nil {
						t.Fatal(err)
					}
				}
				ports[i] = srv.Port
			}
			cfg := writeFile(t, filepath.Join(dir, "c.toml"), fmt.Sprintf(`
[imap.a]
host = "127.0.0.1"
port = %d
tls = "none"
user = "demo"
password = "demo"

[imap.b]
host = "127.0.0.1"
port = %d
tls = "none"
user = "demo"
password = "demo"

[channel.one]
far = "imap.a"
near = "imap.b"
mailboxes = %s

[channel.two]
far = "imap.a"
near = "imap.b"
mailboxes = %s
`, ports[0], ports[1], tc.first, tc.second))
			stdout, stderr, code := run(t, "-q", "-c", cfg, "sync", "--all")
			if code != exitOK {
				t.Fatalf("exit %d", code)
			}
			if tc.want == "" {
				if stdout != "" || stderr != "" {
					t.Errorf("channels that do not overlap printed %q %q with -q", stdout, stderr)
				}
				return
			}
			if !strings.Contains(stderr, "channels one and two sync the same stores") || !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr %q, want the warning naming %q", stderr, tc.want)
			}
		})
	}
}
