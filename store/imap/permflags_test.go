package imap

import (
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// TestFakePermanentFlagsEmpty: PERMANENTFLAGS () to a SELECT (a read-only
// mailbox) keeps no flag, where no PERMANENTFLAGS at all keeps them all;
// to an EXAMINE, which every server answers so, it says nothing.
func TestFakePermanentFlagsEmpty(t *testing.T) {
	for _, tc := range []struct {
		name     string
		perm     string
		readOnly bool
		want     engine.Flag
	}{
		{"select empty", "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n", false, 0},
		{"select none", "", false, engine.AllFlags},
		{"select seen", "* OK [PERMANENTFLAGS (\\Seen)] ok\r\n", false, engine.FlagSeen},
		{"examine empty", "* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n", true, engine.AllFlags},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
				up := strings.ToUpper(cmd)
				if strings.HasPrefix(up, "SELECT") || strings.HasPrefix(up, "EXAMINE") {
					return "* 0 EXISTS\r\n" + tc.perm + "* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 1] x\r\n" + tag + " OK [READ-ONLY] done\r\n"
				}
				return ""
			}))
			s := fakeStore(t, host, port, nil)
			mb, err := s.OpenMailbox(ctxT(t), "INBOX", tc.readOnly)
			if err != nil {
				t.Fatal(err)
			}
			defer mb.Close()
			if got := mb.(*Mailbox).KeptFlags(); got != tc.want {
				t.Fatalf("kept %v, want %v", got, tc.want)
			}
		})
	}
}
