package engine

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func sampleState() State {
	return State{
		Generation: 7, FarValidity: 1700000000, NearValidity: 42,
		MaxPulled: 4711, MaxPushed: 123,
		Far:  Markers{UIDNext: 4712, HighestModSeq: 99, Messages: 3, Stamp: "a b\n\"c\""},
		Near: Markers{UIDNext: 124, Messages: -1, Stamp: "1:2"},
		Pairs: []Pair{
			{Far: 4700, Near: 120, Flags: FlagFlagged | FlagSeen},
			{Far: 4701, Near: 0, Flags: FlagSeen},
			{Far: 4702, Near: 0, Skip: SkipTooBig},
			{Far: 4703, Near: 121},
			{Far: 4704, Near: 124, Flags: FlagSeen, Ident: [2]uint32{0, 0xdeadbeef}},
			{Far: 4705, Near: 125, Ident: [2]uint32{1, 0xa}},
			{Far: 4706, Near: 0, Skip: SkipTooBig, Ident: [2]uint32{0xffffffff, 0}},
			{Far: 0, Near: 122, Skip: SkipGone, Flags: FlagDeleted},
			{Far: 0, Near: 123, Skip: SkipDeleted, Flags: FlagDeleted | FlagDraft},
			{Far: 0, Near: 126, Skip: SkipRefused, Flags: FlagFlagged},
			{Far: 0, Near: 127, Skip: SkipMerged, Flags: FlagSeen},
			{Far: 0, Near: 128, Skip: SkipMerged, Flags: FlagSeen | FlagFlagged, Into: 4700},
			{Far: 0, Near: 129, Skip: SkipMerged, Into: 4294967295, Ident: [2]uint32{0, 9}},
		},
	}
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", StateFileName)
	st := sampleState()
	if err := SaveState(path, st); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, st)
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{fmt.Sprintf("quixysync-state %d\n", stateVersion), "max-pulled 4711\n", fmt.Sprintf("pairs %d\n", len(st.Pairs)), "\n4700 120 FS\n", "\n4701 0 S\n", "\n4702 0 >\n", "\n4703 121\n", "\n0 122 -T\n",
		"\n4704 124 S #0/deadbeef\n", "\n4705 125 #1/a\n", "\n4706 0 > #ffffffff/0\n"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("state file lacks %q:\n%s", want, b)
		}
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
}

func TestLoadMissingState(t *testing.T) {
	st, err := LoadState(filepath.Join(t.TempDir(), "nope"))
	if err != nil || !reflect.DeepEqual(st, State{}) {
		t.Fatalf("%+v %v", st, err)
	}
}

func TestCorruptStateNamesFileAndLine(t *testing.T) {
	var buf bytes.Buffer
	WriteState(&buf, sampleState())
	good := buf.String()
	cases := map[string]string{
		"bad flag":        strings.Replace(good, "4700 120 FS", "4700 120 FQ", 1),
		"bad uid":         strings.Replace(good, "4703 121", "4703 12x", 1),
		"truncated":       good[:len(good)-3],
		"version":         strings.Replace(good, fmt.Sprintf("quixysync-state %d", stateVersion), "quixysync-state 0", 1),
		"no version":      strings.Replace(good, fmt.Sprintf("quixysync-state %d", stateVersion), "quixysync-state x", 1),
		"header":          strings.Replace(good, "max-pushed 123\n", "", 1),
		"empty":           "",
		"zero pair":       good + "0 0\n",
		"bad ident":       strings.Replace(good, "#0/deadbeef", "#0/deadbeeg", 1),
		"long ident":      strings.Replace(good, "#0/deadbeef", "#0/deadbeef0", 1),
		"one ident":       strings.Replace(good, "#1/a", "#1", 1),
		"upper ident":     strings.Replace(good, "#1/a", "#1/A", 1),
		"empty flags":     strings.Replace(good, "4705 125 #1/a", "4705 125  #1/a", 1),
		"field after":     strings.Replace(good, "#1/a", "#1/a S", 1),
		"two flag fields": strings.Replace(good, "4704 124 S", "4704 124 S F", 1),
	}
	for name, text := range cases {
		path := filepath.Join(t.TempDir(), "st")
		os.WriteFile(path, []byte(text), 0o600)
		_, err := LoadState(path)
		var se *StateError
		if !errors.As(err, &se) || se.File != path || se.Line == 0 || !strings.Contains(err.Error(), "move it away") {
			t.Errorf("%s: want a StateError naming %s and a line, got %v", name, path, err)
		}
	}
}

