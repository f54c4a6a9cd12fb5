package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// storeKinds builds store pairs behaving like Maildir↔Maildir, IMAP↔Maildir
// (with and without UIDPLUS/CONDSTORE).
var storeKinds = []struct {
	name string
	mk   func() (far, near *memStore)
}{
	{"maildirlike", func() (*memStore, *memStore) {
		f, n := newMemStore("far"), newMemStore("near")
		f.reserve, n.reserve = true, true
		f.modseq, n.modseq = false, false
		return f, n
	}},
	{"imap-uidplus", func() (*memStore, *memStore) {
		f, n := newMemStore("far"), newMemStore("near")
		f.crlf = true
		n.reserve, n.modseq = true, false
		return f, n
	}},
	{"imap-plain", func() (*memStore, *memStore) {
		f, n := newMemStore("far"), newMemStore("near")
		f.crlf, f.uidplus, f.modseq, f.noStamp = true, false, false, true
		n.uidplus = false
		return f, n
	}},
}

func forEachKind(t *testing.T, fn func(t *testing.T, far, near *memStore)) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			far, near := k.mk()
			fn(t, far, near)
		})
	}
}

func checkEqual(t *testing.T, spec ChannelSpec, box, want string) {
	t.Helper()
	f, n := view(t, spec.Far, box), view(t, spec.Near, box)
	if f != n {
		t.Fatalf("%s differs:\nfar:  %s\nnear: %s", box, f, n)
	}
	if want != "" && f != want {
		t.Fatalf("%s:\n got: %s\nwant: %s", box, f, want)
	}
}

func TestSyncNewAndFlagsBothWays(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addMsg(t, far, "INBOX", "a", FlagSeen)
		addMsg(t, far, "INBOX", "b", 0)
		addMsg(t, near, "INBOX", "c", FlagFlagged)
		addMsg(t, near, "Sent", "s", FlagSeen)
		res := mustSync(t, spec, RunOptions{})
		if res.Copied[Near] != 2 || res.Copied[Far] != 2 || res.Created[Far] != 1 {
			t.Fatalf("counts: %+v", res.Counts)
		}
		checkEqual(t, spec, "INBOX", "a:S b: c:F")
		checkEqual(t, spec, "Sent", "s:S")

		setFlagsBySubject(t, far, "INBOX", "b", FlagSeen|FlagReplied, 0)
		setFlagsBySubject(t, near, "INBOX", "a", FlagFlagged, FlagSeen)
		setFlagsBySubject(t, near, "INBOX", "b", FlagFlagged, 0)
		res = mustSync(t, spec, RunOptions{})
		checkEqual(t, spec, "INBOX", "a:F b:FRS c:F")
		if res.Copied != [2]int{} {
			t.Fatalf("copied again: %+v", res.Counts)
		}
		// Idempotence: the next runs change nothing.
		for i := 0; i < 2; i++ {
			res = mustSync(t, spec, RunOptions{})
			if res.Copied != [2]int{} || res.Flagged != [2]int{} || res.Deleted != [2]int{} {
				t.Fatalf("run %d not idempotent: %+v", i, res.Counts)
			}
		}
		checkEqual(t, spec, "INBOX", "a:F b:FRS c:F")
	})
}

func TestSyncDeletions(t *testing.T) {
	for _, expunge := range []bool{true, false} {
		t.Run(fmt.Sprint("expunge=", expunge), func(t *testing.T) {
			forEachKind(t, func(t *testing.T, far, near *memStore) {
				spec := testSpec(t.TempDir(), far, near)
				spec.Expunge = [2]bool{expunge, expunge}
				for _, s := range []string{"a", "b", "c", "d"} {
					addMsg(t, far, "INBOX", s, 0)
				}
				mustSync(t, spec, RunOptions{})
				expungeBySubject(t, far, "INBOX", "a")
				expungeBySubject(t, near, "INBOX", "b")
				mustSync(t, spec, RunOptions{})
				if expunge {
					checkEqual(t, spec, "INBOX", "c: d:")
				} else {
					if got := view(t, far, "INBOX"); got != "b:T c: d:" {
						t.Fatalf("far: %s", got)
					}
					if got := view(t, near, "INBOX"); got != "a:T c: d:" {
						t.Fatalf("near: %s", got)
					}
				}
				res := mustSync(t, spec, RunOptions{})
				if res.Copied != [2]int{} || res.Deleted != [2]int{} {
					t.Fatalf("not idempotent: %+v", res.Counts)
				}
			})
		})
	}
}

