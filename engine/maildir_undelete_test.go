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

// A message the user deletes locally and takes back while the run goes on
// stays, on both sides: the run had listed it \Deleted and planned its
// removal, the far partner's after it (mbsync looks at the flag again too).
func TestUndeleteDuringRunKeepsMessage(t *testing.T) {
	dir := t.TempDir()
	far, err := maildir.New("far", filepath.Join(dir, "far"), "", maildir.LayoutVerbatim, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	md, err := maildir.New("near", filepath.Join(dir, "near"), "", maildir.LayoutVerbatim, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := md.MailboxDir("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	near := &undeletingStore{Store: md, dir: inbox}
	spec := engine.TestSpecFor(dir, far, near)
	engine.AddMsg(t, far, "INBOX", "precious", engine.FlagSeen)
	engine.AddMsg(t, far, "INBOX", "junk", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	engine.SetFlagsBySubject(t, md, "INBOX", "precious", engine.FlagDeleted, 0)
	near.armed = true
	res := engine.MustSync(t, spec, engine.RunOptions{})
	if near.armed {
		t.Fatal("the run removed nothing on the near side: the test did not undelete")
	}
	if f, n := engine.ViewBox(t, far, "INBOX"), engine.ViewBox(t, md, "INBOX"); f != "junk: precious:S" || n != "junk: precious:S" {
		t.Fatalf("far %q, near %q after the undelete during the run: want junk: precious:S on both (%+v)", f, n, res.Counts)
	}
	// The next run has nothing to carry over.
	engine.MustSync(t, spec, engine.RunOptions{})
	if f, n := engine.ViewBox(t, far, "INBOX"), engine.ViewBox(t, md, "INBOX"); f != "junk: precious:S" || n != "junk: precious:S" {
		t.Fatalf("far %q, near %q on the run after: want junk: precious:S on both", f, n)
	}
	// A removal not taken back goes through, on both sides.
	engine.SetFlagsBySubject(t, md, "INBOX", "junk", engine.FlagDeleted, 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	if f, n := engine.ViewBox(t, far, "INBOX"), engine.ViewBox(t, md, "INBOX"); f != "precious:S" || n != "precious:S" {
		t.Fatalf("far %q, near %q after removing junk: want precious:S on both", f, n)
	}
}

// The same on the far side (Maildir↔Maildir): the far removal goes first,
// and a far message kept because its \Deleted was taken back keeps its near
// partner too.
func TestUndeleteDuringRunKeepsPartner(t *testing.T) {
	dir := t.TempDir()
	md, err := maildir.New("far", filepath.Join(dir, "far"), "", maildir.LayoutVerbatim, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	near, err := maildir.New("near", filepath.Join(dir, "near"), "", maildir.LayoutVerbatim, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := md.MailboxDir("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	far := &undeletingStore{Store: md, dir: inbox}
	spec := engine.TestSpecFor(dir, far, near)
	engine.AddMsg(t, md, "INBOX", "precious", engine.FlagSeen)
	engine.AddMsg(t, md, "INBOX", "junk", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	engine.SetFlagsBySubject(t, md, "INBOX", "precious", engine.FlagDeleted, 0)
	far.armed = true
	engine.MustSync(t, spec, engine.RunOptions{})
	if far.armed {
		t.Fatal("the run removed nothing on the far side: the test did not undelete")
	}
	for i := range 2 {
		if f, n := engine.ViewBox(t, md, "INBOX"), engine.ViewBox(t, near, "INBOX"); f != "junk: precious:S" || n != "junk: precious:S" {
			t.Fatalf("run %d: far %q, near %q: want junk: precious:S on both", i+1, f, n)
		}
		engine.MustSync(t, spec, engine.RunOptions{})
	}
}
