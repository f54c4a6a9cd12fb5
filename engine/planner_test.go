package engine

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// Table tests for PlanMailbox, one case (or a few) per rule, named by the rule.

func ptFlags(s string) Flag {
	f, err := ParseFlags(s)
	if err != nil {
		panic(err)
	}
	return f
}

func ptMsg(u UID, flags string) Message {
	return Message{UID: u, Flags: ptFlags(flags), Size: 100, Date: time.Unix(int64(1700000000+u), 0)}
}

func ptMsgSize(u UID, flags string, size int64) Message {
	m := ptMsg(u, flags)
	m.Size = size
	return m
}

func ptStatus(msgs []Message) Status {
	st := Status{UIDValidity: 7, UIDNext: 1, Messages: int64(len(msgs))}
	for _, m := range msgs {
		st.UIDNext = max(st.UIDNext, m.UID+1)
	}
	st.Stamp = fmt.Sprintf("n%d-%d", st.UIDNext, st.Messages)
	return st
}

// complete: the side lists every message it has.
func ptComplete(msgs ...Message) Report {
	return Report{Status: ptStatus(msgs), Messages: msgs, Complete: true}
}

// unchanged: the side's stamp equals the recorded one.
func ptUnchanged() Report {
	return Report{Status: Status{UIDValidity: 7, UIDNext: 100, Messages: -1, Stamp: "same"}, Unchanged: true}
}

// incremental: changed and new messages listed, plus the UIDs that still exist.
func ptIncremental(existing []UID, msgs ...Message) Report {
	return Report{Status: Status{UIDValidity: 7, UIDNext: 100, Messages: -1, Stamp: "incr"},
		Messages: msgs, Existing: existing, ExistingKnown: true}
}

// counted: changed and new messages listed; the count showed nothing known was removed.
func ptCounted(msgs ...Message) Report {
	return Report{Status: Status{UIDValidity: 7, UIDNext: 100, Messages: -1, Stamp: "cnt"}, Messages: msgs}
}

func ptPair(f, n UID, flags string) Pair { return Pair{Far: f, Near: n, Flags: ptFlags(flags)} }

func ptPairSkip(f, n UID, flags string, skip SkipReason) Pair {
	p := ptPair(f, n, flags)
	p.Skip = skip
	return p
}

func ptMerged(f, n UID, flags string, into UID) Pair {
	p := ptPairSkip(f, n, flags, SkipMerged)
	p.Into = into
	return p
}

func ptFU(add, remove string, uids ...UID) FlagUpdate {
	return FlagUpdate{UIDs: uids, Add: ptFlags(add), Remove: ptFlags(remove)}
}

func ptState(maxPulled, maxPushed UID, pairs ...Pair) State {
	return State{Generation: 3, FarValidity: 7, NearValidity: 7, MaxPulled: maxPulled, MaxPushed: maxPushed,
		Far: Markers{UIDNext: 50, Stamp: "old-far"}, Near: Markers{UIDNext: 50, Stamp: "old-near"}, Pairs: pairs}
}

var (
	ptBoth      = Options{Pull: OpAll, Push: OpAll}
	ptBothExp   = Options{Pull: OpAll, Push: OpAll, Expunge: [2]bool{true, true}}
	ptNearExp   = Options{Pull: OpAll, Push: OpAll, Expunge: [2]bool{false, true}}
	ptFarExp    = Options{Pull: OpAll, Push: OpAll, Expunge: [2]bool{true, false}}
	ptPullOnly  = Options{Pull: OpAll}
	ptPushOnly  = Options{Push: OpAll}
	ptNoOptions = Options{}
)

type ptCase struct {
	name      string
	st        State
	far, near Report
	opt       Options
	// expected
	copies   [2][]UID // source UIDs, by target side
	flags    [2][]FlagUpdate
	expunges [2][]UID
	tooBig   [2][]UID
	pairs    []Pair
	// oldMarkers: the side whose markers the new state must keep (the state cannot
	// describe that side exactly yet).
	oldMarkers [2]bool
	// waiting: the side whose markers lose their stamp (a copy from it
	// waits for a mode that copies it, so it must not look unchanged).
	waiting [2]bool
	check   func(t *testing.T, pl Plan)
}

