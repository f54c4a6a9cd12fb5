package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
)

// undeletingStore is a Maildir whose user takes a \Deleted back (mutt's
// undelete: the file loses its T) just before the run removes the file.
type undeletingStore struct {
	*maildir.Store
	dir   string // the folder's directory
	armed bool
}

func (s *undeletingStore) OpenMailbox(ctx context.Context, name string, readOnly bool) (engine.Mailbox, error) {
	mb, err := s.Store.OpenMailbox(ctx, name, readOnly)
	if err != nil {
		return nil, err
	}
	return &undeletingMailbox{mb, s}, nil
}

type undeletingMailbox struct {
	engine.Mailbox
	s *undeletingStore
}

func (m *undeletingMailbox) Expunge(ctx context.Context, uids []engine.UID) error {
	if m.s.armed {
		m.s.armed = false
		cur := filepath.Join(m.s.dir, "cur")
		ents, err := os.ReadDir(cur)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if base, flags, ok := strings.Cut(e.Name(), ":2,"); ok && strings.Contains(flags, "T") {
				if err := os.Rename(filepath.Join(cur, e.Name()), filepath.Join(cur, base+":2,"+strings.ReplaceAll(flags, "T", ""))); err != nil {
					return err
				}
			}
		}
	}
	return m.Mailbox.Expunge(ctx, uids)
}

// A message the user deletes and takes back while the run goes on stays,
// on both sides: the run had listed it \Deleted and planned its removal.
// On the near side the far partner's removal comes after it (mbsync looks
// at the flag again too); on the far side (Maildir↔Maildir) the far removal
// goes first, and a far message kept keeps its near partner too. A removal
// not taken back goes through, on both sides.
func TestUndeleteDuringRunKeepsMessage(t *testing.T) {
	for _, side := range []engine.Side{engine.Near, engine.Far} {
		t.Run(side.String(), func(t *testing.T) {
			dir := t.TempDir()
			var stores [2]*maildir.Store
			for s, name := range []string{"far", "near"} {
				st, err := maildir.New(name, filepath.Join(dir, name), "", maildir.LayoutVerbatim, maildir.Options{})
				if err != nil {
					t.Fatal(err)
				}
				stores[s] = st
			}
			inbox, err := stores[side].MailboxDir("INBOX")
			if err != nil {
				t.Fatal(err)
			}
			user := &undeletingStore{Store: stores[side], dir: inbox}
			spec := engine.TestSpecFor(dir, stores[engine.Far], stores[engine.Near])
			if side == engine.Far {
				spec.Far = user
			} else {
				spec.Near = user
			}
			engine.AddMsg(t, stores[engine.Far], "INBOX", "precious", engine.FlagSeen)
			engine.AddMsg(t, stores[engine.Far], "INBOX", "junk", 0)
			engine.MustSync(t, spec, engine.RunOptions{})
			engine.SetFlagsBySubject(t, stores[side], "INBOX", "precious", engine.FlagDeleted, 0)
			user.armed = true
			engine.MustSync(t, spec, engine.RunOptions{})
			if user.armed {
				t.Fatal("the run removed nothing on that side: the test did not undelete")
			}
			check := func(when, want string) {
				t.Helper()
				if f, n := engine.ViewBox(t, stores[engine.Far], "INBOX"), engine.ViewBox(t, stores[engine.Near], "INBOX"); f != want || n != want {
					t.Fatalf("%s: far %q, near %q, want %q on both", when, f, n, want)
				}
			}
			check("after the undelete during the run", "junk: precious:S")
			engine.MustSync(t, spec, engine.RunOptions{})
			check("on the run after", "junk: precious:S")
			engine.SetFlagsBySubject(t, stores[side], "INBOX", "junk", engine.FlagDeleted, 0)
			engine.MustSync(t, spec, engine.RunOptions{})
			check("after removing junk", "precious:S")
		})
	}
}
