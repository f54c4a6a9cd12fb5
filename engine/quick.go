package engine

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
)

// StatusLister is implemented by stores that can report the Status of many
// mailboxes in one go when ListMailboxes could not (an IMAP server without
// LIST-STATUS: pipelined STATUS commands). Mailboxes it cannot report are left
// out of the map.
type StatusLister interface {
	StatusAll(ctx context.Context, names []string) (map[string]Status, error)
}

// StatusThenLister is a StatusLister that can list the store's mailboxes in
// the same round trip as the statuses, asked after them (an IMAP store sends
// LIST right behind the pipelined STATUS commands). list is nil when only the
// listing failed: the caller then lists as usual.
type StatusThenLister interface {
	StatusLister
	StatusThenList(ctx context.Context, names []string) (st map[string]Status, list []MailboxInfo, err error)
}

// store returns the store of side s.
func (spec ChannelSpec) store(s Side) Store {
	if s == Near {
		return spec.Near
	}
	return spec.Far
}

// statusAll fills in listed[s] for the selected mailboxes present on both
// sides whose listing carried no status, where the store can tell them cheaply.
// Like LIST-STATUS, it is asked before anything is changed, so what it says is
// a valid "before" marker for deciding to leave a mailbox alone. Failing is not
// an error: those mailboxes are simply opened.
// Mailboxes in noStatus are not asked about (see statusFirst).
func statusAll(ctx context.Context, spec ChannelSpec, log *slog.Logger, names []string, present [2]map[string]bool, listed [2]map[string]*Status, noStatus map[string]bool) {
	for _, s := range []Side{Far, Near} {
		sl, ok := spec.store(s).(StatusLister)
		if !ok {
			continue
		}
		var need []string
		for _, n := range names {
			if present[Far][n] && present[Near][n] && listed[s][n] == nil && !noStatus[n] &&
				(s == Near || !nearChanged(spec, n, listed[Near][n])) {
				need = append(need, n)
			}
		}
		if len(need) == 0 {
			continue
		}
		got, err := sl.StatusAll(ctx, need)
		if err != nil {
			log.Debug("status of mailboxes not available; opening each", "store", spec.store(s).Name(), "err", err)
			continue
		}
		for n, st := range got {
			st := st
			listed[s][n] = &st
		}
	}
}

// quickUnchanged decides from the listing's statuses and the state file's
// header alone — without opening either mailbox or reading the pairs — that
// this pair has nothing to do: both stamps as recorded, the same
// UIDVALIDITYs, no journal to replay and no expunge pending.
func (b *boxRun) quickUnchanged(h StateHeader, opts Options) bool {
	if h.Generation == 0 {
		return false
	}
	for _, s := range []Side{Far, Near} {
		l := b.listed[s]
		rec, validity := h.Far, h.FarValidity
		if s == Near {
			rec, validity = h.Near, h.NearValidity
		}
		if l == nil || l.Stamp == "" || l.Stamp != rec.Stamp || validity == 0 || l.UIDValidity != validity {
			return false
		}
		// Deleted is -1 when the file does not say: then look.
		if opts.Expunge[s] && h.Deleted[s] != 0 {
			return false
		}
	}
	if _, err := os.Lstat(b.statePath + ".journal"); !errors.Is(err, os.ErrNotExist) {
		return false
	}
	return true
}

// nearChanged tells from the near listing and the state file's header (read
// without the pair's lock: only a hint) that the near side of mailbox name is
// not as the last run left it, so the pair will be opened in any case.
func nearChanged(spec ChannelSpec, name string, st *Status) bool {
	if st == nil || st.Stamp == "" {
		return false
	}
	path, err := StatePath(spec, name)
	if err != nil {
		return false
	}
	h, err := LoadStateHeader(path)
	if err != nil {
		return false
	}
	return h.Generation == 0 || h.Near.Stamp != st.Stamp || h.NearValidity != st.UIDValidity
}

// statusFirst asks a far store that reports statuses by STATUS for the status
// of the mailboxes the near side lists, before listing the far side itself.
// Why: Dovecot 2.3 answers the first STATUS of a session from its mailbox list
// index (8-13 ms on a 100 000-message mailbox) but takes 130-170 ms for a
// STATUS, or a LIST-STATUS, that follows a LIST (measured 2026-11-26). Asked
// before anything is changed, these are valid "before" markers like any other.
// It lists the near side (filling lists/listErr for it), the far side too
// when that is a StatusThenLister, and returns the statuses by side; it does
// nothing when both or neither side are StatusListers.
// Mailboxes it leaves out because their near side changed are put in noStatus.
func statusFirst(ctx context.Context, spec ChannelSpec, log *slog.Logger, lists *[2][]MailboxInfo, listErr *[2]error, noStatus map[string]bool) (early [2]map[string]Status) {
	sl, ok := spec.Far.(StatusLister)
	if !ok {
		return early
	}
	if _, both := spec.Near.(StatusLister); both {
		return early
	}
	lists[Near], listErr[Near] = spec.Near.ListMailboxes(ctx)
	if listErr[Near] != nil {
		return early
	}
	var names []string
	if spec.Mailboxes != nil {
		names = spec.Mailboxes
	} else {
		for _, mi := range lists[Near] {
			if spec.Match == nil || spec.Match(mi.Name) {
				names = append(names, mi.Name)
			}
		}
	}
	// A mailbox whose near side changed since the last run is opened whatever
	// the far side says: its far STATUS would cost the server (Dovecot: 25-225
	// ms on a 100 000-message mailbox just changed) and decide nothing.
	nearStatus := make(map[string]*Status, len(lists[Near]))
	for _, mi := range lists[Near] {
		nearStatus[mi.Name] = mi.Status
	}
	names = slices.DeleteFunc(names, func(n string) bool {
		if nearChanged(spec, n, nearStatus[n]) {
			noStatus[n] = true
			return true
		}
		return false
	})
	// Those mailboxes are opened for sure, several at once: their far
	// connections can log in while the STATUS below is answered.
	if w, ok := spec.Far.(Warmer); ok && len(noStatus) > 1 {
		w.WarmFor(ctx, min(len(noStatus), spec.parallelism()))
	}
	if len(names) == 0 {
		return early
	}
	var got map[string]Status
	var err error
	if stl, ok := sl.(StatusThenLister); ok {
		// The far listing rides along, still after the statuses: a round
		// trip (2 ms of a 45 ms no-op on loopback) less.
		var list []MailboxInfo
		got, list, err = stl.StatusThenList(ctx, names)
		if err == nil && list != nil {
			lists[Far] = list
		}
	} else {
		got, err = sl.StatusAll(ctx, names)
	}
	if err != nil {
		log.Debug("early status not available", "store", spec.Far.Name(), "err", err)
		return early
	}
	early[Far] = got
	return early
}
