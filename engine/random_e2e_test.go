package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

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
// Where the near side is a Maildir, folders are also renamed on the far side
// between runs (at times beside a new mailbox with the same UIDVALIDITY):
// a run follows the rename with the folder here, or (where that is not
// clear) stops the old one with the guard and the history then follows it
// by hand as the guard says; either way the model's messages end under the
// new name and nothing is left under the old one.
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
			skipped, renames, follows, byHand := 0, 0, 0, 0
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
				renames, follows, byHand = renames+h.renames, follows+h.follows, byHand+h.byHand
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
			if renamesFar(kind) {
				t.Logf("%d far renames; runs renamed %d folders to follow, %d renames not followed were followed by hand", renames, follows, byHand)
			}
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
	duringRun bool // changes are being made during a run
	uncertain map[string]bool
	// dirty holds the folders changed since the last completed run, frozen
	// those made again since then, which nothing may change until the run.
	dirty, frozen map[string]bool
	skipped       int // mailbox pairs runs skipped as unchanged
	// Far renames (renameFar) since the last completed run: renamed maps
	// a folder's new name to the name of its folder on the near side
	// (until a run follows the rename there); gone holds the old names,
	// which no side may list after the run; lost the folders that lost a
	// message since the last run (a rename of one is not made: the
	// evidence the run follows a rename by may be gone); ambiguous the
	// near folders whose far rename the run must not follow (see
	// expectAmbiguity).
	renamed         map[string]string
	gone            []string
	lost, ambiguous map[string]bool
	// maybe: near folders whose far rename the run may or may not follow:
	// another far mailbox new to the run, or another renamed folder's, has
	// its UIDVALIDITY, and the messages tell them apart (see findRenames)
	// unless two happen to hold one Message-ID at one UID.
	maybe map[string]bool
	// stuck: far mailboxes renamed since the last run whose new name a
	// partial run that did not follow the rename made here too: not
	// renamed again before a run has completed (the near folder of the
	// new name would be a second folder with the renamed one's state).
	stuck map[string]bool
	// synced holds the folders of the last completed run (on both sides
	// since), farNew those made on the far side only since: the folders a
	// far rename may move (one made here only since, its far side made by
	// the run, would stay here under its old name).
	synced, farNew map[string]bool
	renames        int // far renames made
	follows        int // folders runs renamed as the far side did
	byHand         int // renames not followed, then followed as the guard says
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
		dirty: map[string]bool{}, frozen: map[string]bool{},
		renamed: map[string]string{}, lost: map[string]bool{}, ambiguous: map[string]bool{}, maybe: map[string]bool{}, stuck: map[string]bool{},
		synced: map[string]bool{}, farNew: map[string]bool{}}
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
	// ab is box as this side's client sees it: on the near side, a folder
	// renamed on the far side keeps its old name until a run follows.
	ab := h.actorBox(side, box)
	if ab == "" {
		return
	}
	if ab != box {
		where += " (here " + ab + ")"
	}
	if side == 1 {
		h.farNew[box] = false // a folder here now too
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
		h.farNew[box] = side == 0
		h.model[box] = map[string]engine.Flag{subj: f}
		h.touched[subj] = true
	case h.rng.IntN(30) == 0 && !h.racing && box != "INBOX" && !h.dirty[box]:
		// The folder deleted and made again with the same mail (a
		// restore, a server migration): new UIDs under a new UIDVALIDITY.
		// The run pairs the messages again by Message-ID and size and
		// stops when too few match, so nothing else changes in the folder
		// until then.
		rc, ok := a.(*storeActor)
		if !ok || slices.ContainsFunc(h.boxes, func(b string) bool { return strings.HasPrefix(b, box+"/") }) {
			// Not one with subfolders (a far rename puts folders inside
			// others): Dovecot deletes only its mail, keeps its index, and
			// its SELECT then fails on an index log whose id changed.
			return
		}
		err := rc.recreate(box)
		if errors.Is(err, engine.ErrNoMailbox) {
			return // not made on this side yet
		}
		h.act(t, where, "deleted and made again with its mail", err)
		h.frozen[box] = true
	case h.rng.IntN(renameOdds) == 0 && !h.duringRun && renamesFar(h.kind) && box != "INBOX":
		h.renameFar(t, box)
	case op < 4 || len(h.model[box]) < 4:
		h.next++
		subj, f := fmt.Sprintf("m%d", h.next), h.randomFlags()
		h.act(t, where, fmt.Sprintf("add %s %q", subj, f), a.add(ab, subj, f))
		h.model[box][subj] = f
		h.touched[subj] = true
	case op < 8:
		subj, ok := h.pick(box)
		f := h.randomFlags()
		if !ok || !h.act(t, where, fmt.Sprintf("flags of %s %q -> %q", subj, h.model[box][subj], f), a.setFlags(ab, subj, f)) {
			return
		}
		h.model[box][subj] = f
		h.raced(subj)
		h.touched[subj] = true
	case op < 9:
		subj, ok := h.pick(box)
		dst := h.boxes[(slices.Index(h.boxes, box)+1+h.rng.IntN(len(h.boxes)-1))%len(h.boxes)]
		adst := h.actorBox(side, dst)
		if !ok || h.frozen[dst] || adst == "" || h.pendingRename(box) {
			return
		}
		if side == 1 {
			h.farNew[dst] = false
		}
		h.dirty[dst] = true
		h.lost[box] = true
		f := h.model[box][subj]
		if !h.act(t, where, fmt.Sprintf("move %s to %s", subj, dst), a.move(ab, adst, subj, f)) {
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
		if !ok || h.pendingRename(box) {
			return
		}
		h.lost[box] = true
		if !h.act(t, where, "trash "+subj, a.trash(ab, subj)) {
			return
		}
		delete(h.model[box], subj)
		h.touched[subj] = true
	default:
		subj, ok := h.pick(box)
		if !ok || h.pendingRename(box) {
			return
		}
		h.lost[box] = true
		if !h.act(t, where, "remove "+subj, a.remove(ab, subj)) {
			return
		}
		delete(h.model[box], subj)
		h.touched[subj] = true
	}
}

