package imap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// tunnelStore is a store of user on the shared Dovecot reached through
// the tunnel command cmd, with TLS none and no host unless mod says.
func tunnelStore(t *testing.T, user, cmd string, mod func(*Config)) *Store {
	t.Helper()
	return doveStore(t, user, func(c *Config) {
		c.Tunnel, c.Host, c.Port, c.TLS, c.CAFile = cmd, "", 0, "none", ""
		if mod != nil {
			mod(c)
		}
	})
}

// tcpTunnel is a tunnel command that only carries bytes to host:port (as
// `ssh -W host:port` does), made of bash's /dev/tcp.
func tcpTunnel(host string, port int) string {
	return fmt.Sprintf("bash -c 'exec 3<>/dev/tcp/%s/%d; cat <&3 & exec cat >&3'", host, port)
}

// alive says whether the process pid exists (reaped processes do not).
func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// tunnelPID reads the PID a tunnel command wrote with `echo $$ > file`
// before it exec'd its program.
func tunnelPID(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestTunnelPreauth: the tunnel runs the server's own IMAP program for
// the user, already logged in (PREAUTH), as `ssh host
// /usr/lib/dovecot/imap` does: no password is asked for, mail goes both
// ways, and the command is gone once the store is closed.
func TestTunnelPreauth(t *testing.T) {
	d := needDovecot(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd := fmt.Sprintf("echo $$ > %s; exec doveadm -c %s exec imap -u alice", pidFile, d.ConfFile)
	s := tunnelStore(t, "alice", cmd, func(c *Config) {
		c.Password = func(context.Context) (string, error) {
			t.Error("password asked for through a PREAUTH tunnel")
			return "", errors.New("no password here")
		}
	})
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	r := stageCommit(t, ctx, mb, "Subject: through the tunnel\n\nbody\n", engine.FlagSeen, time.Time{})
	if r.UID == 0 {
		t.Fatalf("no UID for the APPEND through the tunnel: %+v", r)
	}
	mb.Close()
	out, err := d.Doveadm("fetch", "-u", "alice", "flags hdr.subject", "mailbox", "INBOX", "all")
	if err != nil || !strings.Contains(string(out), "through the tunnel") || !strings.Contains(string(out), `\Seen`) {
		t.Fatalf("the server holds %q (%v); want the message APPENDed through the tunnel, seen", out, err)
	}
	pid := tunnelPID(t, pidFile)
	if !alive(pid) {
		t.Fatal("the tunnel command ended while the store still holds its connection")
	}
	s.Close()
	if alive(pid) {
		t.Fatalf("the tunnel command (PID %d) outlives the closed store", pid)
	}
}

// TestTunnelLogin: the tunnel only carries bytes to the server's IMAP
// port (as `ssh -W localhost:143 host`), which greets with OK: the store
// logs in as over TCP, with tls = "none" (the tunnel keeps the session
// private, so the password is sent: over TCP to a remote host it would
// be refused), or with STARTTLS over the tunnel, the certificate checked
// against host.
func TestTunnelLogin(t *testing.T) {
	d := needDovecot(t)
	cmd := tcpTunnel(d.Host, d.Port)
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"none", nil},
		{"starttls", func(c *Config) { c.TLS, c.Host, c.CAFile = "starttls", d.Host, d.CAFile }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked int
			s := tunnelStore(t, "alice", cmd, func(c *Config) {
				c.Password = func(context.Context) (string, error) { asked++; return d.Password("alice"), nil }
				if tc.mod != nil {
					tc.mod(c)
				}
			})
			ctx := ctxT(t)
			if err := s.CreateMailbox(ctx, "Tunnelled"); err != nil {
				t.Fatal(err)
			}
			boxes, err := s.ListMailboxes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, b := range boxes {
				found = found || b.Name == "Tunnelled"
			}
			if !found || asked != 1 {
				t.Fatalf("mailboxes %+v (want Tunnelled among them), password asked %d times (want 1)", boxes, asked)
			}
		})
	}
}

// TestTunnelCommandFails: the tunnel command ends at once, as ssh does for
// a host it cannot reach. The error names the tunnel and says what the
// command said and how it ended, rather than only "EOF" from a greeting
// that never came.
func TestTunnelCommandFails(t *testing.T) {
	needDovecot(t)
	s := tunnelStore(t, "alice", "echo 'ssh: Could not resolve hostname nowhere: Name or service not known' >&2; exit 255", nil)
	start := time.Now()
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil {
		t.Fatal("no error through a tunnel command that failed")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{`tunnel "echo`, "Could not resolve hostname nowhere", "exit status 255"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to fail", d)
	}
}

// TestTunnelSilent: the tunnel command runs but never greets (a command
// that waits for something, or not an IMAP server at all). The timeout
// ends the wait with a hint for a tunnel (not one about ports), and the
// command, which ignores its input's end, is killed when the store closes.
func TestTunnelSilent(t *testing.T) {
	needDovecot(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := tunnelStore(t, "alice", "echo $$ > "+pidFile+"; exec sleep 60", func(c *Config) { c.Timeout = time.Second })
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "sent no IMAP greeting") || strings.Contains(err.Error(), "usually") {
		t.Fatalf("error %v: want the tunnel's hint, without ports", err)
	}
	pid := tunnelPID(t, pidFile)
	s.Close()
	if alive(pid) {
		t.Fatalf("the silent tunnel command (PID %d) outlives the closed store", pid)
	}
}

// TestTunnelNeedsLogin: a tunnel configured without user (for a server
// that logs in by itself) reaches one that greets with OK and wants a
// login: the error says what to add, or how to make the tunnel log in.
func TestTunnelNeedsLogin(t *testing.T) {
	d := needDovecot(t)
	s := tunnelStore(t, "alice", tcpTunnel(d.Host, d.Port), func(c *Config) { c.User = "" })
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "asks for a login") || !strings.Contains(err.Error(), "add user and a password source") {
		t.Fatalf("error %v: want one saying the tunnel's server wants a login and what to add", err)
	}
}

// TestTunnelBreaksMidRun: the tunnel's command ends in the middle of a
// command (ssh losing its link): the error says the connection through
// the tunnel failed, with the command's exit status and what it said,
// not that a connection to an empty host did.
func TestTunnelBreaksMidRun(t *testing.T) {
	d := needDovecot(t)
	// Carries bytes as tcpTunnel does, line by line, and dies at the
	// first full listing it carries.
	script := filepath.Join(t.TempDir(), "tunnel.bash")
	body := fmt.Sprintf(`exec 3<>/dev/tcp/%s/%d
cat <&3 &
while IFS= read -r l; do
	case "$l" in *"UID FETCH 1:*"*) echo "tunnel: link to mail.example.org down" >&2; kill $!; exit 255;; esac
	printf '%%s\n' "$l" >&3
done
`, d.Host, d.Port)
	if err := os.WriteFile(script, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s := tunnelStore(t, "alice", "bash "+script, nil)
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	stageCommit(t, ctx, mb, "Subject: before the break\n\nbody\n", 0, time.Time{})
	_, _, err = mb.List(ctx, engine.ListQuery{All: true})
	if err == nil {
		t.Fatal("a listing through a tunnel that ended succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"connection through the tunnel failed", "exit status 255", "tunnel: link to mail.example.org down"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
}
