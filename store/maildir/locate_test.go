package maildir

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// ageFolder sets the mtimes of dir's new/ and cur/ an hour back, as they are
// in a folder nobody touched since the last run.
func ageFolder(t *testing.T, dir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	for _, sub := range []string{"new", "cur"} {
		if err := os.Chtimes(filepath.Join(dir, sub), old, old); err != nil {
			t.Fatal(err)
		}
	}
}

// locateFolder is INBOX with UIDs 1..5 (3 in new/), last assigned 9, a file
// without a UID and one with a UID above the last.
func locateFolder(t *testing.T) (*Store, string) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, uidFile), "1700000000\n9\n")
	for u := 1; u <= 5; u++ {
		sub, info := "cur", ":2,S"
		if u == 3 {
			sub, info = "new", ""
		}
		writeFile(t, filepath.Join(dir, sub, fmt.Sprintf("17000000%02d.x.host,U=%d%s", u, u, info)), fmt.Sprintf("m%d\n", u))
	}
	writeFile(t, filepath.Join(dir, "cur", "1700000100.y.host:2,"), "fresh\n")
	writeFile(t, filepath.Join(dir, "cur", "1700000101.z.host,U=12:2,"), "above\n")
	ageFolder(t, dir)
	return s, dir
}

// TestLocateWithoutScan: announced UIDs of a folder that was not listed are
// found and changed without a scan (no file gets a fresh UID, nothing else is
// indexed), and the results are those a scan gives.
func TestLocateWithoutScan(t *testing.T) {
	s, dir := locateFolder(t)
	ctx := t.Context()
	mb := open(t, s, "INBOX", false)
	mb.WillTouch([]engine.UID{2, 3, 4, 7})
	if err := mb.SetFlags(ctx, []engine.UID{2, 3}, engine.FlagFlagged, engine.FlagSeen); err != nil {
		t.Fatal(err)
	}
	if err := mb.Expunge(ctx, []engine.UID{4, 7}); err != nil {
		t.Fatal(err)
	}
	if got := fetch(t, mb, 2, 3); got[2] != "m2\n" || got[3] != "m3\n" {
		t.Errorf("fetch after locate: %v", got)
	}
	if mb.scanned || !mb.located {
		t.Errorf("scanned %v located %v; want a locate and no scan", mb.scanned, mb.located)
	}
	if err := mb.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"1700000001.x.host,U=1:2,S",
		"1700000002.x.host,U=2:2,F",
		"1700000003.x.host,U=3:2,F",
		"1700000005.x.host,U=5:2,S",
		"1700000100.y.host:2,", // a scan would have given it a UID
		"1700000101.z.host,U=12:2,",
	}
	if got := files(t, dir, "cur"); !slices.Equal(got, want) {
		t.Errorf("cur/ = %q\nwant %q", got, want)
	}
	if got := files(t, dir, "new"); len(got) != 0 {
		t.Errorf("new/ = %q", got)
	}
}

// TestLocateFallsBackToScan: whenever a scan could decide differently for an
// announced UID, or the folder cannot be trusted to hold still, the first
// operation scans instead.
func TestLocateFallsBackToScan(t *testing.T) {
	for name, tc := range map[string]struct {
		prepare func(t *testing.T, dir string, mb *Mailbox)
		touch   []engine.UID
		op      []engine.UID // SetFlags +F on these
	}{
		"not announced": {touch: []engine.UID{2}, op: []engine.UID{1}},
		"above last":    {touch: []engine.UID{12}, op: []engine.UID{12}},
		"foreign": {
			prepare: func(t *testing.T, dir string, mb *Mailbox) {
				mb.SetKnownUIDs(func(u engine.UID) bool { return u != 2 })
			},
			touch: []engine.UID{2}, op: []engine.UID{2},
		},
		"duplicate": {
			prepare: func(t *testing.T, dir string, mb *Mailbox) {
				writeFile(t, filepath.Join(dir, "cur", "1700000200.copy.host,U=2:2,S"), "copy\n")
				ageFolder(t, dir)
			},
			touch: []engine.UID{2}, op: []engine.UID{2},
		},
		"recently changed": {
			prepare: func(t *testing.T, dir string, mb *Mailbox) {
				now := time.Now()
				os.Chtimes(filepath.Join(dir, "cur"), now, now)
			},
			touch: []engine.UID{2}, op: []engine.UID{2},
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, dir := locateFolder(t)
			mb := open(t, s, "INBOX", false)
			if tc.prepare != nil {
				tc.prepare(t, dir, mb)
			}
			mb.WillTouch(tc.touch)
			if err := mb.SetFlags(t.Context(), tc.op, engine.FlagFlagged, 0); err != nil {
				t.Fatal(err)
			}
			if !mb.scanned {
				t.Errorf("no scan")
			}
		})
	}
}