// renameOdds: one change in this many (of those left by the rarer ones
// before) is a far rename; QUIXYSYNC_TEST_RENAME_ODDS=N makes it 1 in N, to
// hunt with more of them.
var renameOdds = func() int {
	if n, err := strconv.Atoi(os.Getenv("QUIXYSYNC_TEST_RENAME_ODDS")); err == nil && n > 0 {
		return n
	}
	return 30
}()

// renamesFar says whether histories of kind rename far folders: those
// whose near side is a Maildir, which a run renames to follow.
func renamesFar(kind string) bool {
	return kind == imapMaildir || kind == maildirMaildir || kind == cyrusMaildir
}

// pendingRename says whether box was renamed on the far side since the
// last completed run. Its messages are not removed until the run: the run
// follows a rename on the evidence of the pairs its state records, and a
// removal could take all of it away (then the rename is not followed and
// the folder stops with the guard, which this model does not play).
func (h *history) pendingRename(box string) bool {
	_, ok := h.renamed[box]
	return ok
}

// actorBox is the name box has on side (0 far, 1 near) for a mail client
// there: a far rename not followed yet leaves the near folder under its
// old name. "" while a run goes on that may rename the folder under the
// client (its changes would go to a folder made anew).
func (h *history) actorBox(side int, box string) string {
	old, ok := h.renamed[box]
	if side == 0 || !ok {
		return box
	}
	if h.duringRun {
		return ""
	}
	if isMaildirDir(h.nearDir(old)) {
		return old
	}
	return box
}

func (h *history) nearDir(box string) string {
	return filepath.Join(h.p.dir, "near", filepath.FromSlash(box))
}

func isMaildirDir(d string) bool {
	fi, err := os.Stat(filepath.Join(d, "cur"))
	return err == nil && fi.IsDir()
}

