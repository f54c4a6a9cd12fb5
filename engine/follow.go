package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// A far mailbox renamed on the server (a webmail's RENAME) shows the next
// run a near folder whose far mailbox is gone and a far mailbox new to the
// run. Taken as they look, the new one is copied here whole (a large
// archive downloaded again) and the old folder stops with the guard at
// every run until the user acts: mbsync's behaviour. When the evidence is
// clear the run renames the folder here too, with its state, and the
// mailbox syncs on under its new name, copying nothing.

// farRename is a far mailbox renamed from one name to another that the run
// follows here. remade: the far side has a mailbox of the old name again,
// made after the rename (a year's archive renamed, a fresh one made).
type farRename struct {
	from, to string
	remade   bool
}

// maxFreshAsked bounds how many far mailboxes new to a run, of which the
// listing gave no UIDVALIDITY, are opened to learn it: a run that finds
// more (a first run against a new account beside old folders) follows no
// rename, as a wrong guess costs more than a download.
const maxFreshAsked = 16

// maxPairsAsked bounds the old and new names of one UIDVALIDITY whose
// messages are compared (a round trip or two each).
const maxPairsAsked = 16

// findRenames returns the far renames to follow, in the order to make them
// (parents before their subfolders). A near folder X is taken to have been
// renamed to the far
// mailbox Y when all of this holds:
//   - X is selected, and either near only while the far side does not open
//     it by name, or on both sides with a far UIDVALIDITY (as listed, or
//     asked by name for a few the listing gave none for) other than the one
//     its state records: made anew after the rename;
//   - its state is this channel's, of far mailbox X (or older, without
//     owner lines), and records a far UIDVALIDITY;
//   - Y is selected, far only, and has that UIDVALIDITY (a RENAME keeps
//     it);
//   - X's newest pairs hold the same Message-IDs in Y (samePairs: an equal
//     UIDVALIDITY alone proves nothing), and in no other such far mailbox,
//     and no other such folder's in Y;
//   - a nested folder moves only with all its near subfolders, each itself
//     renamed to the same place under Y (the server's RENAME takes the
//     children along; a folder of this side alone inside X is not moved
//     away from where the user put it);
//   - the renames can be made in some order (renameOrder), which is the
//     order returned.
//
// Only when the run may create near mailboxes (what it would otherwise do
// with Y) and change the near side (not push-only: neither the run's mode
// nor the channel, whose pull list is then empty), and the near store can
// rename (a Maildir).
func findRenames(ctx context.Context, spec ChannelSpec, opt RunOptions, names []string, present [2]map[string]bool, far map[string]*Status) []farRename {
	ls, local := spec.Near.(LocalStore)
	_, renames := spec.Near.(MailboxRenamer)
	if !local || !renames || !spec.Create[Near] || opt.Mode == ModePush || spec.Pull == 0 {
		return nil
	}
	var olders, farOnly []string
	for _, n := range names {
		switch {
		case n == "INBOX":
		case present[Near][n] && !present[Far][n]:
			olders = append(olders, n)
		case present[Far][n] && !present[Near][n]:
			farOnly = append(farOnly, n)
		}
	}
	if len(farOnly) == 0 {
		// The common case: no far mailbox new to the run, nothing to read.
		return nil
	}
	for _, n := range names {
		// A state is read only for a mailbox whose UIDVALIDITY may have
		// changed: one the listing gave none for too (a folder changed here
		// since the last run is not asked its far status: a folder the
		// user filed mail into, renamed on the server and made anew). A
		// run started ahead of the far listing does not write it then: it
		// ends, changing nothing, when it finds the far UIDVALIDITY changed
		// (errValidityAhead), and runs again after.
		if st := far[n]; n != "INBOX" && present[Near][n] && present[Far][n] && (st == nil || st.UIDValidity != 0) {
			olders = append(olders, n)
		}
	}
	olds := map[uint32][]string{}
	askedOld := 0
	for _, n := range olders {
		path, err := StatePath(spec, n)
		if err != nil {
			continue
		}
		h, err := LoadStateHeader(path)
		if err != nil || h.Generation == 0 || h.FarValidity == 0 || h.Owner.check(spec, n, path) != nil {
			continue
		}
		if present[Far][n] {
			var now uint32
			if st := far[n]; st != nil {
				now = st.UIDValidity
			} else if askedOld++; askedOld <= maxFreshAsked {
				// Asked by name, a round trip: only when a far mailbox is
				// new to the run, and for a few.
				if mb, err := spec.Far.OpenMailbox(ctx, n, true); err == nil {
					now = mb.Status().UIDValidity
					mb.Close()
				}
			}
			if now == 0 || now == h.FarValidity {
				continue // the far mailbox it was synced with (or not known)
			}
		}
		olds[h.FarValidity] = append(olds[h.FarValidity], n)
	}
	if len(olds) == 0 {
		return nil
	}
	// The far listing seldom gives statuses (ListStatus is off by
	// default): those of the new names are asked in one pipelined round
	// where the store can, so that a renamed folder with many subfolders
	// is not past the bound of those opened one by one.
	var need []string
	for _, n := range farOnly {
		if st := far[n]; st == nil || st.UIDValidity == 0 {
			need = append(need, n)
		}
	}
	var got map[string]Status
	if sl, ok := spec.Far.(StatusLister); ok && len(need) > 0 {
		got, _ = sl.StatusAll(ctx, need) // failed: opened one by one below
	}
	news := map[uint32][]string{}
	asked := 0
	for _, n := range farOnly {
		var validity uint32
		if st := far[n]; st != nil && st.UIDValidity != 0 {
			validity = st.UIDValidity
		} else if st, ok := got[n]; ok && st.UIDValidity != 0 {
			validity = st.UIDValidity
		} else {
			if asked++; asked > maxFreshAsked {
				return nil
			}
			mb, err := spec.Far.OpenMailbox(ctx, n, true)
			if err != nil {
				continue
			}
			validity = mb.Status().UIDValidity
			mb.Close()
		}
		if len(olds[validity]) > 0 {
			news[validity] = append(news[validity], n)
		}
	}
	var found []farRename
	for v, from := range olds {
		to := news[v]
		if len(from)*len(to) == 0 || len(from)*len(to) > maxPairsAsked {
			continue
		}
		// Several with one UIDVALIDITY (a Maildir's is the second it was
		// made in, a parent's and its child's alike; some servers give all
		// mailboxes the same): the messages decide, and each must have
		// exactly one partner.
		partners := map[string][]string{}
		for _, x := range from {
			// Asked once per folder, not once per candidate: the far
			// side's answer for the old name, and the state (100 000
			// pairs are megabytes).
			st, ok := renamedFrom(ctx, spec, x, v)
			if !ok {
				continue
			}
			for _, y := range to {
				if stateFits(ctx, spec, y, x, v, st) {
					partners[x] = append(partners[x], y)
					partners["\x00"+y] = append(partners["\x00"+y], x)
				}
			}
		}
		for _, x := range from {
			if ys := partners[x]; len(ys) == 1 && len(partners["\x00"+ys[0]]) == 1 {
				found = append(found, farRename{x, ys[0], present[Far][x]})
			}
		}
	}
	for {
		found = nestedWhole(ls, found, present[Near])
		ordered, ok := renameOrder(ls, found)
		if ok {
			return ordered
		}
		// Dropping some can make a parent's move incomplete: again.
		found = ordered
	}
}

