package engine_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// TestReplayChecksReservedCopy: a copy into a Maildir is journaled with the
// UID it reserved, N, and the run dies before the file leaves tmp/. Before
// the next run a mail client moves in another folder's file that carries
// ",U=N" (every folder numbers from 1). Replay used to take the UID's
// presence for the copy: the far message was then never copied, the moved
// message never pushed, and its old folder's removal went to the server. The
// file at N must hold the copy's content for the copy to count as done.
func TestReplayChecksReservedCopy(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	for i := range 3 {
		engine.AddMsg(t, spec.Far, "INBOX", fmt.Sprint("old", i), 0)
		engine.AddMsg(t, spec.Near, "Other", fmt.Sprint("other", i), 0)
	}
	engine.MustSync(t, spec, engine.RunOptions{})
	engine.AddMsg(t, spec.Far, "INBOX", "newfar", 0)
	engine.SyncChannel(context.Background(), spec, engine.RunOptions{CrashAfter: 1})

	var journal string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".journal") {
			b, _ := os.ReadFile(p)
			journal += string(b)
		}
		return nil
	})
	m := regexp.MustCompile(`copy 1 near \d+ \S+ (\d+) `).FindStringSubmatch(journal)
	if m == nil {
		t.Fatalf("no journaled copy to the near side in:\n%s", journal)
	}
	inbox, err := spec.Near.(engine.LocalStore).MailboxDir("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	other, err := spec.Near.(engine.LocalStore).MailboxDir("Other")
	if err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(filepath.Join(other, "cur"))
	if err != nil || len(des) == 0 {
		des, err = os.ReadDir(filepath.Join(other, "new"))
	}
	if err != nil || len(des) == 0 {
		t.Fatalf("no file in near Other: %v", err)
	}
	src := filepath.Join(other, "cur", des[0].Name())
	if _, err := os.Stat(src); err != nil {
		src = filepath.Join(other, "new", des[0].Name())
	}
	name := regexp.MustCompile(`,U=\d+`).ReplaceAllString(des[0].Name(), ",U="+m[1])
	if err := os.Rename(src, filepath.Join(inbox, "cur", name)); err != nil {
		t.Fatal(err)
	}
	moved := engine.ViewBox(t, spec.Near, "INBOX") // its subject among old0-2
	engine.MustSync(t, spec, engine.RunOptions{})
	engine.MustSync(t, spec, engine.RunOptions{})
	if got := engine.ViewBox(t, spec.Near, "INBOX"); !strings.Contains(got, "newfar:") {
		t.Errorf("the far message whose copy the crash interrupted never reached the near side: near INBOX %s", got)
	}
	checkSame(t, spec, "INBOX", "")
	checkSame(t, spec, "Other", "")
	if f := engine.ViewBox(t, spec.Far, "INBOX"); len(strings.Fields(f)) != 5 {
		t.Errorf("far INBOX %s (near after the move: %s): want old0-2, newfar and the moved message", f, moved)
	}
}