// TestLocateMatchesScan: on random folders (UIDs in new/ and cur/, files
// without a UID, UIDs above the last assigned, foreign ones, names with odd
// fields), flag changes and removals on announced UIDs end with the same
// files for those UIDs as the same operations after a full scan, and leave
// every other file as it was.
func TestLocateMatchesScan(t *testing.T) {
	// One store for all (its inotify instance: a user has 128), a folder
	// for each seed and way.
	s, root := newTestStore(t, LayoutVerbatim)
	noWatch := 0
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		files := map[string]string{} // sub/name -> content
		present := map[engine.UID]bool{}
		for u := engine.UID(1); u <= 40; u++ {
			if rng.IntN(4) == 0 {
				continue
			}
			present[u] = true
			sub, info := "cur", ":2,"+[]string{"", "S", "FS", "RS"}[rng.IntN(4)]
			if rng.IntN(5) == 0 {
				sub, info = "new", ""
			}
			fields := []string{fmt.Sprintf(",U=%d", u), fmt.Sprintf(",S=%d,U=%d", 3, u), fmt.Sprintf(",U=%d,W=9", u), fmt.Sprintf(",U=0%d", u)}[rng.IntN(4)]
			files[fmt.Sprintf("%s/17%08d.r%d.host%s%s", sub, u, seed, fields, info)] = fmt.Sprintf("m%d\n", u)
		}
		for i := range rng.IntN(3) {
			files[fmt.Sprintf("cur/18%08d.fresh.host:2,S", i)] = "fresh\n"
			files[fmt.Sprintf("cur/19%08d.above.host,U=%d:2,", i, 50+i)] = "above\n"
			files[fmt.Sprintf("cur/20%08d.odd.host,X=U=%d,U=x%d:2,", i, i+1, i+2)] = "odd\n"
		}
		foreign := engine.UID(rng.IntN(45))
		var touch, flag, gone []engine.UID
		for u := engine.UID(1); u <= 45; u++ {
			switch rng.IntN(4) {
			case 0:
				touch, flag = append(touch, u), append(flag, u)
			case 1:
				touch, gone = append(touch, u), append(gone, u)
			}
		}
		results := [3]map[engine.UID]string{}
		for run, mode := range []string{"hint", "scan", "prefetched"} {
			hint := mode != "scan"
			name := fmt.Sprintf("s%d-%s", seed, mode)
			dir := filepath.Join(root, name)
			mkMaildir(t, dir)
			writeFile(t, filepath.Join(dir, uidFile), "1700000000\n45\n")
			for p, c := range files {
				writeFile(t, filepath.Join(dir, p), c)
			}
			ageFolder(t, dir)
			mb := open(t, s, name, false)
			mb.SetKnownUIDs(func(u engine.UID) bool { return u != foreign })
			if mode == "prefetched" {
				if mb.w == nil {
					// No inotify instance to be had (a user has 128, and
					// parallel test binaries use them): as for the other
					// watch tests, nothing to compare.
					mb.Close()
					results[run] = results[1]
					noWatch++
					continue
				}
				if !mb.PrefetchNames(t.Context()) {
					t.Fatal("PrefetchNames refused on a watched folder")
				}
				<-mb.names.done
			}
			if hint {
				mb.WillTouch(touch)
			}
			if err := mb.SetFlags(t.Context(), flag, engine.FlagFlagged, engine.FlagSeen); err != nil {
				t.Fatal(err)
			}
			if err := mb.Expunge(t.Context(), gone); err != nil {
				t.Fatal(err)
			}
			if want := foreign != 0 && slices.Contains(touch, foreign); hint && mb.scanned != want {
				t.Fatalf("seed %d: scanned %v, want %v", seed, mb.scanned, want)
			}
			if mode == "prefetched" && !mb.scanned && !mb.aheadUsed {
				t.Fatalf("seed %d: the names read ahead were not used", seed)
			}
			res := map[engine.UID]string{}
			for _, u := range touch {
				e := mb.idx.get(u)
				if e != nil {
					res[u] = e.sub() + "/" + e.name
				}
			}
			if err := mb.Close(); err != nil {
				t.Fatal(err)
			}
			for _, u := range touch { // on disk as the index says
				if p, ok := res[u]; ok {
					if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
						t.Fatalf("seed %d hint %v: uid %d: %v", seed, hint, u, err)
					}
				}
			}
			if hint && !mb.scanned {
				for p, c := range files { // untouched files stay as they were
					if u := parseName(p[strings.IndexByte(p, '/')+1:]).UID; slices.Contains(touch, u) {
						continue
					}
					if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != c {
						t.Fatalf("seed %d: %s changed: %v", seed, p, err)
					}
				}
			}
			results[run] = res
		}
		if fmt.Sprint(results[0]) != fmt.Sprint(results[1]) {
			t.Fatalf("seed %d: with the hint\n%v\nwith a scan\n%v", seed, results[0], results[1])
		}
		if fmt.Sprint(results[2]) != fmt.Sprint(results[1]) {
			t.Fatalf("seed %d: with names read ahead\n%v\nwith a scan\n%v", seed, results[2], results[1])
		}
	}
	if noWatch > 0 {
		t.Logf("no inotify watch for %d of 200 folders: their names were not read ahead", noWatch)
	}
}

