package imap

import (
	"cmp"
	"context"
	"slices"

	"github.com/emersion/go-imap/v2"

	"github.com/quixysync/quixysync/engine"
)

// Describe is engine.Describer: UID FETCH (UID FLAGS RFC822.SIZE
// INTERNALDATE) of uids, a chunk at a time (there are few: copies left
// unfinished). Messages expunged meanwhile are simply not answered.
func (m *Mailbox) Describe(ctx context.Context, uids []engine.UID) ([]engine.Message, error) {
	chunks := uidChunks(uids)
	if len(chunks) == 0 {
		return nil, nil
	}
	cn, err := m.conn(ctx)
	if err != nil {
		return nil, err
	}
	var out []engine.Message
	err = cn.run(ctx, "UID FETCH", func() error {
		for _, set := range chunks {
			err := expungeIssuedOK(collectList(cn.c.Fetch(set, listItems), func(msg engine.Message, _ uint64, flags bool) {
				// Without FLAGS it would read as a message without flags.
				if flags && set.Contains(imap.UID(msg.UID)) {
					out = append(out, msg)
				}
			}))
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, m.errorf("describing %d messages: %w", len(uids), err)
	}
	slices.SortFunc(out, func(a, b engine.Message) int { return cmp.Compare(a.UID, b.UID) })
	return slices.CompactFunc(out, func(a, b engine.Message) bool { return a.UID == b.UID }), nil
}
