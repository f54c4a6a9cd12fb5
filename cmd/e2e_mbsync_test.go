package cmd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// mbsyncInto runs the real mbsync (isync) between alice's account and e's
// Maildir, as a user does before switching to quixysync. It skips the test
// when mbsync is not installed.
func mbsyncInto(t *testing.T, e *e2e, extra string) {
	t.Helper()
	bin, err := exec.LookPath("mbsync")
	if err != nil {
		t.Skip("needs mbsync (isync)")
	}
	rc := writeFile(t, filepath.Join(e.dir, ".mbsyncrc"), fmt.Sprintf(`IMAPAccount dove
Host %s
Port %d
User alice
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account dove

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel ch
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
%s`, srv.Host, srv.Port, srv.Password("alice"), e.mail, e.mail, extra))
	out, err := exec.Command(bin, "-c", rc, "-a").CombinedOutput()
	if err != nil {
		t.Fatalf("mbsync: %v\n%s", err, out)
	}
}

// A user who synced with the real mbsync (messages pulled from the server,
// messages pushed from the Maildir) and then runs quixysync for the first
// time ends with each message once on each side, as README promises: mbsync
// added an X-TUID field to each copy it made (the pulled files, the pushed
// server messages), which the pairing must not count as a difference.
func TestE2EFirstSyncAfterRealMbsync(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	c := dial(t, "alice")
	c.add("INBOX", "srv1", imap.FlagSeen)
	c.add("INBOX", "srv2")
	makeLocalInbox(t, e)
	e.addLocal("INBOX", "loc1", "")
	mbsyncInto(t, e, "")
	firstSyncCopiesNothing(t, e, c, map[string]string{"srv1": "S", "srv2": "", "loc1": ""})
}

// Messages without a Message-ID that mbsync copied (a draft, a cron mail)
// are paired by content at the first sync after mbsync, not copied back.
func TestE2EFirstSyncAfterRealMbsyncWithoutMessageID(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	c := dial(t, "alice")
	appendRaw(t, c, "From: cron@example.com\r\nSubject: srv-noid\r\n\r\nno Message-ID\r\n")
	appendRaw(t, c, "From: cron@example.com\r\nSubject: srv-noid2\r\n\r\nno Message-ID, no final newline")
	makeLocalInbox(t, e)
	writeFile(t, filepath.Join(e.folder("INBOX"), "new", "1700000000.draft.localhost"), "Subject: loc-noid\n\na draft\n")
	mbsyncInto(t, e, "")
	firstSyncCopiesNothing(t, e, c, map[string]string{"srv-noid": "", "srv-noid2": "", "loc-noid": ""})
}

// The same after the real OfflineIMAP (its ",U=…,FMD5=…" names, its own
// state elsewhere): each message, with or without a Message-ID, ends once on
// each side. Skipped when offlineimap is not installed.
func TestE2EFirstSyncAfterRealOfflineIMAP(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	bin, err := exec.LookPath("offlineimap")
	if err != nil {
		t.Skip("needs offlineimap")
	}
	c := dial(t, "alice")
	c.add("INBOX", "srv1", imap.FlagSeen)
	c.add("INBOX", "srv2")
	appendRaw(t, c, "From: cron@example.com\r\nSubject: srv-noid\r\n\r\nno Message-ID\r\n")
	makeLocalInbox(t, e)
	e.addLocal("INBOX", "loc1", "")
	writeFile(t, filepath.Join(e.folder("INBOX"), "new", "1700000000.draft.localhost"), "Subject: loc-noid\n\na draft\n")
	rc := writeFile(t, filepath.Join(e.dir, ".offlineimaprc"), fmt.Sprintf(`[general]
accounts = a
metadata = %s/.offlineimap

[Account a]
localrepository = l
remoterepository = r

[Repository l]
type = Maildir
localfolders = %s

[Repository r]
type = IMAP
remotehost = %s
remoteport = %d
remoteuser = alice
remotepass = %s
ssl = no
starttls = no
`, e.dir, e.mail, srv.Host, srv.Port, srv.Password("alice")))
	if out, err := exec.Command(bin, "-c", rc, "-o", "-u", "basic").CombinedOutput(); err != nil {
		t.Fatalf("offlineimap: %v\n%s", err, out)
	}
	firstSyncCopiesNothing(t, e, c, map[string]string{"srv1": "S", "srv2": "", "srv-noid": "", "loc1": "", "loc-noid": ""})
}

// makeLocalInbox makes e's local INBOX folder, where a test delivers files
// before the tool it comes from runs.
func makeLocalInbox(t *testing.T, e *e2e) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(e.folder("INBOX"), sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

// appendRaw APPENDs msg to the server's INBOX as it is (no Message-ID added).
func appendRaw(t *testing.T, c *client, msg string) {
	t.Helper()
	cmd := c.c.Append("INBOX", int64(len(msg)), nil)
	if _, err := cmd.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// firstSyncCopiesNothing runs quixysync's first sync and checks that it
// paired every message (want: subject → flags, on both sides) and copied
// none: the server's INBOX still holds len(want) messages.
func firstSyncCopiesNothing(t *testing.T, e *e2e, c *client, want map[string]string) {
	t.Helper()
	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", fmt.Sprintf("copied ←0 →0, flags ←0 →0, deleted ←0 →0, created 0 mailboxes, no errors, %d messages already on both sides", len(want)))
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
	if n := c.selectBox("INBOX", true).NumMessages; n != uint32(len(want)) {
		t.Errorf("server INBOX holds %d messages, want %d", n, len(want))
	}
}
