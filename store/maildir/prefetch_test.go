package maildir

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// A prefetched listing is what the next List reports: a file delivered after
// the prefetch finished shows up only in a later listing.
func TestPrefetchIsUsedByList(t *testing.T) {
	root := t.TempDir()
	inbox := mbsyncTree(t, root)
	s, err := New("maildir.test", root, inbox, LayoutVerbatim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mb := open(t, s, "INBOX", false)
	mb.Prefetch(t.Context())
	<-mb.pre
	writeFile(t, filepath.Join(inbox, "new", "1700000009.late.host"), "Subject: late\n\n")
	if n := len(list(t, mb)); n != 5 {
		t.Fatalf("first List: %d messages, want the 5 prefetched", n)
	}
	if n := len(list(t, mb)); n != 6 {
		t.Fatalf("second List: %d messages, want 6", n)
	}
}

// A change made through the Mailbox discards the prefetched listing: the
// List after a Commit reports the committed message, and after an Expunge
// not the removed one.
func TestPrefetchDroppedByOwnChanges(t *testing.T) {
	root := t.TempDir()
	inbox := mbsyncTree(t, root)
	s, err := New("maildir.test", root, inbox, LayoutVerbatim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mb := open(t, s, "INBOX", false)
	mb.Prefetch(t.Context())
	<-mb.pre
	x, err := mb.Stage(t.Context(), engine.NewMessage{Flags: engine.FlagSeen, Body: strings.NewReader("Subject: new\n\n")})
	if err != nil {
		t.Fatal(err)
	}
	res, err := mb.Commit(t.Context(), []engine.Staged{x})
	if err != nil || res[0].Err != nil {
		t.Fatal(err, res[0].Err)
	}
	got := list(t, mb)
	if _, ok := got[res[0].UID]; !ok || len(got) != 6 {
		t.Fatalf("after Commit: %d messages, committed UID %d listed: %v", len(got), res[0].UID, ok)
	}

	mb = open(t, s, "INBOX", false)
	mb.Prefetch(t.Context())
	<-mb.pre
	if err := mb.Expunge(t.Context(), []engine.UID{1}); err != nil {
		t.Fatal(err)
	}
	if got := list(t, mb); len(got) != 5 || got[1].UID != 0 {
		t.Fatalf("after Expunge: %d messages, UID 1 still listed: %v", len(got), got[1].UID == 1)
	}
	mb.Prefetch(t.Context())
	if err := mb.Close(); err != nil {
		t.Fatal(err)
	}
	if mb.pre != nil {
		t.Fatal("Close left a prefetch pending")
	}
}
