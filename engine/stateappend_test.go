package engine

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var testOwner = StateOwner{Channel: "c", FarStore: "far", FarMailbox: "INBOX", NearStore: "near", NearMailbox: "INBOX"}

// mutateState is st's next generation with a few random changes of the kinds
// a run makes: pairs new on either side, flags changed, pairs gone, a copy
// completed (a pair's second UID filled in), markers moved.
func mutateState(r *rand.Rand, st State) State {
	next := st
	next.Generation++
	next.Pairs = slices.Clone(st.Pairs)
	for n := r.IntN(6); n > 0 && len(next.Pairs) > 0; n-- {
		i := r.IntN(len(next.Pairs))
		switch r.IntN(4) {
		case 0:
			next.Pairs = slices.Delete(next.Pairs, i, i+1)
		case 1:
			next.Pairs[i].Flags ^= Flag(1 << r.IntN(len(flagLetters)))
		case 2:
			next.Pairs[i].Ident[r.IntN(2)] = r.Uint32()
		case 3:
			if next.Pairs[i].Near == 0 {
				next.MaxPushed++
				next.Pairs[i].Near = next.MaxPushed
			}
		}
	}
	for n := r.IntN(4); n > 0; n-- {
		if r.IntN(2) == 0 {
			next.MaxPulled++
			next.Pairs = append(next.Pairs, Pair{Far: next.MaxPulled, Flags: Flag(r.IntN(64))})
		} else {
			next.MaxPushed++
			next.Pairs = append(next.Pairs, Pair{Near: next.MaxPushed, Skip: SkipReason(r.IntN(2))})
		}
	}
	next.Far.UIDNext = next.MaxPulled + 1
	next.Near.Messages = int64(len(next.Pairs))
	next.Far.Stamp = strings.Repeat("x", r.IntN(3))
	return next
}

func sortedCopy(st State) State {
	st.Pairs = slices.Clone(st.Pairs)
	sortPairs(st.Pairs)
	return st
}

