package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/dovecottest"
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
	switch os.Getenv("QUIXYSYNC_TEST_KILL_SIDE") {
	case "near":
		side = p.near
	case "far-unanswered":
		// Die with a whole batch sent to the far side in one command and
		// not answered yet, the server slow to carry it out: its processes
		// for the far account are stopped when the batch's commit begins
		// (the parent continues them).
		p.far.beforeCommit = func(n int) {
			if n < 2 {
				return
			}
			dv := &dovecottest.Server{ConfFile: os.Getenv("QUIXYSYNC_TEST_DOVECOT_CONF")}
			pids, err := dv.SessionPIDs(p.accounts[0].user)
			if err != nil || len(pids) == 0 {
				fmt.Fprintf(os.Stderr, "no sessions to stop: %v\n", err)
				os.Exit(3)
			}
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGSTOP)
			}
			if err := os.WriteFile(filepath.Join(dir, "stopped"), []byte(fmt.Sprint(pids)), 0o644); err != nil {
				os.Exit(3)
			}
			time.AfterFunc(300*time.Millisecond, func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) })
		}
		engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
		os.Exit(0) // not reached when the kill happened
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

			// far@1 is killed by the first message of the push, which can
			// come from Archive while INBOX's pull is still under way: the
			// child may die with a MULTIAPPEND sent and unanswered, as
			// far-unanswered always does.
			for _, tc := range []struct {
				side string
				at   int
			}{{"far", 1}, {"far", 7}, {"near", 4}, {"far-unanswered", 0}} {
				p := newPairing(t, kind)
				setup(p)
				p.close()
				cmd := exec.Command(os.Args[0], "-test.run=^TestDovecotKillHelper$")
				cmd.Env = append(os.Environ(), "QUIXYSYNC_TEST_KILL_DIR="+p.dir, dovecotEnv+"="+serverInfo().encode(),
					"QUIXYSYNC_TEST_DOVECOT_CONF="+srv.ConfFile,
					"QUIXYSYNC_TEST_KIND="+kind, "QUIXYSYNC_TEST_KILL_SIDE="+tc.side, fmt.Sprint("QUIXYSYNC_TEST_KILL_AT=", tc.at))
				out, err := cmd.CombinedOutput()
				ee, ok := err.(*exec.ExitError)
				if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("%s at %d: child not killed by SIGKILL: %v\n%s", tc.side, tc.at, err, out)
				}
				if js := journals(t, p); len(js) == 0 {
					t.Fatalf("%s at %d: no journal left by the killed run", tc.side, tc.at)
				}
				var pids []int
				if b, err := os.ReadFile(filepath.Join(p.dir, "stopped")); err == nil {
					// The server takes its time with the killed child's
					// batch, longer than the resume needs to look for it.
					for f := range strings.FieldsSeq(strings.Trim(string(b), "[]")) {
						pid, err := strconv.Atoi(f)
						if err != nil {
							t.Fatalf("%s: stopped processes %q", tc.side, b)
						}
						pids = append(pids, pid)
					}
					cont := func() {
						for _, pid := range pids {
							syscall.Kill(pid, syscall.SIGCONT)
						}
					}
					t.Cleanup(cont)
					time.AfterFunc(time.Second, cont)
				}
				waitKilledSessions(t, p)
				p.reopen(t)
				sync1(t, p, engine.RunOptions{})
				// Whatever the killed child's sessions did is done before
				// the check (a no-op unless the resume began before they
				// ended).
				for _, pid := range pids {
					for syscall.Kill(pid, 0) == nil {
						time.Sleep(10 * time.Millisecond)
					}
				}
				if f, n := engine.ViewBox(t, p.spec.Far, "INBOX"), engine.ViewBox(t, p.spec.Near, "INBOX"); f != n || f != want {
					t.Fatalf("%s at %d: %s INBOX after resume:\nfar:  %s\nnear: %s\nwant: %s", tc.side, tc.at, kind, f, n, want)
				}
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

// waitKilledSessions waits until the server has ended the sessions of the
// pairing's accounts, the killed child's among them, as a run started after
// a kill meets them. The child can die with a command sent in full and not
// answered yet (a MULTIAPPEND), which the server still carries out: a resume
// that looks for the batch before it arrived cannot find it, and no client
// can see a dead client's command still running; it copies the batch again
// and the late one is a duplicate.
func waitKilledSessions(t testing.TB, p *pairing) {
	t.Helper()
	var users []string
	for _, a := range p.accounts {
		if a != nil {
			users = append(users, a.user)
		}
	}
	if len(users) == 0 {
		return
	}
	if err := srv.WaitSessionsGone(30*time.Second, users...); err != nil {
		t.Fatal(err)
	}
}
