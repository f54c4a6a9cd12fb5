package engine_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

type rawMsg struct {
	body  string
	flags engine.Flag
}

// readBox returns every message of a mailbox with its flags, in UID order.
func readBox(t testing.TB, s engine.Store, box string) ([]rawMsg, uint32) {
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
	bodies := map[engine.UID]string{}
	var uids []engine.UID
	for _, m := range msgs {
		uids = append(uids, m.UID)
	}
	err = mb.Fetch(ctx, uids, func(u engine.UID, r io.Reader) error {
		b, err := io.ReadAll(r)
		bodies[u] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []rawMsg
	for _, m := range msgs {
		out = append(out, rawMsg{bodies[m.UID], m.Flags})
	}
	return out, mb.Status().UIDValidity
}

// recreateIMAPBox deletes a mailbox on the server and creates it again with
// the given messages: the server gives it a new UIDVALIDITY.
func recreateIMAPBox(t testing.TB, s engine.Store, box string, msgs []rawMsg) uint32 {
	t.Helper()
	ctx := context.Background()
	old, oldV := readBox(t, s, box)
	mb, err := s.OpenMailbox(ctx, box, false)
	if err != nil {
		t.Fatal(err)
	}
	uids, err := mb.UIDs(ctx, mb.Status().UIDNext)
	if err == nil && len(uids) > 0 {
		err = mb.Expunge(ctx, uids)
	}
	mb.Close()
	if err != nil {
		t.Fatal(err)
	}
	_ = old
	if err := s.DeleteMailbox(ctx, box); err != nil {
		t.Fatal(err)
	}
	putMessages(t, s, box, msgs)
	_, newV := readBox(t, s, box)
	if newV == oldV {
		t.Fatalf("the server kept UIDVALIDITY %d for the recreated mailbox", newV)
	}
	return newV
}

func putMessages(t testing.TB, s engine.Store, box string, msgs []rawMsg) {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, box); err != nil {
		t.Fatal(err)
	}
	if len(msgs) == 0 {
		return
	}
	mb, err := s.OpenMailbox(ctx, box, false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	var ss []engine.Staged
	for _, m := range msgs {
		st, err := mb.Stage(ctx, engine.NewMessage{Flags: m.flags, Body: strings.NewReader(m.body)})
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, st)
	}
	res, err := mb.Commit(ctx, ss)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}

// validitySetup syncs a mailbox "Work" of n messages, then returns what the
// far side holds.
func validitySetup(t *testing.T, p *pairing, n int) []rawMsg {
	t.Helper()
	for i, subj := range names("w", n) {
		addMany(t, p.spec.Far, "Work", []engine.Flag{0, engine.FlagSeen, engine.FlagFlagged}[i%3], subj)
	}
	sync1(t, p, engine.RunOptions{})
	p.check(t, "Work", "")
	msgs, _ := readBox(t, p.spec.Far, "Work")
	return msgs
}

func otherMessages(prefix string, n int) []rawMsg {
	var out []rawMsg
	for _, s := range names(prefix, n) {
		out = append(out, rawMsg{body: testBody(s)})
	}
	return out
}

// TestIMAPValidityChangeRepairs: the far mailbox is deleted and recreated on
// Dovecot (new UIDVALIDITY). With enough messages matching by Message-ID and
// size (≥ 80 % of the pairs, or ≥ 20), the pairs are re-established and the
// sync goes on: nothing copied again, nothing deleted; later changes flow
// over the new UIDs.
func TestIMAPValidityChangeRepairs(t *testing.T) {
	needDovecot(t)
	for _, tc := range []struct {
		name    string
		n, keep int
		extra   int
	}{
		{"all", 10, 10, 0},
		{"80percent", 10, 8, 2},
		{"20matches", 30, 21, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPairing(t, imapMaildir)
			orig := validitySetup(t, p, tc.n)
			nearBefore := engine.ViewBox(t, p.spec.Near, "Work")
			repl := append(append([]rawMsg{}, orig[:tc.keep]...), otherMessages("other", tc.extra)...)
			recreateIMAPBox(t, p.raw[0], "Work", repl)
			farBefore := engine.ViewBox(t, p.spec.Far, "Work")

			fetches := p.far.calls.get("Fetch")
			res := sync1(t, p, engine.RunOptions{})
			if !zeroCounts(res.Counts) {
				t.Fatalf("re-pairing run did something: %+v", res.Counts)
			}
			// The server's Message-IDs come from headers alone.
			if n := p.far.calls.get("Fetch") - fetches; n != 0 {
				t.Errorf("re-pairing fetched whole messages from the server %d times", n)
			}
			if f, n := engine.ViewBox(t, p.spec.Far, "Work"), engine.ViewBox(t, p.spec.Near, "Work"); f != farBefore || n != nearBefore {
				t.Fatalf("a side changed:\nfar:  %s\n  was %s\nnear: %s\n  was %s", f, farBefore, n, nearBefore)
			}
			// The pairs work: changes go both ways over the new UIDs.
			engine.SetFlagsBySubject(t, p.spec.Far, "Work", "w00", engine.FlagFlagged, 0)
			engine.SetFlagsBySubject(t, p.spec.Near, "Work", "w01", engine.FlagReplied, 0)
			addMany(t, p.spec.Far, "Work", 0, "after")
			res = sync1(t, p, engine.RunOptions{})
			if res.Copied != [2]int{0, 1} || res.Flagged != [2]int{1, 1} {
				t.Fatalf("after re-pairing: %+v", res.Counts)
			}
			if tc.keep == tc.n {
				p.check(t, "Work", "")
			}
			for _, s := range []engine.Store{p.spec.Far, p.spec.Near} {
				v := engine.ViewBox(t, s, "Work")
				if !strings.Contains(v, "w00:F ") || !strings.Contains(v, "w01:RS ") || !strings.Contains(v, "after:") {
					t.Fatalf("%s: %s", s.Name(), v)
				}
			}
		})
	}
}

