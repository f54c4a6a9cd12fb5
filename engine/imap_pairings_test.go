package engine_test

import (
	"context"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

func sync1(t testing.TB, p *pairing, opt engine.RunOptions) engine.ChannelResult {
	t.Helper()
	res := engine.SyncChannel(context.Background(), p.spec, opt)
	if err := mailboxErr(res); err != nil {
		t.Fatalf("%s: sync: %v", p.kind, err)
	}
	return res
}

// TestPairingSemantics runs the basic semantics on every pairing: new
// messages, flags and deletions both ways, idempotence and cost of a second
// and third run.
func TestPairingSemantics(t *testing.T) {
	for _, kind := range allPairings {
		t.Run(kind, func(t *testing.T) {
			p := newPairing(t, kind)
			far, near := p.spec.Far, p.spec.Near
			addMany(t, far, "INBOX", engine.FlagSeen, "a")
			addMany(t, far, "INBOX", 0, "b")
			addMany(t, near, "INBOX", engine.FlagFlagged, "c")
			addMany(t, near, "Sent", engine.FlagSeen, "s1", "s2")
			addMany(t, far, "Lists/go", 0, "g1")

			res := sync1(t, p, engine.RunOptions{})
			if res.Copied != [2]int{3, 3} || res.Created != [2]int{1, 1} {
				t.Fatalf("first run counts: %+v", res.Counts)
			}
			p.check(t, "INBOX", "a:S b: c:F")
			p.check(t, "Sent", "s1:S s2:S")
			p.check(t, "Lists/go", "g1:")

			// Flags both ways, including a change on both sides of one message.
			engine.SetFlagsBySubject(t, far, "INBOX", "b", engine.FlagSeen|engine.FlagReplied, 0)
			engine.SetFlagsBySubject(t, near, "INBOX", "a", engine.FlagFlagged, engine.FlagSeen)
			engine.SetFlagsBySubject(t, near, "INBOX", "b", engine.FlagFlagged, 0)
			engine.SetFlagsBySubject(t, far, "Sent", "s2", engine.FlagPassed, 0)
			res = sync1(t, p, engine.RunOptions{})
			p.check(t, "INBOX", "a:F b:FRS c:F")
			p.check(t, "Sent", "s1:S s2:PS")
			if res.Copied != [2]int{} || res.Flagged != [2]int{2, 2} {
				t.Fatalf("flag run counts: %+v", res.Counts)
			}

			// Idempotence: the next run does nothing and fetches nothing; it may
			// list incrementally what its predecessor changed.
			// (A Maildir side has no change counter: it is read whole, which
			// costs a directory listing, not a download.)
			costly := func(w *wrapStore) int {
				if _, local := w.Store.(engine.LocalStore); local {
					return w.calls.get("Fetch")
				}
				return w.calls.get("Fetch", "ListAll")
			}
			f0, n0 := costly(p.far), costly(p.near)
			res = sync1(t, p, engine.RunOptions{})
			if !zeroCounts(res.Counts) {
				t.Fatalf("second run not idempotent: %+v", res.Counts)
			}
			if f, n := costly(p.far)-f0, costly(p.near)-n0; f+n != 0 {
				t.Fatalf("second run fetched or listed everything: far %d, near %d calls", f, n)
			}
			// The run after that finds the IMAP side unchanged by its stamp
			// (CONDSTORE) and neither lists nor fetches there.
			f0 = p.far.calls.get("Fetch", "List", "UIDs")
			res = sync1(t, p, engine.RunOptions{})
			if !zeroCounts(res.Counts) {
				t.Fatalf("third run not idempotent: %+v", res.Counts)
			}
			if kind != maildirMaildir {
				if f := p.far.calls.get("Fetch", "List", "UIDs") - f0; f != 0 {
					t.Fatalf("unchanged IMAP mailbox was listed or fetched (%d calls)", f)
				}
			}

			// Deletions both ways with expunge: gone on both sides.
			engine.ExpungeBySubject(t, far, "INBOX", "a")
			engine.ExpungeBySubject(t, near, "INBOX", "c")
			engine.SetFlagsBySubject(t, near, "Sent", "s1", engine.FlagDeleted, 0)
			pf0 := p.far.calls.get("PrefetchUIDs")
			res = sync1(t, p, engine.RunOptions{})
			// The far INBOX opened with fewer messages than known and none
			// new: an IMAP side asks for its UIDs along with the listing.
			if _, local := p.far.Store.(engine.LocalStore); !local && p.far.calls.get("PrefetchUIDs") == pf0 {
				t.Errorf("deletion run: the far IMAP INBOX lost a message, but its UIDs were not prefetched")
			}
			p.check(t, "INBOX", "b:FRS")
			p.check(t, "Sent", "s2:PS")
			if res.Copied != [2]int{} {
				t.Fatalf("deletion run copied: %+v", res.Counts)
			}
			res = sync1(t, p, engine.RunOptions{})
			if !zeroCounts(res.Counts) {
				t.Fatalf("run after deletions not idempotent: %+v", res.Counts)
			}

			// A new run with fresh connections agrees.
			p.reopen(t)
			res = sync1(t, p, engine.RunOptions{})
			if !zeroCounts(res.Counts) {
				t.Fatalf("run with new connections not idempotent: %+v", res.Counts)
			}
			p.check(t, "INBOX", "b:FRS")
		})
	}
}

// TestPairingDeletionsNoExpunge: without expunge a deletion becomes \Deleted
// (T) on the other side, and a deletion beats a flag change.
func TestPairingDeletionsNoExpunge(t *testing.T) {
	for _, kind := range allPairings {
		t.Run(kind, func(t *testing.T) {
			p := newPairing(t, kind)
			p.spec.Expunge = [2]bool{false, false}
			far, near := p.spec.Far, p.spec.Near
			addMany(t, far, "INBOX", 0, "a", "b", "c", "d")
			sync1(t, p, engine.RunOptions{})
			engine.ExpungeBySubject(t, far, "INBOX", "a")
			engine.ExpungeBySubject(t, near, "INBOX", "b")
			engine.SetFlagsBySubject(t, near, "INBOX", "a", engine.FlagFlagged, 0) // loses against the deletion
			engine.SetFlagsBySubject(t, far, "INBOX", "c", engine.FlagDeleted, 0)
			sync1(t, p, engine.RunOptions{})
			if got := engine.ViewBox(t, far, "INBOX"); got != "b:T c:T d:" {
				t.Fatalf("far: %s", got)
			}
			if got := engine.ViewBox(t, near, "INBOX"); got != "a:FT c:T d:" {
				t.Fatalf("near: %s", got)
			}
			res := sync1(t, p, engine.RunOptions{})
			if !zeroCounts(res.Counts) {
				t.Fatalf("not idempotent: %+v", res.Counts)
			}
			// The user takes back the deletion of b where it stayed (a
			// webmail's undelete): it is copied back.
			engine.SetFlagsBySubject(t, far, "INBOX", "b", 0, engine.FlagDeleted)
			if res := sync1(t, p, engine.RunOptions{}); res.Copied != [2]int{0, 1} {
				t.Fatalf("after the undelete: %+v", res.Counts)
			}
			if f, n := engine.ViewBox(t, far, "INBOX"), engine.ViewBox(t, near, "INBOX"); f != "b: c:T d:" || n != "a:FT b: c:T d:" {
				t.Fatalf("after the undelete:\nfar:  %s\nnear: %s", f, n)
			}
			// Turning expunge on later removes them.
			p.spec.Expunge = [2]bool{true, true}
			sync1(t, p, engine.RunOptions{})
			p.check(t, "INBOX", "b: d:")
		})
	}
}

// TestPairingPullPush: pull moves only far → near, push only near → far, and
// neither forgets what the other direction still has to do.
func TestPairingPullPush(t *testing.T) {
	for _, kind := range allPairings {
		t.Run(kind, func(t *testing.T) {
			p := newPairing(t, kind)
			far, near := p.spec.Far, p.spec.Near
			addMany(t, far, "INBOX", 0, "f1")
			addMany(t, near, "INBOX", 0, "n1")
			sync1(t, p, engine.RunOptions{})
			addMany(t, far, "INBOX", 0, "f2")
			addMany(t, near, "INBOX", 0, "n2")
			engine.SetFlagsBySubject(t, far, "INBOX", "n1", engine.FlagSeen, 0)
			engine.SetFlagsBySubject(t, near, "INBOX", "f1", engine.FlagFlagged, 0)

			res := sync1(t, p, engine.RunOptions{Mode: engine.ModePull})
			if res.Copied != [2]int{0, 1} {
				t.Fatalf("pull counts: %+v", res.Counts)
			}
			if got := engine.ViewBox(t, far, "INBOX"); got != "f1: f2: n1:S" {
				t.Fatalf("pull changed far: %s", got)
			}
			if got := engine.ViewBox(t, near, "INBOX"); got != "f1:F f2: n1:S n2:" {
				t.Fatalf("near after pull: %s", got)
			}
			res = sync1(t, p, engine.RunOptions{Mode: engine.ModePush})
			if res.Copied != [2]int{1, 0} {
				t.Fatalf("push counts: %+v", res.Counts)
			}
			p.check(t, "INBOX", "f1:F f2: n1:S n2:")
			res = sync1(t, p, engine.RunOptions{})
			if !zeroCounts(res.Counts) {
				t.Fatalf("sync after pull+push not idempotent: %+v", res.Counts)
			}
		})
	}
}

// A side's flag changes and removals go to an IMAP server in one go
// (engine.ChangeBatcher): the near side changes a flag and removes a
// message, and the far side gets both through one SetFlagsAndExpunge.
func TestFlagsAndRemovalsInOneGo(t *testing.T) {
	p := newPairing(t, imapMaildir)
	far, near := p.spec.Far, p.spec.Near
	addMany(t, far, "INBOX", 0, "a", "b", "c")
	sync1(t, p, engine.RunOptions{})
	engine.SetFlagsBySubject(t, near, "INBOX", "a", engine.FlagFlagged, 0)
	engine.ExpungeBySubject(t, near, "INBOX", "b")
	before := p.far.calls.get("SetFlagsAndExpunge")
	res := sync1(t, p, engine.RunOptions{})
	if n := p.far.calls.get("SetFlagsAndExpunge") - before; n != 1 {
		t.Errorf("%d SetFlagsAndExpunge on the far side, want 1", n)
	}
	if res.Flagged != [2]int{1, 0} || res.Deleted != [2]int{1, 0} {
		t.Errorf("counts %+v", res.Counts)
	}
	p.check(t, "INBOX", "a:F c:")
}
