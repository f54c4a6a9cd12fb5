package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
)

func maildirSpec(t testing.TB, dir string) engine.ChannelSpec {
	t.Helper()
	far, err := maildir.New("far", filepath.Join(dir, "far"), "", maildir.LayoutVerbatim, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	near, err := maildir.New("near", filepath.Join(dir, "near"), "", maildir.LayoutVerbatim, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return engine.TestSpecFor(dir, far, near)
}

func checkSame(t *testing.T, spec engine.ChannelSpec, box, want string) {
	t.Helper()
	f, n := engine.ViewBox(t, spec.Far, box), engine.ViewBox(t, spec.Near, box)
	if f != n || (want != "" && f != want) {
		t.Fatalf("%s:\nfar:  %s\nnear: %s\nwant: %s", box, f, n, want)
	}
}

// Maildir↔Maildir: kill the run after every journal line, resume, compare.
func TestMaildirCrashAtEveryStep(t *testing.T) {
	ref := maildirSpec(t, t.TempDir())
	engine.CrashScenarioSetup(t, ref)
	var lines atomic.Int64
	engine.MustSync(t, ref, engine.WithJournalCounter(engine.RunOptions{}, &lines))
	steps := int(lines.Load())
	want := map[string]string{}
	for _, box := range []string{"INBOX", "Archive"} {
		checkSame(t, ref, box, "")
		want[box] = engine.ViewBox(t, ref.Far, box)
	}
	res := engine.MustSync(t, ref, engine.RunOptions{})
	if res.Copied != [2]int{} || res.Deleted != [2]int{} || res.Flagged != [2]int{} {
		t.Fatalf("second run not idempotent: %+v", res.Counts)
	}
	for n := 1; n <= steps; n++ {
		spec := maildirSpec(t, t.TempDir())
		engine.CrashScenarioSetup(t, spec)
		r := engine.SyncChannel(context.Background(), spec, engine.RunOptions{CrashAfter: n})
		crashed := false
		for _, m := range r.Mailboxes {
			crashed = crashed || errors.Is(m.Err, engine.ErrCrash)
		}
		if !crashed {
			t.Fatalf("step %d: no crash", n)
		}
		engine.MustSync(t, spec, engine.RunOptions{})
		for _, box := range []string{"INBOX", "Archive"} {
			checkSame(t, spec, box, want[box])
		}
	}
}

// TestMaildirKillHelper is the child of TestMaildirSIGKILLMidTransfer.
func TestMaildirKillHelper(t *testing.T) {
	dir := os.Getenv("QUIXYSYNC_TEST_KILL_DIR")
	if dir == "" {
		t.Skip("helper process")
	}
	spec := maildirSpec(t, dir)
	opt := engine.RunOptions{}
	if os.Getenv("QUIXYSYNC_TEST_SIGKILL_SELF") != "" {
		// A real SIGKILL right after the first committed batch.
		opt.Progress = func(ev engine.ProgressEvent) {
			if ev.Messages > 0 {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	}
	engine.SyncChannel(context.Background(), spec, opt)
	os.Exit(0)
}

// A real process killed in the middle of a transfer (os.Exit after N journal
// lines: no deferred cleanup, no state write), then resumed.
func TestMaildirSIGKILLMidTransfer(t *testing.T) {
	ref := maildirSpec(t, t.TempDir())
	engine.CrashScenarioSetup(t, ref)
	for i := 0; i < 40; i++ {
		engine.AddMsg(t, ref.Far, "INBOX", fmt.Sprint("bulk", i), 0)
	}
	engine.MustSync(t, ref, engine.RunOptions{})
	want := engine.ViewBox(t, ref.Far, "INBOX")

	for _, n := range []int{0, 1, 3, 20, 45} {
		dir := t.TempDir()
		spec := maildirSpec(t, dir)
		engine.CrashScenarioSetup(t, spec)
		for i := 0; i < 40; i++ {
			engine.AddMsg(t, spec.Far, "INBOX", fmt.Sprint("bulk", i), 0)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestMaildirKillHelper$")
		cmd.Env = append(os.Environ(), "QUIXYSYNC_TEST_KILL_DIR="+dir)
		if n == 0 {
			cmd.Env = append(cmd.Env, "QUIXYSYNC_TEST_SIGKILL_SELF=1")
		} else {
			cmd.Env = append(cmd.Env, "QUIXYSYNC_TEST_CRASH_AFTER="+strconv.Itoa(n))
		}
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		switch {
		case n == 0 && (!ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL):
			t.Fatalf("child not killed by SIGKILL: %v\n%s", err, out)
		case n > 0 && (!ok || ee.ExitCode() != 100):
			t.Fatalf("child with crash after %d: %v\n%s", n, err, out)
		}
		if js, _ := filepath.Glob(filepath.Join(dir, "near", "*", engine.StateFileName+".journal")); len(js) == 0 {
			t.Fatalf("no journal left by the killed run")
		}
		engine.MustSync(t, spec, engine.RunOptions{})
		checkSame(t, spec, "INBOX", want)
	}
}

// TestMaildirJournalRidesOnSyncfs: copying into a Maildir, the journal's
// intents are made durable by the syncfs that makes the messages durable
// (no journal fsync of their own); flag changes and removals still sync it.
func TestMaildirJournalRidesOnSyncfs(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || !slices.Contains([]int64{unix.EXT4_SUPER_MAGIC, unix.TMPFS_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC}, int64(st.Type)) {
		t.Skip("not a file system whose syncfs the Maildir store trusts")
	}
	opt := maildir.Options{Fsync: true}
	far, err := maildir.New("far", filepath.Join(dir, "far"), "", maildir.LayoutVerbatim, opt)
	if err != nil {
		t.Fatal(err)
	}
	near, err := maildir.New("near", filepath.Join(dir, "near"), "", maildir.LayoutVerbatim, opt)
	if err != nil {
		t.Fatal(err)
	}
	spec := engine.TestSpecFor(dir, far, near)
	for i := range 5 {
		engine.AddMsg(t, far, "INBOX", fmt.Sprint("m", i), 0)
	}
	var syncs atomic.Int64
	engine.MustSync(t, spec, engine.WithJournalSyncCounter(engine.RunOptions{}, &syncs))
	checkSame(t, spec, "INBOX", "m0: m1: m2: m3: m4:")
	if n := syncs.Load(); n != 0 {
		t.Errorf("pulling 5 messages: %d journal fsyncs, want 0", n)
	}
	engine.SetFlagsBySubject(t, far, "INBOX", "m1", engine.FlagSeen, 0)
	engine.ExpungeBySubject(t, far, "INBOX", "m2")
	engine.AddMsg(t, far, "INBOX", "m5", 0)
	syncs.Store(0)
	engine.MustSync(t, spec, engine.WithJournalSyncCounter(engine.RunOptions{}, &syncs))
	checkSame(t, spec, "INBOX", "m0: m1:S m3: m4: m5:")
	if n := syncs.Load(); n != 1 {
		t.Errorf("a copy, a flag change and a removal: %d journal fsyncs, want 1", n)
	}
}

// With a Maildir near side the state lives in the folder: rm -r of the
// folder takes it along, and the far mailbox comes back as new (never a
// removal on a guess). What quixysync.toml.example tells a user who wants
// the far mailbox removed: empty the folder, sync, remove its cur/, new/
// and tmp/ but not the folder (the state is in it), sync — the far one
// goes, and the next run sees no mailbox of that name.
func TestRemoveFarAfterNearFolderEmptiedAndUnmade(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	spec.Remove = [2]bool{true, true}
	engine.AddMsg(t, spec.Far, "Old", "o1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	engine.ExpungeBySubject(t, spec.Near, "Old", "o1")
	engine.MustSync(t, spec, engine.RunOptions{})
	if v := engine.ViewBox(t, spec.Far, "Old"); v != "" {
		t.Fatalf("far Old not emptied: %s", v)
	}
	nearOld := filepath.Join(dir, "near", "Old")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.RemoveAll(filepath.Join(nearOld, sub)); err != nil {
			t.Fatal(err)
		}
	}
	res := engine.MustSync(t, spec, engine.RunOptions{})
	if len(res.Mailboxes) != 1 || !strings.HasPrefix(res.Mailboxes[0].Skipped, "removed on the far side") {
		t.Fatalf("got %+v, want the far mailbox removed", res.Mailboxes)
	}
	if _, err := os.Stat(filepath.Join(dir, "far", "Old")); !os.IsNotExist(err) {
		t.Errorf("far Old is still there (%v)", err)
	}
	if res := engine.MustSync(t, spec, engine.RunOptions{}); len(res.Mailboxes) != 0 {
		t.Errorf("the next run still sees Old: %+v", res.Mailboxes)
	}
}

// deleteHooked calls before ahead of each DeleteMailbox; an error from it
// stands for the run dying there.
type deleteHooked struct {
	*maildir.Store
	before func(name string) error
}

func (d deleteHooked) DeleteMailbox(ctx context.Context, name string) error {
	if err := d.before(name); err != nil {
		return err
	}
	return d.Store.DeleteMailbox(ctx, name)
}

// A near folder removed because its far mailbox went keeps its state until
// it is no longer a folder: a run dying in between must not leave an empty
// folder without its state, which the next run would take for a new local
// folder and create on the server again.
func TestRemovedNearFolderKeepsStateUntilGone(t *testing.T) {
	dir := t.TempDir()
	spec := maildirSpec(t, dir)
	spec.Remove = [2]bool{true, true}
	engine.AddMsg(t, spec.Far, "Old", "o1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	engine.ExpungeBySubject(t, spec.Far, "Old", "o1")
	engine.MustSync(t, spec, engine.RunOptions{})
	if err := spec.Far.DeleteMailbox(context.Background(), "Old"); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "near", "Old", engine.StateFileName)
	dying := errors.New("killed")
	hooked := deleteHooked{Store: spec.Near.(*maildir.Store)}
	hooked.before = func(name string) error {
		if _, err := os.Stat(state); err != nil {
			t.Errorf("removing %s while its folder is still one, its state is gone: %v", name, err)
		}
		return dying
	}
	spec.Near = hooked
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	if len(res.Mailboxes) != 1 || !errors.Is(res.Mailboxes[0].Err, dying) {
		t.Fatalf("got %+v, want the removal to fail", res.Mailboxes)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("after the failed removal the state is gone: %v", err)
	}

	hooked.before = func(string) error { return nil }
	spec.Near = hooked
	res = engine.MustSync(t, spec, engine.RunOptions{})
	if len(res.Mailboxes) != 1 || !strings.HasPrefix(res.Mailboxes[0].Skipped, "removed on the near side") {
		t.Fatalf("got %+v, want the near folder removed", res.Mailboxes)
	}
	if _, err := os.Stat(filepath.Join(dir, "near", "Old")); !os.IsNotExist(err) {
		t.Errorf("near Old is still there (%v)", err)
	}
	if res := engine.MustSync(t, spec, engine.RunOptions{}); len(res.Mailboxes) != 0 {
		t.Errorf("the next run still sees Old: %+v", res.Mailboxes)
	}
}