// renameOrder puts renames in an order in which they can be made one after
// the other. A folder whose new place is inside another's new place moves
// only once that one is there: first, it would make the other's place as a
// plain directory, onto which the other's rename then fails at every run
// (A renamed to Foo/A and then Foo to Zed on the server: A's folder goes
// to Zed/A here only after Foo's to Zed). One whose new place is inside a
// folder that moves away moves once that one has gone, else it would be
// taken along (Foo renamed to Zed, then A to Foo/A). Parents thus come
// before the subfolders that move along with them. Renames that wait on
// each other (no order works) are left out, with ok false: they are not
// followed.
func renameOrder(ls LocalStore, found []farRename) (_ []farRename, ok bool) {
	places := make([][2]string, len(found))
	for i, r := range found {
		places[i][0], _ = ls.MailboxDir(r.from)
		places[i][1], _ = ls.MailboxDir(r.to)
	}
	order := orderMoves(places, func(dir, p string) bool {
		return dir != "" && strings.HasPrefix(p, dir+string(filepath.Separator))
	})
	out := make([]farRename, len(order))
	for i, k := range order {
		out[i] = found[k]
	}
	return out, len(out) == len(found)
}

// orderMoves orders moves from places[i][0] to places[i][1] (under says
// whether a place is below another) so that each can be made after those
// before it: a move waits for those whose new place, or old place, holds
// its new place. Moves that wait on each other are left out.
func orderMoves(places [][2]string, under func(dir, p string) bool) []int {
	waits := func(i, j int) bool { return under(places[j][1], places[i][1]) || under(places[j][0], places[i][1]) }
	out := make([]int, 0, len(places))
	done := make([]bool, len(places))
	for progressed := true; progressed; {
		progressed = false
		for i := range places {
			if done[i] {
				continue
			}
			ready := true
			for j := range places {
				if j != i && !done[j] && waits(i, j) {
					ready = false
					break
				}
			}
			if ready {
				out = append(out, i)
				done[i], progressed = true, true
			}
		}
	}
	return out
}

