package imap

import (
	"bytes"
	"context"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/quixysync/quixysync/engine"
)

// maxIdentifyHeader bounds what is kept of the Message-ID field a server
// returns for one message; a longer answer is read and dropped past it.
const maxIdentifyHeader = 64 << 10

// Date and Subject tell apart messages that share a Message-ID; X-TUID comes
// along because mbsync adds one to every message it copies: the engine
// leaves its length out of the size it compares.
var identifyItems = &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{
	Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID", "Date", "Subject", "X-TUID"}, Peek: true,
}}}

// Identify streams the Message-ID, Date, Subject and X-TUID fields and
// RFC822.SIZE (the size in CRLF form) of uids: one UID FETCH per chunk,
// without bodies (engine.Identifier). A first sync of a mailbox both sides hold reads this
// instead of every message.
//
// Messages of a chunk left unanswered are asked for once more, and those
// still unanswered that exist are an error: go-imap
// hands an unsolicited FETCH (another client's flag change, which a server
// may send ahead of our answer) to the pending command as that message's
// reply and drops the real one, and a message not identified would be
// copied to a side that holds it already.
func (m *Mailbox) Identify(ctx context.Context, uids []engine.UID, fn func(uid engine.UID, header io.Reader, crlfSize int64) error) error {
	answered := map[imap.UID]bool{}
	for _, set := range uidChunks(uids) {
		clear(answered)
		if err := m.identify(ctx, set, fn, answered); err != nil {
			return err
		}
		var again imap.UIDSet
		for _, r := range set {
			for u := r.Start; ; u++ {
				if !answered[u] {
					again.AddNum(u)
				}
				if u == r.Stop {
					break
				}
			}
		}
		if len(again) == 0 {
			continue
		}
		if err := m.identify(ctx, again, fn, answered); err != nil {
			return err
		}
		// Still unanswered: gone ones are skipped; one still there is
		// an error rather than a message taken for one the other side
		// lacks.
		var left []engine.UID
		for _, r := range again {
			for u := r.Start; ; u++ {
				if !answered[u] {
					left = append(left, engine.UID(u))
				}
				if u == r.Stop {
					break
				}
			}
		}
		if len(left) == 0 {
			continue
		}
		cn, err := m.conn(ctx)
		if err != nil {
			return err
		}
		still, err := m.existing(ctx, cn, left)
		if err != nil {
			return err
		}
		if len(still) > 0 {
			return m.errorf("server did not identify %d existing message(s) (UIDs %v)", len(still), truncUIDs(still))
		}
	}
	return nil
}

// identify is one UID FETCH of Identify; answered gets each UID handed to fn.
func (m *Mailbox) identify(ctx context.Context, set imap.UIDSet, fn func(uid engine.UID, header io.Reader, crlfSize int64) error, answered map[imap.UID]bool) error {
	var hdr bytes.Buffer
	cn, err := m.conn(ctx)
	if err != nil {
		return err
	}
	return cn.run(ctx, "UID FETCH (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE SUBJECT X-TUID)])", func() error {
		cmd := cn.c.Fetch(set, identifyItems)
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			// The items come in the server's order: the field is kept
			// until the UID and size are known.
			var uid imap.UID
			size := int64(-1)
			hdr.Reset()
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch it := item.(type) {
				case imapclient.FetchItemDataUID:
					uid = it.UID
				case imapclient.FetchItemDataRFC822Size:
					size = it.Size
				case imapclient.FetchItemDataBodySection:
					if it.Literal == nil {
						continue
					}
					if _, err := io.Copy(&hdr, io.LimitReader(it.Literal, maxIdentifyHeader)); err != nil {
						return err
					}
					if _, err := io.Copy(io.Discard, it.Literal); err != nil {
						return err
					}
				}
			}
			if uid == 0 || size < 0 || answered[uid] || !set.Contains(uid) {
				continue
			}
			answered[uid] = true
			if err := fn(engine.UID(uid), bytes.NewReader(hdr.Bytes()), size); err != nil {
				cn.markBroken()
				_ = cmd.Close()
				return callbackErr{err}
			}
		}
		return expungeIssuedOK(cmd.Close())
	})
}
