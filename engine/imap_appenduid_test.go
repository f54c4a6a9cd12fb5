package engine_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

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
// there to find, and the one under the reported UID is the copy's by its
// Message-ID: it is taken, as before such UIDs were looked into, rather
// than the copy failing (and being uploaded again) at every run.
func TestAppendMergedIntoExisting(t *testing.T) {
	p, fp := proxiedPairing(t)
	near := p.spec.Near
	addMany(t, near, "INBOX", 0, "n1")
	sync1(t, p, engine.RunOptions{}) // n1 is UID 1 on the server
	ctx := context.Background()
	mb, err := near.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	st, err := mb.Stage(ctx, engine.NewMessage{Body: strings.NewReader("From: a@example.org\nMessage-ID: <n1@test>\nSubject: n1b\n\nanother copy\n")})
	if err == nil {
		_, err = mb.Commit(ctx, []engine.Staged{st})
	}
	mb.Close()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\[APPENDUID (\d+) [0-9:,]+\]`)
	var merged atomic.Bool
	fp.set(nil, func(_ int, line []byte) ([]byte, bool) {
		if re.Match(line) {
			// Merged: the new message is not there, its UID is n1's.
			doveadm(t, "expunge", "-u", "alice", "mailbox", "INBOX", "header", "Subject", "n1b")
			merged.Store(true)
			line = re.ReplaceAll(line, []byte("[APPENDUID $1 1]"))
		}
		return line, false
	})
	res := engine.SyncChannel(ctx, p.spec, engine.RunOptions{})
	if !merged.Load() {
		t.Fatal("no APPEND answered")
	}
	if err := mailboxErr(res); err != nil || res.Copied != [2]int{1, 0} {
		t.Fatalf("run with the merged APPEND: %+v, %v", res.Counts, err)
	}
	if f, n := engine.ViewBox(t, p.raw[0], "INBOX"), engine.ViewBox(t, near, "INBOX"); f != "n1:" || n != "n1: n1b:" {
		t.Fatalf("far %s (want n1:), near %s (want n1: n1b:)", f, n)
	}
}
