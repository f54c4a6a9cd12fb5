package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/cyrustest"
)

// TestRandomHistories plays random histories of what mail clients do on
// both sides — new mail, flag changes, moves between folders, deletions
// (removed, or marked deleted for the run to expunge), new folders with odd
// names; on a Maildir by delivering, renaming and unlinking files as an MDA
// and a MUA do, on IMAP from a session of its own — between runs and
// during them. Runs come back
// to back (Maildir changes then land in the clock tick of the run before)
// or after the changed folders have aged (pairs nobody changed are then
// skipped unopened on their recorded stamps and statuses: a change those
// quick paths miss fails here), on stores kept open or fresh, some crashing
// at a random journal step. After each completed run both sides must hold
// exactly the model's messages: none lost, none twice, every flag change
// and deletion carried over; a change made during a run is carried by it
// or by the next.
//
// Pairings: IMAP↔Maildir, IMAP↔IMAP, Maildir↔Maildir on the package's
// Dovecot, and Cyrus↔Maildir, Cyrus↔Dovecot on a private Cyrus (skipped
// where Cyrus is not installed, unless QUIXYSYNC_REQUIRE_CYRUS=1): a
// second server's answers (its UIDVALIDITY, its flushes, its mailbox
// list) under the same histories.
//
// QUIXYSYNC_TEST_SEED=N replays one history (the timing of the changes made
// during runs is the machine's); QUIXYSYNC_TEST_HISTORIES=N plays N
// histories per pairing from random seeds; QUIXYSYNC_TEST_ROUNDS=N makes
// each N rounds long instead of 30; QUIXYSYNC_TEST_LOG=1 logs every history.
func TestRandomHistories(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if v := os.Getenv("QUIXYSYNC_TEST_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("QUIXYSYNC_TEST_SEED: %v", err)
		}
		seeds = []uint64{n}
	} else if v := os.Getenv("QUIXYSYNC_TEST_HISTORIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("QUIXYSYNC_TEST_HISTORIES: %v", err)
		}
		seeds = seeds[:0]
		for range n {
			seeds = append(seeds, rand.Uint64())
		}
	}
	rounds := 30
	if v := os.Getenv("QUIXYSYNC_TEST_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("QUIXYSYNC_TEST_ROUNDS: %v", err)
		}
		rounds = n
	}
	for _, kind := range append(slices.Clone(allPairings), cyrusMaildir, cyrusIMAP) {
		t.Run(kind, func(t *testing.T) {
			if kind != maildirMaildir && kind != cyrusMaildir {
				needDovecot(t)
			}
			// Cyrus: one server for the pairing's histories, an account
			// of its own for each.
			var cy *cyrustest.Server
			if kind == cyrusMaildir || kind == cyrusIMAP {
				users := map[string]string{}
				for i := range seeds {
					users[fmt.Sprintf("h%d", i)] = fmt.Sprintf("pw-%d-%d", i, rand.Uint64())
				}
				cy = cyrustest.ForTest(t, users)
			}
			skipped := 0
			for i, seed := range seeds {
				var acct *cyrusAccount
				if cy != nil {
					user := fmt.Sprintf("h%d", i)
					acct = &cyrusAccount{conninfo{host: cy.Host, port: cy.Port, tls: "none",
						pass: map[string]string{user: cy.Password(user)}}, user}
				}
				h := newHistory(t, kind, seed, acct)
				h.play(t, rounds)
				h.close()
				skipped += h.skipped
				if os.Getenv("QUIXYSYNC_TEST_LOG") != "" {
					t.Logf("seed %d:\n%s", seed, strings.Join(h.log, "\n"))
				}
			}
			// Else the quick paths, where a missed change would hide, were
			// never taken.
			if skipped == 0 {
				t.Errorf("no run skipped an unchanged mailbox pair")
			}
			t.Logf("%d histories; runs skipped %d mailbox pairs as unchanged", len(seeds), skipped)
		})
	}
}

// history is one random history on one pairing and its model: per mailbox,
// the flags of every message both sides must hold after a run.
type history struct {
	kind   string
	seed   uint64
	rng    *rand.Rand
	p      *pairing
	actors [2]actor // far, near
	boxes  []string // the folders: historyBoxes, then the ones it created
	model  map[string]map[string]engine.Flag
	// touched holds the messages changed since the last completed run: one
	// change per message between runs, so that no conflict rule is needed.
	touched map[string]bool
	next    int
	log     []string
	// racing: changes are being made during a run, to any message, also
	// ones the run is changing; uncertain holds the messages whose flags
	// then depend on who came first (both sides must still agree).
	racing    bool
	uncertain map[string]bool
	// dirty holds the folders changed since the last completed run, frozen
	// those made again since then, which nothing may change until the run.
	dirty, frozen map[string]bool
	skipped       int // mailbox pairs runs skipped as unchanged
}

