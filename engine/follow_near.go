package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// A folder renamed here (mv ~/Mail/Foo ~/Mail/Bar, or a mail client's
// rename) shows the next run a near folder whose state is of far mailbox
// Foo, and a far Foo the near side no longer has. Taken as they look, Foo
// is downloaded again and Bar stops at every run as a folder holding
// another mailbox's state (mbsync too downloads Foo again). When the evidence is
// clear the run renames the far mailbox too (RENAME), and the folder syncs
// on under its new name, copying nothing.

// nearRename is a near folder renamed from one name to another that the
// run carries to the far side.
type nearRename struct {
	from, to string
}

// findNearRenames returns the near renames to carry to the far side, in
// the order to make them (parents before their subfolders). A folder Y is taken for the far mailbox
// X renamed here when all of this holds:
//   - Y is selected and near only, and its state is this channel's, of far
//     mailbox X (another name), with the far UIDVALIDITY X has now and the
//     near UIDVALIDITY Y has (the folder moved with its .uidvalidity: a
//     state file copied alone into another folder is not a rename);
//   - X is selected and far only, and no other folder's state claims it;
//   - Y's newest pairs hold the same Message-IDs in X (samePairs);
//   - every far mailbox below X (the server's RENAME takes them along) is
//     itself renamed here to the same place below Y;
//   - the renames can be made one after the other (orderMoves), in the
//     order returned.
//
// Only when the run may create far mailboxes (what it would otherwise do
// with Y) and change the far side (not pull-only: neither the run's mode
// nor the channel, whose push list is then empty: a read-only mirror of
// the server), the far store can rename, and the near one keeps states in
// its folders.
func findNearRenames(ctx context.Context, spec ChannelSpec, opt RunOptions, names []string, present [2]map[string]bool,
	listed [2]map[string]*Status) []nearRename {
	_, local := spec.Near.(LocalStore)
	_, renames := spec.Far.(MailboxRenamer)
	if !local || !renames || !spec.Create[Far] || opt.Mode == ModePull || spec.Push == 0 {
		return nil
	}
	selected := make(map[string]bool, len(names))
	for _, n := range names {
		selected[n] = true
	}
	claims := map[string][]string{}
	states := map[string]StateHeader{}
	for _, y := range names {
		if y == "INBOX" || !present[Near][y] || present[Far][y] {
			continue
		}
		path, err := StatePath(spec, y)
		if err != nil {
			continue
		}
		h, err := LoadStateHeader(path)
		o := h.Owner
		if err != nil || h.Generation == 0 || h.FarValidity == 0 || o.Channel != spec.Name || o.FarStore != spec.Far.Name() ||
			o.FarMailbox == "" || o.FarMailbox == y || o.FarMailbox == "INBOX" {
			continue
		}
		x := o.FarMailbox
		if !selected[x] || !present[Far][x] || present[Near][x] {
			continue
		}
		if st := listed[Near][y]; st == nil || st.UIDValidity != h.NearValidity {
			continue
		}
		claims[x] = append(claims[x], y)
		states[y] = h
	}
	var found []nearRename
	for x, ys := range claims {
		// The folder's state fits the far mailbox of its recorded name.
		if len(ys) != 1 {
			continue
		}
		if st, ok := nearState(spec, ys[0]); ok && stateFits(ctx, spec, x, ys[0], states[ys[0]].FarValidity, st) {
			found = append(found, nearRename{x, ys[0]})
		}
	}
	for {
		found = belowMovesAlong(found, present[Far])
		// In an order the server can follow (see renameOrder; here by
		// names): A renamed here to Foo/A and Foo to Zed, A's RENAME to
		// Zed/A first would make Zed, and Foo's onto it would fail at every
		// run.
		slices.SortFunc(found, func(a, b nearRename) int { return compareMailboxes(a.from, b.from) })
		places := make([][2]string, len(found))
		for i, r := range found {
			places[i] = [2]string{r.from, r.to}
		}
		order := orderMoves(places, func(dir, p string) bool { return strings.HasPrefix(p, dir+"/") })
		out := make([]nearRename, len(order))
		for i, k := range order {
			out[i] = found[k]
		}
		if len(out) == len(found) {
			return out
		}
		found = out // dropping some can leave a parent's children behind: again
	}
}

