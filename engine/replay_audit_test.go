package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
)

// Crash recovery of removals and of a journal kept past a state save.

// syncCrashing runs spec once with a crash after n journal lines and
// reports whether the crash happened (false: the run finished first).
func syncCrashing(t *testing.T, spec ChannelSpec, n int) bool {
	t.Helper()
	res := SyncChannel(context.Background(), spec, RunOptions{CrashAfter: n})
	crashed := false
	for _, m := range res.Mailboxes {
		switch {
		case errors.Is(m.Err, errCrash):
			crashed = true
		case m.Err != nil:
			t.Fatalf("crash run: %v", m.Err)
		}
	}
	return crashed
}

func journalText(t *testing.T, spec ChannelSpec) string {
	t.Helper()
	p, err := StatePath(spec, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p + ".journal")
	if errors.Is(err, os.ErrNotExist) {
		return "(none)"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// has reports whether side s holds a message with subject subj, and its flags.
func has(t *testing.T, s Store, subj string) (Flag, bool) {
	t.Helper()
	ms := subjects(t, s, "INBOX")[subj]
	if len(ms) > 1 {
		t.Fatalf("%s: %d messages %q", s.Name(), len(ms), subj)
	}
	if len(ms) == 0 {
		return 0, false
	}
	return ms[0].Flags, true
}

// expungeSetups are the channels and the side on which the user deletes x:
// removals propagated both ways, or only where the user deleted (the
// partner is then flagged \Deleted, not removed).
var expungeSetups = []struct {
	name    string
	origin  Side
	expunge [2]bool
}{
	{"far-both", Far, [2]bool{true, true}},
	{"near-both", Near, [2]bool{true, true}},
	{"far-only", Far, [2]bool{true, false}},
	{"near-only", Near, [2]bool{false, true}},
}

// expungeCrashCases runs fn for every store kind, every setup and every
// crash point of the run that propagates x's \Deleted: a synced channel
// with a, b, x; the user flags x \Deleted on the origin side; the run is
// killed after n journal lines. fn gets the state right after the crash.
func expungeCrashCases(t *testing.T, fn func(t *testing.T, spec ChannelSpec, origin Side, n int)) {
	for _, k := range storeKinds {
		for _, set := range expungeSetups {
			for n := 1; ; n++ {
				far, near := k.mk()
				spec := testSpec(t.TempDir(), far, near)
				spec.Expunge = set.expunge
				for _, s := range []string{"a", "b", "x"} {
					addMsg(t, far, "INBOX", s, 0)
				}
				mustSync(t, spec, RunOptions{})
				setFlagsBySubject(t, spec.store(set.origin), "INBOX", "x", FlagDeleted, 0)
				if !syncCrashing(t, spec, n) {
					if n == 1 {
						t.Fatalf("%s/%s: the run wrote no journal line", k.name, set.name)
					}
					break
				}
				t.Run(fmt.Sprintf("%s/%s/crash%d", k.name, set.name, n), func(t *testing.T) {
					t.Logf("journal after the crash: %q", journalText(t, spec))
					fn(t, spec, set.origin, n)
				})
			}
		}
	}
}

// A run killed after journaling the removal of a message the user flagged
// \Deleted, before or while acting on it; the user then takes the \Deleted
// back. The next run must not carry out the old decision: where the message
// still exists on the side the user flagged it, it stays on both sides.
func TestReplayKeepsMessageUndeletedAfterCrash(t *testing.T) {
	expungeCrashCases(t, func(t *testing.T, spec ChannelSpec, origin Side, n int) {
		if _, ok := has(t, spec.store(origin), "x"); !ok {
			t.Skip("x already expunged where the user flagged it: nothing to take back")
		}
		if _, ok := has(t, spec.store(origin.Other()), "x"); !ok {
			// The killed run expunged the partner (the far side goes
			// first) before the user's copy: that removal is done and is
			// propagated like any other.
			t.Skip("x's partner already expunged by the killed run")
		}
		setFlagsBySubject(t, spec.store(origin), "INBOX", "x", 0, FlagDeleted) // the user undeletes
		mustSync(t, spec, RunOptions{})
		mustSync(t, spec, RunOptions{})
		f, nr := view(t, spec.Far, "INBOX"), view(t, spec.Near, "INBOX")
		// The partner may have been flagged \Deleted by the killed run (a
		// channel that only flags it): the merge then spreads that flag, but
		// nothing is removed.
		for _, s := range []Side{Far, Near} {
			if _, ok := has(t, spec.store(s), "x"); !ok {
				t.Errorf("LOSS: x gone from the %s side after the user took its \\Deleted back: far=%s near=%s", s, f, nr)
			}
		}
	})
}

// The same crash points without any change by the user: the decision
// stands, so x ends up removed where the channel expunges (and flagged
// \Deleted where it does not), and no later run brings it back.
func TestReplayFinishesExpungeAfterCrash(t *testing.T) {
	expungeCrashCases(t, func(t *testing.T, spec ChannelSpec, origin Side, n int) {
		checkExpungeFinished(t, spec)
	})
}

// A crash inside an IMAP expunge, after the store's own +\Deleted and
// before UID EXPUNGE: simulated by flagging the partner \Deleted after the
// crash, as such a store would have done on the side whose expunge was
// journaled but not done.
func TestReplayFinishesHalfDoneExpunge(t *testing.T) {
	expungeCrashCases(t, func(t *testing.T, spec ChannelSpec, origin Side, n int) {
		p, err := StatePath(spec, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		jd, err := readJournal(p + ".journal")
		if err != nil || jd == nil {
			t.Fatalf("journal: %v %v", jd, err)
		}
		half := false
		for _, e := range jd.Expunges {
			if e.Done {
				continue
			}
			if _, ok := has(t, spec.store(e.Side), "x"); ok {
				setFlagsBySubject(t, spec.store(e.Side), "INBOX", "x", FlagDeleted, 0)
				half = true
			}
		}
		if !half {
			t.Skip("no unfinished expunge of x")
		}
		checkExpungeFinished(t, spec)
	})
}

func checkExpungeFinished(t *testing.T, spec ChannelSpec) {
	t.Helper()
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{})
	for _, s := range []Side{Far, Near} {
		fl, ok := has(t, spec.store(s), "x")
		switch {
		case spec.Expunge[s] && ok:
			t.Errorf("x still on the %s side (%v), which expunges", s, fl)
		case !spec.Expunge[s] && !ok:
			t.Errorf("x removed from the %s side, which does not expunge", s)
		case !spec.Expunge[s] && !fl.Has(FlagDeleted):
			t.Errorf("x on the %s side not flagged \\Deleted: %v", s, fl)
		}
		for _, m := range []string{"a", "b"} {
			if _, ok := has(t, spec.store(s), m); !ok {
				t.Errorf("%s gone from the %s side", m, s)
			}
		}
	}
	if t.Failed() {
		t.Logf("far=%s near=%s", view(t, spec.Far, "INBOX"), view(t, spec.Near, "INBOX"))
	}
}

// A run that cannot find out whether its copies landed (the connection
// broke during the commit and lookups fail) keeps its journal past its state
// save. Killed at any point around that save, or around the save of the
// next run's replay, the records must survive: the next runs pair the copy
// that landed instead of making it again.
func TestKeptJournalSurvivesCrashAroundStateSave(t *testing.T) {
	for _, at := range []string{"", crashBeforeState, crashAfterState} {
		for _, atReplay := range []string{"", crashAfterReplay} {
			t.Run(fmt.Sprintf("%q/%q", at, atReplay), func(t *testing.T) {
				far, near := newMemStore("far"), newMemStore("near")
				spec := testSpec(t.TempDir(), far, near)
				addMsg(t, far, "INBOX", "a", 0)
				mustSync(t, spec, RunOptions{})
				addMsg(t, far, "INBOX", "b", 0)
				p, err := StatePath(spec, "INBOX")
				if err != nil {
					t.Fatal(err)
				}
				st0, err := LoadState(p)
				if err != nil {
					t.Fatal(err)
				}

				near.lostCommit = true
				res := runMailbox(spec, at)
				near.lostCommit, near.lookupDown = false, false
				if at != "" && !errors.Is(res.Err, errCrash) {
					t.Fatalf("no crash at %q: %v", at, res.Err)
				}
				if at == "" && (res.Err == nil || errors.Is(res.Err, errCrash)) {
					t.Fatalf("the lost commit was not reported: %v", res.Err)
				}
				jd, err := readJournal(p + ".journal")
				if err != nil || jd == nil || len(jd.Copies) != 1 {
					t.Fatalf("kept journal: %+v %v", jd, err)
				}
				st, err := LoadState(p)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("state generation %d→%d, journal %d", st0.Generation, st.Generation, jd.Header.Generation)
				if view(t, near, "INBOX") != "a: b:" {
					t.Fatalf("the lost commit did not land: near=%s", view(t, near, "INBOX"))
				}

				if atReplay != "" {
					if res := runMailbox(spec, atReplay); !errors.Is(res.Err, errCrash) {
						t.Fatalf("no crash at %q: %v", atReplay, res.Err)
					}
					// The replayed journal, left behind, must now be stale:
					// replayed once more it would redo its flag changes.
					st, err := LoadState(p)
					jd, jerr := readJournal(p + ".journal")
					if err != nil || jerr != nil || jd == nil || jd.Header.Generation >= st.Generation {
						t.Errorf("after the replay's save: state %d, journal %+v (%v, %v)", st.Generation, jd, err, jerr)
					}
				}
				mustSync(t, spec, RunOptions{})
				mustSync(t, spec, RunOptions{})
				f, n := view(t, far, "INBOX"), view(t, near, "INBOX")
				if f != "a: b:" || n != f {
					t.Errorf("DUPLICATE or loss: far=%s near=%s", f, n)
				}
				if j := journalText(t, spec); j != "(none)" {
					t.Errorf("journal left after two clean runs: %q", j)
				}
			})
		}
	}
}

// runMailbox syncs INBOX of spec (both sides exist) with a crash at the
// named point ("": none).
func runMailbox(spec ChannelSpec, at string) MailboxResult {
	hook := &crashHook{lines: new(atomic.Int64), at: at}
	return syncMailbox(context.Background(), spec, RunOptions{}, "INBOX", hook, [2]bool{}, [2]*Status{}, false)
}
