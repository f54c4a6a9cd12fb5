package engine_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// TestAppendUIDNotTheCopys: a broken server answers APPEND with an APPENDUID
// that cannot be the new message's: the UID of a message it had already, or
// one UID for two messages APPENDed one by one (no MULTIAPPEND). The copies
// are on the server under their real UIDs. Taken at its word, the run paired
// a copy with another message, and the next run took the real copy for new
// server mail and pulled it back: the message twice on both sides. The run
// looks for such copies by content instead, as when no UID comes back.
func TestAppendUIDNotTheCopys(t *testing.T) {
	for _, tc := range []struct {
		name          string
		uid           string // the UID every APPENDUID names
		noMultiAppend bool
		subjects      []string
	}{
		{"known", "1", false, []string{"n3"}},
		{"known-one-by-one", "2", true, []string{"n3"}},
		{"twice-one-by-one", "3", true, []string{"n3", "n4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, fp := proxiedPairing(t)
			re := regexp.MustCompile(`\[APPENDUID (\d+) [0-9:,]+\]`)
			var lie atomic.Bool
			var lied atomic.Int64
			fp.set(nil, func(_ int, line []byte) ([]byte, bool) {
				if tc.noMultiAppend && hasWord(line, "CAPABILITY") {
					line = bytes.ReplaceAll(line, []byte(" MULTIAPPEND"), nil)
				}
				if lie.Load() && re.Match(line) {
					lied.Add(1)
					line = re.ReplaceAll(line, []byte("[APPENDUID $1 "+tc.uid+"]"))
				}
				return line, false
			})
			near := p.spec.Near
			addMany(t, near, "INBOX", 0, "n1", "n2")
			sync1(t, p, engine.RunOptions{}) // n1, n2: UIDs 1 and 2 on the server
			addMany(t, near, "INBOX", 0, tc.subjects...)
			lie.Store(true)
			res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
			lie.Store(false)
			if lied.Load() == 0 {
				t.Fatal("no APPENDUID to change")
			}
			if err := mailboxErr(res); err != nil || res.Copied != [2]int{len(tc.subjects), 0} {
				t.Fatalf("run with the wrong APPENDUID: %+v, %v", res.Counts, err)
			}
			want := "n1: n2: " + strings.Join(tc.subjects, ": ") + ":"
			p.check(t, "INBOX", want)
			if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
				t.Fatalf("the run after copied or changed: %+v", res.Counts)
			}
			p.check(t, "INBOX", want)
			// Each copy is paired with itself: a flag goes to it alone.
			for _, s := range tc.subjects {
				engine.SetFlagsBySubject(t, near, "INBOX", s, engine.FlagFlagged, 0)
			}
			sync1(t, p, engine.RunOptions{})
			p.check(t, "INBOX", "n1: n2: "+strings.Join(tc.subjects, ":F ")+":F")
		})
	}
}