func TestPullPushKeepMaxUIDs(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addMsg(t, far, "INBOX", "f1", 0)
		addMsg(t, near, "INBOX", "n1", 0)
		res := mustSync(t, spec, RunOptions{Mode: ModePull})
		if res.Copied[Near] != 1 || res.Copied[Far] != 0 {
			t.Fatalf("pull: %+v", res.Counts)
		}
		if got := view(t, far, "INBOX"); got != "f1:" {
			t.Fatalf("pull changed far: %s", got)
		}
		// The pull must not have swallowed n1: a push copies it.
		res = mustSync(t, spec, RunOptions{Mode: ModePush})
		if res.Copied[Far] != 1 || res.Copied[Near] != 0 {
			t.Fatalf("push: %+v", res.Counts)
		}
		checkEqual(t, spec, "INBOX", "f1: n1:")
		addMsg(t, far, "INBOX", "f2", 0)
		res = mustSync(t, spec, RunOptions{Mode: ModePush})
		if res.Copied != [2]int{} {
			t.Fatalf("push copied %+v", res.Counts)
		}
		res = mustSync(t, spec, RunOptions{})
		checkEqual(t, spec, "INBOX", "f1: f2: n1:")
	})
}

func TestMaxSizeSkippedOnce(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		spec.MaxSize = 150
		addMsg(t, far, "INBOX", "small", 0)
		addMsg(t, far, "INBOX", strings.Repeat("big", 20), 0)
		res := mustSync(t, spec, RunOptions{})
		if res.Copied[Near] != 1 {
			t.Fatalf("%+v", res.Counts)
		}
		p := res.Mailboxes[0]
		_ = p
		if got := view(t, near, "INBOX"); got != "small:" {
			t.Fatalf("near: %s", got)
		}
		st, err := LoadState(spec.StateDir + "/INBOX")
		if err != nil {
			t.Fatal(err)
		}
		skipped := 0
		for _, p := range st.Pairs {
			if p.Skip == SkipTooBig {
				skipped++
			}
		}
		if skipped != 1 {
			t.Fatalf("state: %+v", st.Pairs)
		}
		setFlagsBySubject(t, near, "INBOX", "small", FlagSeen, 0)
		dry := SyncChannel(context.Background(), spec, RunOptions{DryRun: true})
		if pl := dry.Mailboxes[0].Plan; pl == nil || len(pl.TooBig[Near]) != 0 || len(pl.Copies[Near]) != 0 {
			t.Fatalf("big message considered again: %+v", pl)
		}
		// Flagged, it is wanted: copied whatever its size, once, and a new
		// big message that arrives flagged is copied at once.
		big := strings.Repeat("big", 20)
		setFlagsBySubject(t, far, "INBOX", big, FlagFlagged, 0)
		addMsg(t, far, "INBOX", strings.Repeat("huge", 20), FlagFlagged)
		if res := mustSync(t, spec, RunOptions{}); res.Copied[Near] != 2 {
			t.Fatalf("flagged big messages: %+v", res.Counts)
		}
		checkEqual(t, spec, "INBOX", big+":F "+strings.Repeat("huge", 20)+":F small:S")
		if res := mustSync(t, spec, RunOptions{}); res.Counts != (Counts{}) {
			t.Fatalf("not settled: %+v", res.Counts)
		}
	})
}

