package maildir_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
)

// A folder quixysync itself just wrote is rescanned by the next run only
// while the write is within the stamp's 1 s guard; after that the runs skip
// the mailbox as unchanged — at once where the folder could vouch for the
// stamp after its own writes (engine.Restamper; engine/restamp_test.go
// insists on that), else after one more listing. Real engine runs between
// two Maildir trees.
func TestStampAfterOwnWrites(t *testing.T) {
	t.Parallel() // mostly sleeps
	dir := t.TempDir()
	newStore := func(side string) *maildir.Store {
		s, err := maildir.New(side, filepath.Join(dir, side), "", maildir.LayoutVerbatim, maildir.Options{Fsync: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	far, near := newStore("far"), newStore("near")
	ctx := context.Background()
	if err := far.CreateMailbox(ctx, "INBOX"); err != nil {
		t.Fatal(err)
	}
	farDir := filepath.Join(dir, "far", "INBOX")
	for i := 0; i < 3; i++ {
		p := filepath.Join(farDir, "cur", fmt.Sprintf("17000000%02d.x%d.host:2,S", i, i))
		if err := os.WriteFile(p, []byte(fmt.Sprintf("Subject: %d\n\nbody\n", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	spec := engine.ChannelSpec{
		Name: "stamp", Far: far, Near: near,
		Pull: engine.OpAll, Push: engine.OpAll, Create: [2]bool{true, true},
		StateDir: filepath.Join(dir, "state"), LockDir: filepath.Join(dir, "locks"),
	}
	run := func(what string) engine.MailboxResult {
		t.Helper()
		res := engine.SyncChannel(ctx, spec, engine.RunOptions{})
		if res.Err != nil || len(res.Mailboxes) != 1 || res.Mailboxes[0].Err != nil {
			t.Fatalf("%s: %+v", what, res)
		}
		return res.Mailboxes[0]
	}
	stamp := func(side *maildir.Store) string {
		mb, err := side.OpenMailbox(ctx, "INBOX", true)
		if err != nil {
			t.Fatal(err)
		}
		defer mb.Close()
		return mb.Status().Stamp
	}

	if r := run("first run"); r.Copied[engine.Near] != 3 {
		t.Fatalf("first run copied %v", r.Copied)
	}
	// Right after: the near side was written (and the far side got UIDs in
	// its names) within the guard: no stamp, so the run looks at everything.
	if s := stamp(near); s != "" {
		t.Errorf("near stamp %q right after writing it", s)
	}
	if r := run("run within 1 s"); r.Skipped != "" {
		t.Errorf("run within 1 s of the writes skipped the mailbox: %q", r.Skipped)
	}
	time.Sleep(1100 * time.Millisecond)
	s1, s2 := stamp(near), stamp(far)
	if s1 == "" || s2 == "" {
		t.Fatalf("more than 1 s after the writes: stamps near %q far %q, want valid ones", s1, s2)
	}
	if r := run("run after 1 s"); r.Skipped != "unchanged" && (r.Skipped != "" || r.Copied != [2]int{} || r.Flagged != [2]int{}) {
		t.Errorf("first run with valid stamps: %+v, want it skipped or a listing that changes nothing", r)
	}
	if s := stamp(near); s != s1 {
		t.Errorf("a run that changed nothing changed the near stamp: %q → %q", s1, s)
	}
	if r := run("next run"); r.Skipped != "unchanged" {
		t.Errorf("run after a clean listing: skipped %q, want \"unchanged\"", r.Skipped)
	}
	if r := run("and the next"); r.Skipped != "unchanged" {
		t.Errorf("second clean run: skipped %q, want \"unchanged\"", r.Skipped)
	}
}