// TestAppendMergedIntoExisting: a server that merges an APPENDed message
// into one it holds with the same Message-ID (Gmail does so) answers with
// that message's UID, below the UIDNEXT seen before. No new message is
// there to find. The message under the reported UID is the copy's by its
// Message-ID, but it is paired already, with another local message: a
// second pair on it made the run after keep one of the two and upload the
// other again, every other run. The copy is recorded as merged instead:
// not a copy, not a failure, not uploaded again — unless flagged since,
// once per flagging — and the two local messages stay.
func TestAppendMergedIntoExisting(t *testing.T) {
	p, fp := proxiedPairing(t)
	near := p.spec.Near
	addMany(t, near, "INBOX", 0, "n1")
	sync1(t, p, engine.RunOptions{}) // n1 is UID 1 on the server
	addRaw(t, near, "INBOX", "From: a@example.org\nMessage-ID: <n1@test>\nSubject: n1b\n\nanother copy\n")
	appends := mergeInto(t, fp, "n1b", mergeAlways)
	ctx := context.Background()
	view := func() string {
		return "far " + engine.ViewBox(t, p.raw[0], "INBOX") + ", near " + engine.ViewBox(t, near, "INBOX")
	}
	res := engine.SyncChannel(ctx, p.spec, engine.RunOptions{})
	if appends.Load() != 1 {
		t.Fatalf("%d APPENDs answered, want 1", appends.Load())
	}
	if err := mailboxErr(res); err != nil || !zeroCounts(res.Counts) {
		t.Fatalf("run with the merged APPEND: %+v, %v", res.Counts, err)
	}
	if v := view(); v != "far n1:, near n1: n1b:" {
		t.Fatalf("after the merge: %s", v)
	}
	for i := range 3 {
		if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) || appends.Load() != 1 {
			t.Fatalf("run %d after the merge: %+v, %d APPENDs in all (want 1)", i+1, res.Counts, appends.Load())
		}
	}
	// n1 is paired with the server's message alone: its flags go to n1.
	engine.SetFlagsBySubject(t, p.raw[0], "INBOX", "n1", engine.FlagSeen, 0)
	sync1(t, p, engine.RunOptions{})
	if v := view(); v != "far n1:S, near n1:S n1b:" {
		t.Fatalf("after a flag on the server: %s", v)
	}
	// Flagged since: asked for once more, merged again, and not again.
	engine.SetFlagsBySubject(t, near, "INBOX", "n1b", engine.FlagFlagged, 0)
	for i := range 3 {
		if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) || appends.Load() != 2 {
			t.Fatalf("run %d after flagging n1b: %+v, %d APPENDs in all (want 2)", i+1, res.Counts, appends.Load())
		}
	}
	// The server's message deleted there: its partner goes, and the merged
	// one with it (mbsync, which pairs both with it, removes both too).
	doveadm(t, "expunge", "-u", "alice", "mailbox", "INBOX", "header", "Subject", "n1")
	res = sync1(t, p, engine.RunOptions{})
	if v := view(); v != "far , near " || res.Deleted != [2]int{0, 2} || appends.Load() != 2 {
		t.Fatalf("after removing the server's message: %s, %+v, %d APPENDs in all (want 2)", v, res.Counts, appends.Load())
	}
}

// TestAppendMergedInOneBatch: two new local messages with one Message-ID
// (a list message that came twice) go to a server that keeps one message
// per Message-ID, in one batch: it merges the second into the first and
// reports the first's UID for both. The first is paired, the second
// recorded as merged; nothing is uploaded again.
func TestAppendMergedInOneBatch(t *testing.T) {
	p, fp := proxiedPairing(t)
	near := p.spec.Near
	re := regexp.MustCompile(`\[APPENDUID (\d+) (\d+)\]`)
	var merge atomic.Bool
	var appends atomic.Int64
	var first []byte
	fp.set(nil, func(_ int, line []byte) ([]byte, bool) {
		if hasWord(line, "CAPABILITY") {
			line = bytes.ReplaceAll(line, []byte(" MULTIAPPEND"), nil)
		}
		if m := re.FindSubmatch(line); m != nil && merge.Load() {
			if appends.Add(1) == 1 {
				first = append([]byte(nil), m[2]...)
			} else {
				doveadm(t, "expunge", "-u", "alice", "mailbox", "INBOX", "header", "Subject", "d2")
				line = re.ReplaceAll(line, []byte("[APPENDUID $1 "+string(first)+"]"))
			}
		}
		return line, false
	})
	addMany(t, near, "INBOX", 0, "n1")
	sync1(t, p, engine.RunOptions{})
	addRaw(t, near, "INBOX",
		"From: a@example.org\nMessage-ID: <dup@test>\nSubject: d1\n\nby one way\n",
		"From: a@example.org\nMessage-ID: <dup@test>\nSubject: d2\n\nby another way, longer\n")
	merge.Store(true)
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	if appends.Load() != 2 {
		t.Fatalf("%d APPENDs answered, want 2", appends.Load())
	}
	if err := mailboxErr(res); err != nil || res.Copied != [2]int{1, 0} {
		t.Fatalf("run with the merged batch: %+v, %v", res.Counts, err)
	}
	far, nr := engine.ViewBox(t, p.raw[0], "INBOX"), engine.ViewBox(t, near, "INBOX")
	if far != "d1: n1:" || nr != "d1: d2: n1:" {
		t.Fatalf("far %s (want d1: n1:), near %s (want d1: d2: n1:)", far, nr)
	}
	for i := range 3 {
		if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) || appends.Load() != 2 {
			t.Fatalf("run %d after the merge: %+v, %d APPENDs in all (want 2)", i+1, res.Counts, appends.Load())
		}
	}
	engine.SetFlagsBySubject(t, p.raw[0], "INBOX", "d1", engine.FlagReplied, 0)
	sync1(t, p, engine.RunOptions{})
	if nr := engine.ViewBox(t, near, "INBOX"); nr != "d1:R d2: n1:" {
		t.Fatalf("near %s after d1 answered on the server (want d1:R d2: n1:)", nr)
	}
}

