package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// ager backdates the new/ and cur/ directories of a Maildir tree that were
// modified recently, each call to a later fake time: a Maildir store does not
// vouch for a directory modified within the last second (its stamp is empty),
// and a test should not sleep to get past that.
type ager struct{ next time.Time }

func newAger() *ager { return &ager{next: time.Now().Add(-time.Hour)} }

func (a *ager) age(t testing.TB, roots ...string) {
	t.Helper()
	a.next = a.next.Add(time.Second)
	recent := time.Now().Add(-10 * time.Second)
	for _, root := range roots {
		filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || (d.Name() != "new" && d.Name() != "cur") {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.ModTime().After(recent) {
				if err := os.Chtimes(path, a.next, a.next); err != nil {
					t.Fatal(err)
				}
			}
			return nil
		})
	}
}

// noListStatus hides the statuses of a store's listing, as a server without
// LIST-STATUS does, and offers them through StatusAll instead (as store/imap
// does with pipelined STATUS).
type noListStatus struct {
	engine.Store
	sl    engine.StatusLister
	calls atomic.Int64
	mu    sync.Mutex
	asked map[string]bool // every name asked since the last reset
}

func (n *noListStatus) ListMailboxes(ctx context.Context) ([]engine.MailboxInfo, error) {
	list, err := n.Store.ListMailboxes(ctx)
	for i := range list {
		list[i].Status = nil
	}
	return list, err
}

func (n *noListStatus) StatusAll(ctx context.Context, names []string) (map[string]engine.Status, error) {
	n.calls.Add(1)
	n.mu.Lock()
	if n.asked == nil {
		n.asked = map[string]bool{}
	}
	for _, name := range names {
		n.asked[name] = true
	}
	n.mu.Unlock()
	return n.sl.StatusAll(ctx, names)
}

// TestUnchangedMailboxesAreNotOpened: a run over unchanged mailboxes decides
// from the listing and the state headers alone, opening no mailbox; a change
// on either side in one mailbox opens only that pair; an expunge pending (from
// the state) still opens it.
func TestUnchangedMailboxesAreNotOpened(t *testing.T) {
	kinds := []string{imapMaildir, maildirMaildir, imapIMAP, "imap-maildir-status"}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			base := kind
			if kind == "imap-maildir-status" {
				base = imapMaildir
			}
			p := newPairing(t, base)
			p.spec.Expunge = [2]bool{false, false}
			var nls *noListStatus
			if kind == "imap-maildir-status" {
				sl, ok := p.raw[0].(engine.StatusLister)
				if !ok {
					t.Fatal("store/imap does not implement engine.StatusLister")
				}
				nls = &noListStatus{Store: p.spec.Far, sl: sl}
				p.spec.Far = nls
			}
			a := newAger()
			var roots []string
			for _, r := range []string{"far", "near"} {
				roots = append(roots, filepath.Join(p.dir, r))
			}
			boxes := []string{"INBOX", "A", "B", "C", "D/E"}
			for i, box := range boxes {
				side := p.spec.Far
				if i%2 == 1 {
					side = p.spec.Near
				}
				addMany(t, side, box, 0, box+"1", box+"2")
			}
			opens := func() [2]int {
				return [2]int{p.far.calls.get("OpenMailbox"), p.near.calls.get("OpenMailbox")}
			}
			// run syncs and returns how many mailboxes each side opened.
			run := func() [2]int {
				t.Helper()
				o := opens()
				a.age(t, roots...)
				res := sync1(t, p, engine.RunOptions{})
				if len(res.Mailboxes) != len(boxes) {
					t.Fatalf("%d mailboxes synced, want %d", len(res.Mailboxes), len(boxes))
				}
				n := opens()
				return [2]int{n[0] - o[0], n[1] - o[1]}
			}
			// settle runs until a run opens nothing (the runs after a change
			// look at what the change did).
			settle := func() {
				t.Helper()
				for i := 0; i < 4; i++ {
					if run() == [2]int{} {
						return
					}
				}
				t.Fatal("runs keep opening mailboxes although nothing changes")
			}
			settle()
			for _, box := range boxes {
				p.check(t, box, box+"1: "+box+"2:")
			}
			if got := run(); got != [2]int{} {
				t.Fatalf("unchanged channel opened %v mailboxes (far, near)", got)
			}
			if nls != nil && nls.calls.Load() == 0 {
				t.Fatal("StatusAll was not used")
			}

			// One change on the far side in B: only B is opened, on both sides.
			engine.SetFlagsBySubject(t, p.raw[0], "B", "B1", engine.FlagSeen, 0)
			if got := run(); got != [2]int{1, 1} {
				t.Fatalf("a change in one mailbox opened %v (far, near), want one pair", got)
			}
			p.check(t, "B", "B1:S B2:")
			settle()
			// One change on the near side in D/E.
			addMany(t, p.raw[1], "D/E", 0, "E3")
			if nls != nil {
				nls.asked = nil
			}
			if got := run(); got != [2]int{1, 1} {
				t.Fatalf("a near change in one mailbox opened %v (far, near), want one pair", got)
			}
			// Its far status decides nothing: not asked; the others are.
			if nls != nil && (nls.asked["D/E"] || !nls.asked["INBOX"]) {
				t.Fatalf("far STATUS asked for %v; want every mailbox but D/E", nls.asked)
			}
			p.check(t, "D/E", "D/E1: D/E2: E3:")
			settle()

			// A message flagged deleted while expunge is off: recorded, then
			// unchanged runs still open nothing...
			engine.SetFlagsBySubject(t, p.raw[0], "C", "C2", engine.FlagDeleted, 0)
			run()
			settle()
			p.check(t, "C", "C1: C2:T")
			// ...until expunge is enabled: the pending expunge opens C alone.
			p.spec.Expunge = [2]bool{true, true}
			if got := run(); got != [2]int{1, 1} {
				t.Fatalf("pending expunge opened %v (far, near), want one pair", got)
			}
			p.check(t, "C", "C1:")
			settle()
			if got := run(); got != [2]int{} {
				t.Fatalf("unchanged channel opened %v mailboxes at the end", got)
			}
		})
	}
}

