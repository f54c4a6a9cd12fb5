package engine_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
)

// Two configurations that each name a channel "mail", over different
// Maildirs, take different channel locks (two timers firing at the same
// minute must not refuse each other's runs); one channel run twice takes
// the same, and so do two channels whose states live in one place.
func TestChannelLockFollowsTheStates(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	dir := t.TempDir()
	far, err := maildir.New("far", filepath.Join(dir, "far"), "", maildir.LayoutVerbatim, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	addMany(t, far, "INBOX", 0, "f1")
	spec := func(near string) engine.ChannelSpec {
		st, err := maildir.New("near", filepath.Join(dir, near), "", maildir.LayoutVerbatim, maildir.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s := engine.TestSpecFor(dir, far, st)
		s.Name, s.LockDir = "mail", ""
		return s
	}
	path := func(s engine.ChannelSpec) string {
		t.Helper()
		p, err := engine.ChannelLockPath(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	work, home := spec("work"), spec("home")
	if path(work) == path(home) {
		t.Fatalf("channels over different Maildirs share the lock %s", path(work))
	}
	if path(work) != path(spec("work")) {
		t.Fatal("one channel's lock moved between runs")
	}
	lk, err := engine.LockFile(path(work))
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Unlock()
	if res := engine.SyncChannel(context.Background(), home, engine.RunOptions{}); res.Err != nil {
		t.Fatalf("a run over another Maildir was refused: %v", res.Err)
	}
	if res := engine.SyncChannel(context.Background(), spec("work"), engine.RunOptions{}); !errors.Is(res.Err, engine.ErrLocked) {
		t.Fatalf("a second run of the same channel: %v, want ErrLocked", res.Err)
	}

	// Without a local near side the state directory decides.
	imapLike := func(stateDir string) engine.ChannelSpec {
		s := engine.TestSpecFor(dir, far, notLocal{far})
		s.Name, s.LockDir, s.StateDir = "mail", "", filepath.Join(dir, stateDir)
		return s
	}
	if path(imapLike("s1")) == path(imapLike("s2")) || path(imapLike("s1")) != path(imapLike("s1")) {
		t.Fatal("the lock of a channel without a local near side does not follow its state directory")
	}
}

// notLocal hides a store's folders, as an IMAP near side has none.
type notLocal struct{ engine.Store }
