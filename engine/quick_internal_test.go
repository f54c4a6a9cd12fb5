package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unsafe"

	"github.com/quixysync/quixysync/internal/sysfile"
)

func TestLoadStateHeaderSkipsPairs(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateFileName)
	st := sampleState()
	owner := StateOwner{Channel: "ch", FarStore: "imap.work", FarMailbox: "Lists/ä", NearStore: "local", NearMailbox: "Lists/ä"}
	if err := saveState(path, st, owner); err != nil {
		t.Fatal(err)
	}
	h, err := LoadStateHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	want := st
	want.Pairs = nil
	if !reflect.DeepEqual(h.State, want) || h.Owner != owner {
		t.Fatalf("header:\n got %+v %+v\nwant %+v %+v", h.State, h.Owner, want, owner)
	}
	// sampleState: one far message and two near ones flagged deleted.
	if h.Deleted != [2]int{0, 2} {
		t.Fatalf("deleted counts %v", h.Deleted)
	}
	full, meta, err := loadState(path, false)
	if err != nil || !reflect.DeepEqual(full, st) || meta.Owner != owner || meta.Deleted != h.Deleted {
		t.Fatalf("full load: %+v %+v %v", full, meta, err)
	}
	// The header alone is read: damaged pair lines do not matter to it.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(b, []byte("\n\n"), []byte("\n\ngarbage\n"), 1), 0o600)
	if _, err := LoadStateHeader(path); err != nil {
		t.Fatalf("header load read the pairs: %v", err)
	}
	if _, err := LoadState(path); err == nil {
		t.Fatal("damaged pair line not reported by LoadState")
	}
	// A file from before the counts: unknown (-1), not zero.
	old := regexp.MustCompile(`(?m)^(far|near)-deleted .*\n`).ReplaceAll(b, nil)
	os.WriteFile(path, old, 0o600)
	if h, err := LoadStateHeader(path); err != nil || h.Deleted != [2]int{-1, -1} {
		t.Fatalf("old file: %v %v", h.Deleted, err)
	}
}

func TestQuickUnchanged(t *testing.T) {
	dir := t.TempDir()
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(dir, far, near)
	b := &boxRun{spec: spec, name: "INBOX", statePath: filepath.Join(dir, "st")}
	fs := Status{UIDValidity: 5, UIDNext: 10, Stamp: "f1"}
	ns := Status{UIDValidity: 7, UIDNext: 3, Stamp: "n1"}
	h := StateHeader{State: State{Generation: 3, FarValidity: 5, NearValidity: 7,
		Far: Markers{Stamp: "f1"}, Near: Markers{Stamp: "n1"}}, Deleted: [2]int{0, 2}}
	opts := Options{Expunge: [2]bool{true, false}}
	b.listed = [2]*Status{&fs, &ns}
	if !b.quickUnchanged(h, opts) {
		t.Fatal("unchanged pair not recognised")
	}
	try := func(what string, mod func(h *StateHeader, o *Options, l *[2]Status)) {
		t.Helper()
		h2, o2, l2 := h, opts, [2]Status{fs, ns}
		mod(&h2, &o2, &l2)
		b.listed = [2]*Status{&l2[0], &l2[1]}
		if b.quickUnchanged(h2, o2) {
			t.Errorf("%s: skipped", what)
		}
	}
	try("first run", func(h *StateHeader, o *Options, l *[2]Status) { h.Generation = 0 })
	try("far changed", func(h *StateHeader, o *Options, l *[2]Status) { l[0].Stamp = "f2" })
	try("near changed", func(h *StateHeader, o *Options, l *[2]Status) { l[1].Stamp = "n2" })
	try("no stamp", func(h *StateHeader, o *Options, l *[2]Status) { l[1].Stamp, h.Near.Stamp = "", "" })
	try("validity", func(h *StateHeader, o *Options, l *[2]Status) { l[0].UIDValidity = 6 })
	try("expunge pending", func(h *StateHeader, o *Options, l *[2]Status) { o.Expunge[Near] = true })
	try("counts unknown", func(h *StateHeader, o *Options, l *[2]Status) { h.Deleted[Far] = -1 })
	b.listed = [2]*Status{&fs, nil}
	if b.quickUnchanged(h, opts) {
		t.Error("skipped without a near status")
	}
	b.listed = [2]*Status{&fs, &ns}
	os.WriteFile(b.statePath+".journal", []byte("x"), 0o600)
	if b.quickUnchanged(h, opts) {
		t.Error("skipped with a journal to replay")
	}
}

