package imap

import (
	"bufio"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// A listing answer without FLAGS that the server does not describe when
// asked again either fails the listing: reported without flags, the message
// would have every flag taken off its copy on the other side (a \Seen, a
// \Flagged lost), and left out, a change below the listing's start would be
// missed for good.
func TestListingAnswerWithoutFlagsNotToldAgain(t *testing.T) {
	selected := "* 6 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 7] n\r\n* OK [HIGHESTMODSEQ 900] m\r\n"
	date := "INTERNALDATE \"01-Jan-2024 00:00:00 +0000\""
	var listed, askedAgain int
	host, port := selectedServer(t, "IMAP4rev1 CONDSTORE UIDPLUS", selected, func(tag, cmd string, _ *bufio.Reader, say func(string)) bool {
		up := strings.ToUpper(cmd)
		if !strings.HasPrefix(up, "UID FETCH") {
			return false
		}
		switch {
		case strings.Contains(up, "CHANGEDSINCE"):
			say("* 2 FETCH (UID 2 MODSEQ (950))\r\n" + tag + " OK done\r\n")
		case strings.HasPrefix(up, "UID FETCH 5:"):
			listed++
			say("* 5 FETCH (UID 5 FLAGS (\\Seen) RFC822.SIZE 10 " + date + ")\r\n" + tag + " OK done\r\n")
		default: // asked again: no answer for UID 2
			askedAgain++
			say(tag + " OK done\r\n")
		}
		return true
	})
	mb := fakeInbox(t, host, port)
	msgs, _, err := mb.List(ctxT(t), engine.ListQuery{From: 5, ChangedSince: 900})
	if listed == 0 || askedAgain == 0 {
		t.Fatalf("listed %d, asked again %d: the test did not run its course", listed, askedAgain)
	}
	if err == nil {
		t.Fatalf("listing succeeded without the flags of UID 2: %+v", msgs)
	}
}