var historyBoxes = []string{"INBOX", "Lists/go", "Sent"}

// newBoxNames are the folders a history may create, in this order (%d: a
// number of the history's): names that IMAP writes in modified UTF-7
// (non-ASCII, '&'), with spaces, and in a hierarchy whose parent is no
// folder.
var newBoxNames = []string{"Été %d", "Projects/p%d", "A&B %d", "with space %d/sub"}

// newHistory starts a history on a new pairing of kind; cy is the far
// account of the Cyrus kinds.
func newHistory(t *testing.T, kind string, seed uint64, cy *cyrusAccount) *history {
	t.Helper()
	h := &history{kind: kind, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		model: map[string]map[string]engine.Flag{}, touched: map[string]bool{}, uncertain: map[string]bool{},
		dirty: map[string]bool{}, frozen: map[string]bool{}}
	if cy != nil {
		h.p = newCyrusPairing(t, kind, cy)
	} else {
		h.p = newPairing(t, kind)
	}
	h.p.setBare() // as the command runs: every optional interface of the stores in use
	if seed%2 == 1 {
		h.p.setDurable(t)
		h.logf("durable Maildir stores")
	}
	h.boxes = slices.Clone(historyBoxes)
	for _, box := range historyBoxes {
		h.model[box] = map[string]engine.Flag{}
	}
	for s, root := range [2]string{filepath.Join(h.p.dir, "far"), filepath.Join(h.p.dir, "near")} {
		if a := h.p.accounts[s]; a != nil {
			h.actors[s] = &storeActor{st: a.store(t, t.TempDir())}
		} else {
			h.actors[s] = &fileActor{root: root}
		}
	}
	t.Cleanup(h.close)
	return h
}

// close logs out of the history's sessions, so that a long hunt does not
// run into a server's connection limit (Cyrus' maxchild).
func (h *history) close() {
	for _, a := range h.actors {
		if sa, ok := a.(*storeActor); ok {
			sa.st.Close()
		}
	}
	h.p.close()
}

func (h *history) fatalf(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s, seed %d (replay: QUIXYSYNC_TEST_SEED=%d): %s\nhistory:\n%s", h.kind, h.seed, h.seed,
		fmt.Sprintf(format, args...), strings.Join(h.log, "\n"))
}

func (h *history) logf(format string, args ...any) {
	h.log = append(h.log, fmt.Sprintf(format, args...))
}

// randomFlags picks flags among those every pairing keeps as they are
// (\Deleted would be expunged, $Forwarded is a keyword a server may lack).
func (h *history) randomFlags() engine.Flag {
	var f engine.Flag
	for _, g := range []engine.Flag{engine.FlagDraft, engine.FlagFlagged, engine.FlagReplied, engine.FlagSeen} {
		if h.rng.IntN(3) == 0 {
			f |= g
		}
	}
	return f
}

// pick returns a random message of box not changed since the last run;
// while racing a run, any message of box.
func (h *history) pick(box string) (string, bool) {
	var c []string
	for subj := range h.model[box] {
		if h.racing || !h.touched[subj] {
			c = append(c, subj)
		}
	}
	if len(c) == 0 {
		return "", false
	}
	slices.Sort(c)
	return c[h.rng.IntN(len(c))], true
}

