package maildir

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/engine"
)

// TestListLarge lists a folder big enough for the parallel stat, with
// subdirectories and dot-files that are not messages, and checks every size
// and date.
func TestListLarge(t *testing.T) {
	n := statParallelMin + 100
	root := t.TempDir()
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, uidFile), fmt.Sprintf("1700000000\n%d\n", n))
	body := make([]byte, 97)
	for i := 1; i <= n; i++ {
		sub := "cur"
		if i%10 == 0 {
			sub = "new"
		}
		p := filepath.Join(dir, sub, fmt.Sprintf("1600000000.%d_%d.host,U=%d:2,S", i, i, i))
		if err := os.WriteFile(p, body[:i%97], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, sub := range []string{"new", "cur"} {
		if err := os.Mkdir(filepath.Join(dir, sub, "a-directory,U=7"), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, sub, ".hidden,U=8"), "x")
	}
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	msgs := list(t, open(t, s, "INBOX", true))
	if len(msgs) != n {
		t.Fatalf("listed %d messages, want %d", len(msgs), n)
	}
	for i := 1; i <= n; i++ {
		m := msgs[engine.UID(i)]
		if m.Size != int64(i%97) || time.Since(m.Date) > time.Hour {
			t.Fatalf("UID %d: size %d date %v, want %d and about now", i, m.Size, m.Date, i%97)
		}
	}
}

// readNames parses getdents records across many calls (a small buffer) and
// skips dot-files and directories.
func TestReadNamesSmallBuffer(t *testing.T) {
	dir := t.TempDir()
	want := map[string]bool{}
	for i := 0; i < 300; i++ {
		name := fmt.Sprintf("%d.%s.host,U=%d:2,S", i, strings.Repeat("x", i%50), i+1)
		writeFile(t, filepath.Join(dir, name), "")
		want[name] = true
	}
	writeFile(t, filepath.Join(dir, ".dot"), "")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{200, 1000, 256 << 10} {
		var got []string
		err := readNamesBuf(dir, make([]byte, size), func(name []byte) { got = append(got, string(name)) }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Errorf("buffer %d: %d names, want %d", size, len(got), len(want))
		}
		for _, n := range got {
			if !want[n] {
				t.Errorf("buffer %d: unexpected name %q", size, n)
			}
		}
	}
	called := false
	if err := readNamesBuf(filepath.Join(dir, "missing"), make([]byte, 1000), func([]byte) { called = true }, nil); err != nil || called {
		t.Errorf("missing directory: %v, called %v", err, called)
	}
}

