package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"
)

// pairExisting pairs, before the first plan of a mailbox pair, the messages
// both sides already hold: same Message-ID, Date and Subject and same size
// in CRLF form (not counting an X-TUID field, which mbsync adds to the
// copies it makes).
//
// Why: with no state, every message is new, and a sync would copy each
// side's messages to the other. When both sides hold the same mail (a
// Maildir made by mbsync or OfflineIMAP, a lost or deleted state file, a new
// machine with a copied Maildir), that duplicates every message on both
// sides, which is what users of those tools are told to avoid by starting
// from an empty side. Pairing first makes the run copy only what one side
// lacks.
//
// It runs while no run has yet considered new messages in either direction
// (MaxPulled and MaxPushed are 0: the first run, or one resumed after a
// crash, whose copies the journal replay has paired already), and only when
// a direction copies new messages and both sides have unpaired messages.
// Each pair's merge base is the flags both sides share, so the plan merges
// them into their union, as for a change made on each side. A Message-ID
// held by several messages of a side pairs as many as both sides have, in
// UID order. Messages without a Message-ID (drafts, mail from scripts and
// old mailers) are paired when their content is the same (see
// pairByContent). A message whose size or content differs is not paired
// and is copied as before (no message is ever left out).
func (b *boxRun) pairExisting(ctx context.Context, rep *[2]Report, opts Options) error {
	if b.st.MaxPulled != 0 || b.st.MaxPushed != 0 || (opts.Pull&OpNew == 0 && opts.Push&OpNew == 0) {
		return nil
	}
	for _, s := range []Side{Far, Near} {
		if b.mb[s] == nil || !rep[s].Complete || len(rep[s].Messages) == 0 {
			return nil // an initial pull or push: nothing to pair with
		}
	}
	// Everything here is sized for a first sync of 100 000 messages a side:
	// UIDs and 20-byte keys in slices, no map per message.
	var cand [2][]UID
	for _, s := range []Side{Far, Near} {
		has, _ := uidSet(func(yield func(UID)) {
			for _, p := range b.st.Pairs {
				if u := p.uid(s); u != 0 {
					yield(u)
				}
			}
		})
		for _, m := range rep[s].Messages {
			if !has(m.UID) {
				cand[s] = append(cand[s], m.UID)
			}
		}
		if len(cand[s]) == 0 {
			return nil
		}
	}
	var keyed [2][]keyedUID
	var noID [2][]sizedUID
	for _, s := range []Side{Far, Near} {
		k, n, err := identify(ctx, b.mb[s], cand[s])
		if err != nil {
			return fmt.Errorf("pairing the messages both sides hold: the %s side: %w", s, err)
		}
		keyed[s], noID[s] = k, n
	}
	nCand := [2]int{len(cand[Far]), len(cand[Near])}
	cand = [2][]UID{}
	flags := [2]func(UID) Flag{flagsByUID(rep[Far].Messages), flagsByUID(rep[Near].Messages)}
	paired := 0
	pair := func(f, n UID) {
		b.st.Pairs = append(b.st.Pairs, Pair{Far: f, Near: n, Flags: flags[Far](f) & flags[Near](n)})
		paired++
	}
	matchKeys(keyed[Far], keyed[Near], pair)
	if len(noID[Far]) > 0 && len(noID[Near]) > 0 {
		if err := b.pairByContent(ctx, noID, pair); err != nil {
			return err
		}
	}
	if paired > 0 {
		slices.SortFunc(b.st.Pairs, comparePairs)
	}
	b.paired = pairing{n: paired, unpaired: [2]int{nCand[Far] - paired, nCand[Near] - paired}}
	if b.opt.DryRun {
		// What the plan would do: a dry run records nothing.
		b.pairsRecorded()
	}
	return nil
}

// pairing is what pairExisting paired, until a state records it.
type pairing struct {
	n        int
	unpaired [2]int // each side's messages left to copy
}