// TestIMAPValidityChangeRestoredMailCopied: messages deleted on the server
// (and so on the near side) come back when the mailbox is restored from a
// backup, under a new UIDVALIDITY. Every pair is found again and no near
// message lost its partner, so the restored ones cannot be another form of
// a near message: they are new mail and are copied. They used to be left
// alone for good, the two sides different without a word.
func TestIMAPValidityChangeRestoredMailCopied(t *testing.T) {
	needDovecot(t)
	p := newPairing(t, imapMaildir)
	p.setBare()
	orig := validitySetup(t, p, 6)
	engine.ExpungeBySubject(t, p.spec.Far, "Work", "w04")
	engine.ExpungeBySubject(t, p.spec.Far, "Work", "w05")
	if res := sync1(t, p, engine.RunOptions{}); res.Deleted != [2]int{0, 2} {
		t.Fatalf("deletions: %+v", res.Counts)
	}
	recreateIMAPBox(t, p.raw[0], "Work", orig)
	want := engine.ViewBox(t, p.spec.Far, "Work")
	res := sync1(t, p, engine.RunOptions{})
	if res.Copied != [2]int{0, 2} || res.Flagged != [2]int{} || res.Deleted != [2]int{} {
		t.Fatalf("after the restore: %+v", res.Counts)
	}
	p.check(t, "Work", want)
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("the run after: %+v", res.Counts)
	}
}

// TestIMAPValidityChangePendingCopyKeepsUnmatchedAlone: a near message
// whose copy to the far server failed waits in the state; the far mailbox
// is then migrated, and holds a message of the same Message-ID that matches
// no pair (rewritten: another size, which two IMAP sides can compare). It
// may be that copy, made by a run that crashed, so it is not copied back:
// the near side must not get the message twice.
func TestIMAPValidityChangePendingCopyKeepsUnmatchedAlone(t *testing.T) {
	needDovecot(t)
	p := newPairing(t, imapIMAP)
	orig := validitySetup(t, p, 6)
	addMany(t, p.spec.Near, "Work", 0, "pend")
	p.far.failStage.Store("pend")
	if res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{}); res.Failed != [2]int{1, 0} {
		t.Fatalf("the failing copy: %+v", res.Counts)
	}
	p.far.failStage.Store("")
	rewritten := rawMsg{body: strings.Replace(testBody("pend"), "\n\n", "\nX-Migrated: yes\n\n", 1)}
	recreateIMAPBox(t, p.raw[0], "Work", append(append([]rawMsg{}, orig...), rewritten))
	sync1(t, p, engine.RunOptions{})
	if v := engine.ViewBox(t, p.spec.Near, "Work"); strings.Count(v, "pend:") != 1 {
		t.Fatalf("near Work: %s", v)
	}
}

