package imap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// Answers of a small, well-behaved CONDSTORE + UIDPLUS server, by command.
// mangledServer serves them with one of them mangled.
var fakeAnswers = []struct {
	prefix string // command prefix, upper case
	answer string // untagged lines; "%[1]s" is the tag
}{
	{"LIST \"\" \"*\"", "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren) \"/\" \"Sent\"\r\n%[1]s OK done\r\n"},
	{"LIST \"\" \"\"", "* LIST (\\Noselect) \"/\" \"\"\r\n%[1]s OK done\r\n"},   // the delimiter
	{"LIST \"\" ", "* LIST (\\HasNoChildren) \"/\" INBOX\r\n%[1]s OK done\r\n"}, // does INBOX exist (before APPEND)
	{"STATUS", "* STATUS INBOX (MESSAGES 3 UIDNEXT 9 UIDVALIDITY 42 HIGHESTMODSEQ 77)\r\n%[1]s OK done\r\n"},
	{"SELECT", "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] ok\r\n" +
		"* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 9] n\r\n* OK [HIGHESTMODSEQ 77] m\r\n%[1]s OK [READ-WRITE] done\r\n"},
	{"UID FETCH 1:* (", "* 1 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (70) RFC822.SIZE 14 INTERNALDATE \"01-Jan-2024 10:00:00 +0000\")\r\n" +
		"* 2 FETCH (UID 5 FLAGS () MODSEQ (71) RFC822.SIZE 7 INTERNALDATE \"02-Jan-2024 10:00:00 +0000\")\r\n" +
		"* 3 FETCH (UID 8 FLAGS (\\Flagged \\Seen) MODSEQ (77) RFC822.SIZE 4 INTERNALDATE \"03-Jan-2024 10:00:00 +0000\")\r\n%[1]s OK done\r\n"},
	{"UID SEARCH UID", "* SEARCH\r\n%[1]s OK done\r\n"}, // after the UID EXPUNGE: none left
	{"UID SEARCH", "* SEARCH 2 5 8\r\n%[1]s OK done\r\n"},
	{"UID FETCH", "* 1 FETCH (UID 2 BODY[] {14}\r\nSubject: a\r\n\r\n)\r\n* 3 FETCH (UID 8 BODY[] {4}\r\nhi\r\n)\r\n%[1]s OK done\r\n"},
	{"UID STORE", "* 1 FETCH (UID 2 FLAGS (\\Seen \\Flagged) MODSEQ (78))\r\n%[1]s OK done\r\n"},
	{"UID EXPUNGE", "* 2 EXPUNGE\r\n%[1]s OK done\r\n"},
	{"APPEND", "* 4 EXISTS\r\n%[1]s OK [APPENDUID 42 9] done\r\n"},
}

// mangle damages s the way a broken server or a corrupted stream might.
func mangle(rng *rand.Rand, s string) string {
	b := []byte(s)
	for range 1 + rng.IntN(3) {
		if len(b) == 0 {
			break
		}
		i := rng.IntN(len(b))
		switch rng.IntN(9) {
		case 0: // a random byte
			b[i] = byte(rng.IntN(256))
		case 1: // cut off here
			b = b[:i]
		case 2: // a piece dropped
			j := min(len(b), i+1+rng.IntN(12))
			b = append(b[:i:i], b[j:]...)
		case 3: // a piece repeated
			j := min(len(b), i+1+rng.IntN(40))
			b = append(b[:j:j], b[i:]...)
		case 4: // a number made huge or negative
			b = append(b[:i:i], append([]byte([]string{"4294967296", "-1", "99999999999999999999", "0", "NIL"}[rng.IntN(5)]), b[i:]...)...)
		case 5: // a line break where none was
			b = append(b[:i:i], append([]byte("\r\n"), b[i:]...)...)
		case 6: // a parenthesis or bracket
			b[i] = "()[]{}\""[rng.IntN(7)]
		case 7: // a literal announcement
			b = append(b[:i:i], append(fmt.Appendf(nil, "{%d}\r\n", rng.IntN(20)), b[i:]...)...)
		case 8: // an untagged line of another kind
			b = append(b[:i:i], append([]byte([]string{"* 9 EXPUNGE\r\n", "* 1 EXISTS\r\n", "* BYE gone\r\n", "* OK [UIDVALIDITY 43] x\r\n", "* VANISHED 1:3\r\n", "* 1 FETCH (UID 1)\r\n"}[rng.IntN(6)]), b[i:]...)...)
		}
	}
	return string(b)
}

