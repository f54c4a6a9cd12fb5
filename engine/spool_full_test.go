package engine_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// TestSpoolFullSaysWhere: the spool directory on this machine, where a push
// stages its messages, is full, not the server. The copies wait for the next
// run as for a full target, and the error sends the user to that directory
// (or TMPDIR), not to make room on the server. The message stays put and
// goes once there is room.
func TestSpoolFullSaysWhere(t *testing.T) {
	p := newPairing(t, imapMaildir)
	if err := syscall.Mount("tmpfs", p.spool, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("no tmpfs for the spool (needs root): %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			syscall.Unmount(p.spool, syscall.MNT_DETACH)
		}
	})
	near := p.spec.Near
	addMany(t, near, "INBOX", 0, "small")
	sync1(t, p, engine.RunOptions{})
	addRaw(t, near, "INBOX", "From: a@example.org\nMessage-ID: <big@test>\nSubject: big\n\n"+strings.Repeat("0123456789abcdef\n", 8000))
	res := engine.SyncChannel(t.Context(), p.spec, engine.RunOptions{})
	err := mailboxErr(res)
	if err == nil {
		t.Fatalf("no error for a full spool: %+v", res.Counts)
	}
	if !errors.Is(err, engine.ErrStagingFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("error %v: want ErrStagingFull and ENOSPC", err)
	}
	if e := err.Error(); !strings.Contains(e, "spooling message in "+p.spool) ||
		!strings.Contains(e, "make room in that directory, or set TMPDIR to one with room, first") || strings.Contains(e, "make room there") {
		t.Errorf("error %q: want one naming the spool directory and sending the user there", e)
	}
	if far := engine.ViewBox(t, p.raw[0], "INBOX"); far != "small:" {
		t.Fatalf("far %s after the failed push, want small:", far)
	}
	if err := syscall.Unmount(p.spool, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if res := sync1(t, p, engine.RunOptions{}); res.Copied != [2]int{1, 0} {
		t.Fatalf("run with room again: %+v", res.Counts)
	}
	if far := engine.ViewBox(t, p.raw[0], "INBOX"); far != "big: small:" {
		t.Fatalf("far %s, want big: small:", far)
	}
}