// renamedFrom returns the state of the near folder from, whose far mailbox
// had UIDVALIDITY v, when the far side has no mailbox from of that
// UIDVALIDITY (asked by name: a listing can leave out one that exists), so
// that the folder may have been renamed away there; ok is false otherwise.
func renamedFrom(ctx context.Context, spec ChannelSpec, from string, v uint32) (st State, ok bool) {
	if gone, err := farGone(ctx, spec, from, v); err != nil || !gone {
		return State{}, false
	}
	return nearState(spec, from)
}

// nearState loads the whole state of the near folder name.
func nearState(spec ChannelSpec, name string) (State, bool) {
	path, err := StatePath(spec, name)
	if err != nil {
		return State{}, false
	}
	st, _, err := loadState(path, false)
	return st, err == nil
}

// stateFits says whether st, the state of the near folder near, whose
// pairs were made with a far mailbox of UIDVALIDITY v, fits the far mailbox
// far: it has v, and samePairs finds the state's newest pairs in it.
func stateFits(ctx context.Context, spec ChannelSpec, far, near string, v uint32, st State) bool {
	mb, err := spec.Far.OpenMailbox(ctx, far, true)
	if err != nil {
		return false
	}
	defer mb.Close()
	if mb.Status().UIDValidity != v {
		return false
	}
	same, err := samePairs(ctx, spec, near, mb, st)
	return err == nil && same
}

// farGone says whether the far side has no mailbox name of UIDVALIDITY v
// (asked by name: a listing can leave out one that exists): none, or one
// made anew after a rename.
func farGone(ctx context.Context, spec ChannelSpec, name string, v uint32) (bool, error) {
	mb, err := spec.Far.OpenMailbox(ctx, name, true)
	if errors.Is(err, ErrNoMailbox) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("opening %q on the far side: %w", name, err)
	}
	now := mb.Status().UIDValidity
	mb.Close()
	return now != v && now != 0, nil
}

// nestedWhole keeps the renames whose folder can move as a whole: not into
// or around itself, and every near folder inside it (present lists them all,
// selected or not) moving with it to the same place under the new name.
// Dropping one rename can make its parent's fail the test, so it runs until
// nothing changes.
func nestedWhole(ls LocalStore, found []farRename, present map[string]bool) []farRename {
	// Each name's folder once (a name with non-ASCII characters costs a
	// stat): the loop below asks for every near folder per rename.
	dirs := map[string]string{}
	dirOf := func(n string) string {
		if d, ok := dirs[n]; ok {
			return d
		}
		d, err := ls.MailboxDir(n)
		if err != nil {
			d = ""
		}
		dirs[n] = d
		return d
	}
	inside := func(dir, p string) bool { return strings.HasPrefix(p, dir+string(filepath.Separator)) }
	for changed := true; changed; {
		changed = false
		to := map[string]string{}
		for _, r := range found {
			to[r.from] = r.to
		}
		kept := found[:0]
		for _, r := range found {
			dx, dy := dirOf(r.from), dirOf(r.to)
			ok := dx != "" && dy != "" && !inside(dx, dy) && !inside(dy, dx) && dx != dy
			for n := range present {
				dn := dirOf(n)
				if !ok || n == r.from || dn == "" || !inside(dx, dn) {
					continue
				}
				t, moves := to[n]
				ok = moves && dirOf(t) == dy+dn[len(dx):]
			}
			if ok {
				kept = append(kept, r)
			} else {
				changed = true
			}
		}
		found = kept
	}
	slices.SortFunc(found, func(a, b farRename) int { return compareMailboxes(a.from, b.from) })
	return found
}

