package maildir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/engine"
)

// commitFixture is a store with Fsync on whose durability steps are recorded
// (and can be failed) through the test hook.
type commitFixture struct {
	t    *testing.T
	s    *Store
	dir  string
	mb   *Mailbox
	mu   sync.Mutex
	ops  []string            // "syncfs", "fsync <name>", "fsyncdir <sub>"
	fail map[string]error    // op or "fsync <name>" → error to return
	seen map[string][]string // at each op: the files in tmp/ new/ cur/
}

func newCommitFixture(t *testing.T) *commitFixture {
	root := t.TempDir()
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(t.Context(), "INBOX"); err != nil {
		t.Fatal(err)
	}
	f := &commitFixture{t: t, s: s, dir: filepath.Join(root, "INBOX"), fail: map[string]error{}, seen: map[string][]string{}}
	// Whether a syncfs is used depends on other programs' unwritten data
	// (durable.go); a test machine's own must not decide these tests.
	f.setDirty(0, 0)
	f.mb = open(t, s, "INBOX", false)
	s.testHook = func(op, path string) error {
		key := op
		switch op {
		case "fsync", "fsyncdir":
			key = op + " " + filepath.Base(path)
		}
		if key == "fsync "+uidFile {
			key = "fsyncuid" // not a message's fsync
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.ops = append(f.ops, key)
		if op == "fsyncdir" && key != "fsyncdir new" && key != "fsyncdir cur" || key == "fsyncuid" {
			op = "uid durable" // the folder's .uidvalidity: its rename, or its bytes overwritten
		}
		for _, k := range []string{op, "at " + key} {
			if _, ok := f.seen[k]; !ok {
				f.seen[k] = []string{}
				for _, sub := range []string{"tmp", "new", "cur"} {
					for _, n := range files(t, f.dir, sub) {
						f.seen[k] = append(f.seen[k], sub+"/"+n)
					}
				}
			}
		}
		return f.fail[key]
	}
	return f
}

// commit stages n messages and commits them; an error of Commit itself
// fails the test (per-message errors are in the results).
func (f *commitFixture) commit(n int) ([]engine.Staged, []engine.CommitResult) {
	f.t.Helper()
	list := f.stage(n)
	res, err := f.mb.Commit(f.t.Context(), list)
	if err != nil {
		f.t.Fatal(err)
	}
	return list, res
}

// setDirty makes the store read Dirty and Writeback (in KiB) from a fake
// /proc/meminfo.
func (f *commitFixture) setDirty(dirtyKiB, writebackKiB int64) {
	p := filepath.Join(f.t.TempDir(), "meminfo")
	data := fmt.Sprintf("MemTotal:       24000000 kB\nDirty:          %8d kB\nWriteback:      %8d kB\nAnonPages:        100000 kB\n", dirtyKiB, writebackKiB)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		f.t.Fatal(err)
	}
	f.s.meminfo = p
}

// stage stages n messages, every other one seen.
func (f *commitFixture) stage(n int) []engine.Staged {
	var list []engine.Staged
	for i := 0; i < n; i++ {
		var fl engine.Flag
		if i%2 == 1 {
			fl = engine.FlagSeen
		}
		x, err := f.mb.Stage(f.t.Context(), engine.NewMessage{Flags: fl, Body: strings.NewReader(fmt.Sprintf("message %d\n", i))})
		if err != nil {
			f.t.Fatal(err)
		}
		list = append(list, x)
	}
	f.ops = nil
	return list
}

func (f *commitFixture) count(prefix string) int {
	n := 0
	for _, op := range f.ops {
		if strings.HasPrefix(op, prefix) {
			n++
		}
	}
	return n
}

// inTmpOnly reports an error for every file that was already in new/ or
// cur/ at the step seen under key: what that step made durable had to be.
func (f *commitFixture) inTmpOnly(key, what string) {
	f.t.Helper()
	for _, p := range f.seen[key] {
		if !strings.HasPrefix(p, "tmp/") {
			f.t.Errorf("%s in place before %s", p, what)
		}
	}
}

// commitWith stages n messages and commits them with the engine's file j
// handed over (CommitWith).
func (f *commitFixture) commitWith(j string, n int) ([]engine.Staged, []engine.CommitResult, error) {
	list := f.stage(n)
	f.mb.CommitWith(j)
	res, err := f.mb.Commit(f.t.Context(), list)
	return list, res, err
}

