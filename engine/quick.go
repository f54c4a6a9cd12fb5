package engine

import (
	"context"
	"errors"
	"log/slog"
	"os"
)

// StatusLister is implemented by stores that can report the Status of many
// mailboxes in one go when ListMailboxes could not (an IMAP server without
// LIST-STATUS: pipelined STATUS commands). Mailboxes it cannot report are left
// out of the map.
type StatusLister interface {
	StatusAll(ctx context.Context, names []string) (map[string]Status, error)
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
func statusAll(ctx context.Context, spec ChannelSpec, log *slog.Logger, names []string, present [2]map[string]bool, listed [2]map[string]*Status) {
	for _, s := range []Side{Far, Near} {
		sl, ok := spec.store(s).(StatusLister)
		if !ok {
			continue
		}
		var need []string
		for _, n := range names {
			if present[Far][n] && present[Near][n] && listed[s][n] == nil {
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
