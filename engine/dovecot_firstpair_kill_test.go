package engine_test

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// A first sync of two sides that already hold the same mail, killed by a
// real SIGKILL while it copies the one-sided messages (with and without a
// Message-ID), and run again: every message is once on each side.
func TestDoveFirstSyncSIGKILL(t *testing.T) {
	needDovecot(t)
	setup := func(p *pairing) {
		var far, near []rawMsg
		for i, subj := range names("both", 4) {
			far = append(far, rawMsg{testBody(subj), engine.FlagSeen * engine.Flag(i%2)})
			near = append(near, rawMsg{testBody(subj), 0})
		}
		far = append(far, rawMsg{"Subject: shared-noid\r\n\r\nno id\r\n", 0})
		near = append(near, rawMsg{"Subject: shared-noid\nX-TUID: ZYJQgcJ/uOgF\n\nno id\n", 0})
		for i := range 5 {
			far = append(far, rawMsg{fmt.Sprintf("Subject: far-noid%d\r\n\r\nfrom far %d\r\n", i, i), 0})
			far = append(far, rawMsg{testBody(fmt.Sprintf("far%d", i)), 0})
			near = append(near, rawMsg{fmt.Sprintf("Subject: near-noid%d\r\n\r\nfrom near %d\r\n", i, i), 0})
			near = append(near, rawMsg{testBody(fmt.Sprintf("near%d", i)), 0})
		}
		putMessages(t, p.raw[0], "INBOX", far)
		putMessages(t, p.raw[1], "INBOX", near)
	}
	kind := imapMaildir
	ref := newPairing(t, kind)
	setup(ref)
	ref.close()
	ref.reopen(t)
	sync1(t, ref, engine.RunOptions{})
	want := engine.ViewBox(t, ref.spec.Far, "INBOX")
	ref.check(t, "INBOX", want)
	if want != "both00: both01:S both02: both03:S far-noid0: far-noid1: far-noid2: far-noid3: far-noid4: far0: far1: far2: far3: far4: near-noid0: near-noid1: near-noid2: near-noid3: near-noid4: near0: near1: near2: near3: near4: shared-noid:" {
		t.Fatalf("reference run: %s", want)
	}
	ref.close()
	for _, tc := range []struct {
		side string
		at   int
	}{{"far", 1}, {"far", 3}, {"far", 6}, {"near", 2}, {"near", 7}} {
		p := newPairing(t, kind)
		setup(p)
		p.close()
		cmd := exec.Command(os.Args[0], "-test.run=^TestDovecotKillHelper$")
		cmd.Env = append(os.Environ(), "QUIXYSYNC_TEST_KILL_DIR="+p.dir, dovecotEnv+"="+serverInfo().encode(),
			"QUIXYSYNC_TEST_KIND="+kind, "QUIXYSYNC_TEST_KILL_SIDE="+tc.side, fmt.Sprint("QUIXYSYNC_TEST_KILL_AT=", tc.at))
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("%s at %d: child not killed by SIGKILL: %v\n%s", tc.side, tc.at, err, out)
		}
		waitKilledSessions(t, p)
		p.reopen(t)
		sync1(t, p, engine.RunOptions{})
		p.check(t, "INBOX", want)
		res := sync1(t, p, engine.RunOptions{})
		if !zeroCounts(res.Counts) {
			t.Fatalf("%s at %d: not idempotent after resume: %+v", tc.side, tc.at, res.Counts)
		}
		p.close()
	}
}
