package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const journalHead = "quixysync-journal 1\ngeneration 7\nfar-validity 11\nnear-validity 12\n\n"

// A damaged journal is refused, never read as something else: a number too
// large for a UID, truncated, would name another message, and replay would
// pair or flag that one.
func TestJournalRefusesDamage(t *testing.T) {
	copyLine := "copy 1 near 5 S 0 9 100 102 ab <m@x>\n"
	for _, tc := range []struct{ name, body string }{
		{"far validity above 32 bits", strings.Replace(journalHead, "far-validity 11", "far-validity 4294967307", 1)},
		{"near validity above 32 bits", strings.Replace(journalHead, "near-validity 12", "near-validity 4294967308", 1)},
		{"source UID above 32 bits", journalHead + "copy 1 near 4294967301 S 0 9 100 102 ab\n"},
		{"reserved UID above 32 bits", journalHead + "copy 1 near 5 S 4294967296 9 100 102 ab\n"},
		{"UIDNEXT above 32 bits", journalHead + "copy 1 near 5 S 0 4294967305 100 102 ab\n"},
		{"source UID 0", journalHead + "copy 1 near 0 S 0 9 100 102 ab\n"},
		{"UID 0 in a set", journalHead + "flags 1 far S - 0:3\n"},
		{"UID set too large", journalHead + "expunge 1 far 1:4294967295\n"},
		{"UID sets adding up too large", journalHead + "expunge 1 far 1:9000000,1:9000000\n"},
		{"two results for one copy", journalHead + copyLine + "ok 1 3\nfail 1\n"},
		{"a step id used twice", journalHead + copyLine + "flags 1 far S - 3\n"},
		{"step id 0", journalHead + "expunge 0 far 3\n"},
		{"fail with a UID", journalHead + copyLine + "fail 1 3\n"},
		{"done with more", journalHead + "flags 1 far S - 3\ndone 1 2\n"},
	} {
		jd, err := parseJournal(strings.NewReader(tc.body), "jx")
		if err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("%s: want an error saying the journal is damaged, got %v (read %+v)", tc.name, err, jd)
		}
	}
}

// writeJournalOf writes what a journal holds through the journal's own
// writer, in the order a run writes it: each copy and its result, then each
// flag change and removal and its done mark. IDs are the writer's.
func writeJournalOf(t *testing.T, jd *journalData) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "j")
	j := newJournal(path, jd.Header, nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(j.open())
	for _, c := range jd.Copies {
		cc := *c
		must(j.addCopy(&cc))
		if c.Done {
			must(j.addCopyResult(&cc))
		}
	}
	for _, f := range jd.Flags {
		ff := *f
		must(j.addFlags(&ff))
		if f.Done {
			must(j.addDone(ff.ID))
		}
	}
	for _, e := range jd.Expunges {
		ee := *e
		must(j.addExpunge(&ee))
		if e.Done {
			must(j.addDone(ee.ID))
		}
	}
	must(j.sync())
	j.close()
	data, err := os.ReadFile(path)
	must(err)
	return data
}

// sameJournal compares two journals' contents, IDs aside.
func sameJournal(a, b *journalData) bool {
	if a.Header != b.Header || len(a.Copies) != len(b.Copies) || len(a.Flags) != len(b.Flags) || len(a.Expunges) != len(b.Expunges) {
		return false
	}
	for i, x := range a.Copies {
		y := *b.Copies[i]
		y.ID = x.ID
		if *x != y {
			return false
		}
	}
	for i, x := range a.Flags {
		y := b.Flags[i]
		if x.Side != y.Side || x.Add != y.Add || x.Remove != y.Remove || x.Done != y.Done || !slices.Equal(x.UIDs, y.UIDs) {
			return false
		}
	}
	for i, x := range a.Expunges {
		y := b.Expunges[i]
		if x.Side != y.Side || x.Done != y.Done || !slices.Equal(x.UIDs, y.UIDs) {
			return false
		}
	}
	return true
}

// What the writer writes reads back as it was written, including a
// Message-ID with spaces, '%', control and non-ASCII bytes.
func TestJournalWrittenReadsBack(t *testing.T) {
	jd := &journalData{
		Header: journalHeader{Generation: 3, FarValidity: 4294967295, NearValidity: 1},
		Copies: []*copyIntent{
			{To: Near, Src: 4294967295, Flags: FlagSeen | FlagFlagged, Reserved: 17, UIDNext: 4294967295, Size: 1 << 40, CRLFSize: 1<<40 + 9, SHA256: "00ff", MessageID: "<a b%c\x01\xe9@x>", Done: true, Target: 17},
			{To: Far, Src: 2, SHA256: "ee", Done: true, Failed: true},
			{To: Far, Src: 3, SHA256: "dd"},
		},
		Flags:    []*flagIntent{{Side: Far, Add: FlagSeen, UIDs: []UID{1, 2, 3, 9, 4294967295}, Done: true}, {Side: Near, Remove: FlagDraft, UIDs: []UID{5}}},
		Expunges: []*expungeIntent{{Side: Near, UIDs: []UID{7, 8}, Done: true}},
	}
	data := writeJournalOf(t, jd)
	got, err := parseJournal(bytes.NewReader(data), "jx")
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !sameJournal(jd, got) {
		t.Errorf("read back differs:\n%s", data)
	}
}

// A journal on disk can be cut off or damaged anywhere: reading it never
// panics, and whatever it accepts, written again by the journal's writer,
// reads back the same (no field is read as something the writer cannot
// have written).
func FuzzParseJournal(f *testing.F) {
	f.Add([]byte(journalHead))
	f.Add([]byte(journalHead + "copy 1 near 5 S 0 9 100 102 ab %3Cm%20x%3E\nok 1 3\nflags 2 far S T 1:3,9\ndone 2\nexpunge 3 near 4,6:7\ndone 3\ncopy 4 far 8 - 0 0 1 1 cd\nfail 4\n"))
	f.Add([]byte(journalHead + "copy 1 near 5 S 0 9 100 102 ab\nok 1 0\ncopy 2 near 6 - 0 9 1 1 ab\n"))
	f.Add([]byte("quixysync-journal 2\ngeneration 1\nfar-validity 1\nnear-validity 1\n\n"))
	f.Add([]byte(journalHead + "flags 1 far S - 4294967295\nexpunge 2 far 1:65536\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		jd, err := parseJournal(bytes.NewReader(data), "fuzz")
		if err != nil || jd == nil {
			return
		}
		again := writeJournalOf(t, jd)
		jd2, err := parseJournal(bytes.NewReader(again), "again")
		if err != nil {
			t.Fatalf("rewritten journal refused: %v\n%q", err, again)
		}
		if !sameJournal(jd, jd2) {
			t.Fatalf("rewritten journal reads differently:\nfrom %q\nto %q", data, again)
		}
	})
}
