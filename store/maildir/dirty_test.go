package maildir

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

func TestParseMeminfo(t *testing.T) {
	for _, tc := range []struct {
		in        string
		dirty, wb int64
		ok        bool
	}{
		{"MemTotal: 100 kB\nDirty:        232 kB\nWriteback:      8 kB\n", 232 << 10, 8 << 10, true},
		{"Writeback: 0 kB\nDirty: 1048576 kB", 1 << 30, 0, true}, // no final newline
		{"Dirty: 232 kB\n", 0, 0, false},                         // no Writeback
		{"Dirty: 232 MB\nWriteback: 0 kB\n", 0, 0, false},        // unit
		{"Dirty: -1 kB\nWriteback: 0 kB\n", 0, 0, false},
		{"Dirty: 99999999999999999999 kB\nWriteback: 0 kB\n", 0, 0, false},
		{"Dirty: 9007199254740993 kB\nWriteback: 0 kB\n", 0, 0, false}, // overflows as bytes
		{"Dirty:\nWriteback: 0 kB\n", 0, 0, false},
		{"WritebackTmp: 5 kB\nDirty: 1 kB\nWriteback: 2 kB\n", 1 << 10, 2 << 10, true},
		{"", 0, 0, false},
	} {
		d, w, ok := parseMeminfo([]byte(tc.in))
		if d != tc.dirty || w != tc.wb || ok != tc.ok {
			t.Errorf("parseMeminfo(%q) = %d, %d, %v; want %d, %d, %v", tc.in, d, w, ok, tc.dirty, tc.wb, tc.ok)
		}
	}
}

func FuzzParseMeminfo(f *testing.F) {
	f.Add([]byte("Dirty:        232 kB\nWriteback:      8 kB\n"))
	f.Add([]byte("Dirty: 1 kB\nDirty: 2 kB\nWriteback: 3 kB"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, w, ok := parseMeminfo(data)
		if !ok {
			if d != 0 || w != 0 {
				t.Fatalf("not ok but %d, %d", d, w)
			}
			return
		}
		if d < 0 || w < 0 || d%1024 != 0 || w%1024 != 0 {
			t.Fatalf("ok with %d, %d", d, w)
		}
		if !strings.Contains(string(data), "Dirty:") || !strings.Contains(string(data), "Writeback:") {
			t.Fatalf("ok without both lines: %q", data)
		}
	})
}

// A batch that would be made durable with one syncfs is fsynced file by file
// when other programs have much data waiting to be written: the syncfs would
// wait for all of it (a download, a copy in progress).
func TestCommitSkipsSyncfsWhenOthersWrite(t *testing.T) {
	f := newCommitFixture(t)
	if !syncfsUsable(t, f.dir) {
		t.Skip("no trusted syncfs on the test directory's file system")
	}
	for _, tc := range []struct{ dirty, writeback int64 }{{1 << 20, 0}, {0, 1 << 20}, {12 << 10, 12 << 10}} {
		f.setDirty(tc.dirty, tc.writeback)
		list, res := f.commit(10)
		if f.count("syncfs") != 0 || f.count("fsync ") != 10 {
			t.Errorf("Dirty %d KiB, Writeback %d KiB: %v, want an fsync per file", tc.dirty, tc.writeback, f.ops)
		}
		f.checkOrder("fsync", list, res)
		f.checkResults(list, res)
	}
	f.setDirty(8<<10, 0) // under the bound
	list, res := f.commit(10)
	if f.count("syncfs") != 1 || f.count("fsync ") != 0 {
		t.Errorf("8 MiB waiting: %v, want one syncfs", f.ops)
	}
	f.checkResults(list, res)
	// A large run (more than syncfsCheckFiles messages staged) pays for the
	// others' data once rather than fsyncing thousands of files.
	f.setDirty(1<<20, 0)
	f.s.stagedFiles.Store(syncfsCheckFiles - 10)
	list, res = f.commit(11)
	if f.count("syncfs") != 1 || f.count("fsync ") != 0 {
		t.Errorf("%d messages staged, 1 GiB waiting: %v, want one syncfs", f.s.stagedFiles.Load(), f.ops)
	}
	f.checkResults(list, res)
}

