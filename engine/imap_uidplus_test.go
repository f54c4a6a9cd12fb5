package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// swapFirstHeaders exchanges the first two header lines: the bytes change
// (another hash) but not the size, as a server that reorders or rewrites
// headers on APPEND does.
func swapFirstHeaders(b []byte) []byte {
	i := bytes.IndexByte(b, '\n')
	j := i + 1 + bytes.IndexByte(b[i+1:], '\n')
	if i < 0 || j <= i {
		return b
	}
	out := make([]byte, 0, len(b))
	out = append(out, b[i+1:j+1]...)
	out = append(out, b[:i+1]...)
	return append(out, b[j+1:]...)
}

// TestNoUIDPlusFindsAppendedMessages: against Dovecot with UIDPLUS hidden
// (Commit reports UID 0), every copy to the IMAP side is found among the UIDs
// at or above the UIDNEXT seen before the APPEND — by size and hash, or, when
// the server changed the message, by Message-ID and size — and paired with
// the right source: later flag changes land on the right messages, and
// nothing is copied twice.
func TestNoUIDPlusFindsAppendedMessages(t *testing.T) {
	needDovecot(t)
	for _, rewrite := range []bool{false, true} {
		t.Run(fmt.Sprint("rewrite=", rewrite), func(t *testing.T) {
			p := newPairing(t, imapMaildir)
			p.far.noUIDPlus.Store(true)
			if rewrite {
				p.far.rewrite = swapFirstHeaders
			}
			far, near := p.spec.Far, p.spec.Near
			addMany(t, far, "INBOX", 0, "f1")
			// A message arriving on the server by another way between our
			// runs sits among the candidates without being one of ours.
			addMany(t, near, "INBOX", 0, names("n", 12)...)
			res := sync1(t, p, engine.RunOptions{})
			if res.Copied != [2]int{12, 1} || res.Failed != [2]int{} {
				t.Fatalf("counts: %+v", res.Counts)
			}
			want := "f1: n00: n01: n02: n03: n04: n05: n06: n07: n08: n09: n10: n11:"
			p.check(t, "INBOX", want)

			// Give each pushed message its own flags on the near side: a
			// wrong pairing would put them on another far message.
			flags := []engine.Flag{engine.FlagSeen, engine.FlagFlagged, engine.FlagReplied, engine.FlagSeen | engine.FlagFlagged}
			for i, subj := range names("n", 12) {
				engine.SetFlagsBySubject(t, near, "INBOX", subj, flags[i%len(flags)], 0)
			}
			// More copies while a foreign message arrives at the server.
			addMany(t, near, "INBOX", engine.FlagSeen, "n12", "n13")
			addMany(t, p.raw[0], "INBOX", 0, "foreign")
			res = sync1(t, p, engine.RunOptions{})
			if res.Copied != [2]int{2, 1} || res.Failed != [2]int{} {
				t.Fatalf("second run counts: %+v", res.Counts)
			}
			want = "f1: foreign: n00:S n01:F n02:R n03:FS n04:S n05:F n06:R n07:FS n08:S n09:F n10:R n11:FS n12:S n13:S"
			p.check(t, "INBOX", want)
			res = sync1(t, p, engine.RunOptions{})
			if !zeroCounts(res.Counts) {
				t.Fatalf("not idempotent: %+v", res.Counts)
			}
			p.check(t, "INBOX", want)
		})
	}
}

// TestNoUIDPlusCrashAfterAppend: the key crash case without UIDPLUS and with
// a rewriting server — the APPENDs happened, the run died before writing
// their results; the resume pairs them by Message-ID and size and does not
// copy them again.
func TestNoUIDPlusCrashAfterAppend(t *testing.T) {
	needDovecot(t)
	p := newPairing(t, imapMaildir)
	p.far.noUIDPlus.Store(true)
	p.far.rewrite = swapFirstHeaders
	addMany(t, p.spec.Near, "INBOX", engine.FlagSeen, names("n", 6)...)
	// Journal lines: 6 copy intents, then the APPENDs, then 6 results (the
	// first of which the hook writes before stopping the run).
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{CrashAfter: 7})
	if err := mailboxErr(res); err == nil {
		t.Fatal("no crash")
	}
	if n := len(engine.ViewBox(t, p.raw[0], "INBOX")); n == 0 {
		t.Fatal("nothing was appended before the crash")
	}
	p.reopen(t)
	p.far.noUIDPlus.Store(true)
	p.far.rewrite = swapFirstHeaders
	sync1(t, p, engine.RunOptions{})
	want := "n00:S n01:S n02:S n03:S n04:S n05:S"
	p.check(t, "INBOX", want)
	engine.SetFlagsBySubject(t, p.spec.Near, "INBOX", "n04", engine.FlagFlagged, engine.FlagSeen)
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", "n00:S n01:S n02:S n03:S n04:F n05:S")
}