func TestPlanMailboxRules(t *testing.T) {
	cases := []ptCase{
		// --- current view of a side
		{
			name: "view/unchanged-side-is-as-recorded",
			st:   ptState(10, 10, ptPair(1, 1, "S"), ptPair(2, 2, "")),
			far:  ptUnchanged(), near: ptUnchanged(), opt: ptBothExp,
			pairs: []Pair{ptPair(1, 1, "S"), ptPair(2, 2, "")},
		},
		{
			name: "view/unlisted-known-message-exists-when-count-showed-no-removal",
			st:   ptState(10, 10, ptPair(1, 1, "S"), ptPair(2, 2, "")),
			far:  ptCounted(ptMsg(2, "F")), near: ptUnchanged(), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("F", "", 2)}},
			pairs: []Pair{ptPair(1, 1, "S"), ptPair(2, 2, "F")},
		},
		{
			name: "view/existing-known-missing-uid-is-gone",
			st:   ptState(10, 10, ptPair(1, 1, "S"), ptPair(2, 2, "")),
			far:  ptIncremental([]UID{2}), near: ptUnchanged(), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("T", "", 1)}},
			pairs: []Pair{ptPair(2, 2, ""), ptPairSkip(0, 1, "ST", SkipGone)},
		},
		{
			name: "view/complete-missing-uid-is-gone",
			st:   ptState(10, 10, ptPair(1, 1, "S"), ptPair(2, 2, "")),
			far:  ptComplete(ptMsg(1, "S")), near: ptUnchanged(), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("T", "", 2)}},
			pairs: []Pair{ptPair(1, 1, "S"), ptPairSkip(0, 2, "T", SkipGone)},
		},
		{
			name: "view/listed-flags-override-recorded-ones-even-when-unchanged",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  Report{Status: ptUnchanged().Status, Unchanged: true, Messages: []Message{ptMsg(1, "FS")}},
			near: ptUnchanged(), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("F", "", 1)}},
			pairs: []Pair{ptPair(1, 1, "FS")},
		},

		// --- flags: three-way merge
		{
			name: "flags/far-change-wins-over-no-change",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(ptMsg(1, "FS")), near: ptComplete(ptMsg(1, "S")), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("F", "", 1)}},
			pairs: []Pair{ptPair(1, 1, "FS")},
		},
		{
			name: "flags/near-change-wins-over-no-change",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(ptMsg(1, "S")), near: ptComplete(ptMsg(1, "")), opt: ptBoth,
			flags: [2][]FlagUpdate{Far: {ptFU("", "S", 1)}},
			pairs: []Pair{ptPair(1, 1, "")},
		},
		{
			name: "flags/changes-on-both-sides-are-both-applied",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(ptMsg(1, "FS")), near: ptComplete(ptMsg(1, "R")), opt: ptBoth,
			flags: [2][]FlagUpdate{Far: {ptFU("R", "S", 1)}, Near: {ptFU("F", "", 1)}},
			pairs: []Pair{ptPair(1, 1, "FR")},
		},
		{
			name: "flags/same-change-on-both-sides-needs-nothing",
			st:   ptState(10, 10, ptPair(1, 1, "")),
			far:  ptComplete(ptMsg(1, "S")), near: ptComplete(ptMsg(1, "S")), opt: ptBoth,
			pairs: []Pair{ptPair(1, 1, "S")},
		},
		{
			name: "flags/pull-without-OpFlags-keeps-the-old-base-for-the-unpropagated-flag",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(ptMsg(1, "FS")), near: ptComplete(ptMsg(1, "")),
			opt:   Options{Pull: OpNew | OpGone, Push: OpAll},
			flags: [2][]FlagUpdate{Far: {ptFU("", "S", 1)}},
			// S: equal now (both without), so the base advances; F differs: base keeps "no F".
			pairs:      []Pair{ptPair(1, 1, "")},
			oldMarkers: [2]bool{Far: true},
		},
		{
			name: "flags/the-unpropagated-change-is-propagated-once-enabled",
			st:   ptState(10, 10, ptPair(1, 1, "")),
			far:  ptComplete(ptMsg(1, "F")), near: ptComplete(ptMsg(1, "")), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("F", "", 1)}},
			pairs: []Pair{ptPair(1, 1, "F")},
		},
		{
			name: "flags/push-only-run-does-not-touch-near",
			st:   ptState(10, 10, ptPair(1, 1, "")),
			far:  ptComplete(ptMsg(1, "F")), near: ptComplete(ptMsg(1, "S")), opt: ptPushOnly,
			flags:      [2][]FlagUpdate{Far: {ptFU("S", "", 1)}},
			pairs:      []Pair{ptPair(1, 1, "S")},
			oldMarkers: [2]bool{Far: true},
		},
		{
			name: "flags/updates-grouped-by-change-with-uids-ascending",
			st:   ptState(10, 10, ptPair(1, 1, ""), ptPair(2, 5, ""), ptPair(3, 3, ""), ptPair(4, 2, "S")),
			far:  ptComplete(ptMsg(1, "S"), ptMsg(2, "S"), ptMsg(3, "S"), ptMsg(4, "F")),
			near: ptComplete(ptMsg(1, ""), ptMsg(2, "S"), ptMsg(3, ""), ptMsg(5, "")), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("F", "S", 2), ptFU("S", "", 1, 3, 5)}},
			pairs: []Pair{ptPair(1, 1, "S"), ptPair(2, 5, "S"), ptPair(3, 3, "S"), ptPair(4, 2, "F")},
		},

		// --- gone
		{
			name: "gone/far-removed-near-gets-deleted-flag",
			st:   ptState(10, 10, ptPair(1, 1, "S"), ptPair(2, 2, "")),
			far:  ptComplete(ptMsg(2, "")), near: ptComplete(ptMsg(1, "S"), ptMsg(2, "")), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("T", "", 1)}},
			pairs: []Pair{ptPair(2, 2, ""), ptPairSkip(0, 1, "ST", SkipGone)},
			check: func(t *testing.T, pl Plan) {
				if pl.Removals != [2]int{0, 1} {
					t.Errorf("Removals = %v, want [0 1]", pl.Removals)
				}
			},
		},
		{
			name: "gone/deletion-beats-a-flag-change-on-the-other-side",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(), near: ptComplete(ptMsg(1, "")), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("T", "", 1)}},
			pairs: []Pair{ptPairSkip(0, 1, "T", SkipGone)},
		},
		{
			name: "gone/far-removed-near-expunged-where-allowed",
			st:   ptState(10, 10, ptPair(1, 1, "S"), ptPair(2, 2, "")),
			far:  ptComplete(ptMsg(2, "")), near: ptComplete(ptMsg(1, "FS"), ptMsg(2, "")), opt: ptNearExp,
			expunges: [2][]UID{Near: {1}},
			pairs:    []Pair{ptPair(2, 2, "")},
			check: func(t *testing.T, pl Plan) {
				if pl.Removals != [2]int{0, 1} {
					t.Errorf("Removals = %v, want [0 1]", pl.Removals)
				}
			},
		},
		{
			name: "gone/near-removed-far-gets-deleted-flag",
			st:   ptState(10, 10, ptPair(1, 1, "S"), ptPair(2, 2, "")),
			far:  ptComplete(ptMsg(1, "S"), ptMsg(2, "")), near: ptComplete(ptMsg(2, "")), opt: ptNearExp,
			flags: [2][]FlagUpdate{Far: {ptFU("T", "", 1)}},
			pairs: []Pair{ptPairSkip(1, 0, "ST", SkipGone), ptPair(2, 2, "")},
		},
		{
			name: "gone/near-removed-far-expunged-where-allowed",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(ptMsg(1, "S")), near: ptComplete(), opt: ptFarExp,
			expunges: [2][]UID{Far: {1}},
		},
		{
			name: "gone/without-OpGone-the-pair-is-kept-for-a-later-run",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(), near: ptComplete(ptMsg(1, "FS")),
			opt:        Options{Pull: OpNew | OpFlags, Push: OpAll, Expunge: [2]bool{true, true}},
			pairs:      []Pair{ptPair(1, 1, "FS")},
			oldMarkers: [2]bool{Far: true},
		},
		{
			name: "gone/kept-pair-propagates-when-OpGone-is-enabled",
			st:   ptState(10, 10, ptPair(1, 1, "FS")),
			far:  ptIncremental(nil), near: ptUnchanged(), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("T", "", 1)}},
			pairs: []Pair{ptPairSkip(0, 1, "FST", SkipGone)},
		},
		{
			name: "gone/both-removed-pair-dropped",
			st:   ptState(10, 10, ptPair(1, 1, "S"), ptPair(2, 2, "")),
			far:  ptComplete(ptMsg(2, "")), near: ptComplete(ptMsg(2, "")), opt: ptNoOptions,
			pairs: []Pair{ptPair(2, 2, "")},
		},

		// --- one-sided pairs
		{
			name: "skipgone/remaining-message-gone-pair-dropped",
			st:   ptState(10, 10, ptPairSkip(0, 1, "T", SkipGone)),
			far:  ptComplete(), near: ptComplete(), opt: ptBoth,
		},
		{
			// The user undeleted the message that stayed: it is copied back.
			name: "skipgone/undeleted-remaining-message-is-copied-back",
			st:   ptState(10, 10, ptPairSkip(0, 1, "T", SkipGone)),
			far:  ptComplete(), near: ptComplete(ptMsg(1, "S")), opt: ptNearExp,
			copies: [2][]UID{Far: {1}},
			pairs:  []Pair{ptPair(0, 1, "S")},
		},
		{
			name: "skipgone/expunged-once-its-side-expunges",
			st:   ptState(10, 10, ptPairSkip(0, 1, "T", SkipGone), ptPairSkip(2, 0, "ST", SkipGone)),
			far:  ptComplete(ptMsg(2, "ST")), near: ptComplete(ptMsg(1, "T")), opt: Options{Expunge: [2]bool{true, true}},
			expunges: [2][]UID{Far: {2}, Near: {1}},
		},
		{
			name: "pending/copy-retried",
			st:   ptState(10, 10, ptPair(5, 0, "S")),
			far:  ptComplete(ptMsg(5, "FS")), near: ptComplete(), opt: ptBoth,
			copies: [2][]UID{Near: {5}},
			pairs:  []Pair{ptPair(5, 0, "FS")},
		},
		{
			name: "pending/copy-retried-from-unchanged-side-with-recorded-flags",
			st:   ptState(10, 10, ptPair(0, 4, "R")),
			far:  ptUnchanged(), near: ptUnchanged(), opt: ptBoth,
			copies: [2][]UID{Far: {4}},
			pairs:  []Pair{ptPair(0, 4, "R")},
			check: func(t *testing.T, pl Plan) {
				if c := pl.Copies[Far][0]; c.Flags != FlagReplied || c.Size != -1 {
					t.Errorf("copy = %+v, want flags R and unknown size", c)
				}
			},
		},
		{
			name: "pending/source-gone-pair-dropped",
			st:   ptState(10, 10, ptPair(5, 0, "S"), ptPair(6, 6, "")),
			far:  ptComplete(ptMsg(6, "")), near: ptComplete(ptMsg(6, "")), opt: ptBoth,
			pairs: []Pair{ptPair(6, 6, "")},
		},
		{
			name: "pending/kept-without-OpNew",
			st:   ptState(10, 10, ptPair(5, 0, "S")),
			far:  ptComplete(ptMsg(5, "S")), near: ptComplete(), opt: ptPushOnly,
			pairs:   []Pair{ptPair(5, 0, "S")},
			waiting: [2]bool{Far: true},
		},
		{
			name: "toobig/kept-and-not-retried",
			st:   ptState(10, 10, ptPairSkip(5, 0, "", SkipTooBig), ptPairSkip(0, 6, "T", SkipDeleted)),
			far:  ptComplete(ptMsgSize(5, "S", 1e9)), near: ptComplete(ptMsg(6, "T")), opt: ptBoth,
			pairs: []Pair{ptPairSkip(5, 0, "S", SkipTooBig), ptPairSkip(0, 6, "T", SkipDeleted)},
		},
		{
			// Skipped for max_size, and flagged (since, on either side, or
			// already when an older version recorded it): a request for it,
			// copied whatever its size. Refused by its target, or merged by
			// it into a message it holds: tried again once flagged since,
			// not when it was flagged at the refusal or merge.
			name: "toobig/flagged-is-copied-refused-once-per-flagging",
			st: ptState(10, 10, ptPairSkip(5, 0, "", SkipTooBig), ptPairSkip(0, 6, "S", SkipTooBig),
				ptPairSkip(7, 0, "F", SkipTooBig), ptPairSkip(8, 0, "", SkipRefused), ptPairSkip(9, 0, "F", SkipRefused),
				ptPairSkip(0, 7, "S", SkipMerged), ptPairSkip(0, 8, "F", SkipMerged), ptPairSkip(0, 9, "", SkipMerged)),
			far:    ptComplete(ptMsgSize(5, "F", 5000), ptMsgSize(7, "F", 5000), ptMsgSize(8, "F", 500), ptMsgSize(9, "F", 500)),
			near:   ptComplete(ptMsgSize(6, "FS", 5000), ptMsgSize(7, "FS", 500), ptMsgSize(8, "F", 500), ptMsgSize(9, "S", 500)),
			opt:    Options{Pull: OpAll, Push: OpAll, MaxSize: 1000},
			copies: [2][]UID{Far: {6, 7}, Near: {5, 7, 8}},
			pairs: []Pair{ptPair(5, 0, "F"), ptPair(7, 0, "F"), ptPair(8, 0, "F"), ptPairSkip(9, 0, "F", SkipRefused), ptPair(0, 6, "FS"),
				ptPair(0, 7, "FS"), ptPairSkip(0, 8, "F", SkipMerged), ptPairSkip(0, 9, "S", SkipMerged)},
		},
		{
			// Merged by the server into its message 3, which stays paired
			// with near 3: the merged copy stays here, not copied again.
			name: "merged/stays-while-its-message-is-in-the-state",
			st:   ptState(10, 10, ptPair(3, 3, "S"), ptMerged(0, 4, "", 3)),
			far:  ptComplete(ptMsg(3, "S")), near: ptComplete(ptMsg(3, "S"), ptMsg(4, "")), opt: ptBoth,
			pairs: []Pair{ptPair(3, 3, "S"), ptMerged(0, 4, "", 3)},
		},
		{
			// Far 3 was removed for its partner here (the user deleted near
			// 3): the merged copy is the message's only one, copied again as
			// one of its own. (A copy merged by an older version, with no
			// message recorded, stays.)
			name: "merged/copied-again-once-its-message-left-the-state",
			st:   ptState(10, 10, ptMerged(0, 4, "S", 3), ptPairSkip(0, 5, "", SkipMerged)),
			far:  ptComplete(), near: ptComplete(ptMsg(4, "S"), ptMsg(5, "")), opt: ptBoth,
			copies: [2][]UID{Far: {4}},
			pairs:  []Pair{ptPair(0, 4, "S"), ptPairSkip(0, 5, "", SkipMerged)},
		},
		{
			// The user deletes near 3, the merged copy's partner by way of
			// far 3: far 3 goes, and the merged copy, this side's only one
			// of the message, is copied in the same run.
			name: "merged/copied-when-the-partner-here-is-deleted",
			st:   ptState(10, 10, ptPair(3, 3, "S"), ptMerged(0, 4, "", 3)),
			far:  ptComplete(ptMsg(3, "S")), near: ptComplete(ptMsg(4, "")), opt: ptBothExp,
			expunges: [2][]UID{Far: {3}},
			copies:   [2][]UID{Far: {4}},
			pairs:    []Pair{ptPair(0, 4, "")},
		},
		{
			// The same where the server is not expunged: far 3 is flagged
			// \Deleted (Gmail then removes it at once), and the merged copy
			// is copied in the same run.
			name: "merged/copied-when-its-message-is-flagged-deleted",
			st:   ptState(10, 10, ptPair(3, 3, "S"), ptMerged(0, 4, "", 3)),
			far:  ptComplete(ptMsg(3, "S")), near: ptComplete(ptMsg(4, "")), opt: ptNearExp,
			flags:  [2][]FlagUpdate{Far: {ptFU("T", "", 3)}},
			copies: [2][]UID{Far: {4}},
			pairs:  []Pair{ptPairSkip(3, 0, "ST", SkipGone), ptPair(0, 4, "")},
		},
		{
			// Merged into far 3 after an earlier run flagged it \Deleted (a
			// server that kept it): not tried again while far 3 is there.
			name: "merged/stays-while-its-message-stays-deleted",
			st:   ptState(10, 10, ptPairSkip(3, 0, "ST", SkipGone), ptMerged(0, 4, "", 3)),
			far:  ptComplete(ptMsg(3, "ST")), near: ptComplete(ptMsg(4, "")), opt: ptNearExp,
			pairs: []Pair{ptPairSkip(3, 0, "ST", SkipGone), ptMerged(0, 4, "", 3)},
		},
		{
			// Far 3 deleted on the server: its partner and the copy merged
			// into it go, as mbsync, which pairs both with it, does.
			name: "merged/goes-with-its-message-removed-on-the-server",
			st:   ptState(10, 10, ptPair(3, 3, "S"), ptMerged(0, 4, "", 3), ptPair(6, 6, ""), ptMerged(0, 7, "F", 6)),
			far:  ptComplete(ptMsg(6, "T")), near: ptComplete(ptMsg(3, "S"), ptMsg(4, ""), ptMsg(6, ""), ptMsg(7, "F")),
			opt:      ptBothExp,
			expunges: [2][]UID{Far: {6}, Near: {3, 4, 6, 7}},
		},
		{
			// Without expunging here, both get \Deleted and stay one-sided.
			name: "merged/marked-deleted-with-its-message-without-expunge",
			st:   ptState(10, 10, ptPair(3, 3, "S"), ptMerged(0, 4, "", 3)),
			far:  ptComplete(), near: ptComplete(ptMsg(3, "S"), ptMsg(4, "")), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("T", "", 3, 4)}},
			pairs: []Pair{ptPairSkip(0, 3, "ST", SkipGone), ptPairSkip(0, 4, "T", SkipGone)},
		},
		{
			// Not propagating removals from the server: both pairs stay as
			// they were, for a run that does.
			name: "merged/kept-without-OpGone",
			st:   ptState(10, 10, ptPair(3, 3, "S"), ptMerged(0, 4, "", 3)),
			far:  ptComplete(), near: ptComplete(ptMsg(3, "S"), ptMsg(4, "")), opt: Options{Pull: OpNew | OpFlags, Push: OpAll},
			pairs:      []Pair{ptPair(3, 3, "S"), ptMerged(0, 4, "", 3)},
			oldMarkers: [2]bool{Far: true},
		},
		{
			// \Deleted on both sides since an earlier run (who deleted it is
			// not known any more): the merged copy is copied as its own.
			name: "merged/copied-for-a-deletion-agreed-before",
			st:   ptState(10, 10, ptPair(3, 3, "T"), ptMerged(0, 4, "", 3)),
			far:  ptComplete(ptMsg(3, "T")), near: ptComplete(ptMsg(3, "T"), ptMsg(4, "")), opt: ptBothExp,
			expunges: [2][]UID{Far: {3}, Near: {3}},
			copies:   [2][]UID{Far: {4}},
			pairs:    []Pair{ptPair(0, 4, "")},
		},
		{
			// Skipped as new and already deleted; the user took the deletion
			// back (a webmail's undo before the expunge): copied after all.
			name: "skipdeleted/undeleted-is-copied",
			st:   ptState(10, 10, ptPairSkip(0, 6, "T", SkipDeleted), ptPairSkip(7, 0, "T", SkipDeleted)),
			far:  ptComplete(ptMsg(7, "S")), near: ptComplete(ptMsg(6, "F")), opt: ptBoth,
			copies: [2][]UID{Far: {6}, Near: {7}},
			pairs:  []Pair{ptPair(7, 0, "S"), ptPair(0, 6, "F")},
		},
		{
			// Kept here with \Deleted after its partner was removed (this side
			// does not expunge); the user took the deletion back: copied back.
			name: "skipgone/undeleted-is-copied",
			st:   ptState(10, 10, ptPairSkip(7, 0, "T", SkipGone), ptPairSkip(8, 0, "FT", SkipGone), ptPairSkip(0, 9, "T", SkipGone)),
			far:  ptComplete(ptMsg(7, "S"), ptMsg(8, "FT")), near: ptComplete(ptMsg(9, "R")), opt: ptBoth,
			copies: [2][]UID{Far: {9}, Near: {7}},
			pairs:  []Pair{ptPair(7, 0, "S"), ptPairSkip(8, 0, "FT", SkipGone), ptPair(0, 9, "R")},
		},
		{
			name: "skipdeleted/undeleted-kept-without-OpNew",
			st:   ptState(10, 10, ptPairSkip(7, 0, "T", SkipDeleted)),
			far:  ptComplete(ptMsg(7, "S")), near: ptComplete(), opt: ptPushOnly,
			pairs:   []Pair{ptPair(7, 0, "S")},
			waiting: [2]bool{Far: true},
		},
		{
			name: "toobig/dropped-when-source-gone",
			st:   ptState(10, 10, ptPairSkip(5, 0, "", SkipTooBig), ptPairSkip(0, 6, "T", SkipDeleted)),
			far:  ptComplete(), near: ptComplete(), opt: ptBoth,
		},

		// --- new messages
		{
			name: "new/copied-both-ways-with-flags",
			st:   ptState(10, 20, ptPair(1, 1, "")),
			far:  ptComplete(ptMsg(1, ""), ptMsg(11, "FS"), ptMsg(12, "")),
			near: ptComplete(ptMsg(1, ""), ptMsg(21, "R")), opt: ptBoth,
			copies: [2][]UID{Far: {21}, Near: {11, 12}},
			pairs:  []Pair{ptPair(1, 1, ""), ptPair(11, 0, "FS"), ptPair(12, 0, ""), ptPair(0, 21, "R")},
			check: func(t *testing.T, pl Plan) {
				if pl.State.MaxPulled != 12 || pl.State.MaxPushed != 21 {
					t.Errorf("MaxPulled/MaxPushed = %d/%d, want 12/21", pl.State.MaxPulled, pl.State.MaxPushed)
				}
				want := Copy{UID: 11, Flags: ptFlags("FS"), Date: ptMsg(11, "").Date, Size: 100}
				if pl.Copies[Near][0] != want {
					t.Errorf("copy = %+v, want %+v", pl.Copies[Near][0], want)
				}
			},
		},
		{
			name: "new/too-big-skipped-and-reported-once-unless-flagged",
			st:   ptState(10, 10),
			far:  ptComplete(ptMsgSize(11, "", 5000), ptMsgSize(12, "", 50), ptMsgSize(13, "F", 5000)), near: ptComplete(),
			opt:    Options{Pull: OpAll, Push: OpAll, MaxSize: 1000},
			copies: [2][]UID{Near: {12, 13}},
			tooBig: [2][]UID{Near: {11}},
			pairs:  []Pair{ptPairSkip(11, 0, "", SkipTooBig), ptPair(12, 0, ""), ptPair(13, 0, "F")},
		},
		{
			name: "new/deleted-not-copied-where-target-expunges",
			st:   ptState(10, 10),
			far:  ptComplete(ptMsg(11, "T"), ptMsg(12, "T")), near: ptComplete(), opt: ptNearExp,
			pairs: []Pair{ptPairSkip(11, 0, "T", SkipDeleted), ptPairSkip(12, 0, "T", SkipDeleted)},
		},
		{
			name: "new/deleted-on-an-expunging-source-is-expunged-not-copied",
			st:   ptState(10, 10),
			far:  ptComplete(ptMsg(11, "T")), near: ptComplete(), opt: ptFarExp,
			expunges: [2][]UID{Far: {11}}, // expunge acts on its own: far removes it, nothing to copy
		},
		{
			name: "new/deleted-copied-when-nobody-expunges",
			st:   ptState(10, 10),
			far:  ptComplete(ptMsg(11, "T")), near: ptComplete(), opt: ptBoth,
			copies: [2][]UID{Near: {11}},
			pairs:  []Pair{ptPair(11, 0, "T")},
		},
		{
			name: "new/push-only-run-leaves-far-messages-new",
			st:   ptState(10, 10),
			far:  ptComplete(ptMsg(11, "")), near: ptComplete(ptMsg(11, "")), opt: ptPushOnly,
			copies:     [2][]UID{Far: {11}},
			pairs:      []Pair{ptPair(0, 11, "")},
			oldMarkers: [2]bool{Far: true},
			check: func(t *testing.T, pl Plan) {
				if pl.State.MaxPulled != 10 || pl.State.MaxPushed != 11 {
					t.Errorf("MaxPulled/MaxPushed = %d/%d, want 10/11", pl.State.MaxPulled, pl.State.MaxPushed)
				}
			},
		},
		{
			name: "new/unpaired-message-below-max-is-old-and-ignored",
			st:   ptState(10, 10, ptPair(1, 1, "")),
			far:  ptComplete(ptMsg(1, ""), ptMsg(5, "S"), ptMsg(10, "")), near: ptComplete(ptMsg(1, ""), ptMsg(7, ""), ptMsg(10, "F")), opt: ptBothExp,
			pairs: []Pair{ptPair(1, 1, "")},
		},

		// --- expunge
		{
			name: "expunge/both-sides-deleted-both-expunge",
			st:   ptState(10, 10, ptPair(1, 1, "T"), ptPair(2, 2, "")),
			far:  ptComplete(ptMsg(1, "T"), ptMsg(2, "")), near: ptComplete(ptMsg(1, "T"), ptMsg(2, "")), opt: ptBothExp,
			expunges: [2][]UID{Far: {1}, Near: {1}},
			pairs:    []Pair{ptPair(2, 2, "")},
		},
		{
			name: "expunge/only-one-side-expunges-other-keeps-deleted-message",
			st:   ptState(10, 10, ptPair(1, 1, "T")),
			far:  ptComplete(ptMsg(1, "T")), near: ptComplete(ptMsg(1, "T")), opt: ptFarExp,
			expunges: [2][]UID{Far: {1}},
			pairs:    []Pair{ptPairSkip(0, 1, "T", SkipGone)},
		},
		{
			name: "expunge/user-deletion-propagated-and-expunged-in-one-plan",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(ptMsg(1, "ST")), near: ptComplete(ptMsg(1, "S")), opt: ptBothExp,
			expunges: [2][]UID{Far: {1}, Near: {1}},
		},
		{
			name: "expunge/acts-even-when-nothing-propagates",
			st:   ptState(10, 10, ptPair(1, 1, "T")),
			far:  ptComplete(ptMsg(1, "T")), near: ptComplete(ptMsg(1, "T")),
			opt:      Options{Expunge: [2]bool{false, true}},
			expunges: [2][]UID{Near: {1}},
			// Removals are not propagated in this run: the pair keeps the expunged UID so a
			// run with OpGone still sees the removal.
			pairs:      []Pair{ptPair(1, 1, "T")},
			oldMarkers: [2]bool{Near: true},
		},
		{
			name: "expunge/removal-propagated-without-OpFlags-through-OpGone",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(ptMsg(1, "ST")), near: ptComplete(ptMsg(1, "S")),
			opt:      Options{Pull: OpGone, Expunge: [2]bool{true, false}},
			expunges: [2][]UID{Far: {1}},
			flags:    [2][]FlagUpdate{Near: {ptFU("T", "", 1)}},
			pairs:    []Pair{ptPairSkip(0, 1, "ST", SkipGone)},
		},
		{
			name: "expunge/undelete-on-one-side-beats-expunge-on-the-other",
			st:   ptState(10, 10, ptPair(1, 1, "T")),
			far:  ptComplete(ptMsg(1, "T")), near: ptComplete(ptMsg(1, "")), opt: ptFarExp,
			flags: [2][]FlagUpdate{Far: {ptFU("", "T", 1)}},
			pairs: []Pair{ptPair(1, 1, "")},
		},
		{
			name: "expunge/no-flag-update-for-a-message-being-expunged",
			st:   ptState(10, 10, ptPair(1, 1, "S")),
			far:  ptComplete(), near: ptComplete(ptMsg(1, "FS")), opt: ptNearExp,
			expunges: [2][]UID{Near: {1}},
		},

		// --- new state
		{
			name: "state/validities-markers-and-sorted-pairs",
			st:   ptState(10, 10, ptPair(0, 3, ""), ptPair(4, 2, ""), ptPair(2, 4, "")),
			far:  ptComplete(ptMsg(2, ""), ptMsg(4, "")), near: ptComplete(ptMsg(2, ""), ptMsg(3, ""), ptMsg(4, "")), opt: ptPullOnly,
			pairs:   []Pair{ptPair(2, 4, ""), ptPair(4, 2, ""), ptPair(0, 3, "")},
			waiting: [2]bool{Near: true},
			check: func(t *testing.T, pl Plan) {
				s := pl.State
				if s.Generation != 3 || s.FarValidity != 7 || s.NearValidity != 7 {
					t.Errorf("state header %+v", s)
				}
			},
		},
		{
			name: "robust/duplicate-uids-in-state-and-listing",
			st:   ptState(10, 10, ptPair(1, 1, ""), ptPair(1, 2, "S"), ptPair(0, 0, ""), ptPair(3, 1, "")),
			far:  ptComplete(ptMsg(1, "F"), ptMsg(1, "S"), ptMsg(0, "S"), ptMsg(3, "")),
			near: ptComplete(ptMsg(1, ""), ptMsg(2, "")), opt: ptBoth,
			flags: [2][]FlagUpdate{Near: {ptFU("F", "", 1)}},
			pairs: []Pair{ptPair(1, 1, "F")},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pl := PlanMailbox(c.st, c.far, c.near, c.opt)
			checkPlanShape(t, &pl, c.far, c.near, c.st)
			for s := range 2 {
				var copies []UID
				for _, cp := range pl.Copies[s] {
					copies = append(copies, cp.UID)
				}
				ptEq(t, fmt.Sprintf("copies to %s", Side(s)), copies, c.copies[s])
				ptEq(t, fmt.Sprintf("flags on %s", Side(s)), pl.Flags[s], c.flags[s])
				ptEq(t, fmt.Sprintf("expunges on %s", Side(s)), pl.Expunges[s], c.expunges[s])
				ptEq(t, fmt.Sprintf("too big for %s", Side(s)), pl.TooBig[s], c.tooBig[s])
			}
			ptEq(t, "pairs", pl.State.Pairs, c.pairs)
			reps := [2]Report{c.far, c.near}
			old := [2]Markers{c.st.Far, c.st.Near}
			got := [2]Markers{pl.State.Far, pl.State.Near}
			for s := range 2 {
				want := MarkersOf(reps[s].Status)
				if c.oldMarkers[s] {
					want = old[s]
				}
				if c.waiting[s] {
					want.Stamp = ""
				}
				if got[s] != want {
					t.Errorf("%s markers = %+v, want %+v (old markers: %v)", Side(s), got[s], want, c.oldMarkers[s])
				}
			}
			if pl.Guard != nil {
				t.Errorf("unexpected guard: %v", pl.Guard)
			}
			if c.check != nil {
				c.check(t, pl)
			}
			if c.far.Complete && c.near.Complete {
				assertIdempotent(t, pl, c.far, c.near, c.opt)
			}
		})
	}
}

