package imap

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
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
	{"STATUS", "* STATUS INBOX (MESSAGES 3 UIDNEXT 9 UIDVALIDITY 42 HIGHESTMODSEQ 77)\r\n%[1]s OK done\r\n"},
	{"SELECT", "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] ok\r\n" +
		"* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 9] n\r\n* OK [HIGHESTMODSEQ 77] m\r\n%[1]s OK [READ-WRITE] done\r\n"},
	{"UID FETCH 1:* (", "* 1 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (70) RFC822.SIZE 13 INTERNALDATE \"01-Jan-2024 10:00:00 +0000\")\r\n" +
		"* 2 FETCH (UID 5 FLAGS () MODSEQ (71) RFC822.SIZE 7 INTERNALDATE \"02-Jan-2024 10:00:00 +0000\")\r\n" +
		"* 3 FETCH (UID 8 FLAGS (\\Flagged \\Seen) MODSEQ (77) RFC822.SIZE 5 INTERNALDATE \"03-Jan-2024 10:00:00 +0000\")\r\n%[1]s OK done\r\n"},
	{"UID SEARCH", "* SEARCH 2 5 8\r\n%[1]s OK done\r\n"},
	{"UID FETCH", "* 1 FETCH (UID 2 BODY[] {13}\r\nSubject: a\r\n\r\n)\r\n* 3 FETCH (UID 8 BODY[] {5}\r\nhi\r\n\r\n)\r\n%[1]s OK done\r\n"},
	{"UID STORE", "* 1 FETCH (UID 2 FLAGS (\\Seen \\Flagged) MODSEQ (78))\r\n%[1]s OK done\r\n"},
	{"UID EXPUNGE", "* 2 EXPUNGE\r\n%[1]s OK done\r\n"},
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

// mangledServer is a CONDSTORE + UIDPLUS fake whose answer to the commands
// starting with bad (one of fakeAnswers' prefixes) is mangled by mangle.
func mangledServer(t *testing.T, rng *rand.Rand, bad string) (string, int) {
	seed := rng.Uint64()
	return fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		rng := rand.New(rand.NewPCG(seed, 1)) // one sequence per connection
		say := func(s string) { c.Write([]byte(s)) }
		say("* OK [CAPABILITY IMAP4rev1 CONDSTORE UIDPLUS ENABLE] fake ready\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			up := strings.ToUpper(cmd)
			switch {
			case strings.HasPrefix(up, "AUTHENTICATE") || strings.HasPrefix(up, "LOGIN"):
				say(tag + " OK [CAPABILITY IMAP4rev1 CONDSTORE UIDPLUS ENABLE] in\r\n")
				continue
			case strings.HasPrefix(up, `LIST "" ""`):
				say(`* LIST (\Noselect) "/" ""` + "\r\n" + tag + " OK done\r\n")
				continue
			case strings.HasPrefix(up, "LOGOUT"):
				say("* BYE bye\r\n" + tag + " OK done\r\n")
				return
			}
			answer := tag + " OK done\r\n"
			for _, a := range fakeAnswers {
				if strings.HasPrefix(up, a.prefix) {
					answer = fmt.Sprintf(a.answer, tag)
					if a.prefix == bad {
						answer = mangle(rng, answer)
						if rng.IntN(3) > 0 {
							// Hang up after it (most broken servers do,
							// and a client waiting for the rest of an
							// answer cut short would wait out its timeout).
							say(answer)
							return
						}
					}
					break
				}
			}
			say(answer)
		}
	})
}

// Whatever a server answers, the store never panics and never hangs: each
// step returns, with an error or not, within its time. Every command of a
// pull and a push is answered wrongly in turn: a random byte, a cut,
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
	for _, a := range fakeAnswers {
		for round := range rounds {
			host, port := mangledServer(t, rng, a.prefix)
			s := fakeStore(t, host, port, func(c *Config) { c.Timeout = 300 * time.Millisecond })
			done := make(chan struct{})
			go func() {
				defer close(done)
				exerciseStore(s)
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s, round %d: the store did not return", a.prefix, round)
			}
			s.Close()
		}
	}
}

// exerciseStore runs what a sync asks of a far store, ignoring errors.
func exerciseStore(s *Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.ListMailboxes(ctx)
	s.StatusAll(ctx, []string{"INBOX"})
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		return
	}
	defer mb.Close()
	mb.List(ctx, engine.ListQuery{From: 1, ChangedSince: 60})
	mb.List(ctx, engine.ListQuery{All: true})
	mb.UIDs(ctx, 9)
	mb.Fetch(ctx, []engine.UID{2, 8}, func(uid engine.UID, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	mb.SetFlags(ctx, []engine.UID{2}, engine.FlagFlagged, 0)
	mb.Expunge(ctx, []engine.UID{5})
}