// TestIMAPValidityChangeTooFewMatches: the recreated mailbox holds other
// messages: the mailbox stops with an error that says what happened and how
// to get out; nothing is copied or deleted on either side, every run.
func TestIMAPValidityChangeTooFewMatches(t *testing.T) {
	needDovecot(t)
	for _, keep := range []int{0, 7} {
		t.Run(fmt.Sprint("keep=", keep), func(t *testing.T) {
			p := newPairing(t, imapMaildir)
			orig := validitySetup(t, p, 10)
			addMany(t, p.spec.Far, "INBOX", 0, "i1")
			sync1(t, p, engine.RunOptions{})
			nearBefore := engine.ViewBox(t, p.spec.Near, "Work")
			recreateIMAPBox(t, p.raw[0], "Work", append(append([]rawMsg{}, orig[:keep]...), otherMessages("other", 10-keep)...))
			farBefore := engine.ViewBox(t, p.spec.Far, "Work")
			addMany(t, p.spec.Far, "INBOX", 0, "i2")
			for run := 0; run < 2; run++ {
				res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
				var werr error
				for _, m := range res.Mailboxes {
					if m.Mailbox == "Work" {
						werr = m.Err
					} else if m.Err != nil {
						t.Fatalf("other mailbox failed too: %v", m.Err)
					}
				}
				msg := fmt.Sprint(werr)
				for _, w := range []string{"UIDVALIDITY", "far", fmt.Sprintf("only %d of 10", keep), "Nothing was copied or deleted", "move the state file"} {
					if !strings.Contains(msg, w) {
						t.Fatalf("run %d: error %q does not say %q", run, msg, w)
					}
				}
				if f, n := engine.ViewBox(t, p.spec.Far, "Work"), engine.ViewBox(t, p.spec.Near, "Work"); f != farBefore || n != nearBefore {
					t.Fatalf("run %d: a side changed:\nfar:  %s\nnear: %s", run, f, n)
				}
				p.check(t, "INBOX", "i1: i2:")
			}
		})
	}
}

// TestMaildirValidityChange: the near folder's .uidvalidity is rewritten
// (as after a restore or another program's reset): the pairs are re-found by
// Message-ID and the sync goes on without copying or deleting anything.
func TestMaildirValidityChange(t *testing.T) {
	for _, kind := range []string{imapMaildir, maildirMaildir} {
		t.Run(kind, func(t *testing.T) {
			p := newPairing(t, kind)
			validitySetup(t, p, 10)
			before := engine.ViewBox(t, p.spec.Near, "Work")
			rewriteUIDValidity(t, p, "Work", 0)
			res := sync1(t, p, engine.RunOptions{})
			if !zeroCounts(res.Counts) {
				t.Fatalf("re-pairing run did something: %+v", res.Counts)
			}
			p.check(t, "Work", before)
			engine.SetFlagsBySubject(t, p.spec.Near, "Work", "w03", engine.FlagFlagged, 0)
			engine.SetFlagsBySubject(t, p.spec.Far, "Work", "w04", engine.FlagFlagged, 0)
			res = sync1(t, p, engine.RunOptions{})
			if res.Flagged != [2]int{1, 1} || res.Copied != [2]int{} {
				t.Fatalf("after re-pairing: %+v", res.Counts)
			}
			p.check(t, "Work", "")
		})
	}
}

// TestMaildirValidityChangeNewMailPushedAtOnce: mail delivered into a near
// folder whose UIDVALIDITY changed is pushed by the run that re-pairs the
// folder. It used to wait one more run: every message of the renumbered
// side counted as considered.
func TestMaildirValidityChangeNewMailPushedAtOnce(t *testing.T) {
	for _, kind := range []string{imapMaildir, maildirMaildir} {
		t.Run(kind, func(t *testing.T) {
			p := newPairing(t, kind)
			validitySetup(t, p, 6)
			rewriteUIDValidity(t, p, "Work", 0)
			addMany(t, p.spec.Near, "Work", 0, "delivered")
			if res := sync1(t, p, engine.RunOptions{}); res.Copied != [2]int{1, 0} {
				t.Fatalf("re-pairing run: %+v", res.Counts)
			}
			p.check(t, "Work", "")
			if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
				t.Fatalf("the run after: %+v", res.Counts)
			}
		})
	}
}

