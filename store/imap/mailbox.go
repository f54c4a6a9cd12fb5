package imap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/quixysync/quixysync/engine"
)

// Mailbox is an open (SELECTed or EXAMINEd) IMAP mailbox. It owns one pooled
// connection until Close.
type Mailbox struct {
	s        *Store
	cn       *conn
	name     string
	wire     string
	readOnly bool
	st       engine.Status
	caps     imap.CapSet
	// touched: UIDs whose flags were changed through this Mailbox (see
	// splitRemoval; recorded with CONDSTORE only).
	touched map[imap.UID]bool
	// condstore: the server has CONDSTORE and the mailbox has mod-sequences
	// (no NOMODSEQ).
	condstore bool
	// permFlags (PERMANENTFLAGS of the last SELECT) is read by APPENDs on
	// extra connections while the own one may reconnect and select again.
	permFlags atomic.Pointer[[]imap.Flag]
	closed    bool
	crlf      crlfCopier // Stage's, reused from message to message
	// spool is the file Stage appends to until every message in it is
	// committed or discarded (see spoolFile).
	spoolMu sync.Mutex
	spool   *spoolFile
	// uidsBelow, when > 1, asks the next List to send UID SEARCH for the
	// UIDs below it along with its FETCHes; uids holds the answer for UIDs.
	uidsBelow engine.UID
	uids      *prefetchedUIDs
	// ahead is the listing OpenMailboxListing sent behind the SELECT, not
	// yet read: List answers from it, anything else reads and drops it
	// first (settleAhead).
	ahead *listCall
	// limit is the mailbox's own APPENDLIMIT, asked once (limitAsked) where
	// the server's capability comes without a value (see appendLimit).
	limitMu    sync.Mutex
	limitAsked bool
	limit      *uint32
}

// prefetchedUIDs is what a UID SEARCH sent with List answered.
type prefetchedUIDs struct {
	below engine.UID
	uids  []engine.UID
}

var (
	_ engine.Mailbox       = (*Mailbox)(nil)
	_ engine.UIDPrefetcher = (*Mailbox)(nil)
	_ engine.Identifier    = (*Mailbox)(nil)
)

// PrefetchUIDs is engine.UIDPrefetcher: the next incremental List also asks
// for the UIDs below below, pipelined with its FETCHes, and UIDs(below)
// then answers from that without a round trip of its own.
func (m *Mailbox) PrefetchUIDs(below engine.UID) { m.uidsBelow = below }

// OpenMailbox SELECTs (or EXAMINEs, readOnly) a mailbox on a connection of
// its own.
func (s *Store) OpenMailbox(ctx context.Context, name string, readOnly bool) (engine.Mailbox, error) {
	return s.open(ctx, name, readOnly, nil)
}

// OpenMailboxListing is engine.ListAheadOpener: OpenMailbox with the
// listing's FETCHes (and UID SEARCH) written right behind the SELECT. Over a
// network that is a round trip less for every mailbox opened to be listed.
func (s *Store) OpenMailboxListing(ctx context.Context, name string, readOnly bool, ahead engine.ListAhead) (engine.Mailbox, error) {
	return s.open(ctx, name, readOnly, &ahead)
}

func (s *Store) open(ctx context.Context, name string, readOnly bool, ahead *engine.ListAhead) (engine.Mailbox, error) {
	// The connection first: a mailbox can be opened before anything else
	// (the engine starts some before the listing), and the name's wire form
	// needs the hierarchy delimiter, which a connection learns at login.
	cn, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	wire, err := s.wireName(ctx, name)
	if err != nil {
		s.put(cn)
		return nil, err
	}
	m := &Mailbox{s: s, name: name, wire: wire, readOnly: readOnly}
	if ahead != nil && (!cn.caps.Has(imap.CapCondStore) || ahead.From <= 1 || ahead.ChangedSince == 0) {
		ahead = nil // not an incremental listing this server can answer
	}
	st, err := m.selectOn(ctx, cn, ahead)
	if err != nil {
		s.put(cn)
		return nil, err
	}
	m.cn, m.st = cn, st
	return m, nil
}

// settleAhead reads and drops a listing sent ahead that List did not take,
// so that no command of it is pending when others are sent (go-imap routes
// FETCH answers by UID to any pending FETCH that covers it).
func (m *Mailbox) settleAhead(ctx context.Context) {
	a := m.ahead
	if a == nil {
		return
	}
	m.ahead = nil
	if m.cn == nil || m.cn.isClosed() {
		return
	}
	_ = m.cn.run(ctx, "UID FETCH", func() error {
		_, _, err := a.collect()
		return err
	})
}

func (m *Mailbox) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: mailbox %q: %w", m.s.cfg.Name, m.name, fmt.Errorf(format, args...))
}

// selectOn selects the mailbox on cn. A refusal with [ALREADYEXISTS] is
// asked once more: Dovecot gives it to a SELECT that met another session
// creating the mailbox at the same moment (a new account's INBOX, made on
// first use, at the first run's parallel connections); a SELECT creates
// nothing of its own, so the second one finds the mailbox.
func (m *Mailbox) selectOn(ctx context.Context, cn *conn, ahead *engine.ListAhead) (engine.Status, error) {
	st, err := m.selectOnce(ctx, cn, ahead)
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Code == imap.ResponseCodeAlreadyExists && !cn.broken {
		m.s.log.Debug("SELECT refused with ALREADYEXISTS; selecting again", "mailbox", m.name)
		st, err = m.selectOnce(ctx, cn, ahead)
	}
	return st, err
}

func (m *Mailbox) selectOnce(ctx context.Context, cn *conn, ahead *engine.ListAhead) (engine.Status, error) {
	s := m.s
	opts := &imap.SelectOptions{ReadOnly: m.readOnly, CondStore: cn.caps.Has(imap.CapCondStore)}
	verb := "SELECT"
	if m.readOnly {
		verb = "EXAMINE"
	}
	var d *imap.SelectData
	var lc *listCall
	err := cn.run(ctx, verb+" "+m.name, func() error {
		if cn.wc != nil {
			cn.wc.permEmpty.Store(false)
		}
		cmd := cn.c.Select(m.wire, opts)
		if ahead != nil {
			lc = m.sendList(cn, engine.ListQuery{From: ahead.From, ChangedSince: ahead.ChangedSince}, false, ahead.UIDsBelow)
		}
		var err error
		d, err = cmd.Wait()
		if err == nil {
			cn.selected = d.NumMessages
		}
		if lc != nil && (err != nil || d.UIDValidity != ahead.UIDValidity || d.HighestModSeq == 0) {
			// Not the mailbox it was asked for (or none): read the answers
			// (refusals, or another mailbox's) and drop them.
			lc.collect()
			lc = nil
		}
		return err
	})
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			if ie.Code == imap.ResponseCodeNonExistent {
				return engine.Status{}, m.errorf("%w (server said: %s)", engine.ErrNoMailbox, ie.Text)
			}
			if found, sel, lerr := s.exists(ctx, cn, m.wire); lerr == nil && (!found || !sel) {
				return engine.Status{}, m.errorf("%w (server said: %s)", engine.ErrNoMailbox, ie.Text)
			}
		}
		return engine.Status{}, err
	}
	if d.UIDValidity == 0 {
		// RFC 3501 requires it. Taken as 0 it would read as a changed
		// UIDVALIDITY against a state (a re-pairing of the whole mailbox),
		// and recorded, it would hide a real change later (as mbsync,
		// refuse).
		if lc != nil {
			_ = cn.run(ctx, "UID FETCH", func() error { _, _, err := lc.collect(); return err })
		}
		return engine.Status{}, m.errorf("the server's %s answer has no UIDVALIDITY (RFC 3501 requires one): without it no state can tell this mailbox's messages from another's; not synced", verb)
	}
	st := engine.Status{UIDValidity: d.UIDValidity, UIDNext: engine.UID(d.UIDNext),
		Messages: int64(d.NumMessages), HighestModSeq: d.HighestModSeq}
	if st.UIDNext == 0 {
		if lc != nil {
			// Its FETCH below would share answers with the pending ones.
			_ = cn.run(ctx, "UID FETCH", func() error { _, _, err := lc.collect(); return err })
			lc = nil
		}
		if st.UIDNext, err = m.lastUIDPlusOne(ctx, cn, d.NumMessages); err != nil {
			return engine.Status{}, err
		}
		st.UIDNextGuessed = true
	}
	m.caps = cn.caps
	m.condstore = opts.CondStore && d.HighestModSeq > 0
	m.ahead = lc
	perm := d.PermanentFlags
	if perm == nil && !m.readOnly && cn.wc != nil && cn.wc.permEmpty.Load() {
		// "PERMANENTFLAGS ()" to a SELECT, which go-imap does not tell
		// from none: no flag is kept (a read-only mailbox, a folder
		// shared with read rights only). Taken for "all kept", every
		// flag set in the Maildir was STOREd, ignored by the server,
		// and then taken for one removed on the server: gone from the
		// Maildir too. (An EXAMINE, which writes nothing, is answered
		// so everywhere: it says nothing about the mailbox.)
		perm = []imap.Flag{}
	}
	m.permFlags.Store(&perm)
	if m.condstore {
		st.Stamp = stamp(st)
	}
	return st, nil
}