// The max_size warning is given once ever: it names the side the UID is
// on, the message's size and the limit, so the user can find the message
// and judge whether to raise max_size.
func TestMaxSizeWarningSaysSideAndSizes(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	spec.MaxSize = 150
	addMsg(t, far, "INBOX", "small", 0)
	addMsg(t, far, "INBOX", strings.Repeat("big", 20), 0)
	addMsg(t, near, "INBOX", strings.Repeat("large", 20), 0)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mustSync(t, spec, RunOptions{Log: log})
	for _, side := range []string{"far", "near"} {
		to := "near"
		if side == "near" {
			to = "far"
		}
		re := regexp.MustCompile(`msg="message over max_size not copied to the ` + to + ` side \(reported once\)" mailbox=INBOX side=` + side + ` uid=\d+ size=(\d+) max_size=150`)
		m := re.FindStringSubmatch(logs.String())
		if m == nil {
			t.Errorf("no warning for the %s side's message matching %s in:\n%s", side, re, logs.String())
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n <= 150 {
			t.Errorf("%s side: size=%s, want the message's size (over 150)", side, m[1])
		}
	}
}

func TestGuardStopsMassDeletion(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	for i := 0; i < 30; i++ {
		addMsg(t, far, "INBOX", fmt.Sprint("m", i), 0)
	}
	mustSync(t, spec, RunOptions{})
	for i := 0; i < 20; i++ {
		expungeBySubject(t, near, "INBOX", fmt.Sprint("m", i))
	}
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if len(res.Mailboxes) != 1 || !errors.Is(res.Mailboxes[0].Err, ErrGuard) {
		t.Fatalf("guard did not trip: %+v", res.Mailboxes)
	}
	if n := len(subjects(t, far, "INBOX")); n != 30 {
		t.Fatalf("far lost messages despite the guard: %d", n)
	}
	res = mustSync(t, spec, RunOptions{Force: true})
	if n := len(subjects(t, far, "INBOX")); n != 10 {
		t.Fatalf("far after --force: %d", n)
	}
}

func TestVanishedMailboxTripsGuard(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	spec.Remove = [2]bool{true, true}
	addMsg(t, far, "Work", "w1", 0)
	addMsg(t, far, "Empty", "e1", 0)
	mustSync(t, spec, RunOptions{})
	near.mu.Lock()
	delete(near.boxes, "Work")
	near.mu.Unlock()
	res := SyncChannel(context.Background(), spec, RunOptions{})
	var workErr error
	for _, m := range res.Mailboxes {
		if m.Mailbox == "Work" {
			workErr = m.Err
		}
	}
	if !errors.Is(workErr, ErrGuard) {
		t.Fatalf("vanished near folder did not trip the guard: %+v", res.Mailboxes)
	}
	if n := len(subjects(t, far, "Work")); n != 1 {
		t.Fatalf("far Work changed: %d", n)
	}
	// An empty mailbox that vanished on one side is removed on the other.
	expungeBySubject(t, far, "Empty", "e1")
	SyncChannel(context.Background(), spec, RunOptions{Force: true})
	if n := len(subjects(t, near, "Empty")); n != 0 {
		t.Fatalf("near Empty: %d", n)
	}
	near.mu.Lock()
	delete(near.boxes, "Empty")
	near.mu.Unlock()
	res = SyncChannel(context.Background(), spec, RunOptions{})
	if _, ok := far.boxes["Empty"]; ok {
		t.Fatalf("empty vanished mailbox not removed: %+v", res.Mailboxes)
	}
}

func TestUnchangedRunListsNothing(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	addMsg(t, near, "INBOX", "b", 0)
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{}) // sees its own changes once
	before := far.Calls("List") + near.Calls("List") + far.Calls("UIDs") + near.Calls("UIDs") + far.Calls("Fetch") + near.Calls("Fetch")
	res := mustSync(t, spec, RunOptions{})
	after := far.Calls("List") + near.Calls("List") + far.Calls("UIDs") + near.Calls("UIDs") + far.Calls("Fetch") + near.Calls("Fetch")
	if after != before {
		t.Fatalf("unchanged run listed or fetched messages (%d calls)", after-before)
	}
	if res.Mailboxes[0].Skipped != "unchanged" {
		t.Fatalf("not skipped: %+v", res.Mailboxes[0])
	}
	// An incremental run: one new message, no full listing needed to notice.
	addMsg(t, far, "INBOX", "c", 0)
	mustSync(t, spec, RunOptions{})
	checkEqual(t, spec, "INBOX", "a: b: c:")
}