// The store's own unwritten messages are not "other programs' writes": a
// large batch of its own still gets one syncfs.
func TestCommitCountsItsOwnWrites(t *testing.T) {
	f := newCommitFixture(t)
	if !syncfsUsable(t, f.dir) {
		t.Skip("no trusted syncfs on the test directory's file system")
	}
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 10<<10) // 640 KiB
	stageBig := func() []engine.Staged {
		var list []engine.Staged
		for i := range 10 {
			x, err := f.mb.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader(fmt.Sprint(i) + body)})
			if err != nil {
				t.Fatal(err)
			}
			list = append(list, x)
		}
		f.ops = nil
		return list
	}
	// 6.4 MiB of ours among 20 MiB waiting: 13.6 MiB of others', under the bound.
	f.setDirty(20<<10, 0)
	list := stageBig()
	res, err := f.mb.Commit(t.Context(), list)
	if err != nil {
		t.Fatal(err)
	}
	if f.count("syncfs") != 1 || f.count("fsync ") != 0 {
		t.Errorf("our own 6.4 MiB counted as others': %v, want one syncfs", f.ops)
	}
	f.checkResults(list, res)
	if n := f.s.unflushed.Load(); n != 0 {
		t.Errorf("after the syncfs %d bytes still counted as unflushed", n)
	}
	// The same without our part: 20 MiB of others', over the bound.
	list = stageBig()
	f.s.unflushed.Store(0)
	res, err = f.mb.Commit(t.Context(), list)
	if err != nil {
		t.Fatal(err)
	}
	if f.count("syncfs") != 0 || f.count("fsync ") != 10 {
		t.Errorf("20 MiB of others' writes: %v, want an fsync per file", f.ops)
	}
	f.checkResults(list, res)
	// Discarded and fsynced files are counted out, never below zero.
	list = stageBig()
	if n := f.s.unflushed.Load(); n < 10*int64(len(body)) {
		t.Errorf("%d bytes counted after staging 10 × %d", n, len(body))
	}
	f.mb.Discard(list)
	if n := f.s.unflushed.Load(); n != 0 {
		t.Errorf("after Discard %d bytes still counted", n)
	}
}

// Barrier falls back to fsyncing the directories and the engine's file
// when other programs' writes are waiting.
func TestBarrierSkipsSyncfsWhenOthersWrite(t *testing.T) {
	f := newCommitFixture(t)
	if !syncfsUsable(t, f.dir) {
		t.Skip("no trusted syncfs on the test directory's file system")
	}
	j := f.renameWaiting()
	f.setDirty(64<<10, 0)
	f.ops = nil
	if err := f.mb.Barrier(j); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(f.ops), "[fsyncdir new fsyncdir cur fsync journal]"; got != want {
		t.Errorf("Barrier with 64 MiB of others' writes waiting: %s, want %s", got, want)
	}
}

// Without a readable /proc/meminfo (a container without /proc, another
// kernel's format) there is no telling: syncfs is used as before.
func TestCommitSyncfsWithoutMeminfo(t *testing.T) {
	f := newCommitFixture(t)
	if !syncfsUsable(t, f.dir) {
		t.Skip("no trusted syncfs on the test directory's file system")
	}
	garbled := filepath.Join(t.TempDir(), "meminfo")
	writeFile(t, garbled, "Dirty: lots\nWriteback: 0 kB\n")
	for _, meminfo := range []string{filepath.Join(t.TempDir(), "missing"), garbled} {
		f.s.meminfo = meminfo
		list, res := f.commit(10)
		if f.count("syncfs") != 1 || f.count("fsync ") != 0 {
			t.Errorf("meminfo %s: %v, want one syncfs", meminfo, f.ops)
		}
		f.checkResults(list, res)
	}
}
