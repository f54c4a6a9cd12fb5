package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// After DeferSync, SetFlags and Expunge leave the directory fsyncs to Flush
// (or Close); without it they sync at once.
func TestDeferSyncFlush(t *testing.T) {
	root := t.TempDir()
	inbox := mbsyncTree(t, root)
	s, err := New("maildir.test", root, inbox, LayoutVerbatim, Options{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	mb := open(t, s, "INBOX", false)
	if err := mb.SetFlags(t.Context(), []engine.UID{1}, engine.FlagFlagged, 0); err != nil {
		t.Fatal(err)
	}
	if mb.unsynced != nil {
		t.Fatalf("without DeferSync: %v left unsynced", mb.unsynced)
	}
	mb.DeferSync()
	if err := mb.SetFlags(t.Context(), []engine.UID{2}, engine.FlagFlagged, 0); err != nil {
		t.Fatal(err)
	}
	if err := mb.Expunge(t.Context(), []engine.UID{4}); err != nil {
		t.Fatal(err)
	}
	if !mb.unsynced["cur"] || !mb.unsynced["new"] {
		t.Fatalf("deferred: %v, want cur and new", mb.unsynced)
	}
	if err := mb.Flush(); err != nil || mb.unsynced != nil {
		t.Fatalf("Flush: %v, left %v", err, mb.unsynced)
	}
	if err := mb.SetFlags(t.Context(), []engine.UID{1}, 0, engine.FlagFlagged); err != nil {
		t.Fatal(err)
	}
	if err := mb.Close(); err != nil || mb.unsynced != nil {
		t.Fatalf("Close: %v, left %v", err, mb.unsynced)
	}
	got := list(t, open(t, s, "INBOX", true))
	if got[1].Flags != engine.FlagSeen|engine.FlagReplied || got[2].Flags&engine.FlagFlagged == 0 || got[4].UID != 0 {
		t.Fatalf("listing after: %+v", got)
	}
}

// ExpectCopies makes the first reservation cover the announced messages:
// one .uidvalidity write, no UIDs reserved beyond them.
func TestExpectCopiesReservesOnce(t *testing.T) {
	for _, hint := range []int{0, 100} {
		t.Run(fmt.Sprint(hint), func(t *testing.T) {
			root := t.TempDir()
			s, err := New("maildir.test", root, "", LayoutVerbatim, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.CreateMailbox(t.Context(), "A"); err != nil {
				t.Fatal(err)
			}
			mb := open(t, s, "A", false)
			if hint > 0 {
				mb.ExpectCopies(hint)
			}
			var last engine.UID
			for i := range 100 {
				x, err := mb.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader(fmt.Sprintf("m%d\n", i))})
				if err != nil {
					t.Fatal(err)
				}
				last = x.UID()
			}
			b, err := os.ReadFile(filepath.Join(root, "A", ".uidvalidity"))
			if err != nil {
				t.Fatal(err)
			}
			var v, reserved uint32
			fmt.Sscanf(string(b), "%d\n%d\n", &v, &reserved)
			if hint > 0 && engine.UID(reserved) != last {
				t.Fatalf("hint %d: reserved up to %d, last UID %d: want exactly the 100", hint, reserved, last)
			}
			if hint == 0 && engine.UID(reserved) == last {
				t.Fatalf("without a hint the reservations grow 1, 8, 64, 512: reserved %d", reserved)
			}
		})
	}
}
