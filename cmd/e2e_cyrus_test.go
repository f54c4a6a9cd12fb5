package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/cyrustest"
)

// TestE2ECyrus runs the life of a channel against Cyrus IMAP, a second real
// server: a first sync both ways, changes on both sides (new, flags,
// deletions) and nothing to do, then the same Maildir synced again with its
// state gone (the messages both sides hold are paired, none copied). Skipped
// where Cyrus is not installed, unless QUIXYSYNC_REQUIRE_CYRUS=1 (.ci/run).
func TestE2ECyrus(t *testing.T) {
	cy := cyrustest.ForTest(t, map[string]string{"dave": "dave-pw"})
	dir := isolate(t)
	e := &e2e{t: t, dir: dir, mail: filepath.Join(dir, "Mail")}
	e.cfg = writeFile(t, filepath.Join(dir, "quixysync.toml"), fmt.Sprintf(`
[imap.cy]
host = %q
port = %d
tls = "none"
user = "dave"
password = "dave-pw"
timeout = "10s"

[maildir.local]
path = %q

[channel.ch]
far = "imap.cy"
near = "maildir.local"
expunge = "both"
`, cy.Host, cy.Port, e.mail))
	raw, err := imapclient.DialInsecure(cy.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	if err := raw.Login("dave", "dave-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, c: raw}

	c.create("Lists", "Lists/go")
	c.add("INBOX", "m1", imap.FlagSeen)
	c.add("INBOX", "m2")
	c.add("INBOX", "m3", imap.FlagFlagged)
	c.add("Lists/go", "g1")
	e.mustRun("sync", "ch")
	e.wantLocal("INBOX", map[string]string{"m1": "S", "m2": "", "m3": "F"})
	e.wantLocal("Lists/go", map[string]string{"g1": ""})

	c.add("INBOX", "from-server", imap.FlagFlagged)
	c.store("INBOX", "m2", imap.StoreFlagsAdd, imap.FlagAnswered)
	c.expunge("INBOX", "m3")
	e.addLocal("INBOX", "from-mutt", "S")
	e.setLocalFlags("INBOX", "m1", "FS")
	e.removeLocal("Lists/go", "g1")
	backdate(t, e.mail, 2*time.Second)
	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←1 →1, flags ←1 →1, deleted ←1 →1")
	want := map[string]string{"m1": "FS", "m2": "R", "from-server": "F", "from-mutt": "S"}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
	e.wantLocal("Lists/go", map[string]string{})
	c.wantServer("Lists/go", map[string]string{})

	backdate(t, e.mail, 2*time.Second)
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")

	// The state gone (a new machine, a lost file): paired, not copied.
	for _, box := range []string{"INBOX", "Lists", "Lists/go"} {
		if err := os.Remove(filepath.Join(e.folder(box), engine.StateFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
	}
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
	if !strings.Contains(stdout, "4 messages already on both sides") {
		t.Errorf("sync without state: %q, want 4 messages paired", stdout)
	}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
}