func ptEq[T any](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

// assertIdempotent executes the plan on the messages of two complete reports (copies get
// fresh UIDs, which are filled into the new state) and checks that planning again with
// the same options does nothing.
func assertIdempotent(t *testing.T, pl Plan, far, near Report, opt Options) {
	t.Helper()
	world := [2]map[UID]Message{{}, {}}
	for s, r := range []Report{far, near} {
		for _, m := range r.Messages {
			if m.UID != 0 {
				if _, dup := world[s][m.UID]; !dup {
					world[s][m.UID] = m
				}
			}
		}
	}
	st := pl.State
	st.Pairs = slices.Clone(st.Pairs)
	for s := Side(0); s < 2; s++ {
		next := UID(1000)
		for _, c := range pl.Copies[s] {
			next++
			src := world[s.Other()][c.UID]
			world[s][next] = Message{UID: next, Flags: c.Flags, Size: src.Size, Date: src.Date}
			for i := range st.Pairs {
				p := &st.Pairs[i]
				if s == Near && p.Far == c.UID && p.Near == 0 {
					p.Near = next
				}
				if s == Far && p.Near == c.UID && p.Far == 0 {
					p.Far = next
				}
			}
		}
		for _, fu := range pl.Flags[s] {
			for _, u := range fu.UIDs {
				m := world[s][u]
				m.Flags = (m.Flags | fu.Add) &^ fu.Remove
				world[s][u] = m
			}
		}
		for _, u := range pl.Expunges[s] {
			delete(world[s], u)
		}
	}
	var reps [2]Report
	for s := range 2 {
		var msgs []Message
		for _, m := range world[s] {
			msgs = append(msgs, m)
		}
		slices.SortFunc(msgs, func(a, b Message) int { return int(a.UID) - int(b.UID) })
		reps[s] = ptComplete(msgs...)
	}
	again := PlanMailbox(st, reps[Far], reps[Near], opt)
	if !again.Empty() {
		t.Errorf("not idempotent: the next plan does %+v / %+v / %+v", again.Copies, again.Flags, again.Expunges)
	}
	ptEq(t, "pairs after the next plan", again.State.Pairs, st.Pairs)
}

func TestPlanMailboxGuard(t *testing.T) {
	pairs := func(n int) []Pair {
		var ps []Pair
		for i := 1; i <= n; i++ {
			ps = append(ps, ptPair(UID(i), UID(i), "S"))
		}
		return ps
	}
	msgs := func(from, to int) []Message {
		var ms []Message
		for i := from; i <= to; i++ {
			ms = append(ms, ptMsg(UID(i), "S"))
		}
		return ms
	}
	cases := []struct {
		name      string
		pairs     int
		far, near Report
		opt       Options
		guard     *GuardError // nil: no guard
	}{
		{
			name:  "vanished-far-mailbox-stops-mass-deletion",
			pairs: 20, far: ptComplete(), near: ptComplete(msgs(1, 20)...), opt: ptNearExp,
			guard: &GuardError{Side: Near, Removes: 20, Of: 20},
		},
		{
			name:  "vanished-near-folder-stops-mass-deleted-flags",
			pairs: 20, far: ptComplete(msgs(1, 20)...), near: ptComplete(), opt: ptBoth,
			guard: &GuardError{Side: Far, Removes: 20, Of: 20},
		},
		{
			name:  "ten-or-fewer-removals-pass",
			pairs: 10, far: ptComplete(), near: ptComplete(msgs(1, 10)...), opt: ptNearExp,
		},
		{
			name:  "half-or-fewer-pass",
			pairs: 30, far: ptComplete(msgs(16, 30)...), near: ptComplete(msgs(1, 30)...), opt: ptNearExp,
		},
		{
			name:  "more-than-half-stops",
			pairs: 30, far: ptComplete(msgs(17, 30)...), near: ptComplete(msgs(1, 30)...), opt: ptNearExp,
			guard: &GuardError{Side: Near, Removes: 16, Of: 30},
		},
		{
			name:  "user-deleted-messages-count-when-expunged",
			pairs: 0, far: ptComplete(), near: ptComplete(append(msgs(1, 5), ptMsg(6, "T"), ptMsg(7, "T"), ptMsg(8, "T"),
				ptMsg(9, "T"), ptMsg(10, "T"), ptMsg(11, "T"), ptMsg(12, "T"), ptMsg(13, "T"), ptMsg(14, "T"), ptMsg(15, "T"), ptMsg(16, "T"))...),
			opt:   Options{Expunge: [2]bool{false, true}},
			guard: &GuardError{Side: Near, Removes: 11, Of: 16},
		},
		{
			name:  "without-OpGone-nothing-is-removed",
			pairs: 20, far: ptComplete(), near: ptComplete(msgs(1, 20)...), opt: Options{Pull: OpNew | OpFlags, Expunge: [2]bool{true, true}},
		},
		{
			name:  "status-count-counts-unlisted-messages",
			pairs: 20, far: ptComplete(msgs(1, 8)...),
			near: Report{Status: Status{UIDValidity: 7, UIDNext: 100, Messages: 200}, Messages: msgs(1, 20), Complete: true},
			opt:  ptNearExp,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := ptState(100, 100, pairs(c.pairs)...)
			pl := PlanMailbox(st, c.far, c.near, c.opt)
			checkPlanShape(t, &pl, c.far, c.near, st)
			if c.guard == nil {
				if pl.Guard != nil {
					t.Fatalf("unexpected guard %v", pl.Guard)
				}
				return
			}
			g := pl.Guard
			if g == nil {
				t.Fatalf("no guard; removals %v of %v", pl.Removals, pl.Sizes)
			}
			if g.Side != c.guard.Side || g.Removes != c.guard.Removes || g.Of != c.guard.Of {
				t.Errorf("guard = %+v, want side %s removes %d of %d", g, c.guard.Side, c.guard.Removes, c.guard.Of)
			}
			msg := g.Error()
			for _, want := range []string{fmt.Sprintf("delete %d of %d", g.Removes, g.Of), g.Side.String(), "--force"} {
				if !strings.Contains(msg, want) {
					t.Errorf("guard message %q does not mention %q", msg, want)
				}
			}
			// The plan is still complete (for --dry-run), and --force lets it through.
			if len(pl.Expunges[g.Side])+len(pl.Flags[g.Side]) == 0 {
				t.Errorf("guarded plan lost its actions")
			}
			c.opt.Force = true
			forced := PlanMailbox(st, c.far, c.near, c.opt)
			if forced.Guard != nil {
				t.Errorf("--force still guarded: %v", forced.Guard)
			}
			if !reflect.DeepEqual(forced.Expunges, pl.Expunges) || !reflect.DeepEqual(forced.Flags, pl.Flags) {
				t.Errorf("--force changed the actions")
			}
		})
	}
}