// pairsRecorded reports the pairs pairExisting made, once a state holding
// them is saved (or, in a dry run, as what the run would do). Said when
// made, a run that then failed or stopped before its state was saved (the
// state file not written, a guard) reported messages "already on both
// sides" that no state recorded as such; the next run pairs them again.
func (b *boxRun) pairsRecorded() {
	p := b.paired
	b.paired = pairing{}
	if p.n == 0 {
		return
	}
	b.res.Paired += p.n
	b.log.Info("paired messages both sides already hold (same Message-ID, date, subject and size, or same content); only the others are copied",
		"mailbox", b.name, "paired", p.n, "far_unpaired", p.unpaired[Far], "near_unpaired", p.unpaired[Near])
}

// flagsByUID looks a listed message's flags up by UID: by binary search in
// msgs when they are in UID order (as the stores list them), else in a
// sorted copy of UIDs and flags.
func flagsByUID(msgs []Message) func(UID) Flag {
	type uf struct {
		uid   UID
		flags Flag
	}
	if slices.IsSortedFunc(msgs, func(a, b Message) int { return cmpUID(a.UID, b.UID) }) {
		return func(u UID) Flag {
			i, ok := slices.BinarySearchFunc(msgs, u, func(m Message, u UID) int { return cmpUID(m.UID, u) })
			if !ok {
				return 0
			}
			return msgs[i].Flags
		}
	}
	s := make([]uf, len(msgs))
	for i, m := range msgs {
		s[i] = uf{m.UID, m.Flags}
	}
	slices.SortFunc(s, func(a, b uf) int { return cmpUID(a.uid, b.uid) })
	return func(u UID) Flag {
		i, ok := slices.BinarySearchFunc(s, u, func(e uf, u UID) int { return cmpUID(e.uid, u) })
		if !ok {
			return 0
		}
		return s[i].flags
	}
}

// matchKeys pairs far and near messages of the same key: far messages in
// UID order each take the near message of their key with the lowest UID not
// taken yet. It sorts both slices.
func matchKeys(far, near []keyedUID, pair func(f, n UID)) {
	slices.SortFunc(near, func(a, b keyedUID) int {
		if c := bytes.Compare(a.key[:], b.key[:]); c != 0 {
			return c
		}
		return cmpUID(a.uid, b.uid)
	})
	taken := make([]bool, len(near))
	slices.SortFunc(far, func(a, b keyedUID) int { return cmpUID(a.uid, b.uid) })
	for _, f := range far {
		i, _ := slices.BinarySearchFunc(near, f.key, func(e keyedUID, k identKey) int { return bytes.Compare(e.key[:], k[:]) })
		for i < len(near) && near[i].key == f.key && taken[i] {
			i++
		}
		if i == len(near) || near[i].key != f.key {
			continue
		}
		taken[i] = true
		pair(f.uid, near[i].uid)
	}
}

// pairByContent pairs messages without a Message-ID that are the same on
// both sides: same content with CRLF line ends, X-TUID fields left out (see
// readIdent).
//
// Why: such messages cannot be told apart by their header, and copying each
// side's to the other put every one of them twice on both sides after a
// move from mbsync. Only messages whose size has a match on the other side
// are read whole (usually few; thousands of them, all alike in size, are
// all downloaded once): a run that copies new messages would read each of
// them whole to copy it anyway.
func (b *boxRun) pairByContent(ctx context.Context, noID [2][]sizedUID, pair func(f, n UID)) error {
	var sizes [2][]int64
	for _, s := range []Side{Far, Near} {
		for _, m := range noID[s] {
			sizes[s] = append(sizes[s], m.size)
		}
		slices.Sort(sizes[s])
	}
	var keyed [2][]keyedUID
	for _, s := range []Side{Far, Near} {
		var uids []UID
		for _, m := range noID[s] {
			if _, ok := slices.BinarySearch(sizes[s.Other()], m.size); ok {
				uids = append(uids, m.uid)
			}
		}
		if len(uids) == 0 {
			return nil
		}
		k, err := contentKeys(ctx, b.mb[s], uids)
		if err != nil {
			return fmt.Errorf("pairing the messages both sides hold (without a Message-ID): the %s side: %w", s, err)
		}
		keyed[s] = k
	}
	matchKeys(keyed[Far], keyed[Near], pair)
	return nil
}