// change makes one random change on one side.
func (h *history) change(t *testing.T) {
	t.Helper()
	side := h.rng.IntN(2)
	box := h.boxes[h.rng.IntN(len(h.boxes))]
	a := h.actors[side]
	name := []string{"far", "near"}[side]
	where := name + " " + box
	if h.frozen[box] {
		return
	}
	defer func() { h.dirty[box] = true }()
	switch op := h.rng.IntN(12); {
	case h.rng.IntN(25) == 0 && len(h.boxes) < len(historyBoxes)+len(newBoxNames):
		// A new folder, with one message in it.
		box = fmt.Sprintf(newBoxNames[len(h.boxes)-len(historyBoxes)], h.next)
		h.next++
		subj, f := fmt.Sprintf("m%d", h.next), h.randomFlags()
		h.act(t, name, fmt.Sprintf("new folder %q, add %s %q", box, subj, f), a.add(box, subj, f))
		h.boxes = append(h.boxes, box)
		h.model[box] = map[string]engine.Flag{subj: f}
		h.touched[subj] = true
	case h.rng.IntN(30) == 0 && !h.racing && box != "INBOX" && !h.dirty[box]:
		// The folder deleted and made again with the same mail (a
		// restore, a server migration): new UIDs under a new UIDVALIDITY.
		// The run pairs the messages again by Message-ID and size and
		// stops when too few match, so nothing else changes in the folder
		// until then.
		rc, ok := a.(*storeActor)
		if !ok {
			return
		}
		err := rc.recreate(box)
		if errors.Is(err, engine.ErrNoMailbox) {
			return // not made on this side yet
		}
		h.act(t, where, "deleted and made again with its mail", err)
		h.frozen[box] = true
	case op < 4 || len(h.model[box]) < 4:
		h.next++
		subj, f := fmt.Sprintf("m%d", h.next), h.randomFlags()
		h.act(t, where, fmt.Sprintf("add %s %q", subj, f), a.add(box, subj, f))
		h.model[box][subj] = f
		h.touched[subj] = true
	case op < 8:
		subj, ok := h.pick(box)
		f := h.randomFlags()
		if !ok || !h.act(t, where, fmt.Sprintf("flags of %s %q -> %q", subj, h.model[box][subj], f), a.setFlags(box, subj, f)) {
			return
		}
		h.model[box][subj] = f
		h.raced(subj)
		h.touched[subj] = true
	case op < 9:
		subj, ok := h.pick(box)
		dst := h.boxes[(slices.Index(h.boxes, box)+1+h.rng.IntN(len(h.boxes)-1))%len(h.boxes)]
		if !ok || h.frozen[dst] {
			return
		}
		h.dirty[dst] = true
		f := h.model[box][subj]
		if !h.act(t, where, fmt.Sprintf("move %s to %s", subj, dst), a.move(box, dst, subj, f)) {
			return
		}
		delete(h.model[box], subj)
		h.model[dst][subj] = f
		h.raced(subj)
		h.touched[subj] = true
	case op < 10:
		// Marked deleted (Maildir T, IMAP \Deleted): the run expunges it,
		// on both sides. A deletion beats a flag change, so racing a run
		// leaves nothing uncertain; nor does a removal.
		subj, ok := h.pick(box)
		if !ok || !h.act(t, where, "trash "+subj, a.trash(box, subj)) {
			return
		}
		delete(h.model[box], subj)
		h.touched[subj] = true
	default:
		subj, ok := h.pick(box)
		if !ok || !h.act(t, where, "remove "+subj, a.remove(box, subj)) {
			return
		}
		delete(h.model[box], subj)
		h.touched[subj] = true
	}
}

// act logs a change made (err nil) and reports true. A change racing a run
// to a message not on that side yet (not copied there) is not made: false.
// Any other failure ends the test.
func (h *history) act(t *testing.T, where, what string, err error) bool {
	t.Helper()
	switch {
	case err == nil:
		h.logf("  %s: %s", where, what)
		return true
	case h.racing && errors.Is(err, os.ErrNotExist):
		h.logf("  %s: %s: not there (yet)", where, what)
		return false
	}
	h.fatalf(t, "%s: %s: %v", where, what, err)
	return false
}

// raced marks subj's flags uncertain when it is changed while a run may be
// changing it too.
func (h *history) raced(subj string) {
	if h.racing && h.touched[subj] {
		h.uncertain[subj] = true
	}
}

func (h *history) play(t *testing.T, rounds int) {
	t.Helper()
	// A synced starting point: every mailbox exists, some mail on each side.
	for _, box := range historyBoxes {
		h.next++
		subj := fmt.Sprintf("m%d", h.next)
		side := h.rng.IntN(2)
		if err := h.actors[side].add(box, subj, 0); err != nil {
			h.fatalf(t, "add %s to %s: %v", subj, box, err)
		}
		h.model[box][subj] = 0
		h.touched[subj] = true
	}
	for range 12 {
		h.change(t)
	}
	h.run(t, 0)
	for r := 1; r <= rounds; r++ {
		h.logf("round %d", r)
		for range h.rng.IntN(6) {
			h.change(t)
		}
		switch x := h.rng.IntN(10); {
		case x == 0:
			// No run: the changes pile up for the next one.
			continue
		case x < 3:
			h.run(t, 1+h.rng.IntN(10))
		case x < 5:
			h.runDuringChanges(t)
		default:
			h.run(t, 0)
		}
	}
}

