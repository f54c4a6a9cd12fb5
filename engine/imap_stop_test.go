package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// cancelOnCreate is a store whose CreateMailbox comes with Ctrl-C.
type cancelOnCreate struct {
	engine.Store
	cancel func()
}

func (c cancelOnCreate) CreateMailbox(ctx context.Context, name string) error {
	c.cancel()
	return c.Store.CreateMailbox(ctx, name)
}

// TestCancelWhileCreating: interrupted while a mailbox is created on the
// other side, the run says that mailbox was interrupted — not "context
// canceled" from the CREATE command — and the next run creates and fills
// it. TestCancelMidRun hit this now and then.
func TestCancelWhileCreating(t *testing.T) {
	needDovecot(t)
	p := newPairing(t, imapIMAP)
	addMany(t, p.spec.Far, "Other", 0, "o1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := engine.TestSpecFor(p.dir, p.raw[0], cancelOnCreate{p.raw[1], cancel})
	res := engine.SyncChannel(ctx, spec, engine.RunOptions{})
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Other" && (m.Err == nil || m.Err.Error() != "mailbox Other: interrupted") {
			t.Fatalf("mailbox Other: %v, want it interrupted and nothing else", m.Err)
		}
	}
	if !errors.Is(res.Err, engine.ErrStopped) {
		t.Fatalf("channel error %v does not wrap ErrStopped", res.Err)
	}
	p.reopen(t)
	sync1(t, p, engine.RunOptions{})
	p.check(t, "Other", "o1:")
}

// TestCancelMidRun is Ctrl-C: the context is cancelled while messages are
// being copied (pulled into the Maildir or pushed to Dovecot). The run
// finishes or abandons the current message cleanly, writes the state (no
// journal is left), reports an error wrapping ErrStopped, leaves nothing in
// tmp/ or the spool, and the next run completes without duplicates.
func TestCancelMidRun(t *testing.T) {
	needDovecot(t)
	for _, kind := range []string{imapMaildir, imapIMAP} {
		for _, side := range []string{"near", "far"} {
			t.Run(kind+"/"+side, func(t *testing.T) {
				p := newPairing(t, kind)
				addMany(t, p.spec.Far, "INBOX", engine.FlagSeen, names("f", 25)...)
				addMany(t, p.spec.Near, "INBOX", 0, names("n", 25)...)
				addMany(t, p.spec.Far, "Other", 0, "o1")
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				w := p.near
				if side == "far" {
					w = p.far
				}
				w.staged.Store(0)
				w.beforeStage = func(n int) {
					if n == 10 {
						cancel()
					}
				}
				res := engine.SyncChannel(ctx, p.spec, engine.RunOptions{})
				if !errors.Is(res.Err, engine.ErrStopped) {
					t.Fatalf("channel error %v does not wrap ErrStopped", res.Err)
				}
				stopped := false
				for _, m := range res.Mailboxes {
					stopped = stopped || errors.Is(m.Err, engine.ErrStopped)
					// What failed because of the interruption is that one
					// fact, not "context canceled" from some command.
					if m.Err != nil && m.Err.Error() != "mailbox "+m.Mailbox+": interrupted" {
						t.Errorf("mailbox %s: error %q, want it interrupted and nothing else", m.Mailbox, m.Err)
					}
				}
				if !stopped {
					t.Fatalf("no mailbox reports ErrStopped: %+v", res.Mailboxes)
				}
				p.noTmpLeft(t)
				if js := journals(t, p); len(js) > 0 {
					t.Fatalf("journal left behind: %v", js)
				}
				if _, err := os.Stat(statePathOf(t, p, "INBOX")); err != nil {
					t.Fatalf("no state written: %v", err)
				}
				p.reopen(t)
				res = sync1(t, p, engine.RunOptions{})
				var parts []string
				for _, s := range names("f", 25) {
					parts = append(parts, s+":S")
				}
				for _, s := range names("n", 25) {
					parts = append(parts, s+":")
				}
				want := strings.Join(parts, " ")
				p.check(t, "INBOX", want)
				p.check(t, "Other", "o1:")
				res = sync1(t, p, engine.RunOptions{})
				if !zeroCounts(res.Counts) {
					t.Fatalf("not idempotent after the stopped run: %+v", res.Counts)
				}
				p.noTmpLeft(t)
			})
		}
	}
}

func statePathOf(t testing.TB, p *pairing, box string) string {
	t.Helper()
	path, err := engine.StatePath(p.spec, box)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDryRunDovecot: a dry run with work of every kind to do (copies,
// flags, deletions both ways, a mailbox to create) changes nothing: the
// server's mailboxes (list, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, UIDs and
// flags) and the local tree (names, sizes, times of every file) are the same
// before and after, and it reports what it would do.
func TestDryRunDovecot(t *testing.T) {
	needDovecot(t)
	for _, kind := range []string{imapMaildir, imapIMAP} {
		t.Run(kind, func(t *testing.T) {
			p := newPairing(t, kind)
			engine.CrashScenarioSetup(t, p.spec)
			addMany(t, p.spec.Far, "OnlyFar", 0, "x1")
			snap := func() string {
				var b strings.Builder
				fmt.Fprintf(&b, "far:\n%s", mailboxSnapshot(t, p.raw[0]))
				if kind == imapIMAP {
					fmt.Fprintf(&b, "near:\n%s", mailboxSnapshot(t, p.raw[1]))
				}
				fmt.Fprintf(&b, "tree:\n%s\n", treeSnapshot(t, p.dir))
				return b.String()
			}
			before := snap()
			writes := func() int {
				return p.far.calls.get("Commit", "SetFlags", "Expunge") + p.near.calls.get("Commit", "SetFlags", "Expunge")
			}
			w0 := writes()
			res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{DryRun: true})
			if err := mailboxErr(res); err != nil {
				t.Fatal(err)
			}
			if res.Copied[engine.Near] < 4 || res.Copied[engine.Far] < 3 || res.Created[engine.Near] != 1 {
				t.Fatalf("dry run reports %+v", res.Counts)
			}
			var planned int
			for _, m := range res.Mailboxes {
				if m.Plan != nil {
					planned++
				}
			}
			if planned == 0 {
				t.Fatal("dry run returned no plans")
			}
			if w := writes() - w0; w != 0 {
				t.Fatalf("dry run made %d writing calls", w)
			}
			if after := snap(); after != before {
				t.Fatalf("dry run changed something:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			// The real run then does it.
			sync1(t, p, engine.RunOptions{})
			p.check(t, "OnlyFar", "x1:")
		})
	}
}

// TestSpoolOfKilledRunIsCleaned: a run killed after staging messages for
// APPEND must not leave spool files (quixysync-spool-*.eml in
// Config.SpoolDir) behind for good. (It failed until store/imap unlinked
// spool files at creation.)
func TestSpoolOfKilledRunIsCleaned(t *testing.T) {
	needDovecot(t)
	p := newPairing(t, imapMaildir)
	addMany(t, p.spec.Near, "INBOX", 0, names("n", 5)...)
	// Crash after the copy intents: the messages are staged (spooled), not
	// yet appended.
	engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{CrashAfter: 3})
	p.reopen(t)
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", "n00: n01: n02: n03: n04:")
	left, _ := filepath.Glob(filepath.Join(p.spool, "*"))
	if len(left) > 0 {
		t.Fatalf("store/imap: %d spool files of the killed run are never removed: %v", len(left), left)
	}
}