// TestAppendMergedIntoRemoved: the local message paired with the server's
// was removed here, and another local message with its Message-ID is new
// (or was merged into the server's by an earlier run: a mutt user's Fcc
// copy of a message sent through Gmail, the pulled copy then deleted):
// the run removes the server's message after its copies, and a server
// that keeps one message per Message-ID merges the copy into it. Paired
// with it, the other message would go with it, a message nobody removed
// lost on both sides; recorded as merged, it would stay here alone, never
// uploaded. It is copied again once the server's message is gone, in the
// same run, as a message of its own. The same where the far side is not
// expunged by quixysync (expunge = "near", as the Gmail example
// configures): the run flags the server's message \Deleted, which Gmail's
// default auto-expunge acts on at once (the proxy merges only into a
// message without \Deleted; doveadm expunges it after the run).
func TestAppendMergedIntoRemoved(t *testing.T) {
	for _, tc := range []struct {
		name       string
		recorded   bool   // merged by an earlier run (recorded '='), not new
		expungeFar bool   // else the server's message is flagged \Deleted
		after      string // the server after the run
	}{
		{"new/expunged", false, true, "n1b:"},
		{"new/flagged-deleted", false, false, "n1:T n1b:"},
		{"recorded/expunged", true, true, "n1b:"},
		{"recorded/flagged-deleted", true, false, "n1:T n1b:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, fp := proxiedPairing(t)
			p.spec.Expunge = [2]bool{tc.expungeFar, true}
			near := p.spec.Near
			addMany(t, near, "INBOX", 0, "n1")
			sync1(t, p, engine.RunOptions{}) // n1 is UID 1 on the server
			addRaw(t, near, "INBOX", "From: a@example.org\nMessage-ID: <n1@test>\nSubject: n1b\n\nanother copy\n")
			merged := mergeInto(t, fp, "n1b", mergeWhileThere)
			if tc.recorded {
				// A mutt user's Fcc copy of a message sent through Gmail,
				// then the pulled copy deleted here: the kept one is the
				// message's only copy, copied in its place.
				sync1(t, p, engine.RunOptions{})
				if merged.Load() != 1 {
					t.Fatalf("%d APPENDs merged, want 1", merged.Load())
				}
			}
			engine.ExpungeBySubject(t, near, "INBOX", "n1")
			res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
			if want := map[bool]int64{false: 1, true: 2}[tc.recorded]; merged.Load() != want {
				t.Fatalf("%d APPENDs merged in all, want %d (the run's first, into the message it then removed)", merged.Load(), want)
			}
			if err := mailboxErr(res); err != nil || res.Failed != [2]int{} || res.Copied != [2]int{1, 0} {
				t.Fatalf("run with the merge: %+v, %v", res.Counts, err)
			}
			if f := engine.ViewBox(t, p.raw[0], "INBOX"); f != tc.after {
				t.Fatalf("far %q after the run, want %q", f, tc.after)
			}
			doveadm(t, "expunge", "-u", "alice", "mailbox", "INBOX", "deleted") // Gmail's auto-expunge
			for i := range 2 {
				if res := sync1(t, p, engine.RunOptions{}); res.Copied != [2]int{} {
					t.Fatalf("run %d after: %+v", i+1, res.Counts)
				}
				if f, n := engine.ViewBox(t, p.raw[0], "INBOX"), engine.ViewBox(t, near, "INBOX"); f != "n1b:" || n != "n1b:" {
					t.Fatalf("run %d after: far %q, near %q (want n1b: on both)", i+1, f, n)
				}
			}
		})
	}
}

