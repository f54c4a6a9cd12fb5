package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// TestIMAPConnectionLimit: a server that allows the user only one or two
// connections (Dovecot's mail_max_userip_connections; the user's other mail
// clients count too) refuses the pool's extra ones with NO [LIMIT]. The
// run must go on with the connections it has, as mbsync with its single
// one does: every mailbox synced both ways, nothing failed.
func TestIMAPConnectionLimit(t *testing.T) {
	for _, limit := range []int{1, 2} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			p, _ := privatePairing(t, fmt.Sprintf("mail_max_userip_connections = %d\n", limit))
			p.setBare()
			var boxes []string
			for b := range 12 {
				box := fmt.Sprintf("box%d", b)
				boxes = append(boxes, box)
				addMany(t, p.raw[0], box, 0, names(box+"-far-", 30)...)
			}
			p.reopen(t)
			res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
			if err := mailboxErr(res); err != nil {
				t.Fatalf("first run: %v", err)
			}
			if res.Counts.Copied[engine.Near] != 12*30 {
				t.Fatalf("first run copied %v, want %d to the near side", res.Counts.Copied, 12*30)
			}
			// Mail on the near side of every folder: pushed, the APPENDs
			// wanting connections of their own too.
			for _, box := range boxes {
				addMany(t, p.raw[1], box, 0, names(box+"-near-", 5)...)
			}
			p.reopen(t)
			res = engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
			if err := mailboxErr(res); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if res.Counts.Copied[engine.Far] != 12*5 {
				t.Fatalf("second run copied %v, want %d to the far side", res.Counts.Copied, 12*5)
			}
			for _, box := range boxes {
				p.check(t, box, "")
			}
		})
	}
}