// rewriteUIDValidity gives the near Maildir folder a new UIDVALIDITY,
// keeping its last UID (delta is added to the validity; 0 means +1000).
func rewriteUIDValidity(t testing.TB, p *pairing, box string, delta uint32) {
	t.Helper()
	rewriteUIDValidityOf(t, p.spec.Near, box, delta)
}

// rewriteUIDValidityOf is rewriteUIDValidity for any Maildir store s.
func rewriteUIDValidityOf(t testing.TB, s engine.Store, box string, delta uint32) {
	t.Helper()
	if delta == 0 {
		delta = 1000
	}
	editUIDState(t, s, box, func(v, last uint32) (uint32, uint32) { return v + delta, last })
}

// editUIDState rewrites the .uidvalidity of Maildir store s's box with what
// edit makes of its UIDVALIDITY and last UID.
func editUIDState(t testing.TB, s engine.Store, box string, edit func(v, last uint32) (uint32, uint32)) {
	t.Helper()
	dir, err := s.(engine.LocalStore).MailboxDir(box)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ".uidvalidity")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v, last uint32
	if _, err := fmt.Sscanf(string(b), "%d\n%d\n", &v, &last); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	v, last = edit(v, last)
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%d\n%d\n", v, last)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBothValiditiesChanged: both sides' UIDVALIDITY changed: the mailbox
// stops with an error; nothing is copied or deleted.
func TestBothValiditiesChanged(t *testing.T) {
	needDovecot(t)
	p := newPairing(t, imapMaildir)
	orig := validitySetup(t, p, 6)
	recreateIMAPBox(t, p.raw[0], "Work", orig)
	rewriteUIDValidity(t, p, "Work", 0)
	far, near := engine.ViewBox(t, p.spec.Far, "Work"), engine.ViewBox(t, p.spec.Near, "Work")
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	err := mailboxErr(res)
	if err == nil || !strings.Contains(err.Error(), "UIDVALIDITY of both sides changed") || !strings.Contains(err.Error(), "move the state file") {
		t.Fatalf("want an error about both UIDVALIDITYs, got %v", err)
	}
	if f, n := engine.ViewBox(t, p.spec.Far, "Work"), engine.ViewBox(t, p.spec.Near, "Work"); f != far || n != near {
		t.Fatalf("a side changed:\nfar:  %s\nnear: %s", f, n)
	}
}

// TestCrashThenValidityChange: a run dies after copying messages both ways
// but before recording them, and then the near folder's UIDVALIDITY changes
// (a restore, another program's reset), which voids the journal. The
// recovery pairs the copies it finds by Message-ID and size instead of
// copying them again: at every point the run can die, the sides settle with
// every message once on each. (A near message the crashed run had not
// copied yet is pushed by the run after the recovery: the recovery leaves
// messages of the changed side that no pair accounts for alone, and the
// next run takes their Maildir UIDs, unknown to it, for new ones.)
func TestCrashThenValidityChange(t *testing.T) {
	for _, kind := range []string{maildirMaildir, imapMaildir} {
		t.Run(kind, func(t *testing.T) {
			for crash := 1; ; crash++ {
				p := newPairing(t, kind)
				validitySetup(t, p, 6)
				addMany(t, p.spec.Far, "Work", engine.FlagSeen, names("c", 3)...)
				addMany(t, p.spec.Near, "Work", engine.FlagFlagged, names("d", 3)...)
				res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{CrashAfter: crash})
				if mailboxErr(res) == nil {
					if crash < 4 {
						t.Fatalf("the run never reached its copies (crash point %d)", crash)
					}
					break // past the last crash point
				}
				p.reopen(t)
				rewriteUIDValidity(t, p, "Work", 0)
				for run := 0; run < 2; run++ {
					res := sync1(t, p, engine.RunOptions{})
					t.Logf("crash point %d, run %d: %+v", crash, run, res.Counts)
				}
				p.check(t, "Work", "c00:S c01:S c02:S d00:F d01:F d02:F w00: w01:S w02:F w03: w04:S w05:F")
				if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
					t.Fatalf("crash point %d: not idempotent: %+v", crash, res.Counts)
				}
			}
		})
	}
}