type mergeMode int

const (
	mergeAlways     mergeMode = iota
	mergeWhileThere           // while UID 1 is there without \Deleted, as Gmail (which expunges such at once) does
)

// mergeInto makes the proxy answer APPENDs as a server that keeps one
// message per Message-ID does when it holds one already (UID 1): the new
// message (found by its subject) is not there, and the APPENDUID names UID
// 1. It returns how many APPENDs it merged.
func mergeInto(t *testing.T, fp *faultProxy, subject string, mode mergeMode) *atomic.Int64 {
	re := regexp.MustCompile(`\[APPENDUID (\d+) [0-9:,]+\]`)
	var merged atomic.Int64
	there := func() bool {
		out, err := srv.Doveadm("search", "-u", "alice", "mailbox", "INBOX", "uid", "1", "undeleted")
		if err != nil {
			t.Errorf("doveadm search: %v (%s)", err, out)
		}
		return len(bytes.TrimSpace(out)) > 0
	}
	fp.set(nil, func(_ int, line []byte) ([]byte, bool) {
		if !re.Match(line) {
			return line, false
		}
		if mode == mergeAlways || there() {
			doveadm(t, "expunge", "-u", "alice", "mailbox", "INBOX", "header", "Subject", subject)
			merged.Add(1)
			line = re.ReplaceAll(line, []byte("[APPENDUID $1 1]"))
		}
		return line, false
	})
	return &merged
}

// addRaw adds messages given whole to a mailbox of s.
func addRaw(t *testing.T, s engine.Store, box string, msgs ...string) {
	t.Helper()
	addBodies(t, s, box, 0, time.Time{}, msgs...)
}

// TestAppendServerBugAfterSaving: the server saved an APPENDed message and
// then answered NO [SERVERBUG] (RFC 5530: it failed in itself). A NO is
// taken for a refusal (engine.ErrRefused: no search at the next run), but
// every copy whose commit failed is looked for at once, before it counts
// as failed: the saved message is found and paired, not uploaded again.
func TestAppendServerBugAfterSaving(t *testing.T) {
	p, fp := proxiedPairing(t)
	near := p.spec.Near
	re := regexp.MustCompile(`OK \[APPENDUID \d+ [0-9:,]+\][^\r\n]*`)
	var broke atomic.Bool
	fp.set(nil, func(_ int, line []byte) ([]byte, bool) {
		if hasWord(line, "CAPABILITY") {
			line = bytes.ReplaceAll(line, []byte(" MULTIAPPEND"), nil)
		}
		if re.Match(line) && broke.CompareAndSwap(false, true) {
			line = re.ReplaceAll(line, []byte("NO [SERVERBUG] Internal error occurred"))
		}
		return line, false
	})
	addMany(t, near, "INBOX", 0, "n1")
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	if !broke.Load() {
		t.Fatal("no APPEND answered")
	}
	// Found at once by the search after the commit (or else by the next
	// run's, when the server is slow to show it): paired, not copied again.
	if err := mailboxErr(res); err != nil || res.Copied != [2]int{1, 0} {
		t.Fatalf("run with the SERVERBUG answer: %+v, %v; want the copy found", res.Counts, err)
	}
	for i := range 2 {
		sync1(t, p, engine.RunOptions{})
		if f, n := engine.ViewBox(t, p.raw[0], "INBOX"), engine.ViewBox(t, near, "INBOX"); f != "n1:" || n != "n1:" {
			t.Fatalf("run %d after: far %q, near %q (want n1: on each, once)", i+1, f, n)
		}
	}
}
