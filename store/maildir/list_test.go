package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		got, err := readNamesBuf(dir, size)
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
	if names, err := readNames(filepath.Join(dir, "missing")); err != nil || names != nil {
		t.Errorf("missing directory: %v %v", names, err)
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
