package engine_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/maildir"
)

// The Maildir side is reported while the IMAP side is still opening: the
// proxy holds back the server's answer to SELECT until the Maildir's new
// file has been given its UID (a rename the listing makes), or 3 s. Reported
// after the open, the file would be renamed only once the answer came. The
// run's outcome is that of any run: each side gets the other's message. The
// Maildir is the near side as usual, and the far side the other way round.
func TestLocalSideReportedWhileFarOpens(t *testing.T) {
	for _, localFar := range []bool{false, true} {
		name := "maildir near"
		if localFar {
			name = "maildir far"
		}
		t.Run(name, func(t *testing.T) {
			p, fp := proxiedPairing(t)
			local, remote := p.raw[1], p.raw[0]
			spec := p.spec
			if localFar {
				spec = engine.TestSpecFor(t.TempDir(), local, remote)
			}
			addMany(t, remote, "INBOX", 0, "r1")
			addMany(t, local, "INBOX", 0, "l1")
			engine.MustSync(t, spec, engine.RunOptions{})
			checkBoth(t, spec, "INBOX", "l1: r1:")

			addMany(t, remote, "INBOX", 0, "r2")
			dir, err := local.(*maildir.Store).MailboxDir("INBOX")
			if err != nil {
				t.Fatal(err)
			}
			fresh := filepath.Join(dir, "new", "1700000000.early.host")
			if err := os.WriteFile(fresh, []byte("Subject: l2\nMessage-ID: <l2@test>\n\nx\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			var held, listedMeanwhile atomic.Bool
			fp.set(nil, func(_ int, line []byte) ([]byte, bool) {
				if !bytes.Contains(line, []byte("Select completed")) || held.Swap(true) {
					return line, false
				}
				for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
					if _, err := os.Stat(fresh); errors.Is(err, fs.ErrNotExist) {
						listedMeanwhile.Store(true)
						break
					}
				}
				return line, false
			})
			res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
			fp.set(nil, nil)
			if err := mailboxErr(res); err != nil {
				t.Fatal(err)
			}
			if !held.Load() {
				t.Fatal("no SELECT answered")
			}
			if !listedMeanwhile.Load() {
				t.Error("the Maildir was listed only after the server answered SELECT")
			}
			if res.Copied != [2]int{1, 1} {
				t.Errorf("copied %v, want [1 1]", res.Copied)
			}
			checkBoth(t, spec, "INBOX", "l1: l2: r1: r2:")
			checkIdle(t, spec)
		})
	}
}