func TestDryRunChangesNothing(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	dir := t.TempDir()
	spec := testSpec(dir, far, near)
	addMsg(t, far, "INBOX", "a", 0)
	addMsg(t, far, "New", "x", 0)
	addMsg(t, near, "INBOX", "b", 0)
	res := SyncChannel(context.Background(), spec, RunOptions{DryRun: true})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res.Copied[Near] != 2 || res.Copied[Far] != 1 || res.Created[Near] != 1 {
		t.Fatalf("dry counts: %+v", res.Counts)
	}
	if view(t, near, "INBOX") != "b:" || view(t, far, "INBOX") != "a:" || near.boxes["New"] != nil {
		t.Fatal("dry run changed a store")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("dry run wrote files: %v", ents)
	}
}

func TestStageFailureLeavesNothingStaged(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	near.reserve = true
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "good", 0)
	addMsg(t, far, "INBOX", "poison", 0)
	near.failStage = "poison"
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if res.Mailboxes[0].Err == nil || res.Failed[Near] != 1 || res.Copied[Near] != 1 {
		t.Fatalf("%+v %v", res.Counts, res.Mailboxes[0].Err)
	}
	if near.staged != 0 {
		t.Fatalf("%d staged messages left behind", near.staged)
	}
	near.failStage = ""
	mustSync(t, spec, RunOptions{})
	checkEqual(t, spec, "INBOX", "good: poison:")
}

// A commit whose outcome could not be found out keeps the journal past the
// state saved by that run; the next run must still resolve it from that
// journal (and find the message there) instead of copying it a second time.
func TestUnresolvedCommitResolvedNextRun(t *testing.T) {
	for _, reserve := range []bool{false, true} {
		t.Run(fmt.Sprintf("reserve=%v", reserve), func(t *testing.T) {
			far, near := newMemStore("far"), newMemStore("near")
			near.reserve = reserve
			spec := testSpec(t.TempDir(), far, near)
			addMsg(t, far, "INBOX", "a", 0)
			mustSync(t, spec, RunOptions{})
			addMsg(t, far, "INBOX", "b", 0)
			near.lostCommit = true
			res := SyncChannel(context.Background(), spec, RunOptions{})
			if res.Mailboxes[0].Err == nil {
				t.Fatal("the unresolved copy was not reported")
			}
			near.lostCommit, near.lookupDown = false, false
			mustSync(t, spec, RunOptions{})
			mustSync(t, spec, RunOptions{})
			checkEqual(t, spec, "INBOX", "a: b:")
		})
	}
}

func TestLockedChannel(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	path, _ := ChannelLockPath(spec)
	lk, err := LockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file description: a second open in the
	// same process contends like another process would.
	res := SyncChannel(context.Background(), spec, RunOptions{})
	if !errors.Is(res.Err, ErrLocked) || !strings.Contains(res.Err.Error(), fmt.Sprint(os.Getpid())) {
		t.Fatalf("want ErrLocked naming pid %d, got %v", os.Getpid(), res.Err)
	}
	lk.Unlock()
	mustSync(t, spec, RunOptions{})
}