// A state of a newer format is not called damaged: the advice is to run
// the newer quixysync, not to move the file away (which re-pairs from
// scratch). Likewise for a journal.
func TestNewerFormatSaysUpgrade(t *testing.T) {
	var buf bytes.Buffer
	WriteState(&buf, sampleState())
	path := filepath.Join(t.TempDir(), "st")
	os.WriteFile(path, []byte(strings.Replace(buf.String(), fmt.Sprintf("quixysync-state %d", stateVersion), fmt.Sprintf("quixysync-state %d", stateVersion+1), 1)), 0o600)
	_, err := LoadState(path)
	var se *StateError
	if !errors.As(err, &se) || se.Newer != stateVersion+1 || !strings.Contains(err.Error(), "newer quixysync") ||
		strings.Contains(err.Error(), "damaged;") || !strings.Contains(err.Error(), path) {
		t.Errorf("state of version %d: %v", stateVersion+1, err)
	}
	j := "quixysync-journal 2\ngeneration 1\nfar-validity 1\nnear-validity 1\n\n"
	_, err = parseJournal(strings.NewReader(j), "jx")
	if err == nil || !strings.Contains(err.Error(), "newer quixysync") || strings.Contains(err.Error(), "damaged") {
		t.Errorf("journal of version 2: %v", err)
	}
	_, err = parseJournal(strings.NewReader(strings.Replace(j, " 2\n", " 0\n", 1)), "jx")
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("journal of version 0: %v", err)
	}
}

func FuzzParseState(f *testing.F) {
	var buf bytes.Buffer
	WriteState(&buf, sampleState())
	f.Add(buf.Bytes())
	f.Add([]byte("quixysync-state 1\n\n"))
	f.Add([]byte("quixysync-state 1\ngeneration 1\nfar-validity 1\nnear-validity 2\nmax-pulled 3\nmax-pushed 4\n\n1 2 >DT\n"))
	f.Add([]byte("quixysync-state 1\ngeneration 1\nfar-validity 1\nnear-validity 2\nmax-pulled 3\nmax-pushed 4\n\n1 2 >DT #0/1f\n3 4 #a/0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseState(bytes.NewReader(b), "fuzz")
		if err != nil {
			return
		}
		// What parses must survive a round trip.
		var out bytes.Buffer
		if err := WriteState(&out, st); err != nil {
			t.Fatal(err)
		}
		st2, err := ParseState(&out, "again")
		if err != nil || !reflect.DeepEqual(st, st2) {
			t.Fatalf("round trip failed: %v\n%+v\n%+v", err, st, st2)
		}
	})
}

