package engine_test

import (
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// A first sync of two stores that already hold the same messages pairs
// them, in every pairing of real stores: nothing is copied twice, the
// one-sided messages are copied, flags are merged. An IMAP side is read
// with Identify (the Message-ID field and RFC822.SIZE), not with its bodies.
func TestDoveFirstSyncPairsExisting(t *testing.T) {
	for _, kind := range allPairings {
		t.Run(kind, func(t *testing.T) {
			p := newPairing(t, kind)
			var far, near []rawMsg
			for i, subj := range names("both", 5) {
				far = append(far, rawMsg{testBody(subj), engine.FlagSeen * engine.Flag(i%2)})
				near = append(near, rawMsg{testBody(subj), engine.FlagFlagged * engine.Flag(i%3/2)})
			}
			far = append(far, rawMsg{testBody("far-only"), 0})
			near = append(near, rawMsg{testBody("near-only"), engine.FlagReplied})
			putMessages(t, p.raw[0], "Work", far)
			putMessages(t, p.raw[1], "Work", near)

			res := engine.SyncChannel(t.Context(), p.spec, engine.RunOptions{})
			if res.Err != nil || res.Counts.Failed != [2]int{} {
				t.Fatalf("sync: %v %+v", res.Err, res.Counts)
			}
			if res.Counts.Copied != [2]int{1, 1} {
				t.Fatalf("copied %v, want the one-sided message each way", res.Counts.Copied)
			}
			p.check(t, "Work", "both00: both01:S both02:F both03:S both04: far-only: near-only:R")
			imapSides := map[string][]*wrapStore{imapMaildir: {p.far}, imapIMAP: {p.far, p.near}}[kind]
			for _, w := range imapSides {
				if w.calls.get("Identify") == 0 {
					t.Errorf("%s: the IMAP store was not asked to Identify", w.Name())
				}
			}
			res = engine.SyncChannel(t.Context(), p.spec, engine.RunOptions{})
			if res.Err != nil || res.Counts.Copied != [2]int{} || res.Counts.Flagged != [2]int{} {
				t.Fatalf("second run: %v %+v", res.Err, res.Counts)
			}
		})
	}
}