// FuzzMayCarryUID: the name filter of locate never drops a file whose
// parsed UID is wanted.
func FuzzMayCarryUID(f *testing.F) {
	for _, s := range []string{"1.x.h,U=5:2,S", "1.x.h,S=3,U=007:2,", "a,U=,U=9", "a,U=99999999999,U=3", "b:2,,U=4", "c,U=4294967295"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		u := parseName(name).UID
		if u == 0 {
			return
		}
		if !mayCarryUID([]byte(name), map[engine.UID]bool{u: true}) {
			t.Fatalf("%q carries UID %d; the filter drops it", name, u)
		}
	})
}

// FuzzUIDCandidate: what the prefetched names' UIDs say about a name
// (uidCandidate, read in the background, then candidateWanted in the locate)
// is what mayCarryUID says, for a set of wanted UIDs that holds the name's
// first candidate, one that holds its last one, and one that holds neither.
func FuzzUIDCandidate(f *testing.F) {
	for _, s := range []string{"1.x.h,U=5:2,S", "1.x.h,S=3,U=007:2,", "a,U=,U=9", "a,U=99999999999,U=3", "b:2,,U=4", "c,U=4294967295", "d,U=0", "e,U=12,U=13", "f"} {
		f.Add(s, uint32(7))
	}
	f.Fuzz(func(t *testing.T, name string, other uint32) {
		b := []byte(name)
		u, n := uidCandidate(b)
		var last engine.UID
		for rest := b; ; {
			i := bytes.Index(rest, []byte(",U="))
			if i < 0 {
				break
			}
			rest = rest[i+3:]
			if v, err := strconv.ParseUint(string(rest[:len(rest)-len(bytes.TrimLeft(rest, "0123456789"))]), 10, 32); err == nil {
				last = engine.UID(v)
			}
		}
		for _, want := range []map[engine.UID]bool{{engine.UID(u): true}, {last: true, 1 << 20: true}, {engine.UID(other): true}, {}} {
			delete(want, 0) // no message's UID
			got := candidateWanted(b, u, n > 1, wantedUIDs(want), want)
			if exp := mayCarryUID(b, want); got != exp {
				t.Fatalf("%q (candidate %d of %d), want %v: prefetched filter %v, mayCarryUID %v", name, u, n, want, got, exp)
			}
		}
	})
}