// TestSharedNearFolderIsRefused: two channels whose near folders are one
// directory would share a state file; the second one stops with an error
// naming the owner instead of re-pairing the messages against its own far
// mailbox.
func TestSharedNearFolderIsRefused(t *testing.T) {
	dir := t.TempDir()
	near := filepath.Join(dir, "near")
	a := engine.TestSpecFor(filepath.Join(dir, "a"), newMaildirStore(t, "work", filepath.Join(dir, "work")), newMaildirStore(t, "local", near))
	a.Name = "work-mail"
	b := engine.TestSpecFor(filepath.Join(dir, "b"), newMaildirStore(t, "home", filepath.Join(dir, "home")), newMaildirStore(t, "local", near))
	b.Name = "home-mail"
	b.Mailboxes = []string{"INBOX"}
	addMany(t, a.Far, "INBOX", 0, "w1", "w2")
	addMany(t, b.Far, "INBOX", 0, "h1")
	engine.MustSync(t, a, engine.RunOptions{})
	before := engine.ViewBox(t, a.Near, "INBOX")

	for _, dry := range []bool{true, false} {
		res := engine.SyncChannel(context.Background(), b, engine.RunOptions{DryRun: dry})
		err := mailboxErr(res)
		if !errors.Is(err, engine.ErrForeignState) {
			t.Fatalf("dry=%v: want ErrForeignState, got %v", dry, err)
		}
		for _, want := range []string{`"work-mail"`, "work", `"home-mail"`, "home", "different near folders", engine.StateFileName} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
	}
	if got := engine.ViewBox(t, a.Near, "INBOX"); got != before {
		t.Fatalf("near folder changed: %s -> %s", before, got)
	}
	if got := engine.ViewBox(t, b.Far, "INBOX"); got != "h1:" {
		t.Fatalf("home far changed: %s", got)
	}
	// The owner still syncs.
	engine.MustSync(t, a, engine.RunOptions{})
	checkSame(t, a, "INBOX", "w1: w2:")
}
