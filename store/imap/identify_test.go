package imap

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// Identify answers each message's Message-ID, Date, Subject and X-TUID
// fields and its size on the
// wire, from Dovecot, without the bodies: the size is the CRLF form of
// what was appended, whatever order the server sends the items in.
func TestDoveIdentify(t *testing.T) {
	_, mb, trace := doveTracedInbox(t, "alice")
	ctx := ctxT(t)
	bodies := []string{
		"Message-ID: <one@test>\nSubject: one\nFrom: a@test\nX-TUID: ZYJQgcJ/uOgF\n\nfirst\n",
		"From: none@test\n\nno Message-ID\n",
		"Subject: folded\nMessage-ID:\n <two@test>\n\n" + strings.Repeat("line\n", 1000),
	}
	var uids []engine.UID
	for _, b := range bodies {
		uids = append(uids, stageCommit(t, ctx, mb, b, 0, time.Time{}).UID)
	}
	trace.commands() // only what Identify sends from here on
	type got struct {
		header string
		size   int64
	}
	res := map[engine.UID]got{}
	err := mb.(engine.Identifier).Identify(ctx, append(uids, uids[2]+100), func(uid engine.UID, h io.Reader, size int64) error {
		b, err := io.ReadAll(bufio.NewReader(h))
		res[uid] = got{string(b), size}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 {
		t.Fatalf("answers for %d messages, want 3 (a missing UID is skipped): %v", len(res), res)
	}
	for i, u := range uids {
		wantSize := int64(len(bodies[i]) + strings.Count(bodies[i], "\n"))
		if res[u].size != wantSize {
			t.Errorf("message %d: size %d, want the CRLF size %d", i, res[u].size, wantSize)
		}
	}
	if h := res[uids[0]].header; !strings.Contains(h, "Message-ID: <one@test>") || !strings.Contains(h, "Subject: one") ||
		!strings.Contains(h, "X-TUID: ZYJQgcJ/uOgF") || strings.Contains(h, "From") {
		t.Errorf("header of message 0: %q, want the Message-ID, Subject and X-TUID fields alone", h)
	}
	if h := res[uids[1]].header; strings.Contains(h, "From") || strings.Contains(h, "Message-ID") {
		t.Errorf("header of message 1: %q, want nothing of it", h)
	}
	if h := res[uids[2]].header; !strings.Contains(h, "<two@test>") {
		t.Errorf("header of message 2: %q, want the folded Message-ID", h)
	}
	// One FETCH of the header field, not of the bodies, one more for the
	// UID nothing answered (gone, or its answer taken by an unsolicited
	// FETCH: see Identify), and a SEARCH to tell that it is gone.
	cmds := trace.commands()
	missing := strconv.Itoa(int(uids[2] + 100))
	if len(cmds) != 3 || !strings.Contains(cmds[0], "BODY.PEEK[HEADER.FIELDS (") || !strings.Contains(cmds[0], "Message-ID") || !strings.Contains(cmds[0], "RFC822.SIZE") ||
		!strings.Contains(cmds[1], "UID FETCH "+missing+" (") || !strings.Contains(cmds[2], "UID SEARCH") || !strings.HasSuffix(cmds[2], "UID "+missing) {
		t.Errorf("commands %q, want one UID FETCH of RFC822.SIZE and the Message-ID field, then one of UID %s alone, then a UID SEARCH of it", cmds, missing)
	}
}