// lastUIDPlusOne stands in for a missing UIDNEXT: UID FETCH * (UID) + 1.
func (m *Mailbox) lastUIDPlusOne(ctx context.Context, cn *conn, exists uint32) (engine.UID, error) {
	if exists == 0 {
		return 1, nil
	}
	var last imap.UID
	// The last message by its number, not as "*": go-imap hands a FETCH
	// reply to the command whose set contains the reply's number, and
	// "*" contains none, so the reply was dropped and UIDNEXT taken as 1.
	err := cn.run(ctx, "FETCH (UID) of the last message", func() error {
		cmd := cn.c.Fetch(imap.SeqSet{imap.SeqRange{Start: exists, Stop: exists}}, &imap.FetchOptions{UID: true})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			b, err := msg.Collect()
			if err == nil && b.UID > last {
				last = b.UID
			}
		}
		return cmd.Close()
	})
	return engine.UID(last + 1), err
}

// conn returns the mailbox's connection, reconnecting (and re-selecting,
// checking UIDVALIDITY) when the previous one broke.
func (m *Mailbox) conn(ctx context.Context) (*conn, error) {
	if m.closed {
		return nil, m.errorf("mailbox is closed")
	}
	m.settleAhead(ctx)
	if m.cn != nil && !m.cn.isClosed() {
		return m.cn, nil
	}
	if m.cn != nil {
		m.s.put(m.cn)
		m.cn = nil
	}
	cn, err := m.s.get(ctx)
	if err != nil {
		return nil, err
	}
	st, err := m.selectOn(ctx, cn, nil)
	if err != nil {
		m.s.put(cn)
		return nil, err
	}
	if st.UIDValidity != m.st.UIDValidity {
		m.s.put(cn)
		return nil, m.errorf("reconnected: UIDVALIDITY %d, was %d: %w", st.UIDValidity, m.st.UIDValidity, engine.ErrValidity)
	}
	m.cn = cn
	return cn, nil
}

// Status as seen by SELECT when the mailbox was opened.
func (m *Mailbox) Status() engine.Status { return m.st }

var listItems = &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, InternalDate: true}

// List reports messages. Without CONDSTORE (or with q.All) it lists every
// message and says complete = true.
func (m *Mailbox) List(ctx context.Context, q engine.ListQuery) ([]engine.Message, bool, error) {
	below := m.uidsBelow
	m.uidsBelow, m.uids = 0, nil
	all := q.All || !m.condstore
	if a := m.ahead; a != nil && !all && a.from == max(q.From, 1) && a.changedSince == q.ChangedSince && (below <= 1 || a.below == below) &&
		!m.closed && m.cn != nil && !m.cn.isClosed() {
		// Sent behind the SELECT (OpenMailboxListing): its answers are in.
		m.ahead = nil
		var out []engine.Message
		var found []engine.UID
		err := m.cn.run(ctx, "UID FETCH", func() error {
			var err error
			out, found, err = a.collect()
			return err
		})
		if err == nil {
			if a.below > 1 {
				m.uids = &prefetchedUIDs{below: a.below, uids: found}
			}
			return out, false, m.fillDetails(ctx, out, a.from, a.noFlags)
		}
		var ie *imap.Error
		if !errors.As(err, &ie) {
			return nil, false, err
		}
		// Refused (a server without CHANGEDSINCE after all): ask again.
	}
	cn, err := m.conn(ctx)
	if err != nil {
		return nil, false, err
	}
	if all {
		below = 0
	}
	var out []engine.Message
	var found []engine.UID
	var exists uint32
	var lc *listCall
	err = cn.run(ctx, "UID FETCH", func() error {
		var err error
		// The count before the command as well as after it: another
		// client's expunge during the listing lowers the count after,
		// and a listing that left out a message would then match it.
		// (Before: the SELECT's own count too, in case go-imap has not
		// recorded the mailbox yet; one seen higher than now only costs
		// the check below.)
		exists = cn.selected
		if sel := cn.c.Mailbox(); sel != nil {
			exists = max(exists, sel.NumMessages)
		}
		lc = m.sendList(cn, q, all, below)
		out, found, err = lc.collect()
		if sel := cn.c.Mailbox(); sel != nil {
			exists = max(exists, sel.NumMessages) // as of the tagged answer
		}
		return err
	})
	if err != nil {
		return nil, false, err
	}
	if below > 1 {
		m.uids = &prefetchedUIDs{below: below, uids: found}
	}
	from := max(q.From, 1)
	if all {
		from = 1
		if int64(len(out)) < int64(exists) {
			if out, err = m.completeListing(ctx, out); err != nil {
				return nil, false, err
			}
		}
	}
	return out, all, m.fillDetails(ctx, out, from, lc.noFlags)
}

// completeListing is a full listing that holds fewer messages than the
// mailbox had when it began or has now,
// checked: the engine takes a message missing from a complete
// listing for one removed, and removes its copy on the other side. A FETCH
// answer go-imap could not route (one without UID) is dropped, and a server
// may leave out a message it cannot read. The UIDs the server has are
// asked for; those missing are described again, and one still not answered
// fails the listing. (The count also counts messages that arrived after the
// server read "1:*": those are added.)
func (m *Mailbox) completeListing(ctx context.Context, out []engine.Message) ([]engine.Message, error) {
	cn, err := m.conn(ctx)
	if err != nil {
		return nil, err
	}
	have, err := m.search(ctx, cn, imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, 0)
	if err != nil {
		return nil, err
	}
	listed := make(map[engine.UID]bool, len(out))
	for _, msg := range out {
		listed[msg.UID] = true
	}
	var missing []engine.UID
	for _, u := range have {
		if !listed[u] {
			missing = append(missing, u)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	m.s.log.Debug("asking again for messages a full listing left out", "mailbox", m.name, "count", len(missing))
	got, err := m.Describe(ctx, missing)
	if err != nil {
		return nil, err
	}
	if len(got) < len(missing) {
		// Gone meanwhile, or never answered: only the server can tell.
		still, err := m.existing(ctx, cn, missing)
		if err != nil {
			return nil, err
		}
		described := make(map[engine.UID]bool, len(got))
		for _, g := range got {
			described[g.UID] = true
		}
		var lost []engine.UID
		for _, u := range still {
			if !described[u] {
				lost = append(lost, u)
			}
		}
		if len(lost) > 0 {
			return nil, m.errorf("the server's listing leaves out %d existing message(s) (UIDs %v): not taken for removed ones", len(lost), truncUIDs(lost))
		}
	}
	out = append(out, got...)
	slices.SortFunc(out, func(a, b engine.Message) int { return cmp.Compare(a.UID, b.UID) })
	return slices.CompactFunc(out, func(a, b engine.Message) bool { return a.UID == b.UID }), nil
}

// fillDetails asks once more for the size and arrival date of the messages
// from `from` on (out is sorted by UID) that the listing reported without
// them, and for the flags of those it reported without FLAGS (noFlags).
// go-imap hands an unsolicited FETCH (another client's flag change,
// which a server may send ahead of our answer) to the pending command as
// that message's reply and drops the real one; the message would then be
// copied without its arrival date and escape max_size. One without FLAGS
// (a MODSEQ alone) would read as a message without flags: the engine would
// take every flag off its copy on the other side. Flags not learnt this
// way fail the listing: left out, a change below `from` would be missed
// for good (the next run asks for changes since this run's start).
func (m *Mailbox) fillDetails(ctx context.Context, out []engine.Message, from engine.UID, noFlags []engine.UID) error {
	var want []engine.UID
	for _, msg := range out {
		if msg.UID >= from && msg.Size < 0 {
			want = append(want, msg.UID)
		}
	}
	want = append(want, noFlags...)
	if len(want) == 0 {
		return nil
	}
	m.s.log.Debug("asking again for messages a listing answered without size and date", "mailbox", m.name, "count", len(want))
	got, err := m.Describe(ctx, want)
	if err != nil {
		return err
	}
	described := make(map[engine.UID]bool, len(got))
	for _, g := range got {
		i, ok := slices.BinarySearchFunc(out, g.UID, func(msg engine.Message, u engine.UID) int { return cmp.Compare(msg.UID, u) })
		if ok && g.Size >= 0 {
			out[i] = g
			described[g.UID] = true
		}
	}
	for _, u := range noFlags {
		if !described[u] {
			return m.errorf("the server listed UID %d without its flags, and did not tell them when asked again", u)
		}
	}
	return nil
}

// listCall is a listing's commands, sent and not yet read.
type listCall struct {
	from         engine.UID
	changedSince uint64
	below        engine.UID
	chCmd        *imapclient.FetchCommand
	newCmd       *imapclient.FetchCommand
	searched     func() ([]engine.UID, error)
	// noFlags: the UIDs collect read an answer without FLAGS for.
	noFlags []engine.UID
}

// sendList sends the FETCHes of a listing (and, with below > 1 on an
// incremental one, the UID SEARCH for the UIDs below below) without reading
// any answer. It must be called inside cn.run.
func (m *Mailbox) sendList(cn *conn, q engine.ListQuery, all bool, below engine.UID) *listCall {
	from := max(q.From, 1)
	if all {
		from = 1
	}
	lc := &listCall{from: from}
	// Pipelined: the sets are disjoint, so go-imap routes each FETCH
	// response to its command by UID. The new range ends at the highest
	// possible UID rather than "*": "n:*" also returns the highest message
	// when its UID is below n (RFC 3501 §6.4.8), and go-imap would route
	// that reply to the CHANGEDSINCE command, whose own reply for the
	// same message would then be dropped as a duplicate.
	if !all && q.ChangedSince > 0 && from > 1 {
		lc.changedSince = q.ChangedSince
		lc.chCmd = cn.c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: imap.UID(from - 1)}},
			&imap.FetchOptions{UID: true, Flags: true, ChangedSince: q.ChangedSince})
	}
	newSet := imap.UIDSet{imap.UIDRange{Start: imap.UID(from), Stop: 0}}
	if from > 1 {
		newSet = imap.UIDSet{imap.UIDRange{Start: imap.UID(from), Stop: math.MaxUint32}}
	}
	lc.newCmd = cn.c.Fetch(newSet, listItems)
	// Sent before any reply is read: the removals are then known one
	// round trip sooner (the UID set is disjoint from the new range).
	if !all && below > 1 {
		lc.below = below
		lc.searched = m.startSearch(cn, imap.UIDSet{imap.UIDRange{Start: 1, Stop: imap.UID(below - 1)}}, below)
	}
	return lc
}