// run syncs (first crashing after journal step crashAfter, if not 0) and
// checks both sides against the model.
func (h *history) run(t *testing.T, crashAfter int) {
	t.Helper()
	if h.rng.IntN(2) == 0 {
		// As a run from cron: fresh stores.
		h.p.reopen(t)
		h.logf("  (stores reopened)")
	}
	if h.rng.IntN(4) != 0 {
		// As if the changes had been made seconds ago: a Maildir folder's
		// stamp is only trusted (and a pair skipped unopened on it) once
		// its directories are older than the file system's clock tick.
		for _, a := range h.actors {
			if fa, ok := a.(*fileActor); ok {
				if err := fa.age(h.boxes, 3*time.Second); err != nil {
					h.fatalf(t, "age %s: %v", fa.root, err)
				}
			}
		}
		h.logf("  (Maildir folders aged)")
	}
	if h.rng.IntN(4) == 0 {
		h.partialRun(t)
	}
	if crashAfter > 0 {
		res := engine.SyncChannel(context.Background(), h.p.spec, engine.RunOptions{CrashAfter: crashAfter})
		crashed := false
		for _, m := range res.Mailboxes {
			if m.Err != nil && !errors.Is(m.Err, engine.ErrCrash) {
				h.fatalf(t, "run to crash after step %d: %s: %v", crashAfter, m.Mailbox, m.Err)
			}
			crashed = crashed || errors.Is(m.Err, engine.ErrCrash)
		}
		if res.Err != nil {
			h.fatalf(t, "run to crash after step %d: %v", crashAfter, res.Err)
		}
		h.logf("  run crashing after step %d (crashed: %v)", crashAfter, crashed)
		h.p.reopen(t)
	}
	res := engine.SyncChannel(context.Background(), h.p.spec, engine.RunOptions{})
	if err := mailboxErr(res); err != nil {
		h.fatalf(t, "run: %v", err)
	}
	var skipped []string
	for _, m := range res.Mailboxes {
		if m.Skipped != "" {
			skipped = append(skipped, m.Mailbox)
		}
	}
	h.skipped += len(skipped)
	h.logf("  run: %+v, skipped %v", res.Counts, skipped)
	h.verify(t)
	clear(h.touched)
	clear(h.uncertain)
	clear(h.dirty)
	clear(h.frozen)
	if h.rng.IntN(4) == 0 {
		res := engine.SyncChannel(context.Background(), h.p.spec, engine.RunOptions{})
		if err := mailboxErr(res); err != nil {
			h.fatalf(t, "second run: %v", err)
		}
		if !zeroCounts(res.Counts) {
			h.fatalf(t, "second run with nothing changed did something: %+v", res.Counts)
		}
		h.logf("  second run: nothing to do")
	}
}

// partialRun runs the channel in a random mode of its own — some kinds of
// change one way, others the other, expunging or not (as pull, push and a
// channel's Sync and Expunge settings do) — and makes more changes after
// it. What it leaves out stays a change for a later run: the full run
// after it must still end as the model says.
func (h *history) partialRun(t *testing.T) {
	t.Helper()
	ops := func() engine.Ops {
		var o engine.Ops
		for _, op := range []engine.Ops{engine.OpNew, engine.OpFlags, engine.OpGone} {
			if h.rng.IntN(2) == 0 {
				o |= op
			}
		}
		return o
	}
	spec := h.p.spec
	spec.Pull, spec.Push = ops(), ops()
	spec.Expunge = [2]bool{h.rng.IntN(2) == 0, h.rng.IntN(2) == 0}
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	if err := mailboxErr(res); err != nil {
		h.fatalf(t, "partial run (pull %b, push %b, expunge %v): %v", spec.Pull, spec.Push, spec.Expunge, err)
	}
	h.logf("  partial run (pull %03b, push %03b, expunge %v): %+v", spec.Pull, spec.Push, spec.Expunge, res.Counts)
	for range h.rng.IntN(3) {
		h.change(t)
	}
}