// A state file written before the header carried the owner and the deleted
// counts is rewritten by the first run that finds the pair unchanged, so the
// run after it can skip the pair without opening it.
func TestOldStateHeaderUpgraded(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	far.listStatus, near.listStatus = true, true
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{}) // records the stamps after the copy
	path, _ := StatePath(spec, "INBOX")
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "far-store \"far\"\n") {
		t.Fatalf("no owner recorded:\n%s", b)
	}
	old := regexp.MustCompile(`(?m)^((far|near)-(deleted|store|mailbox)|channel) .*\n`).ReplaceAll(b, nil)
	os.WriteFile(path, old, 0o600)
	opens := func() int { return far.Calls("OpenMailbox") + near.Calls("OpenMailbox") }
	o := opens()
	mustSync(t, spec, RunOptions{})
	if opens() == o {
		t.Fatal("a state without counts was trusted")
	}
	if b2, _ := os.ReadFile(path); !strings.Contains(string(b2), "near-deleted 0\n") || !strings.Contains(string(b2), "far-store \"far\"\n") {
		t.Fatalf("state not upgraded:\n%s", b2)
	}
	if st, err := LoadState(path); err != nil || len(st.Pairs) != 1 || st.Pairs[0].Far == 0 || st.Pairs[0].Near == 0 {
		t.Fatalf("upgraded state lost its pair: %+v %v", st, err)
	}
	o = opens()
	res := mustSync(t, spec, RunOptions{})
	if opens() != o || res.Mailboxes[0].Skipped != "unchanged" {
		t.Fatalf("upgraded state not used: %d opens, %+v", opens()-o, res.Mailboxes[0])
	}
}

// The one-pass pair parser agrees with the careful one on every input.
func TestParsePairLineFastAgrees(t *testing.T) {
	inputs := []string{"1 2", "1 2 S", "0 5 -T", "7 0 >", "4 0 x", "1 2 ", "1  2", " 1 2", "1 2 SQ", "0 0",
		"4294967295 1", "4294967296 1", "12345678901 1", "1 2x", "1", "1 ", "", "x 1", "1 2 -", "1 2 DFPRST", "01 002 S"}
	rng := uint64(1)
	alphabet := []byte("0123456789 SFT>x-Q")
	for i := 0; i < 20000; i++ {
		n := int(rng % 14)
		b := make([]byte, n)
		for j := range b {
			rng = rng*6364136223846793005 + 1442695040888963407
			b[j] = alphabet[(rng>>33)%uint64(len(alphabet))]
		}
		rng = rng*6364136223846793005 + 1442695040888963407
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		p1, err1 := parsePairLine([]byte(in))
		p2, err2 := parsePairLineSlow([]byte(in))
		if (err1 == nil) != (err2 == nil) || (err1 == nil && p1 != p2) {
			t.Fatalf("%q: fast %+v %v, careful %+v %v", in, p1, err1, p2, err2)
		}
	}
}

func TestUIDSet(t *testing.T) {
	for _, uids := range [][]UID{{}, {0}, {1, 2, 3, 64, 65, 200}, {5, 4000000000, 17, 9}, {3, 1, 2}} {
		in := map[UID]bool{}
		for _, u := range uids {
			in[u] = true
		}
		has, n := uidSet(func(yield func(UID)) {
			for _, u := range uids {
				yield(u)
			}
		})
		if n != len(uids) {
			t.Fatalf("set %v: %d UIDs counted", uids, n)
		}
		for _, u := range []UID{0, 1, 2, 3, 4, 5, 9, 17, 63, 64, 65, 66, 199, 200, 201, 4000000000, 4000000001, 1<<32 - 1} {
			if has(u) != in[u] {
				t.Fatalf("set %v: has(%d) = %v", uids, u, has(u))
			}
		}
	}
}