// collect reads the answers to sendList's commands: the messages by UID
// order and the UIDs the SEARCH found. It must be called inside cn.run.
func (lc *listCall) collect() ([]engine.Message, []engine.UID, error) {
	from := lc.from
	byUID := map[engine.UID]engine.Message{}
	// Both drained at once: a server may answer pipelined commands
	// interleaved (Dovecot runs FETCHes in parallel), and go-imap's reader
	// stops once one command's unread replies fill its buffer (128): then
	// the other command never completes either.
	changed := map[engine.UID]engine.Message{}
	var chNoFlags []engine.UID
	var chErr error
	var wg sync.WaitGroup
	if lc.chCmd != nil {
		wg.Go(func() {
			chErr = collectList(lc.chCmd, func(msg engine.Message, modseq uint64, flags bool) {
				// Every reply to CHANGEDSINCE carries MODSEQ; one without it
				// is not an answer to this command.
				if modseq > 0 && msg.UID < from {
					changed[msg.UID] = msg
					if !flags {
						chNoFlags = append(chNoFlags, msg.UID)
					}
				}
			})
		})
	}
	var newNoFlags []engine.UID
	newErr := collectList(lc.newCmd, func(msg engine.Message, _ uint64, flags bool) {
		if msg.UID >= from {
			byUID[msg.UID] = msg
			if !flags {
				newNoFlags = append(newNoFlags, msg.UID)
			}
		}
	})
	wg.Wait()
	lc.noFlags = append(chNoFlags, newNoFlags...)
	maps.Copy(byUID, changed)
	var found []engine.UID
	var searchErr error
	if lc.searched != nil {
		found, searchErr = lc.searched()
	}
	if err := errors.Join(chErr, newErr, searchErr); err != nil {
		return nil, nil, err
	}
	out := make([]engine.Message, 0, len(byUID))
	for _, msg := range byUID {
		out = append(out, msg)
	}
	slices.SortFunc(out, func(a, b engine.Message) int { return int(a.UID) - int(b.UID) })
	return out, found, nil
}

// collectList reads a listing FETCH's answers; flags says the answer had
// FLAGS (go-imap reads "FLAGS ()" and none alike).
func collectList(cmd *imapclient.FetchCommand, fn func(msg engine.Message, modseq uint64, flags bool)) error {
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		var b imapclient.FetchMessageBuffer
		flags := false
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				b.UID = it.UID
			case imapclient.FetchItemDataFlags:
				b.Flags, flags = it.Flags, true
			case imapclient.FetchItemDataRFC822Size:
				b.RFC822Size = it.Size
			case imapclient.FetchItemDataInternalDate:
				b.InternalDate = it.Time
			case imapclient.FetchItemDataModSeq:
				b.ModSeq = it.ModSeq
			case imapclient.FetchItemDataBodySection:
				if it.Literal != nil {
					if _, err := io.Copy(io.Discard, it.Literal); err != nil {
						return errors.Join(err, cmd.Close())
					}
				}
			}
		}
		if b.UID == 0 {
			continue
		}
		em := engine.Message{UID: engine.UID(b.UID), Flags: fromIMAPFlags(b.Flags), Size: -1, Date: b.InternalDate}
		if b.RFC822Size > 0 || !b.InternalDate.IsZero() {
			em.Size, em.SizeIsCRLF = b.RFC822Size, true
		}
		fn(em, b.ModSeq, flags)
	}
	return cmd.Close()
}

// UIDs returns the existing UIDs below `below`, ascending.
func (m *Mailbox) UIDs(ctx context.Context, below engine.UID) ([]engine.UID, error) {
	if below <= 1 {
		return nil, nil
	}
	if p := m.uids; p != nil && p.below == below {
		m.uids = nil
		return p.uids, nil
	}
	cn, err := m.conn(ctx)
	if err != nil {
		return nil, err
	}
	if p := m.uids; p != nil && p.below > 1 && p.below < below {
		// Prefetched up to a lower bound (the engine asks further when a
		// UID the last run copied is missing from the listing): only the
		// rest is asked for, not every UID of the mailbox again.
		m.uids = nil
		more, err := m.search(ctx, cn, imap.UIDSet{imap.UIDRange{Start: imap.UID(p.below), Stop: imap.UID(below - 1)}}, below)
		if err != nil {
			return nil, err
		}
		return append(slices.Clip(p.uids), more...), nil
	}
	return m.search(ctx, cn, imap.UIDSet{imap.UIDRange{Start: 1, Stop: imap.UID(below - 1)}}, below)
}