// TestUndeleteAfterCrashDuringExpunge: the user flags a Maildir message
// \Deleted, and the run that expunges it on both sides dies at any point;
// if the message is still in the Maildir afterwards, the user takes the
// flag back before the next run. That undelete must hold: the far copy is
// expunged only after the near one, so a crash never leaves the user's
// message with its partner already gone (whose removal the next run would
// propagate). Otherwise both are gone once the runs settle.
func TestUndeleteAfterCrashDuringExpunge(t *testing.T) {
	for _, kind := range []string{maildirMaildir, imapMaildir} {
		t.Run(kind, func(t *testing.T) {
			for crash := 1; ; crash++ {
				p := newPairing(t, kind)
				p.spec.Expunge = [2]bool{true, true}
				validitySetup(t, p, 3)
				engine.SetFlagsBySubject(t, p.spec.Near, "Work", "w01", engine.FlagDeleted, 0)
				res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{CrashAfter: crash})
				if mailboxErr(res) == nil {
					if crash < 3 {
						t.Fatalf("the run never reached its expunges (crash point %d)", crash)
					}
					break
				}
				p.reopen(t)
				p.spec.Expunge = [2]bool{true, true}
				undeleted := strings.Contains(engine.ViewBox(t, p.spec.Near, "Work"), "w01:")
				if undeleted {
					engine.SetFlagsBySubject(t, p.spec.Near, "Work", "w01", 0, engine.FlagDeleted)
				}
				sync1(t, p, engine.RunOptions{})
				sync1(t, p, engine.RunOptions{})
				want := "w00: w02:F"
				if undeleted {
					want = "w00: w01:S w02:F"
				}
				f, n := engine.ViewBox(t, p.spec.Far, "Work"), engine.ViewBox(t, p.spec.Near, "Work")
				if f != want || n != want {
					t.Fatalf("crash point %d, undeleted %v:\nfar:  %s\nnear: %s\nwant: %s", crash, undeleted, f, n, want)
				}
			}
		})
	}
}

// TestValidityChangeWithPendingCopy: a copy failed (its pair waits with a
// low UID among the paired ones), then the near folder's UIDVALIDITY
// changes. The recovery matches the pairs and the waiting message alike and
// keeps them apart: every pair is found again, the waiting copy is made
// once, and nothing is copied twice.
func TestValidityChangeWithPendingCopy(t *testing.T) {
	for _, kind := range []string{maildirMaildir, imapMaildir} {
		t.Run(kind, func(t *testing.T) {
			p := newPairing(t, kind)
			addMany(t, p.spec.Far, "Work", engine.FlagSeen, names("w", 8)...)
			p.near.failStage.Store("w01")
			if res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{}); res.Failed != [2]int{0, 1} {
				t.Fatalf("first run: %+v", res.Counts)
			}
			p.near.failStage.Store("")
			rewriteUIDValidity(t, p, "Work", 0)
			for range 2 {
				sync1(t, p, engine.RunOptions{})
			}
			p.check(t, "Work", "w00:S w01:S w02:S w03:S w04:S w05:S w06:S w07:S")
			if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
				t.Fatalf("not idempotent: %+v", res.Counts)
			}
		})
	}
}