// statusWarmer is a far store that answers STATUS (StatusLister) and records
// WarmFor.
type statusWarmer struct {
	*memStore
	warmed []int
}

func (s *statusWarmer) StatusAll(ctx context.Context, names []string) (map[string]Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Status{}
	for _, n := range names {
		if b := s.boxes[n]; b != nil {
			out[n] = s.statusLocked(b)
		}
	}
	return out, nil
}

func (s *statusWarmer) WarmFor(_ context.Context, n int) { s.warmed = append(s.warmed, n) }

// TestStatusFirstWarmsForChangedNear: mailboxes whose near side changed are
// opened without a far STATUS, and when there are several the far store is
// told to get that many connections ready (one change: no warm-up).
func TestStatusFirstWarmsForChangedNear(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	near.reserve, near.modseq = true, false
	near.listStatus = true // as a Maildir: its listing carries each folder's stamp
	sw := &statusWarmer{memStore: far}
	spec := testSpec(t.TempDir(), sw, near)
	for _, box := range []string{"INBOX", "A", "B", "C"} {
		addMsg(t, far, box, box+"1", 0)
	}
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{}) // records the stamps the copies left
	first := func() map[string]bool {
		t.Helper()
		var lists [2][]MailboxInfo
		var listErr [2]error
		noStatus := map[string]bool{}
		statusFirst(t.Context(), spec, slog.New(slog.DiscardHandler), &lists, &listErr, noStatus)
		if listErr[Near] != nil {
			t.Fatal(listErr[Near])
		}
		return noStatus
	}
	addMsg(t, near, "A", "A2", 0)
	sw.warmed = nil
	if got := first(); len(got) != 1 || !got["A"] || sw.warmed != nil {
		t.Fatalf("one near change: noStatus %v, WarmFor %v", got, sw.warmed)
	}
	addMsg(t, near, "B", "B2", 0)
	addMsg(t, near, "C", "C2", 0)
	if got := first(); len(got) != 3 || fmt.Sprint(sw.warmed) != "[3]" {
		t.Fatalf("three near changes: noStatus %v, WarmFor %v, want [3]", got, sw.warmed)
	}
}

