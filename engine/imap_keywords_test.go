package engine_test

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// TestFlagsTheServerDoesNotKeep: against a server whose PERMANENTFLAGS leave
// flags out (Dovecot behind a proxy that says so) — $Forwarded where new
// keywords are not allowed, or all but \Seen and \Deleted as for a
// mailbox shared with fewer rights — those flags are never sent, and a
// Maildir's flags among them stay on the Maildir side run after run instead
// of being taken back because the server does not show them. The flags the
// server keeps still sync both ways.
func TestFlagsTheServerDoesNotKeep(t *testing.T) {
	needDovecot(t)
	for _, tc := range []struct {
		name, perm, never string
		far, near         string
		farAfterDelete    string
	}{
		{"no-keywords", `\Answered \Flagged \Deleted \Seen \Draft`, "$forwarded", "f1:FS n1:FS", "f1:FPS n1:FPS", "f1:FT n1:FS"},
		{"seen-only", `\Seen`, `\flagged`, "f1:S n1:S", "f1:FPS n1:FPS", "f1: n1:S"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resetAccounts(t, imapMaildir)
			ci := serverInfo()
			port, sent := permFlagsProxy(t, ci.host, ci.port, tc.perm, tc.never)
			ci.port, ci.tls = port, "none"
			p := openPairing(t, imapMaildir, t.TempDir(), func() conninfo { return ci })
			far, near := p.spec.Far, p.spec.Near
			addMany(t, far, "INBOX", 0, "f1")
			addMany(t, near, "INBOX", engine.FlagPassed|engine.FlagFlagged, "n1")
			sync1(t, p, engine.RunOptions{})
			engine.SetFlagsBySubject(t, near, "INBOX", "f1", engine.FlagPassed|engine.FlagFlagged, 0)
			sync1(t, p, engine.RunOptions{})
			// A flag the server keeps, set there, still comes over.
			engine.SetFlagsBySubject(t, p.raw[0], "INBOX", "n1", engine.FlagSeen, 0)
			engine.SetFlagsBySubject(t, p.raw[0], "INBOX", "f1", engine.FlagSeen, 0)
			sync1(t, p, engine.RunOptions{})
			for i := range 2 {
				if f, n := engine.ViewBox(t, far, "INBOX"), engine.ViewBox(t, near, "INBOX"); f != tc.far || n != tc.near {
					t.Fatalf("run %d:\nfar:  %s (want %s)\nnear: %s (want %s)", i, f, tc.far, n, tc.near)
				}
				if res := sync1(t, p, engine.RunOptions{}); i > 0 && !zeroCounts(res.Counts) {
					t.Fatalf("not idempotent: %+v", res.Counts)
				}
			}
			if sent.Load() {
				t.Errorf("%s was sent to a server that does not keep it", tc.never)
			}
			// A message deleted in the Maildir, where the server does not
			// expunge: it stays there, flagged \Deleted if the server keeps
			// that, and does not come back to the Maildir either way.
			p.spec.Expunge = [2]bool{false, true}
			engine.ExpungeBySubject(t, near, "INBOX", "f1")
			sync1(t, p, engine.RunOptions{})
			// Someone changes a flag the server keeps, so that the next run
			// lists the message.
			engine.SetFlagsBySubject(t, p.raw[0], "INBOX", "f1", 0, engine.FlagSeen)
			for i := range 2 {
				sync1(t, p, engine.RunOptions{})
				if f, n := engine.ViewBox(t, far, "INBOX"), engine.ViewBox(t, near, "INBOX"); f != tc.farAfterDelete || n != "n1:FPS" {
					t.Fatalf("run %d after a deletion:\nfar:  %s (want %s)\nnear: %s (want n1:FPS)", i, f, tc.farAfterDelete, n)
				}
			}
		})
	}
}

// permFlagsProxy relays connections to host:port (plain IMAP), replacing
// the server's PERMANENTFLAGS with perm, and records whether any line from
// the client named never (lower case). A literal's bytes pass unseen.
func permFlagsProxy(t *testing.T, host string, port int, perm, never string) (int, *atomic.Bool) {
	t.Helper()
	sent := new(atomic.Bool)
	fp := newFaultProxy(t, host, port)
	fp.set(func(_ int, l []byte) ([]byte, bool) {
		// A STORE or APPEND naming it.
		ll := bytes.ToLower(l)
		if bytes.Contains(ll, []byte(never)) && (bytes.Contains(ll, []byte(" store ")) || bytes.Contains(ll, []byte(" append "))) {
			sent.Store(true)
		}
		return l, false
	}, func(_ int, l []byte) ([]byte, bool) {
		if bytes.HasPrefix(l, []byte("* OK [PERMANENTFLAGS ")) {
			return []byte("* OK [PERMANENTFLAGS (" + perm + ")] Limited\r\n"), false
		}
		return l, false
	})
	return fp.port, sent
}