// renameFar renames box on the far side (or, at times, the parent of its
// name when that is no folder), its subfolders along, to a fresh name, as
// a webmail's RENAME does, and updates the model: same messages and flags
// under the new names. A third of the time a new far mailbox with the same
// UIDVALIDITY as the renamed one comes along (a server that gives many
// the same): the run must not take either for the renamed folder.
func (h *history) renameFar(t *testing.T, box string) {
	t.Helper()
	from := box
	if i := strings.LastIndex(box, "/"); i >= 0 && h.rng.IntN(3) == 0 && !slices.Contains(h.boxes, box[:i]) {
		from = box[:i]
	}
	var moving []string
	for _, b := range h.boxes {
		if b == from || strings.HasPrefix(b, from+"/") {
			moving = append(moving, b)
		}
	}
	nearOf := func(b string) string {
		if o, ok := h.renamed[b]; ok {
			return o
		}
		return b
	}
	along := map[string]bool{}
	for _, b := range moving {
		if h.frozen[b] || h.lost[b] || h.stuck[b] || !h.synced[b] && !h.farNew[b] {
			return
		}
		along[nearOf(b)] = true
	}
	// Not a folder with a subfolder here that is none of the model's (on
	// Cyrus, a parent the server made along with a folder, listed at
	// times, synced here): it would not move along.
	list, err := h.p.spec.Near.ListMailboxes(context.Background())
	if err != nil {
		h.fatalf(t, "near: listing: %v", err)
	}
	for _, mi := range list {
		if strings.HasPrefix(mi.Name, nearOf(from)+"/") && !along[mi.Name] {
			return
		}
	}
	h.next++
	to := fmt.Sprintf("Renamed %d", h.next)
	// On Cyrus only to a new top folder: a new place inside another makes
	// the parents as mailboxes of their own (listed at times) beside it.
	switch x := h.rng.IntN(4); {
	case h.kind == cyrusMaildir:
	case x == 0:
		to = fmt.Sprintf("Archivé %d/old", h.next)
	case x < 3:
		// Into another folder.
		var parents []string
		for _, b := range h.boxes {
			if b != "INBOX" && b != from && !strings.HasPrefix(b, from+"/") && !h.frozen[b] {
				parents = append(parents, b)
			}
		}
		if len(parents) > 0 {
			to = fmt.Sprintf("%s/r%d", parents[h.rng.IntN(len(parents))], h.next)
		}
	}
	if err := h.farRename(from, to); err != nil {
		if from != box {
			// A parent that is no folder: not every server renames one.
			h.logf("  far: rename %q to %q: refused: %v", from, to, err)
			return
		}
		h.fatalf(t, "far: rename %q to %q: %v", from, to, err)
	}
	h.renames++
	h.logf("  far: rename %q to %q (folders: %q)", from, to, moving)
	for _, b := range moving {
		nb := to + b[len(from):]
		h.boxes[slices.Index(h.boxes, b)] = nb
		h.model[nb] = h.model[b]
		delete(h.model, b)
		near := b
		if o, ok := h.renamed[b]; ok {
			near = o
			delete(h.renamed, b)
		}
		if h.synced[b] {
			h.renamed[nb] = near // else there is no folder here to follow
		}
		h.synced[nb], h.farNew[nb] = h.synced[b], h.farNew[b]
		h.dirty[nb] = true
		delete(h.dirty, b)
		if near != b && isMaildirDir(h.nearDir(b)) {
			// A folder a run made here under b while the mailbox's own
			// folder waited under its older name (the guard stopped it):
			// its state has no pairs, so without evidence of a rename it
			// is made again on the far side, empty, as any empty folder
			// whose far side vanished.
			continue
		}
		h.gone = append(h.gone, b)
	}
	// The twin only beside a folder with a message synced and unchanged
	// since the last run: the guard then stops the old one (an empty one,
	// its state without pairs, would be made again on the far side).
	synced := false
	for subj := range h.model[to] {
		synced = synced || !h.touched[subj]
	}
	if from != box || !synced || h.kind == cyrusMaildir || h.rng.IntN(3) != 0 {
		return
	}
	// A new far mailbox beside it with the same UIDVALIDITY.
	h.next++
	twin := fmt.Sprintf("Twin %d", h.next)
	subj, f := fmt.Sprintf("m%d", h.next), h.randomFlags()
	if err := h.farTwin(to, twin, subj, f); err != nil {
		h.fatalf(t, "far: new folder %q with the UIDVALIDITY of %q: %v", twin, to, err)
	}
	h.logf("  far: new folder %q with the UIDVALIDITY of %q, add %s %q", twin, to, subj, f)
	h.boxes = append(h.boxes, twin)
	h.model[twin] = map[string]engine.Flag{subj: f}
	h.touched[subj] = true
	h.dirty[twin] = true
	h.farNew[twin] = true
}

