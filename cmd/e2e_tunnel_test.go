package cmd

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2ETunnel: an IMAP store reached through a tunnel command, as
// mbsync's Tunnel: here the server's own IMAP program for alice, logged in
// already (PREAUTH), as `ssh host /usr/lib/dovecot/imap` gives. The config
// has neither host, user nor password; check --connect says it went
// through the tunnel, and a sync goes both ways over it.
func TestE2ETunnel(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	tunnel := fmt.Sprintf("doveadm -c %s exec imap -u alice", srv.ConfFile)
	e.cfg = writeFile(t, filepath.Join(e.dir, "tunnel.toml"), fmt.Sprintf(`
[imap.dove]
tunnel = %q

[maildir.local]
path = %q

[channel.ch]
far = "imap.dove"
near = "maildir.local"
`, tunnel, e.mail))
	out, _ := e.mustRun("check", "--connect")
	if !strings.Contains(out, fmt.Sprintf("imap.dove (tunnel %q, tls none, logged in by the tunnel): OK", tunnel)) {
		t.Fatalf("check --connect printed %q; want the tunnel named and OK", out)
	}
	c := dial(t, "alice")
	c.add("INBOX", "from-server")
	out, _ = e.mustRun("sync", "--all")
	wantSummary(t, out, "ch", "copied ←1 →0")
	e.addLocal("INBOX", "from-here", "S")
	out, _ = e.mustRun("sync", "--all")
	wantSummary(t, out, "ch", "copied ←0 →1")
	e.wantLocal("INBOX", map[string]string{"from-server": "", "from-here": "S"})
	c.wantServer("INBOX", map[string]string{"from-server": "", "from-here": "S"})
	out, _ = e.mustRun("sync", "--all")
	wantSummary(t, out, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
}
