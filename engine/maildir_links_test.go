package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// A second hard link to a synced message file, under the same base name
// (another info part, or the same name in cur/ beside new/: what ln or
// cp -l does, or a tool that links instead of copying): two files carry the
// message's ",U=", both with a ctime after the last sync, since a link
// changes the inode's. The ctime rule found no owner and renumbered both:
// the far copy was removed as gone (or kept flagged deleted) and the message
// uploaded twice. They are one file: either may keep the UID, and only the
// other is new.
func TestMaildirHardLinkKeepsThePair(t *testing.T) {
	for _, to := range []string{"new", "cur"} {
		t.Run(to, func(t *testing.T) {
			dir := t.TempDir()
			spec := maildirSpec(t, dir)
			engine.AddMsg(t, spec.Far, "A", "a1", 0)
			engine.MustSync(t, spec, engine.RunOptions{})
			a1 := onlyMessageFile(t, filepath.Join(dir, "near", "A"))
			if !strings.Contains(a1, "/new/") {
				t.Fatalf("want a1 in new/: %s", a1)
			}
			time.Sleep(20 * time.Millisecond) // after the state save, for the ctimes
			link := filepath.Join(dir, "near", "A", "cur", filepath.Base(a1))
			if to == "new" {
				link = a1 + "S"
			}
			if err := os.Link(a1, link); err != nil {
				t.Fatal(err)
			}
			farUID := engine.FindUID(t, spec.Far, "A", "a1")
			res := engine.MustSync(t, spec, engine.RunOptions{})
			if m := res.Mailboxes[0]; m.Deleted != [2]int{} || m.Copied != [2]int{1, 0} {
				t.Errorf("want the link copied up once and nothing deleted: %+v", m)
			}
			if v := engine.ViewBox(t, spec.Far, "A"); v != "a1: a1:" && v != "a1: a1:S" {
				t.Errorf("far A: %q", v)
			}
			if !hasUID(t, spec.Far, "A", farUID) {
				t.Errorf("the far message a1 (UID %d) was replaced", farUID)
			}
			checkIdle(t, spec)
		})
	}
}

// hasUID says whether box of s holds a message with UID u.
func hasUID(t *testing.T, s engine.Store, box string, u engine.UID) bool {
	t.Helper()
	ctx := context.Background()
	mb, err := s.OpenMailbox(ctx, box, true)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	msgs, _, err := mb.List(ctx, engine.ListQuery{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.UID == u {
			return true
		}
	}
	return false
}
