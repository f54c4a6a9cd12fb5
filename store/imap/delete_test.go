package imap

import (
	"strings"
	"sync/atomic"
	"testing"
)

// TestFakeDeleteNeedsTheMessageCount: DeleteMailbox asks STATUS (MESSAGES)
// to remove only an empty mailbox (many servers DELETE a full one with its
// mail). A server whose STATUS answer leaves MESSAGES out, or sends none,
// says nothing about the count: that is no empty mailbox, and no DELETE
// goes out.
func TestFakeDeleteNeedsTheMessageCount(t *testing.T) {
	for _, tc := range []struct{ name, status string }{
		{"other items", "* STATUS Old (UIDNEXT 9 UIDVALIDITY 7)\r\n"},
		{"no answer", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var deleted atomic.Bool
			host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
				up := strings.ToUpper(cmd)
				switch {
				case strings.HasPrefix(up, "STATUS "):
					return tc.status + tag + " OK done\r\n"
				case strings.HasPrefix(up, "DELETE "):
					deleted.Store(true)
				}
				return ""
			}))
			s := fakeStore(t, host, port, nil)
			err := s.DeleteMailbox(ctxT(t), "Old")
			if err == nil || deleted.Load() {
				t.Fatalf("DeleteMailbox: %v, DELETE sent: %v", err, deleted.Load())
			}
		})
	}
}
