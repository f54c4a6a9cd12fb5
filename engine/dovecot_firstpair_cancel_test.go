package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// A first sync of two sides that hold the same mail with other flags,
// interrupted (Ctrl-C) while it copies the one-sided messages, and run
// again: the flags end as the union of both sides' (the interruption must
// not leave a merge base that reads a flag not yet sent as one taken away),
// and every message is once on each side.
func TestDoveFirstSyncCancelled(t *testing.T) {
	needDovecot(t)
	for _, kind := range []string{imapMaildir, imapIMAP} {
		for _, side := range []string{"near", "far"} {
			t.Run(kind+"/"+side, func(t *testing.T) {
				p := newPairing(t, kind)
				var far, near []rawMsg
				for _, subj := range names("both", 6) {
					far = append(far, rawMsg{testBody(subj), engine.FlagSeen})
					near = append(near, rawMsg{testBody(subj), engine.FlagFlagged})
				}
				putMessages(t, p.raw[0], "INBOX", far)
				putMessages(t, p.raw[1], "INBOX", near)
				addMany(t, p.spec.Far, "INBOX", 0, names("f", 20)...)
				addMany(t, p.spec.Near, "INBOX", 0, names("n", 20)...)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				w := p.near
				if side == "far" {
					w = p.far
				}
				w.staged.Store(0)
				w.beforeStage = func(n int) {
					if n == 5 {
						cancel()
					}
				}
				res := engine.SyncChannel(ctx, p.spec, engine.RunOptions{})
				if !errors.Is(res.Err, engine.ErrStopped) {
					t.Fatalf("channel error %v does not wrap ErrStopped", res.Err)
				}
				p.reopen(t)
				sync1(t, p, engine.RunOptions{})
				var parts []string
				for _, s := range names("both", 6) {
					parts = append(parts, s+":FS")
				}
				for _, s := range names("f", 20) {
					parts = append(parts, s+":")
				}
				for _, s := range names("n", 20) {
					parts = append(parts, s+":")
				}
				p.check(t, "INBOX", strings.Join(parts, " "))
				if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
					t.Fatalf("not idempotent after the stopped run: %+v", res.Counts)
				}
			})
		}
	}
}