// TestPlanMailboxDeterministic: the same input gives the same plan (map iteration must not
// leak into the output).
func TestPlanMailboxDeterministic(t *testing.T) {
	var pairs []Pair
	var far, near []Message
	for i := UID(1); i <= 200; i++ {
		pairs = append(pairs, ptPair(i, i+1000, ""))
		far = append(far, ptMsg(i, []string{"", "S", "F", "FS"}[i%4]))
		if i%7 != 0 {
			near = append(near, ptMsg(i+1000, []string{"", "R", "T", "S"}[i%4]))
		}
	}
	st := ptState(300, 2000, pairs...)
	first := PlanMailbox(st, ptComplete(far...), ptComplete(near...), ptBoth)
	for range 20 {
		again := PlanMailbox(st, ptComplete(far...), ptComplete(near...), ptBoth)
		if !reflect.DeepEqual(first, again) {
			t.Fatal("two plans for the same input differ")
		}
	}
}

// FuzzPlanMailbox: any state and reports — never a panic, never an action on a message that
// does not exist on its side, always a well-formed plan.
func FuzzPlanMailbox(f *testing.F) {
	f.Add([]byte{3, 1, 2, 0, 5, 9, 1, 4, 7, 2, 2, 8, 33, 1, 0, 200, 17})
	f.Add([]byte{0xff, 0x10, 0x22, 0x31, 0x47, 0x55, 0x63, 0x7f, 0x80, 0x91, 0xa2, 0xb3, 0xc4})
	f.Add([]byte("some state and a report or two, read as bytes"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := ptBytes{b: data}
		st := State{MaxPulled: UID(r.next() % 16), MaxPushed: UID(r.next() % 16)}
		for range r.next() % 24 {
			st.Pairs = append(st.Pairs, Pair{Far: UID(r.next() % 20), Near: UID(r.next() % 20),
				Flags: Flag(r.next()), Skip: SkipReason(r.next() % 6), Into: UID(r.next() % 20)})
		}
		report := func() Report {
			var rep Report
			mode := r.next()
			rep.Unchanged = mode&1 != 0
			rep.Complete = mode&2 != 0
			rep.ExistingKnown = mode&4 != 0
			rep.Status.Messages = int64(int8(r.next()))
			rep.Status.UIDValidity = uint32(r.next())
			for range r.next() % 24 {
				rep.Messages = append(rep.Messages, Message{UID: UID(r.next() % 20), Flags: Flag(r.next()),
					Size: int64(int8(r.next())) * 10})
			}
			for range r.next() % 16 {
				rep.Existing = append(rep.Existing, UID(r.next()%20))
			}
			return rep
		}
		far, near := report(), report()
		opt := Options{Pull: Ops(r.next()), Push: Ops(r.next()), Expunge: [2]bool{r.next()&1 != 0, r.next()&1 != 0},
			MaxSize: int64(r.next()), Force: r.next()&1 != 0}
		pl := PlanMailbox(st, far, near, opt)
		checkPlanShape(t, &pl, far, near, st)
		checkSameAsRef(t, &pl, st, far, near, opt)
		if opt.Force && pl.Guard != nil {
			t.Fatal("guard set despite Force")
		}
		for s := 0; s < 2; s++ {
			if pl.Removals[s] < len(pl.Expunges[s]) {
				t.Fatalf("removals %d below expunges %d", pl.Removals[s], len(pl.Expunges[s]))
			}
		}
	})
}

type ptBytes struct {
	b []byte
	i int
}

func (r *ptBytes) next() byte {
	if r.i >= len(r.b) {
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}