// TestValidityRepairKeepsDeleted: a message removed on one side stays on the
// other flagged \Deleted, as a one-sided pair, when expunge may not remove it
// there (mbsync's default). When that side's UIDVALIDITY then changes (a
// server migration, a Maildir's .uidvalidity rewritten), the repair cannot
// tell such a message's new UID from its partner, which is gone: it must not
// take it for a new message and copy it back to the side that removed it.
// An undelete afterwards still copies it, as it would have before.
func TestValidityRepairKeepsDeleted(t *testing.T) {
	for _, changed := range []engine.Side{engine.Near, engine.Far} {
		t.Run(changed.String(), func(t *testing.T) {
			p := newPairing(t, maildirMaildir)
			p.spec.Expunge = [2]bool{false, false}
			validitySetup(t, p, 6)
			survivor, remover := p.spec.Near, p.spec.Far
			if changed == engine.Far {
				survivor, remover = p.spec.Far, p.spec.Near
			}
			engine.ExpungeBySubject(t, remover, "Work", "w02")
			sync1(t, p, engine.RunOptions{})
			if v := engine.ViewBox(t, survivor, "Work"); !strings.Contains(v, "w02:FT") {
				t.Fatalf("before the UIDVALIDITY change the survivor should hold w02 flagged deleted: %s", v)
			}
			rewriteUIDValidityOf(t, survivor, "Work", 0)
			addMany(t, survivor, "Work", 0, "fresh") // new since the last run: still copied
			res := sync1(t, p, engine.RunOptions{})
			if res.Copied[changed.Other()] != 1 || res.Copied[changed] != 0 {
				t.Fatalf("repair run copied %v, want only the fresh message", res.Copied)
			}
			if v := engine.ViewBox(t, remover, "Work"); strings.Contains(v, "w02") || !strings.Contains(v, "fresh") {
				t.Fatalf("after the repair the side that removed w02 holds: %s", v)
			}
			// The pair is known again: taking the deletion back copies it.
			engine.SetFlagsBySubject(t, survivor, "Work", "w02", 0, engine.FlagDeleted)
			res = sync1(t, p, engine.RunOptions{})
			if res.Copied[changed.Other()] != 1 {
				t.Fatalf("undelete after the repair copied %v, want w02 back", res.Copied)
			}
			p.check(t, "Work", "")
		})
	}
}

// TestLastUIDWentBack: a Maildir's .uidvalidity comes back from an older
// backup (same UIDVALIDITY, a lower last UID) while the user deletes a
// message there. Before, the scan gave the files above that last UID new
// UIDs from just above it, onto UIDs the state pairs with other messages:
// the run deleted the wrong message on the server and kept the deleted one,
// and later changes went to the wrong messages. The files keep their UIDs.
func TestLastUIDWentBack(t *testing.T) {
	p := newPairing(t, maildirMaildir)
	p.spec.Expunge = [2]bool{true, true}
	validitySetup(t, p, 6)
	engine.ExpungeBySubject(t, p.spec.Near, "Work", "w01")
	editUIDState(t, p.spec.Near, "Work", func(v, _ uint32) (uint32, uint32) { return v, 1 })
	sync1(t, p, engine.RunOptions{})
	p.check(t, "Work", "w00: w02:F w03: w04:S w05:F")
	engine.SetFlagsBySubject(t, p.spec.Far, "Work", "w03", engine.FlagFlagged, 0)
	engine.SetFlagsBySubject(t, p.spec.Near, "Work", "w04", engine.FlagFlagged, 0)
	sync1(t, p, engine.RunOptions{})
	p.check(t, "Work", "w00: w02:F w03:F w04:FS w05:F")
}

// TestValidityChangeRetriesMergedCopy: a merged copy ('=') names the
// message it was merged into by its UID on that side; when that side's
// UIDVALIDITY changes, the UID may mean another message. The copy is made
// again (merged again, and recorded with the new UID, or a message of its
// own) instead of staying tied to a UID that means nothing now.
func TestValidityChangeRetriesMergedCopy(t *testing.T) {
	p := newPairing(t, maildirMaildir)
	validitySetup(t, p, 4)
	addMany(t, p.spec.Near, "Work", 0, "dup")
	sync1(t, p, engine.RunOptions{})
	engine.ExpungeBySubject(t, p.spec.Far, "Work", "dup")
	// The state as a merge leaves it: dup merged into the first pair's far
	// message.
	path := statePathOf(t, p, "Work")
	st, err := engine.LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	last := 0
	for i, pr := range st.Pairs {
		if pr.Near > st.Pairs[last].Near {
			last = i
		}
	}
	st.Pairs[last] = engine.Pair{Near: st.Pairs[last].Near, Skip: engine.SkipMerged, Into: st.Pairs[0].Far}
	if err := engine.SaveState(path, st); err != nil {
		t.Fatal(err)
	}
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("a run with the merged copy's message in place: %+v", res.Counts)
	}
	rewriteUIDValidityOf(t, p.spec.Far, "Work", 0)
	if res := sync1(t, p, engine.RunOptions{}); res.Copied != [2]int{1, 0} {
		t.Fatalf("re-pairing run: %+v, want the merged copy made again", res.Counts)
	}
	p.check(t, "Work", "")
}