// The pair line's ident field: the fast parser and the careful one agree on
// every line (same pair, or both an error), and a line without the field
// (a state written before idents) parses as before, with no idents.
func TestPairLineIdents(t *testing.T) {
	for line, want := range map[string]*Pair{
		"1 2":                {Far: 1, Near: 2},
		"1 2 FS":             {Far: 1, Near: 2, Flags: FlagFlagged | FlagSeen},
		"0 2 -T":             {Near: 2, Skip: SkipGone, Flags: FlagDeleted},
		"1 2 #0/1":           {Far: 1, Near: 2, Ident: [2]uint32{0, 1}},
		"1 2 S #ab/cd":       {Far: 1, Near: 2, Flags: FlagSeen, Ident: [2]uint32{0xab, 0xcd}},
		"1 0 > #ffffffff/0":  {Far: 1, Skip: SkipTooBig, Ident: [2]uint32{0xffffffff, 0}},
		"1 2 x #1/2":         {Far: 1, Near: 2, Skip: SkipDeleted, Ident: [2]uint32{1, 2}},
		"0 3 !F #0/3":        {Near: 3, Skip: SkipRefused, Flags: FlagFlagged, Ident: [2]uint32{0, 3}},
		"0 4 =S #0/4":        {Near: 4, Skip: SkipMerged, Flags: FlagSeen, Ident: [2]uint32{0, 4}},
		"0 5 =":              {Near: 5, Skip: SkipMerged},
		"0 6 =17FS":          {Near: 6, Skip: SkipMerged, Flags: FlagFlagged | FlagSeen, Into: 17},
		"7 0 =4294967295":    {Far: 7, Skip: SkipMerged, Into: 4294967295},
		"0 8 =9 #0/8":        {Near: 8, Skip: SkipMerged, Into: 9, Ident: [2]uint32{0, 8}},
		"0 8 =0S":            nil,
		"0 8 =4294967296":    nil,
		"0 8 =12345678901":   nil,
		"0 8 =S9":            nil,
		"0 8 !9":             nil,
		"1 2 #00000001/0000": {Far: 1, Near: 2, Ident: [2]uint32{1, 0}},
		"1 2 #":              nil,
		"1 2 #/1":            nil,
		"1 2 #1/":            nil,
		"1 2 #1/2/3":         nil,
		"1 2 #100000000/1":   nil,
		"1 2 #g/1":           nil,
		"1 2 S #1/2 ":        nil,
		"1 2 S  #1/2":        nil,
		"1 2  #1/2":          nil,
		"1 2 #1/2 S":         nil,
		"1 2 S F":            nil,
		"1 2 S ":             nil,
		"0 0 #1/2":           nil,
	} {
		fast, ferr := parsePairLine([]byte(line))
		slow, serr := parsePairLineSlow([]byte(line))
		if (ferr == nil) != (serr == nil) || (ferr == nil && fast != slow) {
			t.Errorf("%q: fast %+v %v, slow %+v %v", line, fast, ferr, slow, serr)
		}
		switch {
		case want == nil && ferr == nil:
			t.Errorf("%q parsed as %+v, want an error", line, fast)
		case want != nil && (ferr != nil || fast != *want):
			t.Errorf("%q = %+v %v, want %+v", line, fast, ferr, *want)
		}
	}
}

func TestLargeStateIsFast(t *testing.T) {
	st := State{Generation: 1, MaxPulled: 200000, MaxPushed: 200000}
	for i := 1; i <= 100000; i++ {
		st.Pairs = append(st.Pairs, Pair{Far: UID(i), Near: UID(i + 5), Flags: Flag(i) & AllFlags})
	}
	path := filepath.Join(t.TempDir(), "st")
	start := time.Now()
	if err := SaveState(path, st); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("100000 pairs took %v", d)
	}
	if len(got.Pairs) != 100000 || got.Pairs[99999] != st.Pairs[99999] {
		t.Fatal("pairs differ")
	}
}