// runDuringChanges makes changes while a run goes on, as a mail client
// does at any time: the run may or may not see each of them, but it must
// not fail (except in a folder deleted under it) nor lose or undo one, so
// the next run ends as the model says.
func (h *history) runDuringChanges(t *testing.T) {
	t.Helper()
	var res engine.ChannelResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		res = engine.SyncChannel(context.Background(), h.p.spec, engine.RunOptions{})
	}()
	// A change that fails the test must not leave the run going on stores
	// the test's cleanup closes.
	defer func() { <-done }()
	time.Sleep(time.Duration(h.rng.IntN(20_000)) * time.Microsecond)
	// Half the time to messages the run is changing too.
	h.racing = h.rng.IntN(2) == 0
	h.logf("  run started; changes during it (to any message: %v):", h.racing)
	for range 1 + h.rng.IntN(4) {
		h.change(t)
		time.Sleep(time.Duration(h.rng.IntN(3_000)) * time.Microsecond)
	}
	h.racing = false
	<-done
	if res.Err != nil {
		h.fatalf(t, "run with changes during it: %v", res.Err)
	}
	for _, m := range res.Mailboxes {
		// A folder deleted under a run fails there, for this run.
		if m.Err != nil && !h.frozen[m.Mailbox] {
			h.fatalf(t, "run with changes during it: %s: %v", m.Mailbox, m.Err)
		}
		if m.Err != nil {
			h.logf("  run with changes during it: %s: %v", m.Mailbox, m.Err)
		}
	}
	h.logf("  run with changes during it: %+v", res.Counts)
	h.run(t, 0)
}

func (h *history) verify(t *testing.T) {
	t.Helper()
	for _, box := range h.boxes {
		far, near := engine.ViewBox(t, h.p.spec.Far, box), engine.ViewBox(t, h.p.spec.Near, box)
		// Uncertain flags are taken from the far side; near must agree.
		for _, tok := range strings.Fields(far) {
			subj, fl, _ := strings.Cut(tok, ":")
			if _, ok := h.model[box][subj]; ok && h.uncertain[subj] {
				f, err := engine.ParseFlags(fl)
				if err != nil {
					h.fatalf(t, "%s: %s: %v", box, tok, err)
				}
				h.model[box][subj] = f
			}
		}
		var want []string
		for subj, f := range h.model[box] {
			want = append(want, subj+":"+f.String())
		}
		slices.Sort(want)
		w := strings.Join(want, " ")
		if far != w || near != w {
			h.fatalf(t, "%s:\nfar:  %s\nnear: %s\nwant: %s", box, far, near, w)
		}
	}
}

// actor changes one side as another mail client would.
type actor interface {
	add(box, subject string, f engine.Flag) error
	setFlags(box, subject string, f engine.Flag) error
	remove(box, subject string) error
	// move moves subject's message (its flags f) from box to dst.
	move(box, dst, subject string, f engine.Flag) error
	// trash marks subject's message deleted, keeping its other flags.
	trash(box, subject string) error
}

func historyBody(subject string) string {
	return fmt.Sprintf("From: a@example.org\nTo: b@example.org\nMessage-ID: <%s.history@test>\nSubject: %s\n\nbody of %s\n",
		subject, subject, subject)
}

// storeActor is an IMAP session of its own (not the run's connections).
type storeActor struct{ st engine.Store }

func (a *storeActor) add(box, subject string, f engine.Flag) error {
	ctx := context.Background()
	if err := a.st.CreateMailbox(ctx, box); err != nil {
		return err
	}
	mb, err := a.st.OpenMailbox(ctx, box, false)
	if err != nil {
		return err
	}
	defer mb.Close()
	sg, err := mb.Stage(ctx, engine.NewMessage{Flags: f, Body: strings.NewReader(historyBody(subject))})
	if err != nil {
		return err
	}
	res, err := mb.Commit(ctx, []engine.Staged{sg})
	if err != nil {
		return err
	}
	return res[0].Err
}