// farRename renames a far mailbox as another client does: Dovecot's
// doveadm, an IMAP RENAME on Cyrus, mv on a Maildir.
func (h *history) farRename(from, to string) error {
	switch h.kind {
	case imapMaildir:
		if out, err := srv.Doveadm("mailbox", "rename", "-u", "alice", from, to); err != nil {
			return fmt.Errorf("%v (%s)", err, out)
		}
		return nil
	case cyrusMaildir:
		a := h.p.accounts[0]
		c, err := imapclient.DialInsecure(net.JoinHostPort(a.ci.host, strconv.Itoa(a.ci.port)), nil)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Login(a.user, a.ci.pass[a.user]).Wait(); err != nil {
			return err
		}
		if err := c.Rename(from, to, nil).Wait(); err != nil {
			return err
		}
		return c.Logout().Wait()
	case maildirMaildir:
		root := filepath.Join(h.p.dir, "far")
		dst := filepath.Join(root, filepath.FromSlash(to))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if _, err := os.Stat(dst); err == nil {
			return fmt.Errorf("%s exists", dst)
		}
		return os.Rename(filepath.Join(root, filepath.FromSlash(from)), dst)
	}
	return fmt.Errorf("no far renames on %s", h.kind)
}

// farTwin makes the far mailbox twin with the UIDVALIDITY of box and one
// message in it.
func (h *history) farTwin(box, twin, subj string, f engine.Flag) error {
	switch h.kind {
	case imapMaildir:
		out, err := srv.Doveadm("mailbox", "status", "-u", "alice", "uidvalidity", box)
		if err != nil {
			return fmt.Errorf("%v (%s)", err, out)
		}
		_, v, ok := strings.Cut(string(out), "uidvalidity=")
		if v = strings.TrimSpace(v); !ok || v == "" {
			return fmt.Errorf("doveadm mailbox status: %q", out)
		}
		if out, err := srv.Doveadm("mailbox", "create", "-u", "alice", twin); err != nil {
			return fmt.Errorf("%v (%s)", err, out)
		}
		if out, err := srv.Doveadm("mailbox", "update", "-u", "alice", "--uid-validity", v, twin); err != nil {
			return fmt.Errorf("%v (%s)", err, out)
		}
		if out, err := srv.Doveadm("mailbox", "status", "-u", "alice", "uidvalidity", twin); err != nil || !strings.Contains(string(out), "="+v) {
			return fmt.Errorf("twin's UIDVALIDITY: %v (%s), want %s", err, out, v)
		}
	case maildirMaildir:
		root := filepath.Join(h.p.dir, "far")
		v, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(box), ".uidvalidity"))
		if err != nil {
			return err
		}
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(twin), sub), 0o700); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(twin), ".uidvalidity"), v, 0o600); err != nil {
			return err
		}
	default:
		return fmt.Errorf("no twins on %s", h.kind)
	}
	return h.actors[0].add(twin, subj, f)
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
		h.expectAmbiguity(t)
		res := engine.SyncChannel(context.Background(), h.p.spec, engine.RunOptions{CrashAfter: crashAfter})
		crashed := false
		for _, m := range res.Mailboxes {
			// A mailbox started ahead of the far listing whose run did not
			// count (its far side was not there by name, or of another
			// UIDVALIDITY: renamed away) is run again after the listing,
			// but not after a crash: the process is gone then.
			if m.Err != nil && !errors.Is(m.Err, engine.ErrCrash) && !h.guardedRename(m) && !engine.RetryAfterListing(m.Err) {
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
	h.expectAmbiguity(t)
	res := engine.SyncChannel(context.Background(), h.p.spec, engine.RunOptions{})
	h.countFollows(t, res)
	if h.guarded(t, res, "run") {
		h.followByHand(t)
		res = engine.SyncChannel(context.Background(), h.p.spec, engine.RunOptions{})
	}
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
	clear(h.renamed)
	clear(h.lost)
	clear(h.ambiguous)
	clear(h.maybe)
	clear(h.stuck)
	h.gone = nil
	clear(h.farNew)
	clear(h.synced)
	for _, b := range h.boxes {
		h.synced[b] = true
	}
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

// guardedRename says whether m is the guard stopping a near folder whose
// far mailbox was renamed beside a new one with the same UIDVALIDITY: a
// rename the run rightly does not follow (as before it followed any).
func (h *history) guardedRename(m engine.MailboxResult) bool {
	return m.Err != nil && errors.Is(m.Err, engine.ErrGuard) && (h.ambiguous[m.Mailbox] || h.maybe[m.Mailbox])
}

// guarded logs the guards of guardedRename in res, and clears them from res
// (for mailboxErr); it reports whether there were any.
func (h *history) guarded(t *testing.T, res engine.ChannelResult, what string) bool {
	t.Helper()
	found := false
	for i, m := range res.Mailboxes {
		if h.guardedRename(m) {
			h.logf("  %s: %s not followed: %v", what, m.Mailbox, m.Err)
			res.Mailboxes[i].Err = nil
			found = true
		}
	}
	return found
}

// countFollows counts the folders res renamed to follow the far side; one
// whose far rename is ambiguous (expectAmbiguity) fails the test.
func (h *history) countFollows(t *testing.T, res engine.ChannelResult) {
	t.Helper()
	for _, m := range res.Mailboxes {
		if m.Err == nil && strings.HasPrefix(m.Skipped, "renamed to ") {
			h.follows++
			h.logf("  %s: %s", m.Mailbox, m.Skipped)
			if h.ambiguous[m.Mailbox] {
				h.fatalf(t, "%s: %s, though the rename is not one to follow", m.Mailbox, m.Skipped)
			}
		}
	}
}

// expectAmbiguity finds, before a run, the near folders whose far rename
// the run must not follow (ambiguous): a run made the new name here
// already, its place here holds something, or a folder inside it here
// does not move along to the same place; and those it may or may not follow (maybe): another far mailbox
// new to the run (a twin, or a parent Cyrus made along and lists once its
// child is gone) or another renamed folder's has the UIDVALIDITY of the
// renamed one (on Cyrus and a Maildir, those made in the same second),
// which the messages tell apart unless two share a Message-ID at a UID.
func (h *history) expectAmbiguity(t *testing.T) {
	t.Helper()
	if len(h.renamed) == 0 {
		return
	}
	ctx := context.Background()
	var lists [2]map[string]bool
	for s, st := range []engine.Store{h.p.spec.Far, h.p.spec.Near} {
		list, err := st.ListMailboxes(ctx)
		if err != nil {
			h.fatalf(t, "listing: %v", err)
		}
		lists[s] = map[string]bool{}
		for _, mi := range list {
			lists[s][mi.Name] = true
		}
	}
	validity := func(box string) uint32 {
		mb, err := h.p.spec.Far.OpenMailbox(ctx, box, true)
		if err != nil {
			return 0
		}
		defer mb.Close()
		return mb.Status().UIDValidity
	}
	// The renames a run can follow: the near folder under its old name,
	// the far mailbox under its new one.
	pending := map[string]string{} // old -> new
	vOf := map[string]uint32{}
	for nb, old := range h.renamed {
		switch {
		case lists[1][old] && !lists[0][old] && lists[0][nb] && !lists[1][nb]:
			pending[old] = nb
			vOf[old] = validity(nb)
		case lists[1][old] && !lists[0][old] && lists[1][nb]:
			// A run that did not follow made the new name here: the
			// old one stays as it is until followed by hand.
			h.ambiguous[old] = true
		}
	}
	for old, nb := range pending {
		// The new name's place here holds something (a folder a client
		// made inside it): taken, the rename is not followed.
		if ents, err := os.ReadDir(h.nearDir(nb)); err == nil && len(ents) > 0 {
			h.ambiguous[old] = true
		}
		for n := range lists[0] {
			if n != nb && n != "INBOX" && !lists[1][n] && validity(n) == vOf[old] {
				h.maybe[old] = true
			}
		}
		for o := range pending {
			if o != old && vOf[o] == vOf[old] {
				h.maybe[old] = true
			}
		}
	}
	for changed := true; changed; {
		changed = false
		for old, nb := range pending {
			for n := range lists[1] {
				if h.ambiguous[old] || !strings.HasPrefix(n, old+"/") {
					continue
				}
				to, ok := pending[n]
				switch {
				case !ok || h.ambiguous[n]:
					h.ambiguous[old], changed = true, true
				case to != nb+n[len(old):] && !h.maybe[old]:
					// Renamed elsewhere: once a round has moved it out of
					// the folder, a later round can follow the parent.
					h.maybe[old], changed = true, true
				case h.maybe[n] && !h.maybe[old]:
					h.maybe[old], changed = true, true // follows only if its subfolder does
				}
			}
		}
	}
	for old := range h.ambiguous {
		h.logf("  (%s: far rename ambiguous)", old)
	}
	for old := range h.maybe {
		h.logf("  (%s: far rename told apart by its messages, or not)", old)
	}
}

// followByHand follows, as the guard's message says, the far renames a run
// did not: the folder the run made under the new name (the far mailbox's
// mail, downloaded) is deleted and the old folder moved there with its
// state. Subfolders first, each on its own (one may go elsewhere than
// under its parent's new name); a subfolder the run did move (its own
// rename was clear) stays where it went.
func (h *history) followByHand(t *testing.T) {
	t.Helper()
	var olds []string
	to := map[string]string{}
	for nb, old := range h.renamed {
		if isMaildirDir(h.nearDir(old)) {
			olds = append(olds, old)
			to[old] = nb
		}
	}
	slices.Sort(olds)
	slices.Reverse(olds)
	// own says whether e is part of the folder itself, not a subfolder.
	own := func(e os.DirEntry) bool {
		return !e.IsDir() || e.Name() == "cur" || e.Name() == "new" || e.Name() == "tmp"
	}
	for _, old := range olds {
		src, dst := h.nearDir(old), h.nearDir(to[old])
		h.byHand++
		h.logf("  near: mv %q %q (by hand, as the guard says)", old, to[old])
		if err := os.MkdirAll(dst, 0o700); err != nil {
			h.fatalf(t, "%v", err)
		}
		// The folder a run made: its own files go.
		ents, err := os.ReadDir(dst)
		if err != nil {
			h.fatalf(t, "%v", err)
		}
		for _, e := range ents {
			if own(e) {
				if err := os.RemoveAll(filepath.Join(dst, e.Name())); err != nil {
					h.fatalf(t, "%v", err)
				}
			}
		}
		ents, err = os.ReadDir(src)
		if err != nil {
			h.fatalf(t, "%v", err)
		}
		for _, e := range ents {
			if own(e) {
				if err := os.Rename(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
					h.fatalf(t, "%v", err)
				}
			}
		}
		os.Remove(src) // unless a subfolder stays there
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
	h.expectAmbiguity(t)
	if spec.Pull == 0 {
		// A channel that takes nothing from the far side does not follow
		// its renames either (see findRenames): the guard stops them.
		for nb, old := range h.renamed {
			h.ambiguous[old], h.stuck[nb] = true, true
		}
	}
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	h.countFollows(t, res)
	h.guarded(t, res, "partial run")
	if err := mailboxErr(res); err != nil {
		h.fatalf(t, "partial run (pull %b, push %b, expunge %v): %v", spec.Pull, spec.Push, spec.Expunge, err)
	}
	// A rename the run did not follow (its guard stopped it) while it made
	// the new name here, and may have downloaded the mailbox into it: stuck
	// as with pull = [] above, whatever the run's mode.
	for nb, old := range h.renamed {
		if isMaildirDir(h.nearDir(old)) && isMaildirDir(h.nearDir(nb)) {
			h.ambiguous[old], h.stuck[nb] = true, true
		}
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
	h.expectAmbiguity(t)
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
	h.duringRun = true
	h.logf("  run started; changes during it (to any message: %v):", h.racing)
	for range 1 + h.rng.IntN(4) {
		h.change(t)
		time.Sleep(time.Duration(h.rng.IntN(3_000)) * time.Microsecond)
	}
	h.racing, h.duringRun = false, false
	<-done
	if res.Err != nil {
		h.fatalf(t, "run with changes during it: %v", res.Err)
	}
	h.countFollows(t, res)
	for _, m := range res.Mailboxes {
		// A folder deleted under a run fails there, for this run.
		if m.Err != nil && !h.frozen[m.Mailbox] && !h.guardedRename(m) {
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
	for s, st := range []engine.Store{h.p.spec.Far, h.p.spec.Near} {
		list, err := st.ListMailboxes(context.Background())
		if err != nil {
			h.fatalf(t, "listing the %s side: %v", []string{"far", "near"}[s], err)
		}
		for _, mi := range list {
			if slices.Contains(h.gone, mi.Name) {
				h.fatalf(t, "the %s side still has %q, renamed on the far side", []string{"far", "near"}[s], mi.Name)
			}
		}
	}
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
