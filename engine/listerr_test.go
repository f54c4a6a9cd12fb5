package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// failingLister is a store whose listing fails with an error that, as the
// real stores' do, starts with the store's name.
type failingLister struct{ *memStore }

func (f failingLister) ListMailboxes(ctx context.Context) ([]MailboxInfo, error) {
	return nil, errors.New(f.name + ": connecting to 127.0.0.1:1: connection refused")
}

// A channel that cannot list a side names that store once, not twice.
func TestListErrorNamesTheStoreOnce(t *testing.T) {
	far, near := failingLister{newMemStore("imap.w")}, newMemStore("maildir.l")
	res := SyncChannel(context.Background(), testSpec(t.TempDir(), far, near), RunOptions{})
	if res.Err == nil {
		t.Fatal("no error from a side that cannot be listed")
	}
	msg := res.Err.Error()
	if !strings.HasPrefix(msg, "channel test: listing mailboxes") || strings.Count(msg, "imap.w") != 1 {
		t.Errorf("got %q, want the channel, then the store named once", msg)
	}
}

// omittingLister is a store whose listing leaves out the mailboxes in omit
// although they exist, as a server's stale list index can.
type omittingLister struct {
	*memStore
	omit map[string]bool
}

func (o omittingLister) ListMailboxes(ctx context.Context) ([]MailboxInfo, error) {
	all, err := o.memStore.ListMailboxes(ctx)
	var out []MailboxInfo
	for _, mi := range all {
		if !o.omit[mi.Name] {
			out = append(out, mi)
		}
	}
	return out, err
}

// A mailbox synced before that one side's listing leaves out, but that
// opens there by name, is synced as usual: neither stopped by the guard
// (holding messages) nor taken for removed (empty, with remove on, the
// other side would be deleted).
func TestMailboxMissingFromListingOpensByName(t *testing.T) {
	far, mem := newMemStore("far"), newMemStore("near")
	near := omittingLister{mem, map[string]bool{}}
	spec := testSpec(t.TempDir(), far, near)
	spec.Remove = [2]bool{true, true}
	addMsg(t, far, "Work", "w1", 0)
	addMsg(t, far, "Empty", "e1", 0)
	mustSync(t, spec, RunOptions{})
	expungeBySubject(t, far, "Empty", "e1")
	mustSync(t, spec, RunOptions{})
	if n := len(subjects(t, mem, "Empty")); n != 0 {
		t.Fatalf("near Empty: %d messages, want 0", n)
	}

	near.omit["Work"], near.omit["Empty"] = true, true
	addMsg(t, mem, "Work", "w2", 0)
	res := SyncChannel(context.Background(), spec, RunOptions{})
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			t.Errorf("%s: %v", m.Mailbox, m.Err)
		}
	}
	if got := subjects(t, far, "Work"); len(got) != 2 {
		t.Errorf("far Work holds %v, want w1 and w2 (the new near message copied)", got)
	}
	far.mu.Lock()
	_, kept := far.boxes["Empty"]
	far.mu.Unlock()
	if !kept {
		t.Error("far Empty removed although the near one exists")
	}

	// Gone for real: the guard and the removal work as before.
	mem.mu.Lock()
	delete(mem.boxes, "Work")
	delete(mem.boxes, "Empty")
	mem.mu.Unlock()
	res = SyncChannel(context.Background(), spec, RunOptions{})
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Work" && !errors.Is(m.Err, ErrGuard) {
			t.Errorf("Work gone on the near side: %v, want the guard", m.Err)
		}
	}
	far.mu.Lock()
	_, kept = far.boxes["Empty"]
	far.mu.Unlock()
	if kept {
		t.Error("far Empty kept although the near one is gone")
	}
}