// find returns the UID and flags of the one message with subject in box.
func (a *storeActor) find(mb engine.Mailbox, subject string) (engine.Message, error) {
	ctx := context.Background()
	msgs, _, err := mb.List(ctx, engine.ListQuery{All: true})
	if err != nil {
		return engine.Message{}, err
	}
	byUID := map[engine.UID]engine.Message{}
	var uids []engine.UID
	for _, m := range msgs {
		byUID[m.UID] = m
		uids = append(uids, m.UID)
	}
	var found []engine.Message
	want := historyBody(subject)
	err = mb.Fetch(ctx, uids, func(uid engine.UID, r io.Reader) error {
		b, err := io.ReadAll(r)
		if err == nil && string(b) == want {
			found = append(found, byUID[uid])
		}
		return err
	})
	if err != nil {
		return engine.Message{}, err
	}
	switch len(found) {
	case 0:
		return engine.Message{}, fmt.Errorf("no message %s: %w", subject, os.ErrNotExist)
	case 1:
		return found[0], nil
	}
	return engine.Message{}, fmt.Errorf("%d messages %s", len(found), subject)
}

// onMessage calls fn with box open and subject's message in it.
func (a *storeActor) onMessage(box, subject string, fn func(context.Context, engine.Mailbox, engine.Message) error) error {
	ctx := context.Background()
	mb, err := a.st.OpenMailbox(ctx, box, false)
	if err != nil {
		return err
	}
	defer mb.Close()
	m, err := a.find(mb, subject)
	if err != nil {
		return err
	}
	return fn(ctx, mb, m)
}

func (a *storeActor) setFlags(box, subject string, f engine.Flag) error {
	return a.onMessage(box, subject, func(ctx context.Context, mb engine.Mailbox, m engine.Message) error {
		return mb.SetFlags(ctx, []engine.UID{m.UID}, f&^m.Flags, m.Flags&^f)
	})
}

func (a *storeActor) remove(box, subject string) error {
	return a.onMessage(box, subject, func(ctx context.Context, mb engine.Mailbox, m engine.Message) error {
		return a.expunge(ctx, mb, box, subject, m.UID)
	})
}

// expunge removes uid as a user's client does, whatever happened to it
// since it was listed. The store's removal is conditional (it keeps a
// message changed since the open: a \Deleted taken back, engine.KeptError),
// and a run going on beside the user may just have set a flag on it: the
// user's removal then goes again, on a fresh open.
func (a *storeActor) expunge(ctx context.Context, mb engine.Mailbox, box, subject string, uid engine.UID) error {
	err := mb.Expunge(ctx, []engine.UID{uid})
	for try := 0; try < 3 && errors.As(err, new(*engine.KeptError)); try++ {
		err = a.onMessage(box, subject, func(ctx context.Context, mb engine.Mailbox, m engine.Message) error {
			return mb.Expunge(ctx, []engine.UID{m.UID})
		})
	}
	return err
}

func (a *storeActor) trash(box, subject string) error {
	return a.onMessage(box, subject, func(ctx context.Context, mb engine.Mailbox, m engine.Message) error {
		return mb.SetFlags(ctx, []engine.UID{m.UID}, engine.FlagDeleted, 0)
	})
}

// recreate deletes box and makes it again with the same messages and
// flags, so that they have new UIDs under a new UIDVALIDITY.
func (a *storeActor) recreate(box string) error {
	ctx := context.Background()
	mb, err := a.st.OpenMailbox(ctx, box, false)
	if err != nil {
		return err
	}
	msgs, _, err := mb.List(ctx, engine.ListQuery{All: true})
	if err != nil {
		mb.Close()
		return err
	}
	flags := map[engine.UID]engine.Flag{}
	var uids []engine.UID
	for _, m := range msgs {
		flags[m.UID] = m.Flags
		uids = append(uids, m.UID)
	}
	type msg struct {
		body  []byte
		flags engine.Flag
	}
	var all []msg
	err = mb.Fetch(ctx, uids, func(uid engine.UID, r io.Reader) error {
		b, err := io.ReadAll(r)
		all = append(all, msg{b, flags[uid]})
		return err
	})
	if err == nil && len(uids) > 0 {
		err = mb.Expunge(ctx, uids)
	}
	if cerr := mb.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := a.st.DeleteMailbox(ctx, box); err != nil {
		return err
	}
	if err := a.st.CreateMailbox(ctx, box); err != nil {
		return err
	}
	mb, err = a.st.OpenMailbox(ctx, box, false)
	if err != nil {
		return err
	}
	defer mb.Close()
	var staged []engine.Staged
	for _, m := range all {
		sg, err := mb.Stage(ctx, engine.NewMessage{Flags: m.flags, Body: bytes.NewReader(m.body)})
		if err != nil {
			return err
		}
		staged = append(staged, sg)
	}
	res, err := mb.Commit(ctx, staged)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// move is a copy and a removal: all an IMAP client without MOVE can do,
// and what MOVE is to the other side's eyes.
func (a *storeActor) move(box, dst, subject string, f engine.Flag) error {
	return a.onMessage(box, subject, func(ctx context.Context, mb engine.Mailbox, m engine.Message) error {
		if err := a.add(dst, subject, f); err != nil {
			return err
		}
		return a.expunge(ctx, mb, box, subject, m.UID)
	})
}

// fileActor works on a Maildir tree (verbatim layout) the way an MDA and a
// MUA do: deliveries through tmp/ into new/ (or cur/ with flags), flag
// changes by renaming into cur/, deletions by unlinking.
type fileActor struct {
	root string
	n    int
}

func (a *fileActor) dir(box string) string { return filepath.Join(a.root, filepath.FromSlash(box)) }

func (a *fileActor) add(box, subject string, f engine.Flag) error {
	d := a.dir(box)
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			return err
		}
	}
	a.n++
	base := fmt.Sprintf("1700000000.M%dP%d.mua", a.n, os.Getpid())
	tmp := filepath.Join(d, "tmp", base)
	if err := os.WriteFile(tmp, []byte(historyBody(subject)), 0o600); err != nil {
		return err
	}
	dst := filepath.Join(d, "new", base)
	if f != 0 {
		dst = filepath.Join(d, "cur", base+":2,"+f.String())
	}
	return os.Rename(tmp, dst)
}