func BenchmarkLoadState100k(b *testing.B) {
	st := State{Generation: 1}
	for i := 1; i <= 100000; i++ {
		st.Pairs = append(st.Pairs, Pair{Far: UID(i), Near: UID(i), Flags: FlagSeen})
	}
	var buf bytes.Buffer
	WriteState(&buf, st)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := ParseState(bytes.NewReader(buf.Bytes()), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

func TestJournalRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j := newJournal(path, journalHeader{Generation: 3, FarValidity: 10, NearValidity: 20}, nil)
	c1 := &copyIntent{To: Near, Src: 5, Flags: FlagSeen, Reserved: 9, UIDNext: 9, Size: 10, CRLFSize: 12, SHA256: "ab"}
	c2 := &copyIntent{To: Far, Src: 6, UIDNext: 100, Size: 1, CRLFSize: 1, SHA256: "cd"}
	fi := &flagIntent{Side: Far, Add: FlagSeen, Remove: FlagFlagged, UIDs: []UID{1, 2, 3, 7, 9, 10}}
	ei := &expungeIntent{Side: Near, UIDs: []UID{4}}
	for _, err := range []error{j.addCopy(c1), j.addCopy(c2), j.addFlags(fi), j.addExpunge(ei)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	c1.Done, c1.Target = true, 9
	j.addCopyResult(c1)
	j.addDone(fi.ID)
	j.sync()
	j.close()
	// A torn last line is ignored.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("done 4")
	f.Close()
	jd, err := readJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if jd.Header != (journalHeader{3, 10, 20}) || len(jd.Copies) != 2 || len(jd.Flags) != 1 || len(jd.Expunges) != 1 {
		t.Fatalf("%+v", jd)
	}
	if !jd.Copies[0].Done || jd.Copies[0].Target != 9 || jd.Copies[1].Done || jd.Copies[1].SHA256 != "cd" {
		t.Fatalf("copies: %+v %+v", jd.Copies[0], jd.Copies[1])
	}
	if !reflect.DeepEqual(jd.Flags[0].UIDs, fi.UIDs) || !jd.Flags[0].Done || jd.Expunges[0].Done {
		t.Fatalf("flags/expunge: %+v %+v", jd.Flags[0], jd.Expunges[0])
	}
	if got := formatUIDSet(fi.UIDs); got != "1:3,7,9:10" {
		t.Fatalf("uid set %q", got)
	}
}

func TestLockContentionNamesPID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	l1, err := LockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockFile(path)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "process "+itoa(os.Getpid())) {
		t.Fatalf("got %v", err)
	}
	if _, err := LockFileShared(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared lock while held exclusively: %v", err)
	}
	l1.Unlock()
	l2, err := LockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l2.Unlock()
}

// A dry run holds the lock shared and writes no PID: the file still names
// the last real run, long gone (its PID maybe another process's by now). A
// run refused then says a dry run holds it.
func TestLockHeldByDryRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	if err := os.WriteFile(path, []byte("      4242\n"), 0o600); err != nil { // an earlier run's
		t.Fatal(err)
	}
	dry, err := LockFileShared(path)
	if err != nil || dry == nil {
		t.Fatal(err)
	}
	defer dry.Unlock()
	_, err = LockFile(path)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "held by a dry run") || strings.Contains(err.Error(), "4242") {
		t.Fatalf("got %v, want the lock said to be held by a dry run", err)
	}
}

// A relative $XDG_STATE_HOME is ignored for the channel lock as for the
// state (XDG says so): else runs started in different directories would
// each take a lock of their own.
func TestChannelLockIgnoresRelativeStateHome(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "relstate")
	t.Setenv("HOME", "/home/q")
	p, err := ChannelLockPath(ChannelSpec{Name: "mm"})
	if err != nil {
		t.Fatal(err)
	}
	if dir := "/home/q/.local/state/quixysync/locks"; filepath.Dir(p) != dir || !strings.HasPrefix(filepath.Base(p), "mm-") {
		t.Fatalf("lock at %s, want mm-….lock in %s", p, dir)
	}
}

