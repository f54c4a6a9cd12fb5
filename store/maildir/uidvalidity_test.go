package maildir

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
)

// uidFixture is a folder with a .uidvalidity and a store whose test hook
// records the durability steps.
type uidFixture struct {
	t   *testing.T
	s   *Store
	dir string
	mu  sync.Mutex
	ops []string
}

func newUIDFixture(t *testing.T, content string, fsync bool) *uidFixture {
	t.Helper()
	root := t.TempDir()
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{Fsync: fsync})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, uidFile), content)
	f := &uidFixture{t: t, s: s, dir: dir}
	s.testHook = func(op, path string) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.ops = append(f.ops, op+" "+filepath.Base(path))
		return nil
	}
	return f
}

func (f *uidFixture) ino() uint64 {
	f.t.Helper()
	fi, err := os.Stat(filepath.Join(f.dir, uidFile))
	if err != nil {
		f.t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func (f *uidFixture) content() string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, uidFile))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// reserve reserves n UIDs and checks the first one and the file's content
// (mbsync's format, whichever way it was written).
func (f *uidFixture) reserve(n int, sync bool, wantFirst uint32, wantContent string) uidSync {
	f.t.Helper()
	f.ops = nil
	_, first, left, err := f.s.reserveUIDs(f.dir, n, sync)
	if err != nil {
		f.t.Fatal(err)
	}
	if uint32(first) != wantFirst {
		f.t.Errorf("first UID %d, want %d", first, wantFirst)
	}
	if got := f.content(); got != wantContent {
		f.t.Errorf(".uidvalidity %q, want %q", got, wantContent)
	}
	return left
}

// A reservation that keeps the last UID's number of digits overwrites the
// file's bytes in place, as mbsync does: no new file, no rename, and the
// caller is told to make the file (not the folder) durable. One that does
// not is written anew and renamed over it.
func TestUIDReservationInPlace(t *testing.T) {
	f := newUIDFixture(t, "42\n10\n", true)
	ino := f.ino()
	if left := f.reserve(5, false, 11, "42\n15\n"); left != uidOverwritten {
		t.Errorf("left %b, want the file's bytes", left)
	}
	if f.ino() != ino {
		t.Error("the same length of content was not written in place")
	}
	if len(f.ops) != 1 || f.ops[0] != "overwrite "+uidFile {
		t.Errorf("steps %v, want only the overwrite (no fsync: the caller's)", f.ops)
	}
	if left := f.reserve(100, false, 16, "42\n115\n"); left != uidRenamed {
		t.Errorf("left %b, want the rename", left)
	}
	if f.ino() == ino {
		t.Error("a longer content was written in place")
	}
	if _, err := os.Stat(filepath.Join(f.dir, uidTemp)); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
	// Durable on return: an fdatasync of the file in place, the folder's
	// fsync after a rename.
	if left := f.reserve(1, true, 116, "42\n116\n"); left != 0 || !slices.Equal(f.ops, []string{"overwrite " + uidFile, "fsync " + uidFile}) {
		t.Errorf("in place with sync: left %b, steps %v", left, f.ops)
	}
	if left := f.reserve(900, true, 117, "42\n1016\n"); left != 0 || !slices.Equal(f.ops, []string{"fsyncdir INBOX"}) {
		t.Errorf("renamed with sync: left %b, steps %v", left, f.ops)
	}
}

// Without fsync (the store's option off) nothing is left to make durable.
func TestUIDReservationNoFsync(t *testing.T) {
	f := newUIDFixture(t, "42\n10\n", false)
	if left := f.reserve(5, false, 11, "42\n15\n"); left != 0 {
		t.Errorf("left %b without fsync", left)
	}
	if left := f.reserve(100, true, 16, "42\n115\n"); left != 0 || len(f.ops) != 0 {
		t.Errorf("left %b, steps %v without fsync", left, f.ops)
	}
}

// A .uidvalidity with another name (a backup made with cp -al) keeps its
// content: the folder's gets a file of its own. A symbolic link is
// replaced, never written through.
func TestUIDReservationSparesOtherNames(t *testing.T) {
	f := newUIDFixture(t, "42\n10\n", true)
	backup := filepath.Join(t.TempDir(), "uidvalidity.bak")
	if err := os.Link(filepath.Join(f.dir, uidFile), backup); err != nil {
		t.Skip("no hard links here:", err)
	}
	if left := f.reserve(5, false, 11, "42\n15\n"); left != uidRenamed {
		t.Errorf("left %b, want the rename", left)
	}
	if b, _ := os.ReadFile(backup); string(b) != "42\n10\n" {
		t.Errorf("the hard-linked copy now holds %q", b)
	}

	target := filepath.Join(t.TempDir(), "elsewhere")
	writeFile(t, target, "42\n15\n")
	uv := filepath.Join(f.dir, uidFile)
	if err := os.Remove(uv); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, uv); err != nil {
		t.Fatal(err)
	}
	f.reserve(1, false, 16, "42\n16\n")
	if b, _ := os.ReadFile(target); string(b) != "42\n15\n" {
		t.Errorf("the symbolic link's target now holds %q", b)
	}
	if fi, err := os.Lstat(uv); err != nil || fi.Mode()&os.ModeSymlink != 0 {
		t.Errorf("%s still a symbolic link: %v", uidFile, err)
	}
}

// A write in place that fails hands out no UID and says so.
func TestUIDReservationWriteFails(t *testing.T) {
	f := newUIDFixture(t, "42\n10\n", true)
	f.s.testHook = func(op, path string) error {
		if op == "overwrite" {
			return syscall.EIO
		}
		return nil
	}
	if _, first, _, err := f.s.reserveUIDs(f.dir, 5, false); err == nil || first != 0 {
		t.Fatalf("reserve with a failing write: first %d, err %v", first, err)
	}
	if got := f.content(); got != "42\n10\n" {
		t.Errorf(".uidvalidity %q after a failed write", got)
	}
}
