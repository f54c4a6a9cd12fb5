package maildir

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// A prefetched listing is what the next List reports: a file delivered after
// the prefetch finished shows up only in a later listing.
func TestPrefetchIsUsedByList(t *testing.T) {
	root := t.TempDir()
	inbox := mbsyncTree(t, root)
	s, err := New("maildir.test", root, inbox, LayoutVerbatim, Options{WatchAll: true})
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
	s, err := New("maildir.test", root, inbox, LayoutVerbatim, Options{WatchAll: true})
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

// Names read ahead by PrefetchNames serve a locate while only this Mailbox
// changed the folder since it opened (its own commits included); a change
// by anybody else (the watch sees it) makes locate read the names afresh.
func TestPrefetchNamesValidity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, mb *Mailbox, dir string)
		usable bool
	}{
		{"unchanged", func(*testing.T, *Mailbox, string) {}, true},
		{"own commit", func(t *testing.T, mb *Mailbox, _ string) {
			x, err := mb.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader("Subject: ours\n\n")})
			if err != nil {
				t.Fatal(err)
			}
			if res, err := mb.Commit(t.Context(), []engine.Staged{x}); err != nil || res[0].Err != nil {
				t.Fatal(err, res[0].Err)
			}
		}, true},
		{"delivery", func(t *testing.T, _ *Mailbox, dir string) {
			writeFile(t, filepath.Join(dir, "new", "1700000099.other.host"), "Subject: delivered\n\n")
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, mb, dir := watchedFolder(t, 5, nil)
			uids := list(t, mb) // gives the files UIDs
			mb.Close()
			if !s.freshStamps(dir) {
				t.Skip("no fresh directory timestamps here")
			}
			time.Sleep(scanGuard + 5*time.Millisecond) // the renames' mtimes are settled
			mb = open(t, s, "INBOX", false)
			defer mb.Close()
			if !mb.PrefetchNames(t.Context()) {
				t.Fatal("PrefetchNames refused on a watched folder")
			}
			<-mb.names.done
			tc.change(t, mb, dir)
			pn := mb.takeNames()
			if (pn != nil) != tc.usable {
				t.Fatalf("names usable: %v, want %v", pn != nil, tc.usable)
			}
			// Either way, the locate finds the file of the message to flag.
			mb = open(t, s, "INBOX", false)
			defer mb.Close()
			mb.PrefetchNames(t.Context())
			var u engine.UID
			for u = range uids {
				break
			}
			mb.WillTouch([]engine.UID{u})
			if err := mb.SetFlags(t.Context(), []engine.UID{u}, engine.FlagFlagged, 0); err != nil {
				t.Fatal(err)
			}
			if got := list(t, mb)[u].Flags; !got.Has(engine.FlagFlagged) {
				t.Fatalf("UID %d has flags %v after SetFlags", u, got)
			}
		})
	}
}
