package imap

import (
	"bufio"
	"net"
	"strings"
	"testing"
)

// A server that names no UIDNEXT: the store takes the last message's UID
// + 1 and says it guessed (engine.Status.UIDNextGuessed), since that value
// goes down when the last message is removed; one the server names is not
// marked. (Asked as FETCH *, the answer was dropped and UIDNEXT taken as 1.)
func TestUIDNextGuessedWithoutTheServers(t *testing.T) {
	for _, tc := range []struct {
		name, selected string
		next           uint32
		guessed        bool
	}{
		{"named", "* 2 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 12] n\r\n", 12, false},
		{"missing", "* 2 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n", 8, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
					case strings.HasPrefix(up, "AUTHENTICATE") || strings.HasPrefix(up, "LOGIN"):
						say(tag + " OK [CAPABILITY IMAP4rev1] in\r\n")
					case strings.HasPrefix(up, `LIST "" ""`):
						say(`* LIST (\Noselect) "/" ""` + "\r\n" + tag + " OK done\r\n")
					case strings.HasPrefix(up, "SELECT"):
						say(tc.selected + tag + " OK [READ-WRITE] done\r\n")
					case strings.HasPrefix(up, "FETCH 2 ") || strings.HasPrefix(up, "FETCH * "):
						say("* 2 FETCH (UID 7)\r\n" + tag + " OK done\r\n")
					default:
						say(tag + " OK done\r\n")
					}
				}
			})
			st := fakeInbox(t, host, port).Status()
			if uint32(st.UIDNext) != tc.next || st.UIDNextGuessed != tc.guessed {
				t.Fatalf("UIDNext %d, guessed %v; want %d, %v", st.UIDNext, st.UIDNextGuessed, tc.next, tc.guessed)
			}
		})
	}
}