// checkOrder: when the data was made durable every file was still in tmp/,
// and when the directories were fsynced every committed file was in place.
func (f *commitFixture) checkOrder(dataOp string, list []engine.Staged, res []engine.CommitResult) {
	t := f.t
	t.Helper()
	at := f.seen[dataOp]
	if len(at) != len(list) {
		t.Errorf("at %s the folder held %v, want the %d staged files in tmp/ only", dataOp, at, len(list))
	}
	f.inTmpOnly(dataOp, "the data was durable ("+dataOp+")")
	inPlace := 0
	for _, p := range f.seen["fsyncdir"] {
		if !strings.HasPrefix(p, "tmp/") {
			inPlace++
		}
	}
	ok := 0
	for _, r := range res {
		if r.Err == nil {
			ok++
		}
	}
	if inPlace != ok {
		t.Errorf("at the first directory fsync %d files were in place, want %d: %v", inPlace, ok, f.seen["fsyncdir"])
	}
	if i, j := slices.Index(f.ops, "fsyncdir new"), slices.Index(f.ops, "fsyncdir cur"); i < 0 || j < 0 {
		t.Errorf("new/ and cur/ not both fsynced: %v", f.ops)
	}
	if last := f.ops[len(f.ops)-1]; !strings.HasPrefix(last, "fsyncdir") {
		t.Errorf("last durability step %q, want a directory fsync", last)
	}
	// The UIDs' reservation (.uidvalidity renamed in the folder, or its
	// bytes overwritten) is durable before any file carrying them is in
	// place: by the syncfs, else by an fsync of the folder or the file
	// before the renames.
	if _, ok := f.seen["uid durable"]; ok {
		f.inTmpOnly("uid durable", "the UID reservation was durable")
	} else if dataOp != "syncfs" || f.count("syncfs") == 0 {
		t.Errorf("the UID reservation was never made durable: %v", f.ops)
	}
}

func (f *commitFixture) checkResults(list []engine.Staged, res []engine.CommitResult, failed ...int) {
	t := f.t
	t.Helper()
	placed := map[string]bool{}
	for _, sub := range []string{"new", "cur"} {
		for _, n := range files(t, f.dir, sub) {
			placed[n] = true
		}
	}
	for i, r := range res {
		name := list[i].(*staged).name
		if slices.Contains(failed, i) {
			if r.Err == nil || r.UID != 0 || placed[name] {
				t.Errorf("message %d should have failed: %+v, in place %v", i, r, placed[name])
			}
			continue
		}
		if r.Err != nil || r.UID != list[i].UID() || !placed[name] {
			t.Errorf("message %d: %+v, in place %v", i, r, placed[name])
		}
	}
	if n := files(t, f.dir, "tmp"); len(n) != 0 {
		t.Errorf("tmp/ not empty: %v", n)
	}
}

func syncfsUsable(t *testing.T, dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return syncfsTrusted(int64(st.Type)) && syncfsReportsErrors()
}

func TestCommitBatchSyncfs(t *testing.T) {
	f := newCommitFixture(t)
	if !syncfsUsable(t, f.dir) {
		t.Skip("no trusted syncfs on the test directory's file system")
	}
	list, res := f.commit(10)
	if f.count("syncfs") != 1 || f.count("fsync ") != 0 {
		t.Errorf("a batch of 10: %v, want one syncfs and no fsync per file", f.ops)
	}
	f.checkOrder("syncfs", list, res)
	f.checkResults(list, res)
}

func TestCommitSmallBatchFsyncsEach(t *testing.T) {
	f := newCommitFixture(t)
	list, res := f.commit(syncfsMin - 1)
	if f.count("syncfs") != 0 || f.count("fsync ") != len(list) {
		t.Errorf("a batch of %d: %v, want an fsync per file", len(list), f.ops)
	}
	f.checkOrder("fsync", list, res)
	f.checkResults(list, res)
}

func TestCommitWithoutSyncfs(t *testing.T) {
	f := newCommitFixture(t)
	f.s.syncfsErrs = false // an old kernel
	list, res := f.commit(20)
	if f.count("syncfs") != 0 || f.count("fsync ") != 20 {
		t.Errorf("%v, want 20 fsyncs", f.ops)
	}
	f.checkOrder("fsync", list, res)
	f.checkResults(list, res)
}

// A failing syncfs (perhaps another program's write-back error) falls back
// to fsync per file, which tells which of ours failed: only that one is lost.
func TestCommitSyncfsFails(t *testing.T) {
	f := newCommitFixture(t)
	if !syncfsUsable(t, f.dir) {
		t.Skip("no trusted syncfs on the test directory's file system")
	}
	list := f.stage(6)
	f.fail["syncfs"] = syscall.EIO
	f.fail["fsync "+list[3].(*staged).name] = syscall.EIO
	res, err := f.mb.Commit(t.Context(), list)
	if err != nil {
		t.Fatal(err)
	}
	if f.count("syncfs") != 1 || f.count("fsync ") != 6 {
		t.Errorf("%v, want syncfs then 6 fsyncs", f.ops)
	}
	f.checkOrder("syncfs", list, res)
	f.checkResults(list, res, 3)
	if !strings.Contains(res[3].Err.Error(), "input/output error") {
		t.Errorf("error %v", res[3].Err)
	}
}