// contentKeys returns the content key (see contentKey) of each of uids it
// could read; the first answer for a UID counts, as in identify.
func contentKeys(ctx context.Context, mb Mailbox, uids []UID) ([]keyedUID, error) {
	asked, _ := uidSet(func(yield func(UID)) {
		for _, u := range uids {
			yield(u)
		}
	})
	out := make([]keyedUID, 0, len(uids))
	br := bufio.NewReaderSize(nil, 4096)
	err := mb.Fetch(ctx, uids, func(uid UID, r io.Reader) error {
		k, err := contentKey(r, br)
		if err == nil && asked(uid) {
			out = append(out, keyedUID{k, uid})
		}
		return err
	})
	slices.SortStableFunc(out, func(a, b keyedUID) int { return cmpUID(a.uid, b.uid) })
	out = slices.CompactFunc(out, func(a, b keyedUID) bool { return a.uid == b.uid })
	return out, err
}

// contentKey hashes a whole message as pairByContent compares it: with CRLF
// line ends and without its X-TUID fields.
func contentKey(r io.Reader, br *bufio.Reader) (identKey, error) {
	h := sha256.New()
	w := &crlfWriter{w: h}
	br.Reset(r)
	skip, midLine := false, false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 && !midLine {
			if t := bytes.TrimRight(line, "\r\n"); len(t) == 0 && err != bufio.ErrBufferFull {
				w.Write(line)
				break // the end of the header
			}
			if line[0] != ' ' && line[0] != '\t' {
				k, _, ok := bytes.Cut(line, []byte{':'})
				skip = ok && strings.EqualFold(string(bytes.TrimSpace(k)), "X-TUID")
			}
		}
		if !skip {
			w.Write(line)
		}
		midLine = err == bufio.ErrBufferFull
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return identKey{}, err
		}
	}
	if _, err := io.Copy(w, br); err != nil {
		return identKey{}, err
	}
	var k identKey
	copy(k[:], h.Sum(nil))
	return k, nil
}

// crlfWriter writes what it is given with CRLF line ends: a CR goes before
// every LF not preceded by one.
type crlfWriter struct {
	w      io.Writer
	prevCR bool
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.prevCR = p[len(p)-1] == '\r'
			if _, err := c.w.Write(p); err != nil {
				return 0, err
			}
			break
		}
		bare := (i == 0 && !c.prevCR) || (i > 0 && p[i-1] != '\r')
		if _, err := c.w.Write(p[:i]); err != nil {
			return 0, err
		}
		if bare {
			if _, err := c.w.Write([]byte{'\r'}); err != nil {
				return 0, err
			}
		}
		if _, err := c.w.Write(p[i : i+1]); err != nil {
			return 0, err
		}
		c.prevCR = false
		p = p[i+1:]
	}
	return n, nil
}

// headerKey is the key of a message with a Message-ID: its size (in CRLF
// form, X-TUID fields left out), Message-ID, Date and Subject. Date and
// Subject because some software stamps all its mail with one Message-ID (a
// monitoring script's reports, a scanner's): two of its messages of the
// same size are not the same message, and pairing them would leave each
// side without the other's, and have a removal on one side remove the
// other message on the other side. Two copies of one message have the same
// header, so this never keeps them apart.
// buf is scratch space, returned for the next call.
func headerKey(buf []byte, size int64, h headerIdent) (identKey, []byte) {
	buf = binary.BigEndian.AppendUint64(buf[:0], uint64(size))
	for _, f := range []string{h.id, h.date, h.subject} {
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(f))) // no two lists of values hash alike
		buf = append(buf, f...)
	}
	sum := sha256.Sum256(buf)
	var k identKey
	copy(k[:], sum[:])
	return k, buf
}