// TestCrashAtEveryStep is isync's crash test: for every journal line N of a
// sync with work of every kind, kill the run after line N, resume, and check
// that the result equals the uninterrupted one.
func TestCrashAtEveryStep(t *testing.T) {
	forEachKind(t, func(t *testing.T, _, _ *memStore) {
		kind := t.Name()[strings.LastIndexByte(t.Name(), '/')+1:]
		var mk func() (*memStore, *memStore)
		for _, k := range storeKinds {
			if k.name == kind {
				mk = k.mk
			}
		}
		build := func() ChannelSpec {
			far, near := mk()
			spec := testSpec(t.TempDir(), far, near)
			crashScenarioSetup(t, spec)
			return spec
		}
		ref := build()
		var lines atomic.Int64
		mustSync(t, ref, RunOptions{journalLines: &lines})
		steps := int(lines.Load())
		if steps < 10 {
			t.Fatalf("scenario has only %d journal steps", steps)
		}
		want := map[string]string{}
		for _, box := range []string{"INBOX", "Archive"} {
			checkEqual(t, ref, box, "")
			want[box] = view(t, ref.Far, box)
		}
		for n := 1; n <= steps; n++ {
			spec := build()
			res := SyncChannel(context.Background(), spec, RunOptions{CrashAfter: n})
			crashed := false
			for _, m := range res.Mailboxes {
				if errors.Is(m.Err, errCrash) {
					crashed = true
				}
			}
			if !crashed {
				t.Fatalf("step %d: no crash happened", n)
			}
			mustSync(t, spec, RunOptions{})
			for _, box := range []string{"INBOX", "Archive"} {
				checkEqual(t, spec, box, want[box])
			}
			res = mustSync(t, spec, RunOptions{})
			if res.Copied != [2]int{} || res.Deleted != [2]int{} {
				t.Fatalf("step %d: run after resume not idempotent: %+v", n, res.Counts)
			}
		}
	})
}

// TestWillTouchAnnouncesPlan: before executing, the engine tells each side
// which of its existing messages the plan reads, changes or removes, and
// then touches no others.
func TestWillTouchAnnouncesPlan(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		for _, s := range []string{"a", "b", "c", "d", "e"} {
			addMsg(t, far, "INBOX", s, 0)
		}
		mustSync(t, spec, RunOptions{})
		far.touched, near.touched = nil, nil
		setFlagsBySubject(t, far, "INBOX", "a", FlagSeen, 0)
		nearB := findUID(t, near, "INBOX", "b")
		expungeBySubject(t, far, "INBOX", "b")
		setFlagsBySubject(t, near, "INBOX", "c", FlagFlagged, 0)
		addMsg(t, near, "INBOX", "new", 0)
		mustSync(t, spec, RunOptions{})
		nearWant := []UID{findUID(t, near, "INBOX", "a"), nearB, findUID(t, near, "INBOX", "new")}
		slices.Sort(nearWant)
		// far: the flag change from near; near: a's flags, b's removal,
		// and the new message read for its copy to far.
		if got, want := fmt.Sprint(far.touched), fmt.Sprint([][]UID{{findUID(t, far, "INBOX", "c")}}); got != want {
			t.Errorf("far announced %s, want %s", got, want)
		}
		if got, want := fmt.Sprint(near.touched), fmt.Sprint([][]UID{nearWant}); got != want {
			t.Errorf("near announced %s, want %s", got, want)
		}
		if n := far.Calls("untouched") + near.Calls("untouched"); n != 0 {
			t.Errorf("%d operations on UIDs not announced", n)
		}
		checkEqual(t, spec, "INBOX", "a:S c:F d: e: new:")
	})
}