func TestCommitDirFsyncFails(t *testing.T) {
	f := newCommitFixture(t)
	list := f.stage(4)
	f.fail["fsyncdir cur"] = syscall.EIO
	res, err := f.mb.Commit(t.Context(), list)
	if err == nil {
		t.Fatal("Commit succeeded although cur/ could not be fsynced")
	}
	// The files are in place, but maybe not for good: each result has its
	// UID and an error, so that the engine records none of them as done
	// before Settle made them durable.
	placed := map[string]bool{}
	for _, sub := range []string{"new", "cur"} {
		for _, n := range files(t, f.dir, sub) {
			placed[n] = true
		}
	}
	for i, r := range res {
		if r.Err == nil || r.UID != list[i].UID() || !placed[list[i].(*staged).name] {
			t.Errorf("message %d: %+v, in place %v; want its UID, an error, the file in place", i, r, placed[list[i].(*staged).name])
		}
	}
	// Settle makes them durable once the directory can be fsynced again.
	delete(f.fail, "fsyncdir cur")
	f.ops = nil
	if err := f.mb.Settle(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.ops, "fsyncdir new") || !slices.Contains(f.ops, "fsyncdir cur") {
		t.Errorf("Settle did not fsync new/ and cur/: %v", f.ops)
	}
}

// Settle fsyncs new/ and cur/ even when this process changed neither: the
// renames a listing shows may be those of a run killed before its fsyncs.
// It reports a failed fsync.
func TestSettle(t *testing.T) {
	f := newCommitFixture(t)
	f.ops = nil
	if err := f.mb.Settle(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.ops, "fsyncdir new") || !slices.Contains(f.ops, "fsyncdir cur") {
		t.Errorf("Settle did not fsync new/ and cur/: %v", f.ops)
	}
	f.fail["fsyncdir new"] = syscall.EIO
	if err := f.mb.Settle(); !errors.Is(err, syscall.EIO) {
		t.Errorf("Settle with new/ failing to fsync: %v, want EIO", err)
	}
}

// engineFile is a file of the engine's (its journal) beside the folder.
func (f *commitFixture) engineFile() string {
	p := filepath.Join(filepath.Dir(f.dir), "journal")
	writeFile(f.t, p, "intents\n")
	return p
}

// renameWaiting commits a message and changes its flags with the directory
// fsyncs deferred, so that a Barrier has renames to make durable; it returns
// the engine's file for the Barrier.
func (f *commitFixture) renameWaiting() string {
	f.t.Helper()
	list := f.stage(1)
	res, err := f.mb.Commit(f.t.Context(), list)
	if err != nil || res[0].Err != nil {
		f.t.Fatal(err, res)
	}
	j := f.engineFile()
	f.mb.DeferSync()
	if err := f.mb.SetFlags(f.t.Context(), []engine.UID{res[0].UID}, engine.FlagFlagged, 0); err != nil {
		f.t.Fatal(err)
	}
	return j
}

// CommitWith: the engine's file is durable before any message is in place;
// with one syncfs for the batch that costs nothing more, else it gets an
// fsync of its own, and if that fails nothing is committed.
func TestCommitWithEngineFile(t *testing.T) {
	t.Run("syncfs", func(t *testing.T) {
		f := newCommitFixture(t)
		if !syncfsUsable(t, f.dir) {
			t.Skip("no trusted syncfs on the test directory's file system")
		}
		j := f.engineFile()
		if !f.mb.Covers(j) {
			t.Fatal("Covers: false for a file beside the folder")
		}
		list, res, err := f.commitWith(j, 5)
		if err != nil {
			t.Fatal(err)
		}
		if f.count("syncfs") != 1 || f.count("fsync ") != 0 || f.count("fsyncdir INBOX") != 0 {
			t.Errorf("%v: want one syncfs for messages, journal and UID reservation", f.ops)
		}
		f.checkOrder("syncfs", list, res)
		f.checkResults(list, res)
	})
	t.Run("fsync", func(t *testing.T) {
		f := newCommitFixture(t)
		f.s.syncfsErrs = false
		j := f.engineFile()
		if f.mb.Covers(j) {
			t.Fatal("Covers: true without a trusted syncfs")
		}
		list, res, err := f.commitWith(j, 5)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := f.seen["at fsync journal"]; !ok {
			t.Fatalf("the engine's file was not fsynced: %v", f.ops)
		}
		f.inTmpOnly("at fsync journal", "the engine's file was durable")
		f.checkOrder("fsync", list, res)
		f.checkResults(list, res)
		// Only for that Commit.
		list = f.stage(5)
		if _, err := f.mb.Commit(t.Context(), list); err != nil || f.count("fsync journal") != 0 {
			t.Errorf("a later Commit: %v, %v", err, f.ops)
		}
	})
	t.Run("fails", func(t *testing.T) {
		f := newCommitFixture(t)
		f.s.syncfsErrs = false
		j := f.engineFile()
		f.fail["fsync journal"] = syscall.EIO
		list, res, _ := f.commitWith(j, 4)
		f.checkResults(list, res, 0, 1, 2, 3)
	})
}