// A run killed while writing a state leaves its temporary file: the next
// save of that state replaces it rather than leave it for good.
func TestStateTempFileLeftByKillIsReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", StateFileName)
	if err := SaveState(path, sampleState()); err != nil {
		t.Fatal(err)
	}
	left := path + ".%tmp"
	if err := os.WriteFile(left, []byte("half a state"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SaveState(path, sampleState()); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Name() != StateFileName {
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		t.Fatalf("the state's directory holds %q, want the state alone", names)
	}
	if _, err := LoadState(path); err != nil {
		t.Fatal(err)
	}
}

// Two writers of one state path at once (two channels sharing a state by
// mistake, which their loads then refuse): the file ends up whole, one
// writer's, never a mix; the other writer fails.
func TestReplaceFileConcurrentWritersStayWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	a, b := bytes.Repeat([]byte("A"), 4096), bytes.Repeat([]byte("B"), 100)
	aHalf, bTried, bEnd := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var errB error
	go func() {
		defer close(bEnd)
		<-aHalf
		errB = replaceFile(path, func(f *os.File) error { _, err := f.Write(b); return err })
		close(bTried)
	}()
	errA := replaceFile(path, func(f *os.File) error {
		f.Write(a[:2048])
		close(aHalf)
		<-bTried
		_, err := f.Write(a[2048:])
		return err
	})
	<-bEnd
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
		t.Fatalf("the file is neither writer's: %d bytes, A's error %v, B's error %v", len(got), errA, errB)
	}
	if errA != nil || !errors.Is(errB, ErrLocked) {
		t.Errorf("A's error %v, B's %v: want A to succeed and B to find the file being written", errA, errB)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestLockHelperProcess is not a test: the child process of
// TestLockTakenOverFromKilledProcess, which takes the lock and waits.
func TestLockHelperProcess(t *testing.T) {
	path := os.Getenv("QUIXYSYNC_TEST_LOCK_HOLD")
	if path == "" {
		t.Skip("helper process")
	}
	if _, err := LockFile(path); err != nil {
		os.Exit(3)
	}
	os.Stdout.WriteString("locked\n")
	time.Sleep(time.Minute)
	os.Exit(0)
}

func TestLockTakenOverFromKilledProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "chan.lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "QUIXYSYNC_TEST_LOCK_HOLD="+path)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		cmd.Process.Kill()
		t.Fatalf("child did not lock: %q %v", buf, err)
	}
	_, err := LockFile(path)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), itoa(cmd.Process.Pid)) {
		cmd.Process.Kill()
		t.Fatalf("want ErrLocked naming the child %d, got %v", cmd.Process.Pid, err)
	}
	cmd.Process.Kill() // SIGKILL: no chance to unlock
	cmd.Wait()
	l, err := LockFile(path)
	if err != nil {
		t.Fatalf("lock of a killed process not taken over: %v", err)
	}
	l.Unlock()
}

// A state is read three ways: mapped whole (a run's full load), through a
// buffer (ParseState), and its header alone (LoadStateHeader, which decides
// whether a run may skip the pair unopened). They agree on every input: the
// same state or both an error, and a header that reads whole reads the same
// alone.
func FuzzStateReadModesAgree(f *testing.F) {
	var buf bytes.Buffer
	WriteState(&buf, sampleState())
	f.Add(buf.Bytes())
	f.Add([]byte("quixysync-state 1\ngeneration 1\nfar-validity 1\nnear-validity 2\nmax-pulled 3\nmax-pushed 4\n\n1 2 >DT #0/1f\n3 4 #a/0\n"))
	f.Add([]byte("quixysync-state 1\ngeneration 1\nfar-validity 1\nnear-validity 2\nmax-pulled 3\nmax-pushed 4\n\n1 2"))
	// With sections appended: two whole ones, then the same torn.
	next := sampleState()
	next.Generation++
	next.Pairs = append(slices.Clone(next.Pairs[1:]), Pair{Far: 4800, Flags: FlagSeen})
	next.Pairs[0].Flags = FlagReplied
	sortPairs(next.Pairs)
	sec1, _ := diffSection(next, sampleState().Pairs)
	third := next
	third.Generation++
	third.Pairs = slices.Clone(next.Pairs[:len(next.Pairs)-1])
	sec2, _ := diffSection(third, next.Pairs)
	f.Add(slices.Concat(buf.Bytes(), sec1, sec2))
	f.Add(slices.Concat(buf.Bytes(), sec1, sec2[:len(sec2)/2]))
	f.Fuzz(func(t *testing.T, b []byte) {
		mapped, mmeta, merr := parseState(nil, bytes.Clone(b), "m", false)
		buffered, bmeta, berr := parseState(bufio.NewReaderSize(bytes.NewReader(b), 64<<10), nil, "b", false)
		if (merr == nil) != (berr == nil) {
			// The buffer bounds a line at 64 KiB; a mapped file has no
			// such bound. Only that may tell them apart.
			if !(merr == nil && strings.Contains(berr.Error(), "line too long")) {
				t.Fatalf("mapped: %v; buffered: %v", merr, berr)
			}
			return
		}
		if merr != nil {
			return
		}
		if len(mapped.Pairs) == 0 {
			mapped.Pairs = nil
		}
		if len(buffered.Pairs) == 0 {
			buffered.Pairs = nil
		}
		if !reflect.DeepEqual(mapped, buffered) || mmeta != bmeta {
			t.Fatalf("mapped %+v %+v\nbuffered %+v %+v", mapped, mmeta, buffered, bmeta)
		}
		// The header alone is read from a file: that of the last
		// section appended, if any.
		path := filepath.Join(t.TempDir(), "st")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		hdr, hmeta, herr := loadState(path, true)
		if herr != nil {
			if !strings.Contains(herr.Error(), "line too long") {
				t.Fatalf("header alone: %v, whole: ok", herr)
			}
			return
		}
		mapped.Pairs = nil
		// Where the base and the sections end only the whole read knows.
		mmeta.baseLen, mmeta.validLen = 0, 0
		hmeta.baseLen, hmeta.validLen = 0, 0
		if !reflect.DeepEqual(hdr, mapped) || hmeta != mmeta {
			t.Fatalf("header alone %+v %+v\nwhole %+v %+v", hdr, hmeta, mapped, mmeta)
		}
	})
}