// TestOneJournalSyncForChanges: the flag changes and removals of both sides
// are journaled with a single sync, however many kinds of change there are.
func TestOneJournalSyncForChanges(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		for _, s := range []string{"a", "b", "c", "d", "e", "f"} {
			addMsg(t, far, "INBOX", s, FlagSeen)
		}
		mustSync(t, spec, RunOptions{})
		setFlagsBySubject(t, far, "INBOX", "a", FlagFlagged, 0)
		setFlagsBySubject(t, far, "INBOX", "b", 0, FlagSeen)
		setFlagsBySubject(t, near, "INBOX", "c", FlagReplied, 0)
		expungeBySubject(t, far, "INBOX", "d")
		expungeBySubject(t, near, "INBOX", "e")
		var syncs atomic.Int64
		res := mustSync(t, spec, RunOptions{journalSyncs: &syncs})
		if res.Flagged != [2]int{1, 2} || res.Deleted != [2]int{1, 1} {
			t.Fatalf("counts: %+v", res.Counts)
		}
		if n := syncs.Load(); n != 1 {
			t.Errorf("%d journal syncs, want 1", n)
		}
		checkEqual(t, spec, "INBOX", "a:FS b: c:RS f:S")
	})
}

// TestModSeqGoingDownListsAll: a server that rebuilt its index can hand out
// mod-sequences from a lower value again under the same UIDVALIDITY (RFC
// 7162 forbids it). A flag changed after that has a mod-sequence below the
// one the state recorded: asking for the changes since the recorded value
// would miss it, and the next state would record the lower value, so it
// would be missed for good. The run must list everything instead.
func TestModSeqGoingDownListsAll(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	far.crlf = true
	near.reserve, near.modseq = true, false
	spec := testSpec(t.TempDir(), far, near)
	for _, s := range []string{"a", "b", "c"} {
		addMsg(t, far, "INBOX", s, 0)
	}
	for i := 0; i < 40; i++ { // the recorded HIGHESTMODSEQ well above where the rebuild restarts
		setFlagsBySubject(t, far, "INBOX", "c", FlagFlagged, 0)
		setFlagsBySubject(t, far, "INBOX", "c", 0, FlagFlagged)
	}
	mustSync(t, spec, RunOptions{})
	checkEqual(t, spec, "INBOX", "a: b: c:")
	far.mu.Lock()
	far.boxes["INBOX"].modseq = 2 // the rebuild
	far.mu.Unlock()
	setFlagsBySubject(t, far, "INBOX", "b", FlagSeen, 0)
	res := mustSync(t, spec, RunOptions{})
	if res.Flagged[Near] != 1 {
		t.Fatalf("flag change after the mod-sequences went down: %+v", res.Counts)
	}
	checkEqual(t, spec, "INBOX", "a: b:S c:")
	// From the new, lower value on, changes are seen incrementally again.
	setFlagsBySubject(t, far, "INBOX", "a", FlagFlagged, 0)
	mustSync(t, spec, RunOptions{})
	checkEqual(t, spec, "INBOX", "a:F b:S c:")
}

// TestCopiesWaitForTheJournalsName: a new journal's name is durable only
// once its directory is fsynced. Copies made on the strength of intents in a
// journal whose name a power loss can still take would be found on their
// targets by the next run as new messages and copied back: where the
// directory cannot be fsynced, no copy is made, and the next run makes them.
func TestCopiesWaitForTheJournalsName(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addMsg(t, far, "INBOX", "a", FlagSeen)
		mustSync(t, spec, RunOptions{})
		addMsg(t, far, "INBOX", "b", 0)
		addMsg(t, near, "INBOX", "c", FlagFlagged)
		statePath, err := StatePath(spec, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Dir(statePath)
		var asked atomic.Int64
		res := SyncChannel(context.Background(), spec, RunOptions{fileErr: func(path string) error {
			if path == dir {
				asked.Add(1)
				return syscall.EIO
			}
			return nil
		}})
		if asked.Load() == 0 {
			t.Fatal("the run never made the journal's directory durable")
		}
		if res.Copied != [2]int{} {
			t.Fatalf("copied %v with the journal's name not durable", res.Copied)
		}
		if res.Err == nil && (len(res.Mailboxes) == 0 || res.Mailboxes[0].Err == nil) {
			t.Fatalf("a run that could not copy reported success: %+v", res)
		}
		if f, n := view(t, far, "INBOX"), view(t, near, "INBOX"); f != "a:S b:" || n != "a:S c:F" {
			t.Fatalf("after the failed run: far %s, near %s", f, n)
		}
		res = mustSync(t, spec, RunOptions{})
		if res.Copied != [2]int{1, 1} {
			t.Fatalf("copied %v, want one each way", res.Copied)
		}
		checkEqual(t, spec, "INBOX", "a:S b: c:F")
	})
}

