package imap

import (
	"bufio"
	"io"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

const threeMessages = "* 3 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 4] n\r\n"

// A full listing is complete: the engine takes every message missing from
// it for one removed here and removes its copy on the other side. A FETCH
// response without UID (go-imap cannot route it to the UID FETCH and drops
// it) must not make an existing message look removed.
func TestFullListingMissingAnswerIsNoRemoval(t *testing.T) {
	host, port := selectedServer(t, "IMAP4rev1", threeMessages, func(tag, cmd string, _ *bufio.Reader, say func(string)) bool {
		up := strings.ToUpper(cmd)
		switch {
		case strings.HasPrefix(up, "UID FETCH"):
			say("* 1 FETCH (UID 1 FLAGS () RFC822.SIZE 10 INTERNALDATE \"01-Jan-2024 00:00:00 +0000\")\r\n" +
				"* 2 FETCH (FLAGS (\\Seen) RFC822.SIZE 10 INTERNALDATE \"01-Jan-2024 00:00:00 +0000\")\r\n" +
				"* 3 FETCH (UID 3 FLAGS () RFC822.SIZE 10 INTERNALDATE \"01-Jan-2024 00:00:00 +0000\")\r\n" +
				tag + " OK done\r\n")
			return true
		case strings.HasPrefix(up, "UID SEARCH"):
			say("* SEARCH 1 2 3\r\n" + tag + " OK done\r\n")
			return true
		}
		return false
	})
	mb := fakeInbox(t, host, port)
	msgs, complete, err := mb.List(ctxT(t), engine.ListQuery{All: true})
	if err != nil {
		return // refusing the listing is safe
	}
	if complete && len(msgs) < 3 {
		t.Fatalf("complete listing of a mailbox of 3 messages holds %d: %+v (the missing one reads as removed)", len(msgs), msgs)
	}
}

// A message the full listing left out that the server does describe when
// asked again is listed, not dropped: the listing succeeds with it.
func TestFullListingAsksAgainForALeftOutMessage(t *testing.T) {
	fetches := 0
	host, port := selectedServer(t, "IMAP4rev1", threeMessages, func(tag, cmd string, _ *bufio.Reader, say func(string)) bool {
		up := strings.ToUpper(cmd)
		switch {
		case strings.HasPrefix(up, "UID FETCH"):
			fetches++
			if fetches == 1 {
				say("* 1 FETCH (UID 1 FLAGS () RFC822.SIZE 10 INTERNALDATE \"01-Jan-2024 00:00:00 +0000\")\r\n" +
					"* 3 FETCH (UID 3 FLAGS () RFC822.SIZE 10 INTERNALDATE \"01-Jan-2024 00:00:00 +0000\")\r\n" +
					tag + " OK done\r\n")
				return true
			}
			say("* 2 FETCH (UID 2 FLAGS (\\Seen) RFC822.SIZE 10 INTERNALDATE \"01-Jan-2024 00:00:00 +0000\")\r\n" + tag + " OK done\r\n")
			return true
		case strings.HasPrefix(up, "UID SEARCH"):
			say("* SEARCH 1 2 3\r\n" + tag + " OK done\r\n")
			return true
		}
		return false
	})
	mb := fakeInbox(t, host, port)
	msgs, complete, err := mb.List(ctxT(t), engine.ListQuery{All: true})
	if err != nil || !complete || len(msgs) != 3 || msgs[1].UID != 2 || msgs[1].Flags != engine.FlagSeen {
		t.Fatalf("listing: %+v, complete %v, %v; want UIDs 1 to 3", msgs, complete, err)
	}
}

// A listing answer without FLAGS (an unsolicited FETCH of another client's
// change routed in its place, or a server that leaves the item out) does
// not report the message as having no flags: the engine would take every
// flag off its copy on the other side. Asked again, the server tells.
func TestListingAnswerWithoutFlags(t *testing.T) {
	selected := "* 6 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 7] n\r\n* OK [HIGHESTMODSEQ 900] m\r\n"
	date := "INTERNALDATE \"01-Jan-2024 00:00:00 +0000\""
	var listed int
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
			say("* 5 FETCH (UID 5 RFC822.SIZE 10 " + date + ")\r\n" + tag + " OK done\r\n")
		default: // asked again
			var b strings.Builder
			for _, u := range []string{"2", "5"} {
				if strings.Contains(up, u) {
					b.WriteString("* " + u + " FETCH (UID " + u + " FLAGS (\\Seen \\Flagged) RFC822.SIZE 10 " + date + ")\r\n")
				}
			}
			say(b.String() + tag + " OK done\r\n")
		}
		return true
	})
	mb := fakeInbox(t, host, port)
	msgs, _, err := mb.List(ctxT(t), engine.ListQuery{From: 5, ChangedSince: 900})
	if listed == 0 {
		t.Fatal("no listing of new messages")
	}
	if err != nil {
		return // refusing the listing is safe
	}
	for _, m := range msgs {
		if m.Flags != engine.FlagSeen|engine.FlagFlagged {
			t.Errorf("UID %d listed with flags %v, the server's are \\Seen \\Flagged", m.UID, m.Flags)
		}
	}
}

// Identify cannot leave out silently a message that exists but whose
// answers it could not use (no UID: go-imap drops them): the first sync
// would take it for one the other side lacks and copy it there, next to
// the copy it already has.
func TestIdentifyDoesNotSkipAnExistingMessage(t *testing.T) {
	host, port := selectedServer(t, "IMAP4rev1", twoMessages, func(tag, cmd string, _ *bufio.Reader, say func(string)) bool {
		up := strings.ToUpper(cmd)
		switch {
		case strings.HasPrefix(up, "UID FETCH"):
			var b strings.Builder
			if strings.Contains(up, "FETCH 1") {
				b.WriteString("* 1 FETCH (UID 1 RFC822.SIZE 30 BODY[HEADER.FIELDS (MESSAGE-ID)] {17}\r\nMessage-ID: <a>\r\n)\r\n")
			}
			b.WriteString("* 2 FETCH (RFC822.SIZE 30 BODY[HEADER.FIELDS (MESSAGE-ID)] {17}\r\nMessage-ID: <b>\r\n)\r\n")
			say(b.String() + tag + " OK done\r\n")
			return true
		case strings.HasPrefix(up, "UID SEARCH"):
			say("* SEARCH 2\r\n" + tag + " OK done\r\n") // UID 2 exists
			return true
		}
		return false
	})
	mb := fakeInbox(t, host, port)
	got := map[engine.UID]bool{}
	err := mb.(engine.Identifier).Identify(ctxT(t), []engine.UID{1, 2}, func(uid engine.UID, h io.Reader, _ int64) error {
		got[uid] = true
		_, err := io.Copy(io.Discard, h)
		return err
	})
	if err == nil && !got[2] {
		t.Fatalf("Identify succeeded without UID 2, which exists (identified: %v)", got)
	}
}