// followRenames follows the renames findRenames returns: each folder is
// renamed to its far mailbox's new name (a subfolder whose parent's move
// took it along only gets its state's owner lines) and present is updated,
// so the new name syncs as a pair. Its results are those of the names that
// are not to be synced in this run: the old names, done (but for one the
// far side has made anew, now a mailbox new here); in a dry run or when the
// rename failed, the new names too (synced, they would be created and
// copied whole). wait waits for the mailbox runs started before (some may
// be of the old names). A dry run shows the first round of a chain of
// renames only (see below).
func followRenames(ctx context.Context, spec ChannelSpec, opt RunOptions, names []string, present [2]map[string]bool,
	far map[string]*Status, wait func()) map[string]MailboxResult {
	found := findRenames(ctx, spec, opt, names, present, far)
	if len(found) == 0 {
		return nil
	}
	// The runs started before the listing end first: one of an old name
	// holds its folder open (and its result, once in, would replace the one
	// given here).
	wait()
	out := map[string]MailboxResult{}
	if opt.DryRun {
		for _, r := range found {
			note := fmt.Sprintf("would be renamed to %s here, as on the far side (its state moves with it; nothing copied)", r.to)
			if r.remade {
				note += fmt.Sprintf(", and made anew for the far side's new %s", r.from)
			}
			out[r.from] = MailboxResult{Mailbox: r.from, Skipped: note}
			out[r.to] = MailboxResult{Mailbox: r.to,
				Skipped: fmt.Sprintf("would take over the folder of %s, renamed to it on the far side (nothing copied)", r.from)}
		}
		return out
	}
	ls := spec.Near.(LocalStore)
	rn := spec.Near.(MailboxRenamer)
	// Folders renamed in this run; those whose rename failed; those not
	// followed after all; the names tried, old and new.
	var moved, failed, left []string
	tried := [2]map[string]bool{{}, {}}
	// A folder renamed away frees its name here: a far mailbox renamed
	// onto that name (A to C, then B to A, on the server) is found in the
	// next round. A few rounds: chains are short.
	for round := 0; len(found) > 0 && round < 4; round++ {
		for _, r := range found {
			tried[0][r.from], tried[1][r.to] = true, true
		}
		if !followRound(ctx, spec, opt, ls, rn, found, present, out, &moved, &failed, &left) {
			break
		}
		found = slices.DeleteFunc(findRenames(ctx, spec, opt, names, present, far), func(r farRename) bool {
			return tried[0][r.from] || tried[1][r.to]
		})
	}
	return out
}