// A mailbox's state file is never another mailbox's lock or journal: with a
// near side that is not a folder, all of them share the state directory.
func TestStateNamesDoNotCollide(t *testing.T) {
	names := []string{"A", "A.lock", "A.journal", "A.lock.journal", "A.journal.lock", "A%2Elock", ".lock", "lock"}
	files := map[string]string{}
	for _, n := range names {
		st := escapeBoxName(n)
		for _, f := range []string{st, st + ".lock", st + ".journal"} {
			if other, ok := files[f]; ok {
				t.Errorf("%q: file %s is also %q's", n, f, other)
			}
			files[f] = n
		}
	}
	if got := escapeBoxName("Archive.2024"); got != "Archive.2024" {
		t.Errorf("plain dotted name escaped: %q", got)
	}
}

// Synced with one near store (not a folder), a mailbox's state does not
// serve another near store of the same channel: the near UIDs in it mean
// nothing there, and missing ones would count as deletions.
func TestStateOfAnotherNearStore(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "f1", 0)
	mustSync(t, spec, RunOptions{})
	other := newMemStore("near2")
	addMsg(t, other, "INBOX", "n1", 0)
	spec.Near = other
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if len(res.Mailboxes) != 1 || !errors.Is(res.Mailboxes[0].Err, ErrForeignState) {
		t.Fatalf("another near store: %+v, want ErrForeignState", res.Mailboxes)
	}
	if !strings.Contains(res.Mailboxes[0].Err.Error(), "near store near") {
		t.Errorf("error does not name the recorded near store: %v", res.Mailboxes[0].Err)
	}
	if got := view(t, far, "INBOX"); got != "f1:" {
		t.Errorf("far changed: %q", got)
	}
}

// A mailbox name too long for a file name once escaped (with a near side
// that is not a folder) still gets a state file, a journal and a lock that
// fit, distinct from those of a name differing only in its end.
func TestLongMailboxNameState(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("ü", 120) // escaped: 720 bytes
	a, b := escapeBoxName(long+"a"), escapeBoxName(long+"b")
	if a == b {
		t.Fatalf("two long names share %q", a)
	}
	for _, n := range []string{a, b} {
		if len(n)+len(".journal") > 255 || len(n)+len(".tmp")+10 > 255 {
			t.Fatalf("%d bytes: too long for a file name", len(n))
		}
	}
	if short := escapeBoxName("INBOX"); short != "INBOX" {
		t.Errorf("short name changed: %q", short)
	}
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(dir, far, near)
	addMsg(t, far, long, "m1", 0)
	mustSync(t, spec, RunOptions{})
	addMsg(t, far, long, "m2", 0)
	mustSync(t, spec, RunOptions{})
	if got := view(t, near, long); got != "m1: m2:" {
		t.Errorf("near %q", got)
	}
}

