package engine_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// TestSharedFolderWithFewerRights: a Dovecot of its own whose ACL gives
// alice a folder with the rights lrsit (read, mark seen, insert, delete; not
// "w"), so its PERMANENTFLAGS are (\Deleted \Seen) — no proxy, the server's
// own answer. The Maildir's other flags are never lost to it: a flag set in
// the Maildir stays there run after run although the server cannot keep it,
// and \Seen still goes both ways.
func TestSharedFolderWithFewerRights(t *testing.T) {
	needDovecot(t)
	aclDir, err := os.MkdirTemp("", "quixysync-acl") // the mail processes must read it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(aclDir) })
	acl := filepath.Join(aclDir, "dovecot-acl")
	if err := os.Chmod(aclDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(acl, []byte("Shared user=alice lrsit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := privatePairing(t, fmt.Sprintf(`mail_plugins = $mail_plugins acl
protocol imap {
  mail_plugins = $mail_plugins acl imap_acl
}
plugin {
  acl = vfile:%s
}`, acl))
	far, near := p.spec.Far, p.spec.Near
	addMany(t, far, "Shared", 0, "f1")
	addMany(t, near, "Shared", engine.FlagFlagged|engine.FlagReplied|engine.FlagSeen, "n1")
	sync1(t, p, engine.RunOptions{})
	engine.SetFlagsBySubject(t, near, "Shared", "f1", engine.FlagFlagged, 0)
	sync1(t, p, engine.RunOptions{})
	engine.SetFlagsBySubject(t, far, "Shared", "f1", engine.FlagSeen, 0)
	engine.SetFlagsBySubject(t, far, "Shared", "n1", 0, engine.FlagSeen)
	for i := range 3 {
		res := sync1(t, p, engine.RunOptions{})
		if f, n := engine.ViewBox(t, far, "Shared"), engine.ViewBox(t, near, "Shared"); f != "f1:S n1:" || n != "f1:FS n1:FR" {
			t.Fatalf("run %d:\nfar:  %s (want f1:S n1:)\nnear: %s (want f1:FS n1:FR)", i, f, n)
		}
		if i > 0 && !zeroCounts(res.Counts) {
			t.Fatalf("run %d not idempotent: %+v", i, res.Counts)
		}
	}
}