// followRound makes the renames found (see followRenames), and says
// whether it renamed any folder.
func followRound(ctx context.Context, spec ChannelSpec, opt RunOptions, ls LocalStore, rn MailboxRenamer, found []farRename,
	present [2]map[string]bool, out map[string]MailboxResult, moved, failed, left *[]string) bool {
	renamed := false
	for _, r := range found {
		dx, err := ls.MailboxDir(r.from)
		below := func(d string) bool { return strings.HasPrefix(dx, d+string(filepath.Separator)) }
		// A folder whose parent stays stays too: moved out of it alone, it
		// would hold the parent's new place as a plain directory, and the
		// parent's rename would fail at every run.
		switch {
		case err != nil:
		case slices.ContainsFunc(*left, below):
			err = fmt.Errorf("its parent folder is not renamed: %w", ErrTaken)
		case slices.ContainsFunc(*failed, below):
			err = errors.New("its parent folder could not be renamed")
		default:
			err = followRename(ctx, spec, ls, rn, r, *moved, opt)
		}
		if errors.Is(err, ErrTaken) {
			// Something of the user's is at the new place (a directory
			// holding other things): not followed, as if the evidence
			// were not clear. Failed, both names would fail at every run.
			opt.Log.Info("mailbox renamed on the far side, not followed here: the new place is taken", "mailbox", r.from, "to", r.to, "err", err)
			*left = append(*left, dx)
			continue
		}
		if err != nil {
			renameFailed(ctx, out, r.from, r.to,
				fmt.Errorf("mailbox %s: renamed to %s on the far side; renaming its folder here too failed: %w", r.from, r.to, err),
				fmt.Errorf("mailbox %s: not synced: it is the far mailbox %s renamed, whose folder here could not be renamed to it (the next run tries again)", r.to, r.from))
			if dx != "" {
				*failed = append(*failed, dx)
			}
			continue
		}
		*moved = append(*moved, dx)
		renamed = true
		if !r.remade { // else a mailbox new here, synced as such
			out[r.from] = MailboxResult{Mailbox: r.from, Skipped: fmt.Sprintf("renamed to %s here, as on the far side", r.to)}
		}
		delete(present[Near], r.from)
		present[Near][r.to] = true
	}
	return renamed
}

// renameFailed records the results of a rename that failed: errors of
// both names, or their interruption when that is why.
func renameFailed(ctx context.Context, out map[string]MailboxResult, from, to string, fromErr, toErr error) {
	if ctx.Err() != nil {
		fromErr, toErr = fmt.Errorf("mailbox %s: %w", from, ErrStopped), fmt.Errorf("mailbox %s: %w", to, ErrStopped)
	}
	out[from] = MailboxResult{Mailbox: from, Err: fromErr}
	out[to] = MailboxResult{Mailbox: to, Err: toErr}
}

// followRename renames r's folder, under its pair's lock, and rewrites its
// state's owner lines to the new name. A folder inside one renamed before
// in this run (moved lists their old directories) moved along with it.
// The owner lines are rewritten only to spare the mailbox's run the same
// checks again (adoptRenamed): a run dying between the rename and that
// write leaves a folder that run takes over.
func followRename(ctx context.Context, spec ChannelSpec, ls LocalStore, rn MailboxRenamer, r farRename, moved []string, opt RunOptions) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	dx, err := ls.MailboxDir(r.from)
	if err != nil {
		return err
	}
	along := slices.ContainsFunc(moved, func(d string) bool { return strings.HasPrefix(dx, d+string(filepath.Separator)) })
	if !along {
		path, err := StatePath(spec, r.from)
		if err != nil {
			return err
		}
		lk, err := LockFile(path + ".lock")
		if err != nil {
			return err
		}
		err = rn.RenameMailbox(ctx, r.from, r.to)
		lk.Unlock()
		if err != nil {
			return err
		}
	}
	opt.Log.Warn("mailbox renamed on the far side: its folder is renamed here too, and it syncs on under the new name",
		"mailbox", r.from, "to", r.to, Notice, true)
	rewriteOwner(spec, r.from, r.to, opt)
	return nil
}

// rewriteOwner gives the state of the folder of mailbox to, renamed from
// from on one side and followed on the other, the new name in its owner
// lines, under its pair's lock. Only to spare the mailbox's run the same
// checks (adoptRenamed): a failure is logged, and a run dying before it
// leaves a folder that run takes over.
func rewriteOwner(spec ChannelSpec, from, to string, opt RunOptions) {
	path, err := StatePath(spec, to)
	if err != nil {
		return
	}
	lk, err := LockFile(path + ".lock")
	if err == nil {
		defer lk.Unlock()
		var st State
		var meta stateMeta
		st, meta, err = loadState(path, false)
		if err == nil && meta.Owner.FarMailbox == from {
			err = saveState(path, st, ownerOf(spec, to))
		}
	}
	if err != nil {
		opt.Log.Info("rewriting the owner lines of a renamed folder's state", "mailbox", to, "state", path, "err", err)
	}
}