// A mailbox deleted by hand on both sides leaves its state behind (outside
// the folders, where an IMAP near side keeps it); one made anew under the
// same name is another mailbox (another UIDVALIDITY). The old state must not
// make it look synced before and now vanished on the other side: empty and
// with remove on, it was deleted; holding mail, the guard stopped it at
// every run. It is synced as a mailbox seen for the first time.
func TestMailboxMadeAnewIsNotTheOldOne(t *testing.T) {
	for _, tc := range []struct {
		name    string
		remove  bool
		subject string // a message in the new mailbox, or none
	}{
		{"empty with remove", true, ""},
		{"holding mail", false, "new1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			far, near := newMemStore("far"), newMemStore("near")
			spec := testSpec(t.TempDir(), far, near)
			spec.Remove = [2]bool{tc.remove, tc.remove}
			addMsg(t, far, "Project", "p1", 0)
			mustSync(t, spec, RunOptions{})
			for _, s := range []*memStore{far, near} {
				if err := s.DeleteMailbox(context.Background(), "Project"); err != nil {
					// Not empty: take it away as a user's rm -r would.
					s.mu.Lock()
					delete(s.boxes, "Project")
					s.mu.Unlock()
				}
			}
			if err := far.CreateMailbox(context.Background(), "Project"); err != nil {
				t.Fatal(err)
			}
			want := ""
			if tc.subject != "" {
				addMsg(t, far, "Project", tc.subject, 0)
				want = tc.subject + ":"
			}
			// A dry run plans it as the run does: created, its mail copied
			// (without the old state, which it leaves in place).
			dry := mustSync(t, spec, RunOptions{DryRun: true})
			if dry.Created[Near] != 1 || (tc.subject != "") != (dry.Copied[Near] == 1) {
				t.Fatalf("dry run: %+v", dry)
			}
			res := mustSync(t, spec, RunOptions{})
			if res.Created[Near] != 1 {
				t.Fatalf("the new mailbox was not created on the near side: %+v", res)
			}
			checkEqual(t, spec, "Project", want)
			if res := mustSync(t, spec, RunOptions{}); res.Counts != (Counts{}) {
				t.Fatalf("not settled: %+v", res.Counts)
			}
		})
	}
}

// A dry run says what the run would do with a mailbox synced before that
// vanished on one side, remove on: remove the other side's when it is
// empty, else (it holds mail) create it again and copy the mail back — not
// "would remove" where the run then creates and copies.
func TestDryRunOfVanishedMailboxSaysWhatTheRunDoes(t *testing.T) {
	for _, withMail := range []bool{false, true} {
		t.Run(fmt.Sprint("mail=", withMail), func(t *testing.T) {
			far, near := newMemStore("far"), newMemStore("near")
			spec := testSpec(t.TempDir(), far, near)
			spec.Remove = [2]bool{true, true}
			if err := far.CreateMailbox(context.Background(), "A"); err != nil {
				t.Fatal(err)
			}
			mustSync(t, spec, RunOptions{})
			if err := near.DeleteMailbox(context.Background(), "A"); err != nil {
				t.Fatal(err)
			}
			if withMail {
				addMsg(t, far, "A", "a1", 0)
			}
			dry := SyncChannel(context.Background(), spec, RunOptions{DryRun: true})
			real := SyncChannel(context.Background(), spec, RunOptions{})
			if len(dry.Mailboxes) != 1 || len(real.Mailboxes) != 1 {
				t.Fatalf("dry %+v, real %+v", dry, real)
			}
			d, r := dry.Mailboxes[0], real.Mailboxes[0]
			if d.Created != r.Created || d.Copied != r.Copied || (d.Err == nil) != (r.Err == nil) ||
				strings.HasPrefix(d.Skipped, "would remove") != strings.HasPrefix(r.Skipped, "removed") {
				t.Fatalf("dry run: created %v copied %v %q %v; the run: created %v copied %v %q %v",
					d.Created, d.Copied, d.Skipped, d.Err, r.Created, r.Copied, r.Skipped, r.Err)
			}
		})
	}
}