// identKey is what a first sync pairs messages by: a hash of the size in
// CRLF form and the Message-ID, Date and Subject (headerKey). 16 bytes per message instead of the ID
// itself keep a mailbox of 100 000 messages at a few MiB; two different
// messages share a key with a chance of about n²/2¹²⁹.
type identKey [16]byte

// keyedUID is a message and its key.
type keyedUID struct {
	key identKey
	uid UID
}

// sizedUID is a message without a Message-ID and its size in CRLF form,
// X-TUID fields left out.
type sizedUID struct {
	uid  UID
	size int64
}

// identify returns the key of each of uids that has a Message-ID, and the
// size of each that has none. Whatever else a store reports (a server's
// answer for a UID not asked for, one UID twice) is left out: a message must
// not be paired twice.
func identify(ctx context.Context, mb Mailbox, uids []UID) ([]keyedUID, []sizedUID, error) {
	type answer struct {
		keyedUID
		size int64 // -1: keyed by its Message-ID
	}
	out := make([]answer, 0, len(uids))
	asked, _ := uidSet(func(yield func(UID)) {
		for _, u := range uids {
			yield(u)
		}
	})
	var buf []byte
	// size is the message's in CRLF form, h.tuid what its X-TUID fields
	// take of it (see readIdent).
	add := func(uid UID, h headerIdent, size int64) {
		if size < 0 || !asked(uid) {
			return
		}
		size -= h.tuid
		if size < 0 {
			// A size the server got wrong (smaller than the X-TUID
			// fields alone): not paired, copied. Kept, it would read
			// as the mark of a message keyed by its Message-ID below.
			return
		}
		if h.id == "" {
			out = append(out, answer{keyedUID{uid: uid}, size})
			return
		}
		var k identKey
		k, buf = headerKey(buf, size, h)
		out = append(out, answer{keyedUID{k, uid}, -1})
	}
	// One reader for all messages: fn is called for one message at a time.
	br := bufio.NewReaderSize(nil, 4096)
	var err error
	if idf, ok := mb.(Identifier); ok {
		err = idf.Identify(ctx, uids, func(uid UID, header io.Reader, size int64) error {
			br.Reset(header)
			h := readIdent(br)
			_, err := io.Copy(io.Discard, br)
			add(uid, h, size)
			return err
		})
	} else {
		err = mb.Fetch(ctx, uids, func(uid UID, r io.Reader) error {
			cr := &crlfSizer{r: r}
			br.Reset(cr)
			h := readIdent(br)
			_, err := io.Copy(io.Discard, br)
			add(uid, h, cr.size())
			return err
		})
	}
	// The first answer for a UID counts.
	slices.SortStableFunc(out, func(a, b answer) int { return cmpUID(a.uid, b.uid) })
	out = slices.CompactFunc(out, func(a, b answer) bool { return a.uid == b.uid })
	keyed := make([]keyedUID, 0, len(out))
	var noID []sizedUID
	for _, a := range out {
		if a.size < 0 {
			keyed = append(keyed, a.keyedUID)
		} else {
			noID = append(noID, sizedUID{a.uid, a.size})
		}
	}
	return keyed, noID, err
}

// crlfSizer counts what passes through it as it would be with CRLF line
// ends: every LF not preceded by CR counts two bytes.
type crlfSizer struct {
	r      io.Reader
	n      int64
	bare   int64
	prevCR bool
}

func (c *crlfSizer) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	q := p[:n]
	c.n += int64(n)
	for len(q) > 0 {
		i := bytes.IndexByte(q, '\n')
		if i < 0 {
			c.prevCR = q[len(q)-1] == '\r'
			break
		}
		if (i == 0 && !c.prevCR) || (i > 0 && q[i-1] != '\r') {
			c.bare++
		}
		c.prevCR = false
		q = q[i+1:]
	}
	return n, err
}

func (c *crlfSizer) size() int64 { return c.n + c.bare }