// removalsLikely: fewer messages than known even if every UID since the last
// run were a new message.
func TestRemovalsLikely(t *testing.T) {
	pairs := []Pair{{Far: 1, Near: 1}, {Far: 2, Near: 2}, {Far: 3, Near: 3}, {Far: 4}, {Near: 9}}
	rec := Markers{UIDNext: 5, Messages: 4}
	for _, tc := range []struct {
		name   string
		status Status
		want   bool
	}{
		{"nothing changed", Status{UIDNext: 5, Messages: 4}, false},
		{"one removed", Status{UIDNext: 5, Messages: 3}, true},
		{"two new, none removed", Status{UIDNext: 7, Messages: 6}, false},
		{"two new, one removed", Status{UIDNext: 7, Messages: 5}, true},
		{"count unknown", Status{UIDNext: 5, Messages: -1}, false},
		{"UIDNEXT unknown", Status{Messages: 0}, false},
		{"UIDNEXT went back", Status{UIDNext: 4, Messages: 0}, false},
	} {
		if got := removalsLikely(tc.status, rec, pairs, Far); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Fewer known than the recorded count (a pair dropped): the count decides.
	if !removalsLikely(Status{UIDNext: 5, Messages: 3}, Markers{UIDNext: 5, Messages: 4}, pairs[:2], Far) {
		t.Error("recorded count: want true")
	}
}

// statusThenLister also lists in StatusThenList's round trip, and counts the
// listings asked of it separately.
type statusThenLister struct {
	statusWarmer
	thenList, lists int
	failList        bool // StatusThenList's listing fails (list nil)
}

func (s *statusThenLister) StatusThenList(ctx context.Context, names []string) (map[string]Status, []MailboxInfo, error) {
	st, _ := s.StatusAll(ctx, names)
	s.thenList++
	if s.failList {
		return st, nil, nil
	}
	list, err := s.memStore.ListMailboxes(ctx)
	return st, list, err
}

func (s *statusThenLister) ListMailboxes(ctx context.Context) ([]MailboxInfo, error) {
	s.lists++
	return s.memStore.ListMailboxes(ctx)
}

// A far store that lists in the round trip of its statuses is not asked to
// list again; one whose listing failed there is (and the run is the same).
func TestStatusFirstTakesTheListingAlong(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	near.reserve, near.modseq = true, false
	near.listStatus = true
	stl := &statusThenLister{statusWarmer: statusWarmer{memStore: far}}
	spec := testSpec(t.TempDir(), stl, near)
	for _, box := range []string{"INBOX", "A", "B"} {
		addMsg(t, far, box, box+"1", 0)
	}
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{})
	for _, failList := range []bool{false, true} {
		stl.failList, stl.thenList, stl.lists = failList, 0, 0
		addMsg(t, far, "C", fmt.Sprint("C", failList), 0) // a mailbox only the far listing shows
		res := mustSync(t, spec, RunOptions{})
		wantLists := 0
		if failList {
			wantLists = 1
		}
		if stl.thenList != 1 || stl.lists != wantLists {
			t.Errorf("listing failed %v: %d StatusThenList, %d ListMailboxes; want 1, %d", failList, stl.thenList, stl.lists, wantLists)
		}
		if res.Counts.Copied[Near] != 1 || res.Counts.Created[Near] != btoi(!failList) {
			t.Errorf("listing failed %v: copied %d, created %d near; the new far mailbox was missed", failList, res.Counts.Copied[Near], res.Counts.Created[Near])
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A listing holds one Message per message: a padding hole costs 100 000 × 8
// bytes of fresh memory at 100 000 messages.
func TestMessageHasNoPadding(t *testing.T) {
	if got := unsafe.Sizeof(Message{}); got != 40 {
		t.Fatalf("Message is %d bytes, want 40: order its fields by size", got)
	}
}

// A large state is mapped while parsed. Truncating it under the mapping (no
// quixysync does that: states are replaced by rename) makes the reads fault:
// that is an error naming the file, not a crash of the run. The same file,
// whole, loads as saved.
func TestMappedStateTruncatedIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), StateFileName)
	st := State{Generation: 3, FarValidity: 7, NearValidity: 9}
	for u := UID(1); u <= 40000; u++ { // ~0.5 MB: mapped, not read
		st.Pairs = append(st.Pairs, Pair{Far: u, Near: u, Flags: FlagSeen})
	}
	st.MaxPulled, st.MaxPushed = 40000, 40000
	if err := saveState(path, st, StateOwner{}); err != nil {
		t.Fatal(err)
	}
	full, _, err := loadState(path, false)
	if err != nil || len(full.Pairs) != len(st.Pairs) {
		t.Fatalf("whole file: %d pairs, %v", len(full.Pairs), err)
	}
	data, done, err := sysfile.MapFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	_, _, err = parseMapped(data, path)
	if err == nil || !strings.Contains(err.Error(), "shrank while it was read") || !strings.Contains(err.Error(), path) {
		t.Fatalf("truncated under the mapping: %v", err)
	}
}

// The same agreement for any bytes, the ident field included (the random
// inputs above never hold '#').
func FuzzPairLineParsersAgree(f *testing.F) {
	for _, s := range []string{"1 2", "1 2 S", "0 5 -T", "7 0 >", "1 2 #0/1", "1 2 S #ab/cd", "1 0 > #ffffffff/0",
		"1 2 x #1/2", "1 2 #", "1 2 S #1/2 ", "1 2 #1/2 S", "4294967295 1 DFPRST #00000001/0000",
		"0 5 =12S", "7 0 =4294967295 #1/0", "0 5 =0", "0 5 =S"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p1, err1 := parsePairLine(b)
		p2, err2 := parsePairLineSlow(b)
		if (err1 == nil) != (err2 == nil) || (err1 == nil && p1 != p2) {
			t.Fatalf("%q: fast %+v %v, careful %+v %v", b, p1, err1, p2, err2)
		}
	})
}