func checkSameState(t *testing.T, what string, got, want State) {
	t.Helper()
	want = sortedCopy(want)
	if len(got.Pairs) == 0 && len(want.Pairs) == 0 {
		got.Pairs, want.Pairs = nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// Saves over many generations, each appending to the file what changed
// (the base untouched) until the sections outgrow a quarter of the base,
// when the file is rewritten whole. Every generation reads back whole, by
// its header alone, and through a buffer, as it was saved.
func TestStateAppendsAndCompacts(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	path := filepath.Join(t.TempDir(), StateFileName)
	st := sampleState()
	for i := 0; i < 300; i++ {
		st = mutateState(r, st)
	}
	if _, err := saveStateWith(path, sortedCopy(st), testOwner, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	appended, rewritten, compacted := 0, 0, 0
	for gen := 0; gen < 400; gen++ {
		before, _ := os.ReadFile(path)
		loaded, meta, img, err := loadStateImage(path)
		if err != nil || img == nil || meta.Owner != testOwner {
			t.Fatalf("generation %d: %v (image %v, owner %+v)", gen, err, img != nil, meta.Owner)
		}
		checkSameState(t, "loaded", loaded, st)
		next := mutateState(r, st)
		if gen%50 == 49 {
			next = sortedCopy(next)
			next.Pairs = append(next.Pairs, next.Pairs[0]) // UIDs twice: no section can say that
		}
		if _, err := saveStateWith(path, sortedCopy(next), testOwner, img, nil, nil); err != nil {
			t.Fatal(err)
		}
		after, _ := os.ReadFile(path)
		if bytes.HasPrefix(after, before) && len(after) > len(before) {
			appended++
			if !bytes.Contains(after[len(before):], []byte("%delta\n")) {
				t.Fatalf("appended without a section:\n%s", after[len(before):])
			}
		} else {
			rewritten++
			if gen%50 != 49 {
				compacted++
			}
			if bytes.Contains(after, []byte("%delta")) {
				t.Fatalf("a rewritten state holds sections")
			}
		}
		// The sections stay within a sixteenth of the base (appendMin at
		// least): each costs every later load.
		base := int64(bytes.Index(after, []byte("\n%end\n")) + len("\n%end\n"))
		if sections := int64(len(after)) - base; sections > max(base/16, appendMin) {
			t.Fatalf("generation %d: %d bytes of sections on a base of %d", gen, sections, base)
		}
		if gen%50 == 49 {
			if !bytes.HasSuffix(after, []byte("\n%end\n")) {
				t.Fatal("a state whose pairs repeat UIDs was appended to")
			}
			next.Pairs = next.Pairs[:len(next.Pairs)-1]
			if _, err := saveStateWith(path, sortedCopy(next), testOwner, nil, nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		st = next
		got, err := LoadState(path)
		if err != nil {
			t.Fatalf("generation %d: %v", gen, err)
		}
		checkSameState(t, "read back", got, st)
		h, err := LoadStateHeader(path)
		want := sortedCopy(st)
		want.Pairs = nil
		if err != nil || !reflect.DeepEqual(h.State, want) || h.Owner != testOwner || h.Deleted != deletedCounts(st.Pairs) {
			t.Fatalf("header alone: %+v %v\nwant %+v", h, err, want)
		}
		f, _ := os.Open(path)
		streamed, err := ParseState(f, path)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		checkSameState(t, "streamed", streamed, st)
	}
	if appended < 300 || rewritten < 3 || compacted < 3 {
		t.Fatalf("%d saves appended, %d rewrote (%d for the sections' size)", appended, rewritten, compacted)
	}
}

// A save cut short anywhere in its section (a crash before the fsync) leaves
// the state before it: the torn bytes are ignored by every reader, and the
// next save cuts them off before it appends. So do blocks the file was
// extended by whose bytes never came (zeros).
func TestStateTornSectionIgnored(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	path := filepath.Join(dir, StateFileName)
	st := sampleState()
	if _, err := saveStateWith(path, sortedCopy(st), testOwner, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // sections before the torn one
		_, _, img, err := loadStateImage(path)
		if err != nil {
			t.Fatal(err)
		}
		st = mutateState(r, st)
		if _, err := saveStateWith(path, sortedCopy(st), testOwner, img, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	good, _ := os.ReadFile(path)
	_, _, img, _ := loadStateImage(path)
	next := mutateState(r, st)
	if _, err := saveStateWith(path, sortedCopy(next), testOwner, img, nil, nil); err != nil {
		t.Fatal(err)
	}
	full, _ := os.ReadFile(path)
	if !bytes.HasPrefix(full, good) || len(full) <= len(good) {
		t.Fatal("the last save did not append")
	}
	tails := [][]byte{}
	for n := 1; n < len(full)-len(good); n++ {
		tails = append(tails, full[len(good):len(good)+n])
	}
	tails = append(tails, make([]byte, 4096), append(slices.Clone(full[len(good):len(good)+20]), make([]byte, 4096)...))
	// A whole section whose bytes differ from its checksum: a torn write
	// whose blocks came in another order than they were written.
	bad := slices.Clone(full[len(good):])
	bad[len(bad)/2] ^= 1
	tails = append(tails, bad)
	for _, tail := range tails {
		torn := append(slices.Clone(good), tail...)
		if err := os.WriteFile(path, torn, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := LoadState(path)
		if err != nil {
			t.Fatalf("torn after %d bytes: %v", len(tail), err)
		}
		checkSameState(t, "torn", got, st)
		h, err := LoadStateHeader(path)
		if err != nil || h.Generation != st.Generation {
			t.Fatalf("torn after %d bytes, header alone: generation %d, %v", len(tail), h.Generation, err)
		}
		// The next save goes where the torn section was.
		_, _, img, err := loadStateImage(path)
		if err != nil || img == nil || img.validLen != int64(len(good)) {
			t.Fatalf("torn after %d bytes: image %+v, %v", len(tail), img, err)
		}
		if _, err := saveStateWith(path, sortedCopy(next), testOwner, img, nil, nil); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(path); !bytes.Equal(b, full) {
			t.Fatalf("torn after %d bytes: the save after it did not replace the torn bytes", len(tail))
		}
		got, err = LoadState(path)
		if err != nil {
			t.Fatal(err)
		}
		checkSameState(t, "saved over a torn section", got, next)
	}
}

// What cannot be a torn save is damage, reported with the file's name: a
// damaged section with another one after it, lines after the base that are
// no section, a section that removes a pair not there or adds one there.
func TestStateDamagedSections(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	path := filepath.Join(t.TempDir(), StateFileName)
	st := sampleState()
	if _, err := saveStateWith(path, sortedCopy(st), testOwner, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	base, _ := os.ReadFile(path)
	var secs [][]byte
	for i := 0; i < 2; i++ {
		_, _, img, _ := loadStateImage(path)
		before, _ := os.ReadFile(path)
		st = mutateState(r, st)
		if _, err := saveStateWith(path, sortedCopy(st), testOwner, img, nil, nil); err != nil {
			t.Fatal(err)
		}
		after, _ := os.ReadFile(path)
		secs = append(secs, after[len(before):])
	}
	flip := func(b []byte, i int) []byte {
		b = slices.Clone(b)
		b[i] ^= 1
		return b
	}
	reseal := func(body string) []byte { return []byte(sealSection(body)) }
	cases := map[string][]byte{
		"first of two damaged": slices.Concat(base, flip(secs[0], len(secs[0])/2), secs[1]),
		"pair line after base": slices.Concat(base, []byte("4800 0\n")),
		"garbage after base":   slices.Concat(base, []byte("garbage\n"), secs[0]),
		"removes a missing pair": slices.Concat(base, reseal("%delta\ngeneration 9\nfar-validity 1\nnear-validity 1\n"+
			"max-pulled 1\nmax-pushed 1\npairs 12\n\n-9999 9999\n")),
		"adds a pair there": slices.Concat(base, reseal("%delta\ngeneration 9\nfar-validity 1\nnear-validity 1\n"+
			"max-pulled 1\nmax-pushed 1\npairs 14\n\n+4700 120\n")),
		"owner in a section": slices.Concat(base, reseal("%delta\nchannel \"x\"\ngeneration 9\nfar-validity 1\nnear-validity 1\n"+
			"max-pulled 1\nmax-pushed 1\npairs 13\n\n")),
		"wrong count": slices.Concat(base, reseal("%delta\ngeneration 9\nfar-validity 1\nnear-validity 1\n"+
			"max-pulled 1\nmax-pushed 1\npairs 12\n\n")),
	}
	for name, b := range cases {
		os.WriteFile(path, b, 0o600)
		var se *StateError
		if _, err := LoadState(path); !errors.As(err, &se) || se.File != path || se.Line == 0 {
			t.Errorf("%s: want a StateError naming the file and a line, got %v", name, err)
		}
	}
	// A valid hand-made section applies (the checks above are not a
	// refusal of every section made outside a save).
	os.WriteFile(path, slices.Concat(base, reseal("%delta\ngeneration 9\nfar-validity 1\nnear-validity 1\n"+
		"max-pulled 1\nmax-pushed 1\npairs 13\n\n-4700 120\n+4700 120 S\n")), 0o600)
	got, err := LoadState(path)
	if err != nil || got.Generation != 9 || got.Pairs[0] != (Pair{Far: 4700, Near: 120, Flags: FlagSeen}) {
		t.Fatalf("hand-made section: %+v %v", got, err)
	}
}

// sealSection ends a section's text with its "%end" line.
func sealSection(body string) string {
	return fmt.Sprintf("%s%%end %08x %d\n", body, crc32.Checksum([]byte(body), crc32c), len(body))
}

// bigInternalState is a state of n pairs, mostly seen, some flagged.
func bigInternalState(n int) State {
	st := State{Generation: 42, FarValidity: 1700000000, NearValidity: 1700000001,
		MaxPulled: UID(n + 10), MaxPushed: UID(n + 5),
		Far:  Markers{UIDNext: UID(n + 11), HighestModSeq: 987654, Messages: int64(n), Stamp: "1700000000/100011/100000/987654"},
		Near: Markers{UIDNext: UID(n + 6), Messages: -1, Stamp: "1732577000123456789.1732577000223456789"},
	}
	st.Pairs = make([]Pair, n)
	for i := range st.Pairs {
		st.Pairs[i] = Pair{Far: UID(i + 10), Near: UID(i + 5), Flags: FlagSeen}
		if i%50 == 0 {
			st.Pairs[i].Flags |= FlagFlagged
		}
	}
	return st
}

// hundredOfEach is st after a run that saw 100 messages arrive, 100 change
// flags and 100 go (scenario c of the benchmark).
func hundredOfEach(st State, round int) State {
	next := st
	next.Generation++
	next.Pairs = slices.Clone(st.Pairs)
	for i := 0; i < 100; i++ {
		next.Pairs[(round*7919+i*613)%len(next.Pairs)].Flags ^= FlagReplied
	}
	next.Pairs = slices.DeleteFunc(next.Pairs, func(p Pair) bool { return p.Far%997 == UID(round%997) })
	for i := 0; i < 100; i++ {
		next.MaxPulled++
		next.MaxPushed++
		next.Pairs = append(next.Pairs, Pair{Far: next.MaxPulled, Near: next.MaxPushed})
	}
	return next
}

// The save of a 100 000-pair state after such a run: appended (the run's
// way) and rewritten (what it was before format 3), fsync included.
func BenchmarkStateSaveAfterRun100k(b *testing.B) {
	for _, mode := range []string{"append", "rewrite"} {
		b.Run(mode, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), StateFileName)
			st := bigInternalState(100_000)
			if _, err := saveStateWith(path, st, testOwner, nil, nil, nil); err != nil {
				b.Fatal(err)
			}
			round := 0
			for b.Loop() {
				b.StopTimer()
				// Back to the base alone, and the run's changes.
				if _, err := saveStateWith(path, st, testOwner, nil, nil, nil); err != nil {
					b.Fatal(err)
				}
				_, _, img, err := loadStateImage(path)
				if err != nil {
					b.Fatal(err)
				}
				if mode == "rewrite" {
					img = nil
				}
				round++
				next := hundredOfEach(st, round)
				b.StartTimer()
				if _, err := saveStateWith(path, next, testOwner, img, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The load of a 100 000-pair state with a base alone and with 10 runs'
// sections (about the most before the file is rewritten whole).
func BenchmarkStateLoadSections100k(b *testing.B) {
	for _, runs := range []int{0, 10} {
		b.Run(fmt.Sprintf("sections=%d", runs), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), StateFileName)
			st := bigInternalState(100_000)
			if _, err := saveStateWith(path, st, testOwner, nil, nil, nil); err != nil {
				b.Fatal(err)
			}
			for i := 1; i <= runs; i++ {
				_, _, img, err := loadStateImage(path)
				if err != nil {
					b.Fatal(err)
				}
				st = hundredOfEach(st, i)
				if _, err := saveStateWith(path, st, testOwner, img, nil, nil); err != nil {
					b.Fatal(err)
				}
			}
			if b, _ := os.ReadFile(path); bytes.Count(b, []byte("%delta\n")) != runs {
				panic("sections not appended")
			}
			b.Run("whole", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, _, err := loadStateImage(path); err != nil {
						b.Fatal(err)
					}
				}
			})
			// What a run over an unchanged mailbox reads: the header of
			// the last section, not the pairs.
			b.Run("header", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if h, err := LoadStateHeader(path); err != nil || h.Generation != st.Generation {
						b.Fatal(h.Generation, err)
					}
				}
			})
		})
	}
}