// A state file written under a name the escaping no longer gives (before:
// "Foo.journal" as is) is used where it is, not left behind while the
// mailbox is paired anew from no state.
func TestStateUnderOldEscapedName(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "Foo.journal", "f1", 0)
	addMsg(t, near, "Foo.journal", "n1", 0)
	mustSync(t, spec, RunOptions{})
	now, err := StatePath(spec, "Foo.journal")
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(filepath.Dir(now), "Foo.journal")
	if now == old {
		t.Fatalf("state path %s: the escaping did not change", now)
	}
	if err := os.Rename(now, old); err != nil {
		t.Fatal(err)
	}
	if p, err := StatePath(spec, "Foo.journal"); err != nil || p != old {
		t.Fatalf("state path %q, %v; want the old file %s", p, err, old)
	}
	// Removed on the near side since: with the old state found, the removal
	// reaches the far side (from no state, f1 would be copied back).
	expungeBySubject(t, near, "Foo.journal", "f1")
	mustSync(t, spec, RunOptions{})
	if f, n := view(t, far, "Foo.journal"), view(t, near, "Foo.journal"); f != "n1:" || n != "n1:" {
		t.Fatalf("far %q, near %q, want n1: on both", f, n)
	}
}

// A state cut at a line boundary (a file-sync tool, a partial restore) is
// an error naming the file, not a smaller state whose missing pairs'
// messages would look new; a version 1 file (no pair count) still loads.
func TestStateCutAtLineBoundary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StateFileName)
	st := sampleState()
	if err := SaveState(path, st); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	b = bytes.TrimSuffix(b, []byte("%end\n"))
	cut := b[:bytes.LastIndex(b[:len(b)-1], []byte("\n"))+1] // the last pair line gone
	os.WriteFile(path, cut, 0o600)
	var se *StateError
	if _, err := LoadState(path); !errors.As(err, &se) || !strings.Contains(err.Error(), "cut off") {
		t.Fatalf("a state without its last pair: %v", err)
	}
	v1 := strings.Replace(string(cut), fmt.Sprintf("quixysync-state %d\n", stateVersion), "quixysync-state 1\n", 1)
	v1 = strings.Replace(v1, fmt.Sprintf("pairs %d\n", len(st.Pairs)), "", 1)
	os.WriteFile(path, []byte(v1), 0o600)
	got, err := LoadState(path)
	if err != nil || len(got.Pairs) != len(st.Pairs)-1 {
		t.Fatalf("version 1 file: %d pairs, %v", len(got.Pairs), err)
	}
}

// The same channel over a far store of another name (a store renamed in the
// configuration, most likely): the state is not used, and the error says
// so in those words, with the one-line change to make — not that another
// channel owns the state.
func TestStateOfRenamedFarStore(t *testing.T) {
	far, near := newMemStore("imap.demo"), newMemStore("maildir.demo")
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "f1", 0)
	mustSync(t, spec, RunOptions{})
	far.name = "imap.acct"
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if len(res.Mailboxes) != 1 || !errors.Is(res.Mailboxes[0].Err, ErrForeignState) {
		t.Fatalf("renamed far store: %+v, want ErrForeignState", res.Mailboxes)
	}
	msg := res.Mailboxes[0].Err.Error()
	for _, want := range []string{`when channel "test" synced far store imap.demo; it now syncs far store imap.acct`,
		`"far-store imap.demo"`, `"far-store imap.acct"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "Two channels must not share") {
		t.Errorf("error blames another channel: %s", msg)
	}
}