// find returns the path of the one file of box holding subject's message.
func (a *fileActor) find(box, subject string) (string, error) {
	want := historyBody(subject)
	var found []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(a.dir(box), sub))
		if err != nil {
			return "", err
		}
		for _, e := range ents {
			p := filepath.Join(a.dir(box), sub, e.Name())
			b, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				continue // renamed since the listing: found under its new name, or looked for again
			}
			if err != nil {
				return "", err
			}
			if string(b) == want {
				found = append(found, p)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no file holds %s: %w", subject, os.ErrNotExist)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%d files hold %s: %v", len(found), subject, found)
}

func (a *fileActor) setFlags(box, subject string, f engine.Flag) error {
	return a.onFile(box, subject, func(p string) error {
		base, _, _ := strings.Cut(filepath.Base(p), ":2,")
		return os.Rename(p, filepath.Join(a.dir(box), "cur", base+":2,"+f.String()))
	})
}

func (a *fileActor) trash(box, subject string) error {
	return a.onFile(box, subject, func(p string) error {
		base, info, _ := strings.Cut(filepath.Base(p), ":2,")
		f, err := engine.ParseFlags(info)
		if err != nil {
			return err
		}
		return os.Rename(p, filepath.Join(a.dir(box), "cur", base+":2,"+(f|engine.FlagDeleted).String()))
	})
}

func (a *fileActor) remove(box, subject string) error {
	return a.onFile(box, subject, os.Remove)
}

// move renames the file into dst's cur/ under the same name, UID and all,
// as mu4e (without mu4e-change-filenames-when-moving), notmuch tools and mv
// do: the name's ",U=" then means nothing in dst, and may be a UID dst
// has given to another message.
func (a *fileActor) move(box, dst, subject string, _ engine.Flag) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(a.dir(dst), sub), 0o700); err != nil {
			return err
		}
	}
	return a.onFile(box, subject, func(p string) error {
		return os.Rename(p, filepath.Join(a.dir(dst), filepath.Base(filepath.Dir(p)), filepath.Base(p)))
	})
}

// onFile calls fn with the path of subject's file. A run going on renames
// files (a UID into the name, flags from the other side); a mail client
// whose file is gone under it looks again, and so does this.
func (a *fileActor) onFile(box, subject string, fn func(path string) error) error {
	var err error
	for range 20 {
		var p string
		if p, err = a.find(box, subject); err == nil {
			if err = fn(p); err == nil {
				return nil
			}
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return err
}

// age sets the modification times of the folders' new/ and cur/ changed in
// the last d back by d; older ones stay as they are, as they would.
func (a *fileActor) age(boxes []string, d time.Duration) error {
	then := time.Now().Add(-d)
	for _, box := range boxes {
		for _, sub := range []string{"new", "cur"} {
			p := filepath.Join(a.dir(box), sub)
			fi, err := os.Stat(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if fi.ModTime().After(then) {
				if err := os.Chtimes(p, then, then); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
