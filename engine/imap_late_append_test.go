package engine_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// TestDovecotLateBatchAfterTimeout: the server takes a batch's MULTIAPPEND
// in full and is slower to carry it out than the client's timeout. The
// client drops the connection, looks for the batch on a new one and does not
// find it yet; the server then appends it. Taken as not copied, the batch was
// copied again by the next run and the late one copied back to the source as
// new mail: every message twice on both sides. The next run must find it.
func TestDovecotLateBatchAfterTimeout(t *testing.T) {
	needDovecot(t)
	p := newPairing(t, imapIMAP)
	addMany(t, p.spec.Far, "INBOX", engine.FlagSeen, names("late", 10)...)
	want := engine.ViewBox(t, p.spec.Far, "INBOX")
	p.close()
	ci := serverInfo()
	ci.timeout = 2 * time.Second // the near side's: no answer for 2 s = dead
	p.raw[0] = newIMAPStore(t, serverInfo(), "alice", p.spool)
	p.raw[1] = newIMAPStore(t, ci, "bob", p.spool)
	p.far, p.near = wrap(p.raw[0]), wrap(p.raw[1])
	// Bob's server processes stop as the batch's commit begins: the
	// MULTIAPPEND goes out whole and waits in the server's socket.
	var stopped []int
	p.near.beforeCommit = func(n int) {
		if n < 2 || stopped != nil {
			return
		}
		pids, err := srv.SessionPIDs("bob")
		if err != nil || len(pids) == 0 {
			t.Errorf("sessions of bob: %v %v", pids, err)
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGSTOP)
		}
		stopped = pids
	}
	cont := func() {
		for _, pid := range stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(cont)
	p.spec = engine.TestSpecFor(p.dir, p.far.store(), p.near.store())
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	if stopped == nil {
		t.Fatal("no commit of a batch to the near side")
	}
	if mailboxErr(res) == nil {
		t.Fatalf("first run: no error for the batch that timed out: %+v", res.Counts)
	}
	// The server carries the batch out now, after the run looked for it.
	cont()
	for _, pid := range stopped {
		for syscall.Kill(pid, 0) == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	p.near.beforeCommit = nil
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", want)
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("not idempotent: %+v", res.Counts)
	}
}