// mangledServer is a CONDSTORE + UIDPLUS fake (with extra capabilities
// besides, such as "MULTIAPPEND LITERAL+") whose answer to the commands
// starting with bad (one of fakeAnswers' prefixes) is mangled by mangle.
func mangledServer(t *testing.T, rng *rand.Rand, bad, extra string) (string, int) {
	caps := strings.TrimSpace("IMAP4rev1 CONDSTORE UIDPLUS ENABLE " + extra)
	var mu sync.Mutex // the connections share rng
	rng = rand.New(rand.NewPCG(rng.Uint64(), 1))
	return selectedServer(t, caps, "", func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
		// A command with a literal (APPEND): take it in, then its end.
		for line := cmd; ; {
			n, ok := literalSize([]byte(line))
			if !ok {
				break
			}
			if !strings.HasSuffix(strings.TrimRight(line, "\r\n"), "+}") {
				say("+ go on\r\n")
			}
			var err error
			if _, err = io.CopyN(io.Discard, r, n); err == nil {
				line, err = r.ReadString('\n')
			}
			if err != nil {
				say(hangUp)
				return true
			}
		}
		up := strings.ToUpper(cmd)
		for _, a := range fakeAnswers {
			if !strings.HasPrefix(up, a.prefix) {
				continue
			}
			answer := fmt.Sprintf(a.answer, tag)
			if a.prefix != bad {
				say(answer)
				return true
			}
			mu.Lock()
			answer = mangle(rng, answer)
			end := rng.IntN(3) > 0
			mu.Unlock()
			say(answer)
			if end {
				// Most broken servers hang up after such an answer (and a
				// client waiting for the rest of one cut short would wait
				// out its timeout).
				say(hangUp)
			}
			return true
		}
		return false
	})
}

// Whatever a server answers, the store never panics and never hangs: each
// step returns, with an error or not, within its time. Every command of a
// pull and a push (APPEND, and MULTIAPPEND) is answered wrongly in turn:
// a random byte, a cut,
// pieces dropped or repeated, huge, negative or NIL numbers, stray line
// breaks, brackets and literal announcements, unexpected untagged lines
// (an EXPUNGE, a BYE, another UIDVALIDITY, a VANISHED). A panic in any of
// the store's goroutines, or go-imap's, ends the test binary.
func TestFakeMangledAnswersNeverPanic(t *testing.T) {
	rounds := 25
	if testing.Short() {
		rounds = 5
	}
	rng := rand.New(rand.NewPCG(16, 27))
	// The fake itself, unmangled, answers every step well, with APPEND and
	// with MULTIAPPEND (written past go-imap, its reply read by hand).
	for _, extra := range []string{"", "MULTIAPPEND LITERAL+"} {
		host, port := mangledServer(t, rng, "", extra)
		s := fakeStore(t, host, port, nil)
		if uid, err := exerciseStore(s); err != nil || uid != 9 {
			t.Fatalf("well-behaved fake (%q): appended as UID %d, error %v", extra, uid, err)
		}
		s.Close()
	}
	type variant struct{ bad, extra string }
	var variants []variant
	for _, a := range fakeAnswers {
		variants = append(variants, variant{a.prefix, ""})
	}
	variants = append(variants, variant{"APPEND", "MULTIAPPEND LITERAL+"})
	for _, v := range variants {
		for round := range rounds {
			host, port := mangledServer(t, rng, v.bad, v.extra)
			s := fakeStore(t, host, port, func(c *Config) { c.Timeout = 300 * time.Millisecond })
			done := make(chan struct{})
			go func() {
				defer close(done)
				exerciseStore(s)
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s (%q), round %d: the store did not return", v.bad, v.extra, round)
			}
			s.Close()
		}
	}
}

// exerciseStore runs what a sync asks of a far store, each step whatever
// the one before it returned; it returns the first error and the UID the
// appended message got.
func exerciseStore(s *Store) (uid engine.UID, first error) {
	note := func(err error) {
		if first == nil {
			first = err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.ListMailboxes(ctx)
	note(err)
	_, err = s.StatusAll(ctx, []string{"INBOX"})
	note(err)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		note(err)
		return 0, first
	}
	defer mb.Close()
	_, _, err = mb.List(ctx, engine.ListQuery{From: 1, ChangedSince: 60})
	note(err)
	_, _, err = mb.List(ctx, engine.ListQuery{All: true})
	note(err)
	_, err = mb.UIDs(ctx, 9)
	note(err)
	note(mb.Fetch(ctx, []engine.UID{2, 8}, func(uid engine.UID, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	}))
	note(mb.SetFlags(ctx, []engine.UID{2}, engine.FlagFlagged, 0))
	note(mb.Expunge(ctx, []engine.UID{5}))
	st, err := mb.Stage(ctx, engine.NewMessage{Flags: engine.FlagSeen, Body: strings.NewReader("Subject: new\n\nbody\n")})
	if err != nil {
		note(err)
		return 0, first
	}
	res, err := mb.Commit(ctx, []engine.Staged{st})
	note(err)
	if err != nil {
		mb.Discard([]engine.Staged{st})
		return 0, first
	}
	note(res[0].Err)
	return res[0].UID, first
}
