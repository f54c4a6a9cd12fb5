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
)

// pairExisting pairs, before the first plan of a mailbox pair, the messages
// both sides already hold: same Message-ID and same size in CRLF form.
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
// UID order; messages without a Message-ID, or whose size differs, are
// not paired and are copied as before (no message is ever left out).
func (b *boxRun) pairExisting(ctx context.Context, rep *[2]Report, opts Options) error {
	if b.st.MaxPulled != 0 || b.st.MaxPushed != 0 || (opts.Pull&OpNew == 0 && opts.Push&OpNew == 0) {
		return nil
	}
	for _, s := range []Side{Far, Near} {
		if b.mb[s] == nil || !rep[s].Complete || len(rep[s].Messages) == 0 {
			return nil // an initial pull or push: nothing to pair with
		}
	}
	var cand [2][]Message
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
				cand[s] = append(cand[s], m)
			}
		}
		if len(cand[s]) == 0 {
			return nil
		}
	}
	var keys [2]map[UID]identKey
	for _, s := range []Side{Far, Near} {
		uids := make([]UID, len(cand[s]))
		for i, m := range cand[s] {
			uids[i] = m.UID
		}
		k, err := identify(ctx, b.mb[s], uids)
		if err != nil {
			return fmt.Errorf("pairing the messages both sides hold: the %s side: %w", s, err)
		}
		keys[s] = k
	}
	// Near messages by key, in UID order (cand is in listing order; sort it).
	byKey := map[identKey][]Message{}
	slices.SortFunc(cand[Near], func(a, b Message) int { return cmpUID(a.UID, b.UID) })
	for _, m := range cand[Near] {
		if k, ok := keys[Near][m.UID]; ok {
			byKey[k] = append(byKey[k], m)
		}
	}
	slices.SortFunc(cand[Far], func(a, b Message) int { return cmpUID(a.UID, b.UID) })
	paired := 0
	for _, fm := range cand[Far] {
		k, ok := keys[Far][fm.UID]
		if !ok || len(byKey[k]) == 0 {
			continue
		}
		nm := byKey[k][0]
		byKey[k] = byKey[k][1:]
		b.st.Pairs = append(b.st.Pairs, Pair{Far: fm.UID, Near: nm.UID, Flags: fm.Flags & nm.Flags})
		paired++
	}
	if paired > 0 {
		slices.SortFunc(b.st.Pairs, comparePairs)
		b.log.Info("paired messages both sides already hold (same Message-ID and size); only the others are copied",
			"mailbox", b.name, "paired", paired, "far_unpaired", len(cand[Far])-paired, "near_unpaired", len(cand[Near])-paired)
	}
	return nil
}

// identKey is what a first sync pairs messages by: a hash of the Message-ID
// and the size in CRLF form. 16 bytes per message instead of the ID itself
// keep a mailbox of 100 000 messages at a few MiB; two different messages
// share a key with a chance of about n²/2¹²⁹.
type identKey [16]byte

func keyOf(id string, size int64) identKey {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(size))
	h.Write(n[:])
	io.WriteString(h, id)
	var k identKey
	copy(k[:], h.Sum(nil))
	return k
}

// identify returns the key of each of uids that has a Message-ID.
func identify(ctx context.Context, mb Mailbox, uids []UID) (map[UID]identKey, error) {
	out := make(map[UID]identKey, len(uids))
	add := func(uid UID, id string, size int64) {
		if id != "" && size >= 0 {
			out[uid] = keyOf(id, size)
		}
	}
	// One reader for all messages: fn is called for one message at a time.
	br := bufio.NewReaderSize(nil, 4096)
	if idf, ok := mb.(Identifier); ok {
		err := idf.Identify(ctx, uids, func(uid UID, header io.Reader, size int64) error {
			br.Reset(header)
			id := readMessageID(br)
			_, err := io.Copy(io.Discard, br)
			add(uid, id, size)
			return err
		})
		return out, err
	}
	err := mb.Fetch(ctx, uids, func(uid UID, r io.Reader) error {
		cr := &crlfSizer{r: r}
		br.Reset(cr)
		id := readMessageID(br)
		_, err := io.Copy(io.Discard, br)
		add(uid, id, cr.size())
		return err
	})
	return out, err
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
