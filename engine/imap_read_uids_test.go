package engine_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// A message the last run copied to the server (its UID at or above the
// UIDNEXT recorded) and removed there since is the one case where the
// incremental listing leaves out a known UID. The UIDs the run then needs
// were asked for along with the listing (prefetched): reportOn asking for
// them up to another bound made a second UID SEARCH of every UID of the
// mailbox (100 000 UIDs without ESEARCH), on the path of a draft saved here
// and deleted on the server. Only the UIDs above the prefetched ones are
// asked for again.
func TestRemovalOfLastRunsCopyOneFullSearch(t *testing.T) {
	p, fp := proxiedPairing(t)
	addMany(t, p.raw[0], "INBOX", 0, "f1", "f2", "f3")
	sync1(t, p, engine.RunOptions{})
	addMany(t, p.spec.Near, "INBOX", 0, "n4")
	sync1(t, p, engine.RunOptions{}) // n4 gets UID 4 on the server, above the UIDNEXT seen
	p.check(t, "INBOX", "f1: f2: f3: n4:")
	engine.ExpungeBySubject(t, p.raw[0], "INBOX", "n4")
	var searches atomic.Int32
	fp.set(func(_ int, line []byte) ([]byte, bool) {
		if up := bytes.ToUpper(line); bytes.Contains(up, []byte(" UID SEARCH ")) && bytes.Contains(up, []byte(" UID 1:")) {
			searches.Add(1)
		}
		return line, false
	}, nil)
	res := engine.SyncChannel(context.Background(), p.spec, engine.RunOptions{})
	fp.set(nil, nil)
	if err := mailboxErr(res); err != nil {
		t.Fatal(err)
	}
	p.check(t, "INBOX", "f1: f2: f3:")
	if n := searches.Load(); n > 1 {
		t.Errorf("the run asked for every UID %d times, want at most once", n)
	}
}
