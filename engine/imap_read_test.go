package engine_test

import (
	"bytes"
	"context"
	"regexp"
	"sync/atomic"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

var condstoreCap = regexp.MustCompile(` (CONDSTORE|QRESYNC)\b`)

// withoutCondstore is a server hook hiding CONDSTORE and QRESYNC: every
// run lists the whole mailbox, and a message missing from that listing
// reads as removed.
func withoutCondstore(line []byte) []byte {
	if hasWord(line, "CAPABILITY") {
		return condstoreCap.ReplaceAll(line, nil)
	}
	return line
}

// A full listing whose answer for one message the client cannot use (no
// UID: go-imap drops it) must not make the engine remove that message's
// copy on the other side: the message is still on the server.
func TestFullListingDroppedAnswerRemovesNothing(t *testing.T) {
	p, fp := proxiedPairing(t)
	fp.set(nil, func(_ int, line []byte) ([]byte, bool) { return withoutCondstore(line), false })
	addMany(t, p.raw[0], "INBOX", 0, "m1", "m2", "m3")
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", "m1: m2: m3:")
	var dropped atomic.Int32
	fp.set(nil, func(_ int, line []byte) ([]byte, bool) {
		line = withoutCondstore(line)
		if bytes.HasPrefix(line, []byte("* 2 FETCH (")) && hasWord(line, "RFC822.SIZE") && hasWord(line, "UID 2 ") {
			dropped.Add(1)
			return bytes.Replace(line, []byte("UID 2 "), nil, 1), false
		}
		return line, false
	})
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	fp.set(nil, func(_ int, line []byte) ([]byte, bool) { return withoutCondstore(line), false })
	if dropped.Load() == 0 {
		t.Fatal("no listing went through the proxy")
	}
	if res.Deleted != [2]int{} {
		t.Errorf("deleted %v after a listing that lost one answer", res.Deleted)
	}
	p.check(t, "INBOX", "m1: m2: m3:")
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", "m1: m2: m3:")
}

// The same in an incremental listing (CONDSTORE), for a message the last
// run copied to the server: its UID is at or above the UIDNEXT recorded, so
// only the listing of new messages names it, and an answer to it that the
// client drops must not read as its removal.
func TestIncrementalListingDroppedAnswerRemovesNothing(t *testing.T) {
	p, fp := proxiedPairing(t)
	addMany(t, p.raw[0], "INBOX", 0, "f1")
	sync1(t, p, engine.RunOptions{})
	addMany(t, p.spec.Near, "INBOX", 0, "n2")
	sync1(t, p, engine.RunOptions{}) // n2 gets UID 2 on the server, above the UIDNEXT seen
	p.check(t, "INBOX", "f1: n2:")
	var dropped atomic.Int32
	fp.set(nil, func(_ int, line []byte) ([]byte, bool) {
		if bytes.HasPrefix(line, []byte("* 2 FETCH (")) && hasWord(line, "RFC822.SIZE") && hasWord(line, "UID 2 ") {
			dropped.Add(1)
			return bytes.Replace(line, []byte("UID 2 "), nil, 1), false
		}
		return line, false
	})
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	fp.set(nil, nil)
	if dropped.Load() == 0 {
		t.Fatal("no listing named UID 2")
	}
	if res.Deleted != [2]int{} {
		t.Errorf("deleted %v after a listing that lost one answer", res.Deleted)
	}
	p.check(t, "INBOX", "f1: n2:")
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", "f1: n2:")
}
