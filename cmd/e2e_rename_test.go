package cmd

import (
	"os"
	"strings"
	"testing"
)

// A webmail's RENAME, as a user sees it: the dry run says the folder would
// be renamed and changes nothing; the run says it renamed it (under -q too:
// a cron job's mail tells where the folder went), the mail is where the
// new name says and nothing was downloaded again.
func TestE2EServerRenameFollowed(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	c := dial(t, "alice")
	c.create("Foo")
	c.add("Foo", "f1")
	e.mustRun("sync", "ch")
	e.addLocal("Foo", "from-mutt", "S")
	e.mustRun("sync", "ch")
	if err := c.c.Rename("Foo", "Bar", nil).Wait(); err != nil {
		t.Fatalf("RENAME: %v", err)
	}

	stdout, _ := e.mustRun("sync", "--dry-run", "ch")
	if !strings.Contains(stdout, "ch:Foo: would be renamed to Bar here") {
		t.Errorf("the dry run does not say Foo would be renamed:\n%s", stdout)
	}
	if _, err := os.Stat(e.folder("Bar")); !os.IsNotExist(err) {
		t.Fatalf("the dry run made Bar here (%v)", err)
	}

	_, stderr := e.mustRun("-q", "sync", "ch")
	if !strings.Contains(stderr, "renamed on the far side") || !strings.Contains(stderr, "Bar") {
		t.Errorf("-q run does not say the folder was renamed: %q", stderr)
	}
	if _, err := os.Stat(e.folder("Foo")); !os.IsNotExist(err) {
		t.Errorf("Foo still here (%v)", err)
	}
	want := map[string]string{"f1": "", "from-mutt": "S"}
	e.wantLocal("Bar", want)
	c.wantServer("Bar", want)
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
}

// A folder renamed in the mail client (here mv): the run renames the
// server's mailbox too, says so, and uploads nothing.
func TestE2ENearRenameCarried(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	c := dial(t, "alice")
	c.create("Foo")
	c.add("Foo", "f1")
	e.mustRun("sync", "ch")
	if err := os.Rename(e.folder("Foo"), e.folder("Bar")); err != nil {
		t.Fatal(err)
	}
	_, stderr := e.mustRun("-q", "sync", "ch")
	if !strings.Contains(stderr, "far mailbox is renamed too") {
		t.Errorf("-q run does not say the far mailbox was renamed: %q", stderr)
	}
	for _, b := range c.boxes() {
		if b == "Foo" {
			t.Errorf("the server still has Foo: %v", c.boxes())
		}
	}
	want := map[string]string{"f1": ""}
	e.wantLocal("Bar", want)
	c.wantServer("Bar", want)
	if _, err := os.Stat(e.folder("Foo")); !os.IsNotExist(err) {
		t.Errorf("Foo made again here (%v)", err)
	}
	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
}