// A lister keeps every name intact across its name and entry chunks (the
// getdents buffer is reused under it) and parses each.
func TestListerChunks(t *testing.T) {
	root := t.TempDir()
	want := map[string]string{} // sub/name → name
	for _, sub := range []string{"new", "cur"} {
		if err := os.Mkdir(filepath.Join(root, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 1500; i++ {
			name := fmt.Sprintf("%d.%s.host,U=%d:2,S", i, strings.Repeat("y", i%200), i+1)
			writeFile(t, filepath.Join(root, sub, name), "")
			want[sub+"/"+name] = name
		}
	}
	l := lister{buf: make([]byte, 500)}
	for _, sub := range []string{"new", "cur"} {
		if err := l.read(filepath.Join(root, sub), sub); err != nil {
			t.Fatal(err)
		}
	}
	es := l.entries()
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d", len(es), len(want))
	}
	seen := map[string]bool{}
	for i, e := range es {
		k := e.sub() + "/" + e.name
		if _, ok := want[k]; !ok || seen[k] {
			t.Fatalf("entry %d: unexpected or repeated %q", i, k)
		}
		seen[k] = true
		if e.fn().String() != e.name || e.uid == 0 {
			t.Fatalf("entry %d: %q parsed as %+v", i, e.name, e.fn())
		}
		if i < 1500 && e.sub() != "new" || i >= 1500 && e.sub() != "cur" {
			t.Fatalf("entry %d in %s: new/ must be listed first", i, e.sub())
		}
	}
}

// With NeedDetails, only the messages asked for are stat'ed; the others
// carry the size from ",S=" or -1, and no date.
func TestListNeedDetails(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, uidFile), "1700000000\n4\n")
	writeFile(t, filepath.Join(dir, "cur", "1.a.host,U=1:2,S"), "one\n")
	writeFile(t, filepath.Join(dir, "cur", "2.b.host,S=5,U=2:2,S"), "two!\n")
	writeFile(t, filepath.Join(dir, "new", "3.c.host,U=3"), "three\n")
	writeFile(t, filepath.Join(dir, "new", "4.d.host,S=99,U=4"), "four\n") // a wrong S=: stat wins
	date := time.Date(2022, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, p := range []string{"cur/1.a.host,U=1:2,S", "cur/2.b.host,S=5,U=2:2,S", "new/3.c.host,U=3", "new/4.d.host,S=99,U=4"} {
		if err := os.Chtimes(filepath.Join(dir, p), date, date); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mb := open(t, s, "INBOX", true)
	msgs, complete, err := mb.List(t.Context(), engine.ListQuery{All: true, NeedDetails: func(u engine.UID) bool { return u >= 3 }})
	if err != nil || !complete || len(msgs) != 4 {
		t.Fatalf("List: %v %v %v", msgs, complete, err)
	}
	want := []struct {
		size int64
		date time.Time
	}{{-1, time.Time{}}, {5, time.Time{}}, {6, date}, {5, date}}
	for i, m := range msgs {
		if m.UID != engine.UID(i+1) || m.Size != want[i].size || !m.Date.Equal(want[i].date) {
			t.Errorf("message %d: %+v, want size %d date %v", i+1, m, want[i].size, want[i].date)
		}
	}
	// Without NeedDetails every message is stat'ed.
	for u, m := range list(t, mb) {
		if m.Size <= 0 || !m.Date.Equal(date) {
			t.Errorf("UID %d without NeedDetails: %+v", u, m)
		}
	}
}

// dropStale drops an entry whose file is gone only when another entry
// shares its base name (a rename seen half-way), whatever their order and
// however many entries there are.
func TestDropStale(t *testing.T) {
	root := t.TempDir()
	mkMaildir(t, root)
	m := &Mailbox{dir: root}
	var es []*entry
	exists := map[string]bool{}
	add := func(sub, name string, onDisk bool) {
		if onDisk {
			writeFile(t, filepath.Join(root, sub, name), "")
		}
		exists[sub+"/"+name] = onDisk
		es = append(es, new(newEntry(sub, name)))
	}
	for i := 0; i < 5000; i++ {
		add("cur", fmt.Sprintf("%d.x.host,U=%d:2,S", i, i+1), true)
	}
	add("new", "a.host,U=9001", false)     // renamed to cur/ while listed
	add("cur", "a.host,U=9001:2,S", true)  // …where it is now
	add("cur", "b.host,U=9002:2,", true)   // flags changed while listed:
	add("cur", "b.host,U=9002:2,S", false) // the older name is gone
	add("cur", "c.host,U=9003:2,", true)   // two files really share a base
	add("cur", "c.host,U=9004:2,", true)   // (both kept)
	add("cur", "d.host,U=9005:2,S", false) // gone, but no other name: kept
	add("cur", "e.host,S=1,U=9006:2,", false)
	add("cur", "e.host,U=9006:2,", false) // both gone: both dropped
	add("cur", "e.host,S=1,U=9006:2,S", true)
	got := map[string]bool{}
	out, vanished := m.dropStale(slices.Clone(es))
	if !vanished {
		t.Error("entries vanished, and dropStale did not say so")
	}
	for _, e := range out {
		got[e.sub()+"/"+e.name] = true
	}
	for _, e := range es {
		k := e.sub() + "/" + e.name
		want := exists[k] || k == "cur/d.host,U=9005:2,S"
		if got[k] != want {
			t.Errorf("%s kept %v, want %v", k, got[k], want)
		}
	}
}

// uidIndex behaves as a map of UIDs (get, set, del, len) whose all yields
// in ascending order, whether a UID falls in its table, just above it (new
// messages extend it) or anywhere else (the map).
func TestUIDIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		lo, hi engine.UID // the range the index is made for
		n      int
		span   engine.UID // operations draw UIDs from 1..span
	}{
		{1, 100, 100, 140}, {50, 60, 10, 100}, {1, 0, 0, 300}, {1, 1 << 31, 10, 500}, {4000000000, 4000000100, 100, 4294967295},
	} {
		x := newUIDIndex(c.lo, c.hi, c.n)
		ref := map[engine.UID]*entry{}
		for op := 0; op < 5000; op++ {
			u := engine.UID(1 + rng.Uint64N(uint64(c.span)))
			if c.lo > 1000 {
				u = c.lo - 10 + engine.UID(rng.Uint32N(130))
			}
			if op%7 == 0 && len(x.table) > 0 {
				u = x.lo + engine.UID(len(x.table)) // just above: extends the table
			}
			switch rng.IntN(3) {
			case 0, 1:
				e := &entry{uid: u}
				x.set(u, e)
				ref[u] = e
			case 2:
				x.del(u)
				delete(ref, u)
			}
			if x.get(u) != ref[u] {
				t.Fatalf("range %d..%d: get(%d) after op %d differs", c.lo, c.hi, u, op)
			}
		}
		if x.len() != len(ref) {
			t.Fatalf("range %d..%d: len %d, want %d", c.lo, c.hi, x.len(), len(ref))
		}
		var got []engine.UID
		for u, e := range x.all {
			if ref[u] != e {
				t.Fatalf("range %d..%d: all yields %d with the wrong file", c.lo, c.hi, u)
			}
			got = append(got, u)
		}
		want := slices.Sorted(maps.Keys(ref))
		if !slices.Equal(got, want) {
			t.Fatalf("range %d..%d: all yields %d UIDs, want %d in order", c.lo, c.hi, len(got), len(want))
		}
	}
	var none *uidIndex
	if none.len() != 0 {
		t.Fatal("a nil index has files")
	}
	for range none.all {
		t.Fatal("a nil index yields")
	}
}