// Barrier: one syncfs makes the engine's file durable with the directory
// changes waiting for Flush; with none waiting, an fsync of the file does.
func TestBarrier(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprint("syncfs=", trusted), func(t *testing.T) {
			f := newCommitFixture(t)
			if trusted && !syncfsUsable(t, f.dir) {
				t.Skip("no trusted syncfs on the test directory's file system")
			}
			f.s.syncfsErrs = trusted
			j := f.renameWaiting()
			f.ops = nil
			if err := f.mb.Barrier(j); err != nil {
				t.Fatal(err)
			}
			want := "[syncfs]"
			if !trusted {
				want = "[fsyncdir new fsyncdir cur fsync journal]"
			}
			if got := fmt.Sprint(f.ops); got != want {
				t.Errorf("Barrier with renames waiting: %s, want %s", got, want)
			}
			f.ops = nil
			if err := f.mb.Barrier(j); err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(f.ops); got != "[fsync journal]" {
				t.Errorf("Barrier with nothing waiting: %s, want [fsync journal]", got)
			}
		})
	}
}

// A file on another file system is not covered by the folder's syncfs: the
// commit fsyncs it (before any rename) even when one syncfs did the rest.
func TestCommitWithFileElsewhere(t *testing.T) {
	f := newCommitFixture(t)
	if !syncfsUsable(t, f.dir) {
		t.Skip("no trusted syncfs on the test directory's file system")
	}
	other, err := os.MkdirTemp("/dev/shm", "quixysync-test-")
	if err != nil {
		t.Skip("no /dev/shm")
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var a, b unix.Stat_t
	if unix.Stat(other, &a) != nil || unix.Stat(f.dir, &b) != nil || a.Dev == b.Dev {
		t.Skip("/dev/shm is on the test directory's file system")
	}
	j := filepath.Join(other, "journal")
	writeFile(t, j, "intents\n")
	if f.mb.Covers(j) {
		t.Fatal("Covers: true for a file on another file system")
	}
	list, res, err := f.commitWith(j, 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.seen["at fsync journal"]; !ok || f.count("syncfs") != 1 {
		t.Fatalf("%v: want the batch's syncfs and an fsync of the other file", f.ops)
	}
	f.inTmpOnly("at fsync journal", "the other file was durable")
	f.checkResults(list, res)
}

// A syncfs's write-back error is reported to the first caller that looks:
// when another mailbox's syncfs failed after this batch was written, that
// failure may have been this batch's, so a syncfs that then succeeds is not
// trusted and each file is fsynced, which reports a file's own error.
func TestSyncfsAfterAnotherMailboxFailed(t *testing.T) {
	f := newCommitFixture(t)
	if !syncfsUsable(t, f.dir) {
		t.Skip("no trusted syncfs on the test directory's file system")
	}
	if err := f.s.CreateMailbox(t.Context(), "Other"); err != nil {
		t.Fatal(err)
	}
	other := open(t, f.s, "Other", false)
	mine := f.stage(4)
	var theirs []engine.Staged
	for i := range 4 {
		x, err := other.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader(fmt.Sprintf("other %d\n", i))})
		if err != nil {
			t.Fatal(err)
		}
		theirs = append(theirs, x)
	}
	// Their syncfs fails; each of their files is then fsynced, and fine.
	f.fail["syncfs"] = syscall.EIO
	res, err := other.Commit(t.Context(), theirs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("their message %d: %v", i, r.Err)
		}
	}
	delete(f.fail, "syncfs")
	f.ops = nil
	res, err = f.mb.Commit(t.Context(), mine)
	if err != nil {
		t.Fatal(err)
	}
	f.checkResults(mine, res)
	for _, s := range mine {
		if op := "fsync " + s.(*staged).name; !slices.Contains(f.ops, op) {
			t.Errorf("%s missing: a syncfs was trusted after another one failed: %v", op, f.ops)
		}
	}
	// Files written after the failure are covered by a syncfs again.
	later := f.stage(4)
	res, err = f.mb.Commit(t.Context(), later)
	if err != nil {
		t.Fatal(err)
	}
	f.checkResults(later, res)
	if f.count("fsync ") != 0 || f.count("syncfs") == 0 {
		t.Errorf("a batch written after the failure was not covered by one syncfs: %v", f.ops)
	}
}
