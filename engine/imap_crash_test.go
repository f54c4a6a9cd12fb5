package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

var crashBoxes = []string{"INBOX", "Archive"}

// crashWant runs the crash scenario once without interruption and returns
// the expected end state per mailbox and the number of journal steps.
func crashWant(t *testing.T, kind string) (map[string]string, int) {
	t.Helper()
	p := newPairing(t, kind)
	p.setBare()
	engine.CrashScenarioSetup(t, p.spec)
	var lines atomic.Int64
	sync1(t, p, engine.WithJournalCounter(engine.RunOptions{}, &lines))
	want := map[string]string{}
	for _, box := range crashBoxes {
		p.check(t, box, "")
		want[box] = engine.ViewBox(t, p.spec.Far, box)
	}
	return want, int(lines.Load())
}

// TestIMAPCrashAtEveryStep is isync's crash test on Dovecot: for every
// journal line N of a run with new messages, flag changes and deletions in
// both directions, stop the run dead after line N, resume with new
// connections and compare with the uninterrupted result. Copies to the IMAP
// side have no reserved UID: a crash after the APPEND and before the result
// line must be resolved by size and hash, never duplicated.
func TestIMAPCrashAtEveryStep(t *testing.T) {
	needDovecot(t)
	for _, kind := range []string{imapMaildir, imapIMAP} {
		t.Run(kind, func(t *testing.T) {
			want, steps := crashWant(t, kind)
			if steps < 10 {
				t.Fatalf("scenario has only %d journal steps", steps)
			}
			// IMAP↔IMAP costs twice as much per step and takes the same code
			// paths as IMAP↔Maildir's IMAP side: every other step unless
			// QUIXYSYNC_TEST_FULL is set, to keep the package's runtime low.
			stride := 1
			if kind == imapIMAP && os.Getenv("QUIXYSYNC_TEST_FULL") == "" {
				stride = 2
			}
			for n := 1; n <= steps; n += stride {
				p := newPairing(t, kind)
				p.setBare()
				engine.CrashScenarioSetup(t, p.spec)
				res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{CrashAfter: n})
				crashed := false
				for _, m := range res.Mailboxes {
					crashed = crashed || errors.Is(m.Err, engine.ErrCrash)
				}
				if !crashed {
					t.Fatalf("step %d: no crash happened: %+v", n, res)
				}
				// The crashed run's connections die with it.
				p.reopen(t)
				sync1(t, p, engine.RunOptions{})
				for _, box := range crashBoxes {
					p.check(t, box, want[box])
				}
				res = sync1(t, p, engine.RunOptions{})
				if !zeroCounts(res.Counts) {
					t.Fatalf("step %d: run after resume not idempotent: %+v", n, res.Counts)
				}
				p.close()
			}
		})
	}
}

// TestDovecotKillHelper is the child process of TestDovecotSIGKILLMidTransfer.
func TestDovecotKillHelper(t *testing.T) {
	dir := os.Getenv("QUIXYSYNC_TEST_KILL_DIR")
	env := os.Getenv(dovecotEnv)
	if dir == "" || env == "" {
		t.Skip("helper process")
	}
	ci, err := decodeConninfo(env)
	if err != nil {
		t.Fatal(err)
	}
	kind := os.Getenv("QUIXYSYNC_TEST_KIND")
	p := openPairing(t, kind, dir, func() conninfo { return ci })
	// Die by a real SIGKILL in the middle of a commit to the IMAP side:
	// after some APPENDs of a batch went through and before the engine
	// could write their results.
	side := p.far
	if os.Getenv("QUIXYSYNC_TEST_KILL_SIDE") == "near" {
		side = p.near
	}
	killAt := int64(0)
	fmt.Sscan(os.Getenv("QUIXYSYNC_TEST_KILL_AT"), &killAt)
	var committed atomic.Int64
	side.afterCommit = func(n int) {
		if committed.Add(int64(n)) >= killAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	side.splitCommit = int(killAt)
	engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	os.Exit(0) // not reached when the kill happened
}

// TestDovecotSIGKILLMidTransfer runs the sync in a child process that is
// SIGKILLed after the first messages of a batch reached the target (pull to
// Maildir, push to Dovecot) and resumes in this process: every message exists
// exactly once on each side, with the right flags.
func TestDovecotSIGKILLMidTransfer(t *testing.T) {
	needDovecot(t)
	setup := func(p *pairing) {
		engine.CrashScenarioSetup(t, p.spec)
		addMany(t, p.spec.Far, "INBOX", engine.FlagSeen, names("fbulk", 15)...)
		addMany(t, p.spec.Near, "INBOX", engine.FlagFlagged, names("nbulk", 15)...)
	}
	for _, kind := range []string{imapMaildir, imapIMAP} {
		t.Run(kind, func(t *testing.T) {
			ref := newPairing(t, kind)
			setup(ref)
			sync1(t, ref, engine.RunOptions{})
			want := engine.ViewBox(t, ref.spec.Far, "INBOX")
			ref.check(t, "INBOX", want)
			ref.close()

			for _, tc := range []struct {
				side string
				at   int
			}{{"far", 1}, {"far", 7}, {"near", 4}} {
				p := newPairing(t, kind)
				setup(p)
				p.close()
				cmd := exec.Command(os.Args[0], "-test.run=^TestDovecotKillHelper$")
				cmd.Env = append(os.Environ(), "QUIXYSYNC_TEST_KILL_DIR="+p.dir, dovecotEnv+"="+serverInfo().encode(),
					"QUIXYSYNC_TEST_KIND="+kind, "QUIXYSYNC_TEST_KILL_SIDE="+tc.side, fmt.Sprint("QUIXYSYNC_TEST_KILL_AT=", tc.at))
				out, err := cmd.CombinedOutput()
				ee, ok := err.(*exec.ExitError)
				if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("%s at %d: child not killed by SIGKILL: %v\n%s", tc.side, tc.at, err, out)
				}
				if js := journals(t, p); len(js) == 0 {
					t.Fatalf("%s at %d: no journal left by the killed run", tc.side, tc.at)
				}
				p.reopen(t)
				sync1(t, p, engine.RunOptions{})
				p.check(t, "INBOX", want)
				res := sync1(t, p, engine.RunOptions{})
				if !zeroCounts(res.Counts) {
					t.Fatalf("%s at %d: not idempotent after resume: %+v", tc.side, tc.at, res.Counts)
				}
				p.close()
			}
		})
	}
}

// journals lists the journal files of a pairing's state.
func journals(t testing.TB, p *pairing) []string {
	var out []string
	filepath.WalkDir(p.dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".journal") {
			out = append(out, path)
		}
		return nil
	})
	return out
}
