package engine

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// A server without UIDPLUS that adds a header to every message it is given
// (so the size changes): the copy is found again by its Message-ID, once,
// instead of counting as failed and being appended again at every run.
func TestRewriteOnAppendWithoutUIDPlus(t *testing.T) {
	far, near := storeKinds[2].mk() // imap-plain: the far side has no UIDPLUS
	if far.uidplus {
		t.Fatal("imap-plain has UIDPLUS")
	}
	far.rewrite = func(b []byte) []byte { return append([]byte("X-Added-By-Server: yes\n"), b...) }
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	addMsg(t, near, "INBOX", "new", 0)
	syncWithoutFailures(t, spec, 3)
	checkEqual(t, spec, "INBOX", "a: new:")
}

// syncWithoutFailures syncs n times; no copy may fail (a copy that is not
// found again after its APPEND counts as failed and is made once more).
func syncWithoutFailures(t *testing.T, spec ChannelSpec, n int) {
	t.Helper()
	for i := range n {
		if res := mustSync(t, spec, RunOptions{}); res.Failed != [2]int{} {
			t.Errorf("run %d: failed copies %v", i, res.Failed)
		}
	}
}

// Two byte-identical new messages copied in one batch, the run killed right
// after the first one's result line: the replay must not give the second
// copy the first one's target (it would then be copied again, and the first
// target, left unpaired, copied back).
func TestReplayIdenticalCopies(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addMsg(t, far, "INBOX", "a", 0)
		mustSync(t, spec, RunOptions{})
		addMsg(t, near, "INBOX", "same", 0)
		addMsg(t, near, "INBOX", "same", 0)
		// Journal lines: the two intents, then the first result.
		res := SyncChannel(context.Background(), spec, RunOptions{CrashAfter: 3})
		if len(res.Mailboxes) == 0 || !stoppedByCrash(res) {
			t.Fatalf("the run was not stopped at the first result: %+v", res)
		}
		mustSync(t, spec, RunOptions{})
		mustSync(t, spec, RunOptions{})
		checkEqual(t, spec, "INBOX", "a: same: same:")
	})
}

func stoppedByCrash(res ChannelResult) bool {
	for _, m := range res.Mailboxes {
		if errors.Is(m.Err, errCrash) {
			return true
		}
	}
	return false
}

// A message whose file holds CRLF line ends, pushed to a server without
// UIDPLUS that hands it back with LF (an IMAP FETCH converts) and without a
// Message-ID to find it by: the copy is found by its hash, which must not
// depend on the line ends, instead of being made again at every run.
func TestResolveCopyWithOtherLineEnds(t *testing.T) {
	far, near := storeKinds[2].mk() // imap-plain: no UIDPLUS
	far.rewrite = func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")) }
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	addBody(t, near, "INBOX", "From: b@example.org\r\nSubject: crlf\r\n\r\nbody\r\nend\r\n", 0)
	syncWithoutFailures(t, spec, 3)
	checkEqual(t, spec, "INBOX", "a: crlf:")
}

// The hash takes CRLF as LF wherever the reads split the message, and keeps
// a lone CR (not before LF), at the end too.
func TestBodyHashLineEnds(t *testing.T) {
	sum := func(chunks ...string) string {
		bc := newBodyCounter(nil)
		for _, c := range chunks {
			bc.account([]byte(c))
		}
		return bc.sum()
	}
	lf := sum("a\nb\n")
	for _, c := range [][]string{{"a\r\nb\r\n"}, {"a\r", "\nb\r\n"}, {"a\r", "", "\nb\r", "\n"}, {"a", "\r\nb\n"}} {
		if got := sum(c...); got != lf {
			t.Errorf("%q: hash differs from the LF form's", c)
		}
	}
	if sum("a\rb\n") == sum("ab\n") || sum("a\n\r") == sum("a\n") || sum("a\r", "b") == sum("ab") {
		t.Error("a lone CR was dropped from the hash")
	}
}

// A channel that never pushes new messages (push = ["flags"]) leaves a
// local-only message local; its runs then plan nothing, and must not write
// the same state again at every run (a disk flush and a new generation per
// mailbox and run). Once the channel pushes new messages, it is pushed.
func TestNothingToRecordWritesNoState(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	spec.Push = OpFlags
	addMsg(t, far, "INBOX", "a", 0)
	mustSync(t, spec, RunOptions{})
	addMsg(t, near, "INBOX", "local", 0)
	mustSync(t, spec, RunOptions{})
	path, err := StatePath(spec, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustSync(t, spec, RunOptions{})
		again, err := LoadState(path)
		if err != nil {
			t.Fatal(err)
		}
		if again.Generation != st.Generation {
			t.Fatalf("run %d wrote the state again (generation %d → %d) with nothing to record", i, st.Generation, again.Generation)
		}
	}
	if got := view(t, far, "INBOX"); got != "a:" {
		t.Fatalf("far holds %s; a channel without new in push pushed a message", got)
	}
	spec.Push = OpAll
	mustSync(t, spec, RunOptions{})
	checkEqual(t, spec, "INBOX", "a: local:")
}

// Patterns that match no mailbox (a typo) are reported, not passed over in
// silence as a run that had nothing to do.
func TestPatternsMatchingNothingAreReported(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	spec := testSpec(t.TempDir(), far, near)
	addMsg(t, far, "INBOX", "a", 0)
	spec.Match = func(name string) bool { return name == "Inbxo" }
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mustSync(t, spec, RunOptions{Log: log})
	if !strings.Contains(logged.String(), "match no mailbox") {
		t.Errorf("no warning; log: %q", logged.String())
	}
	logged.Reset()
	spec.Match = nil
	mustSync(t, spec, RunOptions{Log: log})
	if strings.Contains(logged.String(), "match no mailbox") {
		t.Errorf("warned with mailboxes selected; log: %q", logged.String())
	}
}