// fstatName stats names relative to a directory with one reused buffer: a
// shorter name after a longer one, a missing file, a name with a NUL.
func TestFstatName(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a-rather-long-name,U=1:2,S"), "12345")
	writeFile(t, filepath.Join(dir, "a"), "1")
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	var buf []byte
	var st unix.Stat_t
	for _, c := range []struct {
		name string
		size int64
		err  error
	}{
		{"a-rather-long-name,U=1:2,S", 5, nil},
		{"a", 1, nil},
		{"a-rather", 0, unix.ENOENT},
		{"a\x00b", 0, unix.EINVAL},
		{"a", 1, nil},
	} {
		st = unix.Stat_t{}
		err := fstatName(fd, c.name, &buf, &st)
		if err != c.err || err == nil && st.Size != c.size {
			t.Errorf("fstatName(%q): size %d, %v; want %d, %v", c.name, st.Size, err, c.size, c.err)
		}
	}
}

// A scan keeps one entry per file: at 100 000 files every 8 bytes are 200
// pages of fresh memory.
func TestEntryHasNoPadding(t *testing.T) {
	if got := unsafe.Sizeof(entry{}); got != 32 {
		t.Fatalf("entry is %d bytes, want 32: order its fields by size", got)
	}
}

// A mail client renames a message (marks it read) just after a sound
// listing, while two names share a base (a ',' in the unique part, or the
// same message in new/ and cur/): the listing must not leave it out as a
// stale artefact, which the engine would carry to the other side as a
// deletion. It lists again and finds the message under its new name.
func TestRenameAfterSoundListingIsNotADeletion(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, uidFile), "42\n2\n")
	a := filepath.Join(dir, "cur", "msg,1,U=1:2,")
	writeFile(t, a, "one\n")
	writeFile(t, filepath.Join(dir, "cur", "msg,2,U=2:2,"), "two\n")
	time.Sleep(60 * time.Millisecond) // older than the scan guard: one listing is trusted
	renamed := false
	s.listHook = func(sub string, name []byte) {
		if sub == "" && !renamed {
			renamed = true
			if err := os.Rename(a, a+"S"); err != nil {
				t.Error(err)
			}
		}
	}
	mb := open(t, s, "INBOX", false)
	defer mb.Close()
	msgs := list(t, mb)
	s.listHook = nil
	if !renamed {
		t.Fatal("the hook never ran: the test renamed nothing")
	}
	m, ok := msgs[1]
	if !ok {
		t.Fatalf("UID 1 is missing from a complete listing (%d messages); it exists as %s", len(msgs), filepath.Base(a)+"S")
	}
	if !m.Flags.Has(engine.FlagSeen) {
		t.Errorf("UID 1 listed with flags %v, want its new name's \\Seen", m.Flags)
	}
}

// A delivered file whose name leaves no room for ",U=" (255 bytes is the
// limit) gets a short name of our own instead of failing the listing of
// the whole folder at every run.
func TestLongNameDoesNotBlockFolder(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, uidFile), "42\n1\n")
	writeFile(t, filepath.Join(dir, "cur", "1600000000.1.host,U=1:2,S"), "ok\n")
	writeFile(t, filepath.Join(dir, "new", "1700000000."+strings.Repeat("x", 255-11)), "long\n")
	mb := open(t, s, "INBOX", false)
	defer mb.Close()
	msgs := list(t, mb)
	if len(msgs) != 2 {
		t.Fatalf("listed %d messages, want 2", len(msgs))
	}
	got := files(t, dir, "new")
	if len(got) != 1 || !strings.Contains(got[0], ",U=2") {
		t.Errorf("new/ holds %q, want the long-named message under a name with its UID", got)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "new", got[0])); err != nil || string(b) != "long\n" {
		t.Errorf("its content: %q, %v", b, err)
	}
}
