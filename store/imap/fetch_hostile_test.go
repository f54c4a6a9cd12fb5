package imap

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

const twoMessages = "* 2 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 3] n\r\n"

// fetchFromFake fetches uids from INBOX of a fake server and reads each body to
// its end, as the engine's Stage does.
func fetchFromFake(t *testing.T, host string, port int, uids ...engine.UID) (bodies map[engine.UID]string, readErrs map[engine.UID]error, err error) {
	t.Helper()
	mb := fakeInbox(t, host, port)
	bodies, readErrs = map[engine.UID]string{}, map[engine.UID]error{}
	err = mb.Fetch(ctxT(t), uids, func(uid engine.UID, r io.Reader) error {
		b, err := io.ReadAll(r)
		bodies[uid], readErrs[uid] = string(b), err
		return err
	})
	return bodies, readErrs, err
}

// A server that hangs up in the middle of a body: go-imap reads the literal
// through a LimitReader, which then ends with a clean io.EOF. The body must
// read as cut off, not as a shorter message.
func TestFetchBodyCutShortByTheServer(t *testing.T) {
	host, port := fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		say := func(s string) { c.Write([]byte(s)) }
		say("* OK [CAPABILITY IMAP4rev1] fake ready\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			up := strings.ToUpper(cmd)
			switch {
			case strings.HasPrefix(up, "UID FETCH"):
				say("* 1 FETCH (UID 1 BODY[] {100}\r\n" + strings.Repeat("x", 40))
				return // hang up in the middle of the body
			case strings.HasPrefix(up, "AUTHENTICATE") || strings.HasPrefix(up, "LOGIN"):
				say(tag + " OK [CAPABILITY IMAP4rev1] in\r\n")
			case strings.HasPrefix(up, `LIST "" ""`):
				say(`* LIST (\Noselect) "/" ""` + "\r\n" + tag + " OK done\r\n")
			case strings.HasPrefix(up, "SELECT"):
				say(twoMessages + tag + " OK [READ-WRITE] done\r\n")
			default:
				say(tag + " OK done\r\n")
			}
		}
	})
	bodies, readErrs, err := fetchFromFake(t, host, port, 1)
	if !errors.Is(readErrs[1], io.ErrUnexpectedEOF) {
		t.Errorf("reading a body cut off after 40 of 100 bytes: %d bytes, error %v; want io.ErrUnexpectedEOF", len(bodies[1]), readErrs[1])
	}
	if err == nil {
		t.Error("Fetch succeeded although the connection ended in the middle of a body")
	}
}

// A section other than the whole message (a piece of it, a header) is not
// the body Fetch asked for: it is never handed over as the message.
func TestFetchTakesOnlyTheWholeBody(t *testing.T) {
	for _, tc := range []struct {
		name, answer string
		want         string // "" when the message must count as not returned
	}{
		{"partial", "* 1 FETCH (UID 1 BODY[]<0> {5}\r\nhello)\r\n", ""},
		{"header-then-body", "* 1 FETCH (UID 1 BODY[HEADER] {4}\r\nH: x BODY[] {9}\r\nH: x\r\n\r\nb)\r\n", "H: x\n\nb"},
		{"part", "* 1 FETCH (UID 1 BODY[1] {4}\r\npart)\r\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, port := selectedServer(t, "IMAP4rev1", twoMessages, func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
				up := strings.ToUpper(cmd)
				switch {
				case strings.HasPrefix(up, "UID FETCH"):
					say(tc.answer + tag + " OK done\r\n")
					return true
				case strings.HasPrefix(up, "UID SEARCH"):
					say("* SEARCH 1\r\n" + tag + " OK done\r\n") // it exists
					return true
				}
				return false
			})
			bodies, _, err := fetchFromFake(t, host, port, 1)
			if tc.want == "" {
				if b, ok := bodies[1]; ok {
					t.Errorf("handed over %q as the message", b)
				}
				if err == nil {
					t.Error("Fetch succeeded without the message's body")
				}
				return
			}
			if err != nil || bodies[1] != tc.want {
				t.Errorf("got %q, %v; want %q", bodies[1], err, tc.want)
			}
		})
	}
}

// A server that refuses a body FETCH naming a message expunged meanwhile
// with a plain NO (no [EXPUNGEISSUED]), having sent the other bodies:
// the gone message is skipped like one not answered, the others are
// handed over, and Fetch succeeds.
func TestFetchRefusedForAnExpungedMessage(t *testing.T) {
	host, port := selectedServer(t, "IMAP4rev1", twoMessages, func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
		up := strings.ToUpper(cmd)
		switch {
		case strings.HasPrefix(up, "UID FETCH"):
			say("* 1 FETCH (UID 1 BODY[] {7}\r\nHi: x\r\n)\r\n" + tag + " NO Some of the requested messages no longer exist\r\n")
			return true
		case strings.HasPrefix(up, "UID SEARCH"):
			say("* SEARCH\r\n" + tag + " OK done\r\n") // UID 2 is gone
			return true
		}
		return false
	})
	bodies, _, err := fetchFromFake(t, host, port, 1, 2)
	if err != nil || bodies[1] != "Hi: x\n" || len(bodies) != 1 {
		t.Fatalf("got %v, %v; want UID 1's body and no error", bodies, err)
	}
}