// belowMovesAlong keeps the renames whose far mailboxes below the old name
// (present lists them all) are each renamed to the same place below the new
// one: the server's RENAME takes them along. Dropping one can make its
// parent's fail the test, so it runs until nothing changes.
func belowMovesAlong(found []nearRename, present map[string]bool) []nearRename {
	for changed := true; changed; {
		changed = false
		to := map[string]string{}
		for _, r := range found {
			to[r.from] = r.to
		}
		found = slices.DeleteFunc(found, func(r nearRename) bool {
			for c := range present {
				if rest, below := strings.CutPrefix(c, r.from+"/"); below && to[c] != r.to+"/"+rest {
					changed = true
					return true
				}
			}
			return false
		})
	}
	return found
}

// followNearRenames carries the renames findNearRenames returns to the far
// side: each far mailbox is renamed (one below a mailbox renamed before in
// this run moved along with it, on a server), the folder's state gets the
// new name in its owner lines, and present is updated, so the new name
// syncs as a pair. Its results are those of the names not to be synced in
// this run, as for followRenames; again lists the new names to sync even
// if a run of theirs started before the far listing (it ended refusing
// the state as another mailbox's).
func followNearRenames(ctx context.Context, spec ChannelSpec, opt RunOptions, names []string, present [2]map[string]bool,
	listed [2]map[string]*Status, wait func()) (out map[string]MailboxResult, again []string) {
	found := findNearRenames(ctx, spec, opt, names, present, listed)
	if len(found) == 0 {
		return nil, nil
	}
	wait()
	out = map[string]MailboxResult{}
	if opt.DryRun {
		for _, r := range found {
			out[r.from] = MailboxResult{Mailbox: r.from,
				Skipped: fmt.Sprintf("would be renamed to %s on the far side, as here (nothing copied)", r.to)}
			out[r.to] = MailboxResult{Mailbox: r.to,
				Skipped: fmt.Sprintf("would sync with the far mailbox %s, renamed to it (nothing copied)", r.from)}
		}
		return out, nil
	}
	rn := spec.Far.(MailboxRenamer)
	var done, failed, left []string // renamed, failed, not followed after all
	for _, r := range found {
		below := func(p string) bool { return strings.HasPrefix(r.from, p+"/") }
		var err error
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case slices.ContainsFunc(left, below):
			err = fmt.Errorf("its parent is not renamed: %w", ErrTaken)
		case slices.ContainsFunc(failed, below):
			err = errors.New("its parent could not be renamed")
		case slices.ContainsFunc(done, below) && movedAlong(ctx, spec, r.from):
		default:
			err = rn.RenameMailbox(ctx, r.from, r.to)
		}
		if errors.Is(err, ErrTaken) {
			// The server has the new name (a mailbox that cannot be
			// selected, which listings leave out): not carried, as if the
			// evidence were not clear. Failed, both names would fail at
			// every run.
			opt.Log.Info("folder renamed here, not carried to the far side: the new name is taken there", "mailbox", r.to, "from", r.from, "err", err)
			left = append(left, r.from)
			continue
		}
		if err != nil {
			renameFailed(ctx, out, r.from, r.to,
				fmt.Errorf("mailbox %s: renamed to %s here; renaming it on the far side too failed: %w", r.from, r.to, err),
				fmt.Errorf("mailbox %s: not synced: it is the folder of %s renamed here, whose far mailbox could not be renamed to it (the next run tries again)", r.to, r.from))
			failed = append(failed, r.from)
			continue
		}
		done = append(done, r.from)
		opt.Log.Warn("folder renamed here: the far mailbox is renamed too, and it syncs on under the new name",
			"mailbox", r.to, "from", r.from, Notice, true)
		rewriteOwner(spec, r.from, r.to, opt)
		out[r.from] = MailboxResult{Mailbox: r.from, Skipped: fmt.Sprintf("renamed to %s on the far side, as here", r.to)}
		delete(present[Far], r.from)
		present[Far][r.to] = true
		again = append(again, r.to)
	}
	return out, again
}

// movedAlong says whether the far mailbox name is gone: taken along by its
// parent's RENAME, as servers do.
func movedAlong(ctx context.Context, spec ChannelSpec, name string) bool {
	mb, err := spec.Far.OpenMailbox(ctx, name, true)
	if err == nil {
		mb.Close()
	}
	return errors.Is(err, ErrNoMailbox)
}
