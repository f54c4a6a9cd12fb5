package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/dovecottest"
)

// TestSharedFolderWithFewerRights: a Dovecot of its own whose ACL gives
// alice a folder with the rights lrsit (read, mark seen, insert, delete; not
// "w"), so its PERMANENTFLAGS are (\Deleted \Seen) — no proxy, the server's
// own answer. The Maildir's other flags are never lost to it: a flag set in
// the Maildir stays there run after run although the server cannot keep it,
// and \Seen still goes both ways.
func TestSharedFolderWithFewerRights(t *testing.T) {
	p, _ := aclPairing(t, "lrsit")
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

// TestReadOnlySharedFolderKeepsMaildirFlags: a folder shared with alice
// with the rights lr only. Dovecot answers its SELECT with PERMANENTFLAGS ()
// and [READ-ONLY], and answers a STORE OK without keeping anything. go-imap
// reads the empty list as no PERMANENTFLAGS at all, which means every flag
// is kept: the run STOREd the Maildir's flags there and recorded them as
// agreed, and the next run that listed the folder (here: one after a run
// whose copy of a message filed locally was refused, as it is every time)
// took them for removed on the server and removed them from the Maildir.
// The user's flags are never sent to such a folder and stay in the Maildir,
// run after run; the refused copy is the only error.
func TestReadOnlySharedFolderKeepsMaildirFlags(t *testing.T) {
	p, srv := aclPairing(t, "lr")
	// The folder's mail, put there by its owner (no IMAP APPEND: alice
	// may not insert).
	dir := filepath.Join(srv.MailDir("alice"), "Shared")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range []string{"f1", "f2"} {
		body := "Subject: " + s + "\nMessage-ID: <" + s + "@example.org>\n\nbody\n"
		if err := os.WriteFile(filepath.Join(dir, "cur", fmt.Sprintf("100%d.shared.host:2,", i)), []byte(body), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if err := filepath.WalkDir(srv.MailDir("alice"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chmod(path, map[bool]os.FileMode{true: 0o777, false: 0o666}[d.IsDir()])
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.ForceResync("alice", "Shared"); err != nil {
		t.Fatal(err)
	}
	far, near := p.spec.Far, p.spec.Near
	sync1(t, p, engine.RunOptions{})
	engine.SetFlagsBySubject(t, near, "Shared", "f1", engine.FlagFlagged, 0)
	engine.SetFlagsBySubject(t, near, "Shared", "f2", engine.FlagSeen|engine.FlagReplied, 0)
	addMany(t, near, "Shared", 0, "n1")
	for i := range 3 {
		res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
		if err := mailboxErr(res); err == nil || !strings.Contains(err.Error(), "NOPERM") || res.Failed != [2]int{1, 0} {
			t.Fatalf("run %d: %+v, %v; want the copy of n1 refused, alone", i, res.Counts, err)
		}
		if f, n := engine.ViewBox(t, far, "Shared"), engine.ViewBox(t, near, "Shared"); f != "f1: f2:" || n != "f1:F f2:RS n1:" {
			t.Fatalf("run %d:\nfar:  %s (want f1: f2:)\nnear: %s (want f1:F f2:RS n1:)", i, f, n)
		}
		if i > 0 && res.Flagged != [2]int{} {
			t.Fatalf("run %d changed flags: %+v", i, res.Counts)
		}
	}
}

// aclPairing is a private Dovecot's pairing where alice's folder Shared
// has the rights given (an ACL, as a folder another user shares with her).
func aclPairing(t *testing.T, rights string) (*pairing, *dovecottest.Server) {
	t.Helper()
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
	if err := os.WriteFile(acl, []byte("Shared user=alice "+rights+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return privatePairing(t, fmt.Sprintf(`mail_plugins = $mail_plugins acl
protocol imap {
  mail_plugins = $mail_plugins acl imap_acl
}
plugin {
  acl = vfile:%s
}`, acl))
}

// TestAppendRefusedIsNoUnknown: a folder shared with alice with the rights
// lrsw (read, seen, write flags; no insert): it SELECTs read-write, and
// Dovecot answers each APPEND with NO [NOPERM]. A refusal is an outcome:
// the copy did not happen, and the run says why, not that "whether it
// arrived is not known yet" (the treatment of a commit whose answer never
// came, which kept the journal for the next run to search the server).
// Each run tries again and is refused again; nothing else changes.
func TestAppendRefusedIsNoUnknown(t *testing.T) {
	p, _ := aclPairing(t, "lrsw")
	far, near := p.spec.Far, p.spec.Near
	// A first run makes the new account's INBOX: Dovecot answers a SELECT
	// that races another session's creating it with NO [ALREADYEXISTS].
	engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	addMany(t, near, "Shared", 0, "n1")
	for i := range 2 {
		res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
		err := mailboxErr(res)
		if err == nil || !strings.Contains(err.Error(), "NOPERM") || strings.Contains(err.Error(), "not known") || res.Failed != [2]int{1, 0} {
			t.Fatalf("run %d: %+v, %v; want the copy of n1 refused for its permission", i, res.Counts, err)
		}
		if !errors.Is(err, engine.ErrRefused) {
			t.Fatalf("run %d: %v is not ErrRefused", i, err)
		}
		var journals []string
		filepath.WalkDir(p.dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(path, ".journal") {
				journals = append(journals, path)
			}
			return nil
		})
		if len(journals) != 0 {
			t.Fatalf("run %d left journals %v: a refusal needs no search next time", i, journals)
		}
		if f, n := engine.ViewBox(t, far, "Shared"), engine.ViewBox(t, near, "Shared"); f != "" || n != "n1:" {
			t.Fatalf("run %d: far %q (want none), near %q (want n1:)", i, f, n)
		}
	}
}
