package imap

import (
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
			host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
				up := strings.ToUpper(cmd)
				switch {
				case strings.HasPrefix(up, "SELECT"):
					return tc.selected + tag + " OK [READ-WRITE] done\r\n"
				case strings.HasPrefix(up, "FETCH 2 ") || strings.HasPrefix(up, "FETCH * "):
					return "* 2 FETCH (UID 7)\r\n" + tag + " OK done\r\n"
				}
				return ""
			}))
			st := fakeInbox(t, host, port).Status()
			if uint32(st.UIDNext) != tc.next || st.UIDNextGuessed != tc.guessed {
				t.Fatalf("UIDNext %d, guessed %v; want %d, %v", st.UIDNext, st.UIDNextGuessed, tc.next, tc.guessed)
			}
		})
	}
}