// existing returns which of uids the mailbox still has (a UID SEARCH per
// chunk): a message not answered is told apart from one gone this way.
func (m *Mailbox) existing(ctx context.Context, cn *conn, uids []engine.UID) ([]engine.UID, error) {
	var out []engine.UID
	for _, set := range uidChunks(uids) {
		found, err := m.search(ctx, cn, set, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
	}
	return out, nil
}

func (m *Mailbox) search(ctx context.Context, cn *conn, set imap.UIDSet, below engine.UID) ([]engine.UID, error) {
	var out []engine.UID
	err := cn.run(ctx, "UID SEARCH", func() error {
		var err error
		out, err = m.startSearch(cn, set, below)()
		return err
	})
	return out, err
}

// startSearch sends UID SEARCH for the UIDs in set; the returned function
// waits for the answer: the existing UIDs (below below when it is not 0),
// ascending. It must be called inside cn.run.
func (m *Mailbox) startSearch(cn *conn, set imap.UIDSet, below engine.UID) func() ([]engine.UID, error) {
	crit := &imap.SearchCriteria{UID: []imap.UIDSet{set}}
	var opts *imap.SearchOptions
	if cn.caps.Has(imap.CapESearch) {
		opts = &imap.SearchOptions{ReturnAll: true}
	}
	cmd := cn.c.UIDSearch(crit, opts)
	return func() ([]engine.UID, error) {
		d, err := cmd.Wait()
		if err != nil {
			return nil, err
		}
		return searchUIDs(d.All, below)
	}
}

// maxSearchUIDs bounds the UIDs a SEARCH answer may expand to: a range such
// as 1:4294967295 from a broken server must be an error, not 16 GiB.
const maxSearchUIDs = 1 << 24

// searchUIDs lists the UIDs of a SEARCH answer below below (0: all), sorted
// and without duplicates. It counts before it allocates: an ESEARCH answer
// for 100 000 messages is a few ranges, and a slice grown to 100 000 UIDs
// cost more (fresh memory, collections) than the rest of the listing.
func searchUIDs(all imap.NumSet, below engine.UID) ([]engine.UID, error) {
	if all == nil {
		return nil, nil
	}
	set, ok := all.(imap.UIDSet)
	if !ok {
		return nil, fmt.Errorf("UID SEARCH answered with sequence numbers, not UIDs")
	}
	n := 0
	for _, r := range set {
		// Name the range, not the set: an answer can hold thousands. go-imap
		// refuses "*" while parsing; AllUIDs would panic on it.
		if r.Start == 0 || r.Stop == 0 {
			return nil, fmt.Errorf("UID SEARCH answer holds %v: \"*\" is not a UID", imap.UIDSet{r})
		}
		if lo, hi := searchRange(r, below); hi >= lo {
			n += int(hi-lo) + 1
		}
		if n > maxSearchUIDs {
			return nil, fmt.Errorf("UID SEARCH answer holds more than %d UIDs (up to %v)", maxSearchUIDs, imap.UIDSet{r})
		}
	}
	out := make([]engine.UID, 0, n)
	for _, r := range set {
		lo, hi := searchRange(r, below)
		for u := uint64(lo); u <= uint64(hi); u++ { // uint64: hi may be the largest UID
			out = append(out, engine.UID(u))
		}
	}
	if !slices.IsSorted(out) {
		slices.Sort(out)
	}
	return slices.Compact(out), nil
}

// searchRange is r as lowest and highest UID below below (0: no bound);
// hi < lo when none is.
func searchRange(r imap.UIDRange, below engine.UID) (lo, hi engine.UID) {
	lo, hi = engine.UID(min(r.Start, r.Stop)), engine.UID(max(r.Start, r.Stop))
	if below != 0 {
		hi = min(hi, below-1)
	}
	return lo, hi
}

// Fetch streams message bodies (BODY.PEEK[], CRLF converted to LF) to fn.
// UID sets are chunked. UIDs the server does not return are checked: gone
// ones are skipped, existing ones are an error (a server that sends the UID
// after the body makes go-imap misroute the message, golibs §1.4).
func (m *Mailbox) Fetch(ctx context.Context, uids []engine.UID, fn func(uid engine.UID, r io.Reader) error) error {
	chunks := uidChunks(uids)
	if len(chunks) == 0 {
		return nil
	}
	want := map[engine.UID]bool{}
	for _, u := range uids {
		if u > 0 {
			want[u] = true
		}
	}
	got := map[engine.UID]bool{}
	opts := &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
	conv := newCRLFToLF(nil)
	fetchChunks := func(chunks []imap.UIDSet) error {
		for _, set := range chunks {
			cn, err := m.conn(ctx)
			if err != nil {
				return err
			}
			err = cn.run(ctx, "UID FETCH BODY.PEEK[]", func() error {
				cmd := cn.c.Fetch(set, opts)
				for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
					var uid imap.UID
					for item := msg.Next(); item != nil; item = msg.Next() {
						switch it := item.(type) {
						case imapclient.FetchItemDataUID:
							uid = it.UID
						case imapclient.FetchItemDataBodySection:
							if it.Literal == nil {
								continue
							}
							u := engine.UID(uid)
							if uid == 0 || !want[u] || got[u] || !isWholeBody(it.Section) {
								if _, err := io.Copy(io.Discard, it.Literal); err != nil {
									return err // see literalLatch: never read it again
								}
								continue
							}
							got[u] = true
							lit := &literalLatch{r: it.Literal, left: it.Literal.Size()}
							if err := fn(u, conv.reset(lit)); err != nil {
								// Draining the rest of the chunk could mean
								// downloading many messages for nothing: drop
								// the connection instead (it is redialled).
								cn.markBroken()
								lit.settle(cn.c)
								_ = cmd.Close() // drains fast: the socket is closed
								return callbackErr{err}
							}
							if _, err := io.Copy(io.Discard, lit); err != nil {
								return err
							}
						}
					}
				}
				// A NO is the answer without some of the messages: gone
				// ones above all (RFC 5530's [EXPUNGEISSUED], or a plain NO
				// as some servers send). Which of those still exist is
				// checked below, as for any message not answered.
				err := cmd.Close()
				var ie *imap.Error
				if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo {
					m.s.log.Debug("UID FETCH of bodies refused; the messages not returned are checked", "mailbox", m.name, "err", err)
					return nil
				}
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := fetchChunks(chunks); err != nil {
		return err
	}
	// A message not answered either is gone (skipped) or still there. One
	// still there is asked for once more: go-imap gives each UID of a UID
	// FETCH the first FETCH response naming it, so an unsolicited one (a
	// flag another client set, sent ahead of our answers) takes its place
	// and the body behind it is dropped; a new command has a fresh count.
	for try := 0; ; try++ {
		var missing []engine.UID
		for u := range want {
			if !got[u] {
				missing = append(missing, u)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		slices.Sort(missing)
		cn, err := m.conn(ctx)
		if err != nil {
			return err
		}
		still, err := m.existing(ctx, cn, missing)
		if err != nil {
			return err
		}
		if len(still) == 0 {
			return nil
		}
		if try > 0 {
			return m.errorf("server did not return the body of %d existing message(s) (UIDs %v)", len(still), truncUIDs(still))
		}
		for _, u := range missing {
			delete(want, u)
		}
		for _, u := range still {
			want[u] = true
		}
		if err := fetchChunks(uidChunks(still)); err != nil {
			return err
		}
	}
}

// expungeIssuedOK is err, except for a server's NO [EXPUNGEISSUED] (RFC
// 5530) to a UID FETCH: another session expunged some of the messages asked
// for, and the server sent what was still there. That is the answer without
// the gone messages, which the callers already expect (Dovecot says OK
// [EXPUNGEISSUED]); taken as a failure it stopped every copy of the run.
func expungeIssuedOK(err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo && ie.Code == "EXPUNGEISSUED" {
		return nil
	}
	return err
}

func truncUIDs(u []engine.UID) []engine.UID {
	if len(u) > 10 {
		return u[:10]
	}
	return u
}

// staged is a message spooled in CRLF form, waiting for APPEND: wireSize
// bytes at off in its spool file.
type staged struct {
	sp       *spoolFile
	off      int64
	flags    engine.Flag
	date     time.Time
	size     int64 // canonical (LF) bytes
	wireSize int64 // CRLF bytes in the spool file
	released atomic.Bool
}

func (st *staged) UID() engine.UID { return 0 }
func (st *staged) Size() int64     { return st.size }

// body reads the message's CRLF bytes. ReadAt-based, so no file offset is
// shared between connections; and without WriteTo, so io.CopyBuffer uses the
// caller's buffer instead of allocating.
func (st *staged) body() *io.SectionReader {
	return io.NewSectionReader(st.sp.f, st.off, st.wireSize)
}

// release gives the message's place in its spool back; the second call
// (Commit discards what it committed, the engine then what failed) does
// nothing.
func (st *staged) release(m *Mailbox) {
	if !st.released.Swap(true) {
		m.unrefSpool(st.sp)
	}
}

// spoolFile is a temporary file that a mailbox's staged messages share, one
// after the other. The file is unlinked as soon as it is created: only the
// open descriptor keeps it, so a run that is killed leaves nothing behind in
// the spool dir. It is closed when its last message is committed or
// discarded, so a batch uses one file. Why shared: a file of its own per
// message (create, unlink, close on /tmp's ext4) cost 0.2-0.3 ms of CPU a
// message, 22-35 ms for the 100 messages of a push (measured 2026-11-28),
// against 1.4-3.5 ms for the same bytes in one file.
type spoolFile struct {
	f       *os.File
	refs    int   // staged messages in it not yet released
	end     int64 // where the next message goes
	writing bool  // a message is being written at end
}

// spoolAt returns the spool file the next message goes into and where in
// it, holding a reference for that message; create makes one where there is
// none, or where a message is still being written into the one there (the
// engine stages one message at a time, but two written at one offset would
// be two messages corrupted, silently).
func (m *Mailbox) spoolAt(create func() (*os.File, error)) (*spoolFile, int64, error) {
	m.spoolMu.Lock()
	defer m.spoolMu.Unlock()
	if m.spool == nil || m.spool.writing {
		f, err := create()
		if err != nil {
			return nil, 0, err
		}
		m.spool = &spoolFile{f: f}
	}
	m.spool.refs++
	m.spool.writing = true
	return m.spool, m.spool.end, nil
}

// spoolWritten records n bytes written at off in sp by the message that
// holds a reference to it (0: none, its writing failed): the next message
// goes behind them.
func (m *Mailbox) spoolWritten(sp *spoolFile, off, n int64) {
	m.spoolMu.Lock()
	defer m.spoolMu.Unlock()
	sp.end = max(sp.end, off+n)
	sp.writing = false
}

// unrefSpool drops one message's reference; the last one closes the file.
func (m *Mailbox) unrefSpool(sp *spoolFile) {
	m.spoolMu.Lock()
	defer m.spoolMu.Unlock()
	if sp.refs--; sp.refs > 0 {
		return
	}
	if m.spool == sp {
		m.spool = nil
	}
	sp.f.Close()
}

// Stage spools the message behind the others staged and not yet committed,
// converting LF to CRLF.
func (m *Mailbox) Stage(ctx context.Context, nm engine.NewMessage) (engine.Staged, error) {
	if m.readOnly {
		return nil, m.errorf("%w", engine.ErrReadOnly)
	}
	dir := m.s.cfg.SpoolDir
	if dir == "" {
		dir = os.TempDir()
	}
	sp, off, err := m.spoolAt(func() (*os.File, error) {
		f, err := os.CreateTemp(dir, "quixysync-spool-*.eml")
		if err != nil {
			return nil, err
		}
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	})
	if err != nil {
		return nil, m.errorf("spooling message in %s: %w", dir, spoolErr(err))
	}
	st := &staged{sp: sp, off: off, flags: nm.Flags, date: nm.Date}
	// Written at its own offset: a message cut short by an error leaves
	// bytes behind the last good one, which the next message overwrites.
	in, out, err := m.crlf.copy(io.NewOffsetWriter(sp.f, off), nm.Body)
	if err != nil {
		m.spoolWritten(sp, off, 0)
		st.release(m)
		return nil, m.errorf("spooling message in %s: %w", dir, spoolErr(err))
	}
	if limit := m.appendLimit(ctx); limit != nil && out > int64(*limit) {
		// RFC 7889: the server says it takes nothing larger; sending it
		// would only have it refused after the upload.
		m.spoolWritten(sp, off, 0)
		st.release(m)
		return nil, m.errorf("%d bytes, the server takes at most %d (APPENDLIMIT): %w", out, *limit, engine.ErrTooBig)
	}
	m.spoolWritten(sp, off, out)
	st.size, st.wireSize = in, out
	return st, nil
}

// refusal is a command the server answered with NO or BAD: it is
// engine.ErrRefused without saying so twice in its text.
type refusal struct{ error }

func (r refusal) Unwrap() error        { return r.error }
func (r refusal) Is(target error) bool { return target == engine.ErrRefused }

// spoolErr marks a spool directory out of room as this machine's, so
// that the report does not send the user to make room on the server.
func spoolErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", engine.ErrStagingFull, err)
	}
	return err
}

// appendLimit is the size of the largest message the server takes into
// this mailbox (RFC 7889), nil for none known: the capability's value, or,
// where the capability comes without one (limits that differ by mailbox),
// the mailbox's STATUS APPENDLIMIT, asked at the first message staged. A
// refused or failed STATUS leaves the limit unknown: the APPEND then says
// what the server takes, as it does on a server without the extension.
func (m *Mailbox) appendLimit(ctx context.Context) *uint32 {
	limit, ok := m.caps.AppendLimit()
	if !ok || limit != nil {
		return limit
	}
	m.limitMu.Lock()
	defer m.limitMu.Unlock()
	if m.limitAsked {
		return m.limit
	}
	m.limitAsked = true
	cn, err := m.conn(ctx)
	if err != nil {
		return nil
	}
	var d *imap.StatusData
	err = cn.run(ctx, "STATUS", func() error {
		var err error
		d, err = cn.c.Status(m.wire, &imap.StatusOptions{AppendLimit: true}).Wait()
		return err
	})
	if err != nil {
		m.s.log.Debug("STATUS APPENDLIMIT not answered; the server's APPEND will tell", "store", m.s.cfg.Name, "mailbox", m.name, "err", err)
		return nil
	}
	if d.AppendLimit != nil && *d.AppendLimit != math.MaxUint32 { // NIL: no limit
		m.limit = d.AppendLimit
	}
	return m.limit
}

// refusedTooBig says an APPEND's refusal is about the message's size:
// [TOOBIG] (RFC 4469, 7889), or [LIMIT] (RFC 5530: some limit of the
// server) with a text about size, as Dovecot's quota_max_mail_size answers.
func refusedTooBig(ie *imap.Error) bool {
	return ie.Code == imap.ResponseCodeTooBig ||
		ie.Code == imap.ResponseCodeLimit && strings.Contains(strings.ToLower(ie.Text), "size")
}

// Discard deletes spool files.
func (m *Mailbox) Discard(st []engine.Staged) {
	for _, x := range st {
		if sp, ok := x.(*staged); ok {
			sp.release(m)
		}
	}
}

// minPerExtraConn is how many messages a commit needs per extra connection
// before using it is worth a login.
const minPerExtraConn = 8

// Commit APPENDs the staged messages, pipelined. A batch is spread over the
// mailbox's own connection and up to Config.CommitConnections-1 extra ones
// taken from the pool, only if free right now (never waiting, so mailboxes committing at the
// same time cannot deadlock). APPEND works in the authenticated state: the
// extra connections SELECT nothing. Every APPEND costs a round trip (go-imap
// sends literals over 4 KiB synchronizing) and the server's save (with
// fsync), which parallel connections can overlap. With more than one
// connection the UIDs of a batch do not ascend in staged order.
//
// A per-message failure is reported in its result. A message whose APPEND
// failed is never retried: it may have arrived. When an extra connection
// breaks it is dropped and the others carry on; when the own connection
// breaks the mailbox reconnects and carries on. The returned error is non-nil
// only when committing stopped early (UIDVALIDITY changed, ctx ended, the
// mailbox could not be reconnected); every result not attempted then carries
// it as well.
func (m *Mailbox) Commit(ctx context.Context, st []engine.Staged) ([]engine.CommitResult, error) {
	defer m.Discard(st)
	res := make([]engine.CommitResult, len(st))
	stopAt := func(err error) ([]engine.CommitResult, error) {
		for i := range res {
			if res[i].Err == nil {
				res[i].Err = err
			}
		}
		return res, err
	}
	if m.readOnly {
		return stopAt(m.errorf("%w", engine.ErrReadOnly))
	}
	if len(st) == 0 {
		return res, nil
	}
	cn, err := m.conn(ctx)
	if err != nil {
		return stopAt(err)
	}
	c := &committer{m: m, st: st, res: res, done: make([]bool, len(st))}
	for i, x := range st {
		if sp, ok := x.(*staged); ok {
			c.todo = append(c.todo, sp)
			c.idx = append(c.idx, i)
		} else {
			res[i].Err = m.errorf("commit: message was not staged by this store")
			c.done[i] = true
		}
	}
	// One message too: written past go-imap with a non-synchronizing
	// literal, it needs neither the existence check below nor a
	// continuation (3 round trips down to 1 for the one message a run
	// pushes most often: a mail just sent).
	if len(c.todo) > 0 && m.s.cfg.CommitConnections <= 1 && canMultiAppend(cn) {
		uids, err := m.multiAppend(ctx, cn, c.todo)
		var ie *imap.Error
		switch {
		case err == nil:
			for k, i := range c.idx {
				res[i] = engine.CommitResult{UID: uids[k]}
			}
			return res, nil
		case errors.As(err, &ie):
			// Refused as a whole, so none of it was appended: one by one
			// below, where a single bad message gets its own refusal.
			m.s.log.Debug("MULTIAPPEND refused; appending one by one", "mailbox", m.name, "err", err)
		case errors.Is(err, engine.ErrValidity):
			return stopAt(m.errorf("%w", err))
		case ctx.Err() != nil:
			return stopAt(m.errorf("commit interrupted: %w", ctx.Err()))
		default:
			// The connection failed: the batch may or may not be there.
			// Never sent again (it may have arrived); the engine finds out.
			for _, i := range c.idx {
				res[i].Err = err
			}
			return res, nil
		}
	}
	// APPEND to a missing mailbox is refused before the literal's
	// continuation, which kills a go-imap connection: check first. (A
	// MULTIAPPEND is written past go-imap and refused cleanly: no check.)
	found, _, err := m.s.exists(ctx, cn, m.wire)
	if err != nil {
		return stopAt(err)
	}
	if !found {
		return stopAt(m.errorf("%w (deleted while open?)", engine.ErrNoMailbox))
	}
	var wg sync.WaitGroup
	extra := min(m.s.cfg.CommitConnections-1, len(c.todo)/minPerExtraConn)
	for range extra {
		// Take the slots now, dial in the workers: a connection that
		// cannot be had just leaves its share to the others.
		xc, err := m.s.tryGet(ctx)
		if err != nil {
			m.s.log.Debug("no extra connection for APPEND", "store", m.s.cfg.Name, "err", err)
			break
		}
		if xc == nil {
			break
		}
		wg.Go(func() { c.runExtra(ctx, xc) })
	}
	c.runOwn(ctx)
	wg.Wait()
	if c.stopErr != nil {
		for i := range res {
			if !c.done[i] {
				res[i].Err = c.stopErr
			}
		}
		return res, c.stopErr
	}
	return res, nil
}

// committer shares one Commit's queue among its connections.
type committer struct {
	m    *Mailbox
	st   []engine.Staged
	res  []engine.CommitResult
	todo []*staged
	idx  []int // todo[k] is st[idx[k]]

	mu      sync.Mutex
	next    int
	done    []bool // by st index: attempted (or rejected up front)
	stopErr error
}

// take returns the next message to append, or false when there is none or
// the commit was stopped.
func (c *committer) take() (int, *staged, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopErr != nil || c.next >= len(c.todo) {
		return 0, nil, false
	}
	k := c.next
	c.next++
	c.done[c.idx[k]] = true
	return c.idx[k], c.todo[k], true
}

func (c *committer) stop(err error) {
	c.mu.Lock()
	if c.stopErr == nil {
		c.stopErr = err
	}
	c.mu.Unlock()
}

// record stores a result and stops the whole commit when continuing makes
// no sense.
func (c *committer) record(ctx context.Context, i int, uid engine.UID, err error) {
	c.res[i] = engine.CommitResult{UID: uid, Err: err}
	if errors.Is(err, engine.ErrValidity) {
		c.stop(err)
	} else if cerr := ctx.Err(); cerr != nil {
		c.stop(c.m.errorf("commit interrupted: %w", cerr))
	}
}

// runOwn appends on the mailbox's own connection, reconnecting after a
// failure, until the queue is empty.
func (c *committer) runOwn(ctx context.Context) {
	buf := make([]byte, 32<<10)
	for {
		cn, err := c.m.conn(ctx)
		if err != nil {
			c.stop(err)
			return
		}
		if !c.appendOn(ctx, cn, true, buf) {
			return
		}
	}
}

// runExtra appends on an extra pool connection until the queue is empty or
// the connection breaks; then it gives the connection back.
func (c *committer) runExtra(ctx context.Context, cn *conn) {
	defer c.m.s.put(cn)
	c.appendOn(ctx, cn, false, make([]byte, 32<<10))
}

// appendWindow is how many APPENDs one connection keeps in flight. Sending
// the next APPEND before the previous one's tagged reply hides a round trip
// per message (all of them for literals go-imap sends non-synchronizing);
// the window bounds how many outcomes a dropped connection leaves unknown.
const appendWindow = 8

type inflight struct {
	i   int
	cmd *imapclient.AppendCommand
}

// appendOn APPENDs queued messages on cn, pipelined, until the queue is
// empty (false) or the connection broke (true). Every message taken gets a
// result: its UID, the server's refusal, or the connection's error (never
// retried: it may have arrived).
func (c *committer) appendOn(ctx context.Context, cn *conn, own bool, buf []byte) (broken bool) {
	m := c.m
	hook := m.s.testAppend
	var q []inflight
	var lost []int // taken, outcome unknown because the connection failed
	// finish waits for the oldest APPEND in flight; a non-nil error is the
	// connection's. answered: the server gave that APPEND its outcome.
	answered := -1
	finish := func() error {
		f := q[0]
		q = q[1:]
		d, err := f.cmd.Wait()
		var ie *imap.Error
		if err == nil || errors.As(err, &ie) {
			answered = f.i
		}
		switch {
		case err == nil:
			uid, err := m.appendUID(cn, d)
			c.record(ctx, f.i, uid, err)
		case errors.As(err, &ie) && ie.Code == imap.ResponseCodeOverQuota:
			c.record(ctx, f.i, 0, fmt.Errorf("%s: APPEND: %w (%w)", m.s.cfg.Name, err, engine.ErrNoSpace))
		case errors.As(err, &ie) && refusedTooBig(ie):
			c.record(ctx, f.i, 0, fmt.Errorf("%s: APPEND: %w (%w)", m.s.cfg.Name, err, engine.ErrTooBig))
		case errors.As(err, &ie):
			// A tagged NO or BAD: not appended (RFC 9051 6.3.12).
			c.record(ctx, f.i, 0, refusal{fmt.Errorf("%s: APPEND: %w", m.s.cfg.Name, err)})
		default:
			lost = append(lost, f.i)
			return err
		}
		return nil
	}
	err := cn.run(ctx, "APPEND", func() error {
		for {
			i, sp, ok := c.take()
			if !ok {
				break
			}
			src := sp.body()
			cmd := cn.c.Append(m.wire, sp.wireSize, &imap.AppendOptions{Flags: m.appendFlags(sp.flags), Time: sp.date})
			if hook != nil {
				hook(cn, i, false, own)
			}
			_, werr := io.CopyBuffer(cmd, src, buf)
			cerr := cmd.Close()
			if hook != nil {
				hook(cn, i, true, own)
			}
			q = append(q, inflight{i, cmd})
			if werr != nil || cerr != nil {
				cn.markBroken() // the literal was cut short: the stream is out of sync
				for len(q) > 0 {
					_ = finish()
				}
				// A refusal before the literal's continuation (a size limit,
				// a full quota: go-imap then closes the connection) is this
				// message's outcome, kept as such; otherwise it is unknown.
				if answered != i && (len(lost) == 0 || lost[len(lost)-1] != i) {
					lost = append(lost, i)
				}
				return errors.Join(werr, cerr)
			}
			for len(q) >= appendWindow {
				if err := finish(); err != nil {
					return err
				}
			}
		}
		for len(q) > 0 {
			if err := finish(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		return false
	}
	// The connection failed: what was in flight is lost as well.
	for _, f := range q {
		_, _ = f.cmd.Wait()
		lost = append(lost, f.i)
	}
	for _, i := range lost {
		c.record(ctx, i, 0, err)
	}
	return true
}

func (m *Mailbox) appendUID(cn *conn, d *imap.AppendData) (engine.UID, error) {
	if d.UID == 0 || !cn.caps.Has(imap.CapUIDPlus) {
		return 0, nil
	}
	if d.UIDValidity != m.st.UIDValidity {
		return 0, m.errorf("APPENDUID reports UIDVALIDITY %d, mailbox was opened with %d: %w", d.UIDValidity, m.st.UIDValidity, engine.ErrValidity)
	}
	return engine.UID(d.UID), nil
}

func (m *Mailbox) appendFlags(f engine.Flag) []imap.Flag {
	return toIMAPFlags(f & m.KeptFlags())
}

// KeptFlags is engine.FlagKeeper: the flags PERMANENTFLAGS names. A flag
// not kept lasts the session at most (RFC 3501, 7.1: a STORE of it is
// ignored or kept for the session, an APPEND naming it may be refused): a
// server that takes no keywords ($Forwarded), or a mailbox shared with only
// some rights (Dovecot with an ACL of lrsi answers PERMANENTFLAGS (\Seen),
// with lrsit (\Deleted \Seen): no "w" right, no other flags; an empty
// list, with lr or a read-only mailbox: none). No PERMANENTFLAGS means every flag is kept, and so does \* (new
// keywords allowed): a server that lets a client create keywords keeps the
// system flags too, and one server (go-imap's own) lists only the flags its
// mailbox already holds beside \*.
func (m *Mailbox) KeptFlags() engine.Flag {
	var perm []imap.Flag
	if p := m.permFlags.Load(); p != nil {
		perm = *p
	}
	if perm == nil || slices.Contains(perm, imap.FlagWildcard) {
		return engine.AllFlags
	}
	var kept engine.Flag
	for _, fm := range flagMap {
		if slices.ContainsFunc(perm, func(p imap.Flag) bool { return equalFold(string(p), string(fm.i)) }) {
			kept |= fm.f
		}
	}
	return kept
}

// storeFlags runs one UID STORE per chunk, all pipelined.
func (m *Mailbox) storeFlags(ctx context.Context, cn *conn, chunks []imap.UIDSet, ops []*imap.StoreFlags) error {
	return m.storeMany(ctx, cn, []storeJob{{chunks, ops}})[0]
}

// storeJob is the STOREs of one flag change.
type storeJob struct {
	chunks []imap.UIDSet
	ops    []*imap.StoreFlags
}

// storeMany runs the STOREs of several flag changes, all pipelined in one
// round trip, and returns each change's outcome.
func (m *Mailbox) storeMany(ctx context.Context, cn *conn, jobs []storeJob) []error {
	out, _ := m.storeAndExpunge(ctx, cn, jobs, nil)
	return out
}

// splitRemoval sorts the removal's UIDs into those its STORE \Deleted sends
// on condition — UNCHANGEDSINCE the mailbox's HIGHESTMODSEQ at the open, so
// only messages nobody changed since it was opened (and listed) — and the
// others. A message changed since, above all one whose \Deleted its user
// took back while the run went on, then stays, since UID EXPUNGE removes
// only messages flagged \Deleted: the engine decided on what it listed. No
// condition without CONDSTORE, nor for a message changed through this
// Mailbox (its flags set, in this batch or before; appended since the
// open): the condition would refuse that change of our own. It records the
// batch's flag changes as such.
func (m *Mailbox) splitRemoval(jobs []storeJob, exp []imap.UIDSet) (cond, plain []imap.UIDSet, opts *imap.StoreOptions) {
	if !m.condstore {
		return nil, exp, nil
	}
	for _, job := range jobs {
		for _, set := range job.chunks {
			for _, r := range set {
				for u := r.Start; u <= r.Stop && u != 0; u++ {
					if m.touched == nil {
						m.touched = map[imap.UID]bool{}
					}
					m.touched[u] = true
				}
			}
		}
	}
	if m.st.HighestModSeq == 0 || m.st.UIDNext == 0 || len(exp) == 0 {
		return nil, exp, nil
	}
	var c, p []engine.UID
	for _, set := range exp {
		for _, r := range set {
			for u := r.Start; u <= r.Stop && u != 0; u++ {
				if m.touched[u] || engine.UID(u) >= m.st.UIDNext {
					p = append(p, engine.UID(u))
				} else {
					c = append(c, engine.UID(u))
				}
			}
		}
	}
	return uidChunks(c), uidChunks(p), &imap.StoreOptions{UnchangedSince: m.st.HighestModSeq}
}

// storeAndExpunge is storeMany followed, in the same round trip, by the
// removal of the messages in exp (UIDPLUS only): STORE +FLAGS.SILENT
// (\Deleted) and UID EXPUNGE per chunk. A UID EXPUNGE removes only messages
// it names that have \Deleted, so sending it before its STORE is answered
// removes nothing it was not asked to, even if that STORE fails. It returns
// each change's outcome and the removal's.
func (m *Mailbox) storeAndExpunge(ctx context.Context, cn *conn, jobs []storeJob, exp []imap.UIDSet) ([]error, error) {
	out := make([]error, len(jobs))
	var expErr error
	ran := false
	err := cn.run(ctx, "UID STORE", func() error {
		ran = true
		type sent struct {
			job int // -1: part of the removal
			cmd interface{ Close() error }
		}
		var cmds []sent
		for j, job := range jobs {
			for _, set := range job.chunks {
				for _, op := range job.ops {
					cmds = append(cmds, sent{j, cn.c.Store(set, op, nil)})
				}
			}
		}
		del := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
		cond, plain, unchanged := m.splitRemoval(jobs, exp)
		for _, set := range cond {
			cmds = append(cmds, sent{-1, cn.c.Store(set, del, unchanged)}, sent{-1, cn.c.UIDExpunge(set)})
		}
		for _, set := range plain {
			cmds = append(cmds, sent{-1, cn.c.Store(set, del, nil)}, sent{-1, cn.c.UIDExpunge(set)})
		}
		// Drained all at once, for the reason given in List: with CONDSTORE
		// even a .SILENT STORE gets a FETCH (MODSEQ) per message.
		errs := make([]error, len(cmds))
		var wg sync.WaitGroup
		for i, c := range cmds {
			wg.Go(func() { errs[i] = c.cmd.Close() })
		}
		wg.Wait()
		var expErrs []error
		for i, c := range cmds {
			switch {
			case errs[i] == nil:
			case c.job < 0:
				expErrs = append(expErrs, errs[i])
			case out[c.job] == nil:
				out[c.job] = fmt.Errorf("%s: UID STORE: %w", m.s.cfg.Name, errs[i])
			}
		}
		var left []*imapclient.SearchCommand
		if len(expErrs) == 0 {
			// What the condition left (the server answers OK [MODIFIED ...],
			// which go-imap does not pass on). Asked only once the removal
			// is answered: Dovecot answers a SEARCH pipelined behind a
			// UID EXPUNGE before it has done the EXPUNGE.
			for _, set := range cond {
				left = append(left, cn.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{set}}, nil))
			}
		}
		kept := &engine.KeptError{}
		for _, cmd := range left {
			d, err := cmd.Wait()
			if err != nil {
				expErrs = append(expErrs, fmt.Errorf("UID SEARCH after UID EXPUNGE: %w", err))
				errs = append(errs, err)
				continue
			}
			for _, u := range d.AllUIDs() {
				kept.UIDs = append(kept.UIDs, engine.UID(u))
			}
		}
		if len(expErrs) == 0 && len(kept.UIDs) > 0 {
			expErr = kept
		}
		if len(expErrs) > 0 {
			expErr = fmt.Errorf("%s: EXPUNGE: %w", m.s.cfg.Name, errors.Join(expErrs...))
		}
		return errors.Join(errs...)
	})
	if err != nil && !ran {
		// Nothing was sent (connection already broken, ctx ended).
		for j := range out {
			out[j] = err
		}
		if len(exp) > 0 {
			expErr = err
		}
	}
	return out, expErr
}

// SetFlagsAndExpunge is engine.ChangeBatcher: SetFlagsBatch and Expunge in
// one round trip where the server has UIDPLUS, else one after the other.
func (m *Mailbox) SetFlagsAndExpunge(ctx context.Context, changes []engine.FlagChange, expunge []engine.UID) ([]error, error) {
	exp := uidChunks(expunge)
	jobs, at := flagJobs(changes, m.KeptFlags())
	if m.readOnly || len(exp) == 0 || len(jobs) == 0 || !m.caps.Has(imap.CapUIDPlus) {
		return m.SetFlagsBatch(ctx, changes), m.Expunge(ctx, expunge)
	}
	out := make([]error, len(changes))
	cn, err := m.conn(ctx)
	if err != nil {
		for _, i := range at {
			out[i] = err
		}
		return out, err
	}
	errs, expErr := m.storeAndExpunge(ctx, cn, jobs, exp)
	for k, err := range errs {
		out[at[k]] = err
	}
	return out, expErr
}

// flagJobs are the STOREs of flag changes, of the flags kept; jobs[k] is
// changes[at[k]] (changes that change nothing have none).
func flagJobs(changes []engine.FlagChange, kept engine.Flag) (jobs []storeJob, at []int) {
	for i, c := range changes {
		job := storeJob{chunks: uidChunks(c.UIDs), ops: flagOps(c.Add&kept, c.Remove&kept)}
		if len(job.chunks) > 0 && len(job.ops) > 0 {
			jobs = append(jobs, job)
			at = append(at, i)
		}
	}
	return jobs, at
}

// SetFlagsBatch is engine.FlagBatcher: every change's STOREs pipelined.
func (m *Mailbox) SetFlagsBatch(ctx context.Context, changes []engine.FlagChange) []error {
	out := make([]error, len(changes))
	if m.readOnly {
		for i := range out {
			out[i] = m.errorf("%w", engine.ErrReadOnly)
		}
		return out
	}
	jobs, at := flagJobs(changes, m.KeptFlags())
	if len(jobs) == 0 {
		return out
	}
	cn, err := m.conn(ctx)
	if err != nil {
		for _, i := range at {
			out[i] = err
		}
		return out
	}
	for k, err := range m.storeMany(ctx, cn, jobs) {
		out[at[k]] = err
	}
	return out
}

// flagOps are the +FLAGS.SILENT and -FLAGS.SILENT of a flag change.
func flagOps(add, remove engine.Flag) []*imap.StoreFlags {
	var ops []*imap.StoreFlags
	if fl := toIMAPFlags(add); len(fl) > 0 {
		ops = append(ops, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: fl})
	}
	if fl := toIMAPFlags(remove); len(fl) > 0 {
		ops = append(ops, &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: fl})
	}
	return ops
}

// SetFlags adds and removes standard flags: one +FLAGS.SILENT and one
// -FLAGS.SILENT per chunk of UIDs.
func (m *Mailbox) SetFlags(ctx context.Context, uids []engine.UID, add, remove engine.Flag) error {
	if m.readOnly {
		return m.errorf("%w", engine.ErrReadOnly)
	}
	chunks := uidChunks(uids)
	kept := m.KeptFlags()
	ops := flagOps(add&kept, remove&kept)
	if len(chunks) == 0 || len(ops) == 0 {
		return nil
	}
	cn, err := m.conn(ctx)
	if err != nil {
		return err
	}
	return m.storeFlags(ctx, cn, chunks, ops)
}

// Expunge sets \Deleted on the UIDs and removes them: UID EXPUNGE with
// UIDPLUS; without it EXPUNGE while the other \Deleted messages are
// unmarked for the moment (see expungeNoUIDPlus).
func (m *Mailbox) Expunge(ctx context.Context, uids []engine.UID) error {
	if m.readOnly {
		return m.errorf("%w", engine.ErrReadOnly)
	}
	chunks := uidChunks(uids)
	if len(chunks) == 0 {
		return nil
	}
	cn, err := m.conn(ctx)
	if err != nil {
		return err
	}
	del := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if !cn.caps.Has(imap.CapUIDPlus) {
		if err := m.storeFlags(ctx, cn, chunks, []*imap.StoreFlags{del}); err != nil {
			return err
		}
		return m.expungeNoUIDPlus(ctx, cn, uids)
	}
	// Each UID EXPUNGE right behind its STORE: see storeAndExpunge.
	_, err = m.storeAndExpunge(ctx, cn, nil, chunks)
	return err
}

// expungeNoUIDPlus emulates UID EXPUNGE: a plain EXPUNGE removes every
// message marked \Deleted, so other \Deleted messages lose the flag for the
// moment of the EXPUNGE and get it back right after. (If the connection dies
// in between, they stay without \Deleted: a flag lost, never a message.)
func (m *Mailbox) expungeNoUIDPlus(ctx context.Context, cn *conn, uids []engine.UID) error {
	var marked []engine.UID
	err := cn.run(ctx, "UID SEARCH DELETED", func() error {
		d, err := cn.c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagDeleted}}, nil).Wait()
		if err != nil {
			return err
		}
		for _, u := range d.AllUIDs() {
			marked = append(marked, engine.UID(u))
		}
		return nil
	})
	if err != nil {
		return err
	}
	want := map[engine.UID]bool{}
	for _, u := range uids {
		want[u] = true
	}
	var others []engine.UID
	for _, u := range marked {
		if !want[u] {
			others = append(others, u)
		}
	}
	keep := uidChunks(others)
	unmark := &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	remark := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
	if len(keep) == 0 {
		return cn.run(ctx, "EXPUNGE", func() error { return cn.c.Expunge().Close() })
	}
	// From the unmarking on, other clients' \Deleted marks are off: the
	// sequence goes to its end even if the run is interrupted (each command
	// still bounded by the store's timeout), and the marks are put back
	// whatever happened, on a new connection if this one broke. Only a
	// server gone for good leaves them off (the next run then sees those
	// messages undeleted).
	ctx = context.WithoutCancel(ctx)
	remarkAll := func() error {
		err := m.storeFlags(ctx, cn, keep, []*imap.StoreFlags{remark})
		if err != nil && cn.isClosed() {
			if again, cerr := m.conn(ctx); cerr == nil {
				err = m.storeFlags(ctx, again, keep, []*imap.StoreFlags{remark})
			}
		}
		return err
	}
	if err := m.storeFlags(ctx, cn, keep, []*imap.StoreFlags{unmark}); err != nil {
		// Some chunks may have been unmarked before one failed.
		if rerr := remarkAll(); rerr != nil {
			m.s.log.Warn("could not put back other messages' \\Deleted after a failed expunge", "store", m.s.cfg.Name, "mailbox", m.name, "err", rerr)
		}
		return err
	}
	err = cn.run(ctx, "EXPUNGE", func() error { return cn.c.Expunge().Close() })
	if rerr := remarkAll(); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

// Close UNSELECTs (never CLOSE: that would expunge) and returns the
// connection to the pool without waiting for the answer; a connection whose
// UNSELECT failed is dropped by its next user. Without UNSELECT the
// connection is logged out.
func (m *Mailbox) Close() error {
	if m.closed {
		return nil
	}
	if m.ahead != nil {
		ctx, cancel := context.WithTimeout(context.Background(), min(m.s.cfg.Timeout, 5*time.Second))
		m.settleAhead(ctx)
		cancel()
	}
	m.closed = true
	cn := m.cn
	m.cn = nil
	if cn == nil {
		return nil
	}
	if !cn.isClosed() {
		if cn.caps.Has(imap.CapUnselect) {
			// Sent, not waited for: its answer (after the server has
			// written back its index: up to 8 ms on a 100 000-message
			// Dovecot mailbox) is collected by the connection's next user,
			// so the caller goes on at once, and the next command (the
			// next mailbox's SELECT, a LOGOUT) follows the UNSELECT
			// without a round trip between them.
			cn.unselect = cn.c.Unselect()
		} else {
			cn.logout()
			cn.markBroken()
		}
	}
	m.s.put(cn)
	return nil
}

// settleWait bounds literalLatch.settle's wait for go-imap's decoder.
const settleWait = time.Second

// literalLatch reads a FETCH literal and remembers how that ended.
//
// Why: once a literal's Read has returned an error other than EOF (the
// connection closed under it), go-imap lets its decoder goroutine go on
// reading the connection's buffer, while FetchCommand.Close still reads that
// literal again (go-imap's discard), from the same buffer: a data race, found
// by the race detector when a run was cancelled in the middle of a body.
//
// It also holds the literal to its announced size: go-imap reads a literal
// through an io.LimitReader, so a connection that ends in the middle of one
// (the server closed it, or TLS ended on a record boundary) reads as a clean
// io.EOF, and a cut-off message would be taken for the whole of it.
type literalLatch struct {
	r    io.Reader
	left int64 // bytes announced and not read yet
	err  error
}

func (l *literalLatch) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if err == io.EOF && l.left > 0 {
		err = fmt.Errorf("the message ended %d bytes before the size the server announced: %w", l.left, io.ErrUnexpectedEOF)
	}
	if err != nil {
		l.err = err
	}
	return n, err
}

// isWholeBody says whether a FETCH answer's section is the one Fetch asks
// for, the whole message (BODY[]), and not a part, a header or a piece of
// it (BODY[]<0>), which a server has no business sending instead.
func isWholeBody(s *imap.FetchItemBodySection) bool {
	return s != nil && s.Specifier == imap.PartSpecifierNone && len(s.Part) == 0 &&
		len(s.HeaderFields) == 0 && len(s.HeaderFieldsNot) == 0 && s.Partial == nil
}

// settle makes it safe to Close the FETCH after its callback failed on a
// connection already closed: the literal is read to its end or first error,
// and where that was an error, the decoder (which it released) is given time
// to fail on the closed connection and stop before Close reads the literal
// again. A decoder that parked on a later literal instead does not read
// until Close drains that one; the wait only bounds the time to find out.
func (l *literalLatch) settle(c interface{ Closed() <-chan struct{} }) {
	if l.err == nil {
		_, _ = io.Copy(io.Discard, l)
	}
	if l.err == io.EOF {
		return
	}
	t := time.NewTimer(settleWait)
	defer t.Stop()
	select {
	case <-c.Closed():
	case <-t.C:
	}
}