// TestUIDNextGoingDownRepairs: a far mailbox restored from a backup keeps
// its UIDVALIDITY, loses what arrived after the backup, and hands out those
// messages' UIDs again. Trusted, the state took the first new message for
// the lost one paired under its UID (never copying it) and the other lost
// one as removed on the server (removing its copy here). UIDNEXT going
// down makes the run re-pair the far side by Message-ID instead: the new
// message is copied, the lost ones stay here.
func TestUIDNextGoingDownRepairs(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	far.crlf = true
	near.reserve, near.modseq = true, false
	spec := testSpec(t.TempDir(), far, near)
	var before []string
	for i := range 10 {
		s := fmt.Sprintf("m%02d", i)
		addMsg(t, far, "INBOX", s, 0)
		before = append(before, s+":")
	}
	mustSync(t, spec, RunOptions{})
	far.mu.Lock()
	old := far.boxes["INBOX"]
	backup := &memBox{validity: old.validity, next: old.next, modseq: old.modseq, version: old.version, msgs: map[UID]*memMsg{}}
	for u, m := range old.msgs {
		c := *m
		backup.msgs[u] = &c
	}
	far.mu.Unlock()
	addMsg(t, far, "INBOX", "lost1", 0)
	addMsg(t, far, "INBOX", "lost2", 0)
	mustSync(t, spec, RunOptions{})
	far.mu.Lock()
	far.boxes["INBOX"] = backup // the restore
	far.mu.Unlock()
	addMsg(t, far, "INBOX", "new", 0) // under lost1's UID
	res := mustSync(t, spec, RunOptions{})
	if res.Deleted != [2]int{} {
		t.Fatalf("the restored mailbox's lost messages were deleted: %+v", res.Counts)
	}
	if got, want := view(t, near, "INBOX"), strings.Join(append([]string{"lost1:", "lost2:"}, append(before, "new:")...), " "); got != want {
		t.Fatalf("near:\n got: %s\nwant: %s", got, want)
	}
	if got, want := view(t, far, "INBOX"), strings.Join(append(before, "new:"), " "); got != want {
		t.Fatalf("far:\n got: %s\nwant: %s", got, want)
	}
	// The next runs are idle, and see the server's changes again.
	setFlagsBySubject(t, far, "INBOX", "new", FlagSeen, 0)
	mustSync(t, spec, RunOptions{})
	if got := view(t, near, "INBOX"); !strings.Contains(got, "new:S") || !strings.Contains(got, "lost2:") {
		t.Fatalf("near after a flag change there: %s", got)
	}
}

// TestGuessedUIDNextGoingDown: where the server names no UIDNEXT and the
// store takes the last message's UID + 1, removing the last message lowers
// it. That is no restore: the removal reaches the other side as any does.
func TestGuessedUIDNextGoingDown(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	far.crlf, far.guessNext, far.modseq = true, true, false
	near.reserve, near.modseq = true, false
	spec := testSpec(t.TempDir(), far, near)
	for _, s := range []string{"a", "b", "c"} {
		addMsg(t, far, "INBOX", s, 0)
	}
	mustSync(t, spec, RunOptions{})
	expungeBySubject(t, far, "INBOX", "c")
	res := mustSync(t, spec, RunOptions{})
	if res.Deleted != [2]int{0, 1} {
		t.Fatalf("the last message removed on the server: %+v", res.Counts)
	}
	checkEqual(t, spec, "INBOX", "a: b:")
}
