package imap

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// RenameMailbox sends RENAME with the names on the wire (modified UTF-7):
// the mailbox keeps its UIDVALIDITY and messages, its children go along;
// INBOX is refused here, an existing target by the server.
func TestDoveRenameMailbox(t *testing.T) {
	var buf syncBuf
	s := doveStore(t, "bob", func(c *Config) { c.Debug = &buf })
	ctx := ctxT(t)
	for _, n := range []string{"Entwürfe", "Entwürfe/Unter", "Taken"} {
		if err := s.CreateMailbox(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	mb, err := s.OpenMailbox(ctx, "Entwürfe", false)
	if err != nil {
		t.Fatal(err)
	}
	stageCommit(t, ctx, mb, "Subject: x\n\nx\n", 0, time.Time{})
	validity := mb.Status().UIDValidity
	mb.Close()

	if err := s.RenameMailbox(ctx, "Entwürfe", "Archiv/Entwürfe 2025"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `RENAME "Entw&APw-rfe"`) {
		t.Errorf("the name not sent as modified UTF-7:\n%s", buf.String())
	}
	mb, err = s.OpenMailbox(ctx, "Archiv/Entwürfe 2025", true)
	if err != nil {
		t.Fatal(err)
	}
	if got := mb.Status(); got.UIDValidity != validity || got.Messages != 1 {
		t.Errorf("renamed: UIDVALIDITY %d, %d messages; want %d, 1", got.UIDValidity, got.Messages, validity)
	}
	mb.Close()
	infos, err := s.ListMailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := "|" + strings.Join(namesOf(infos), "|") + "|"
	if !strings.Contains(got, "|Archiv/Entwürfe 2025/Unter|") || strings.Contains(got, "|Entwürfe") {
		t.Errorf("after the rename: %s", got)
	}

	if err := s.RenameMailbox(ctx, "Archiv/Entwürfe 2025", "Taken"); !errors.Is(err, engine.ErrTaken) {
		t.Errorf("renamed onto an existing mailbox: %v, want ErrTaken", err)
	}
	for _, pair := range [][2]string{{"INBOX", "Old"}, {"Taken", "INBOX"}} {
		if err := s.RenameMailbox(ctx, pair[0], pair[1]); err == nil || !strings.Contains(err.Error(), "INBOX") {
			t.Errorf("rename %s to %s: %v, want it refused", pair[0], pair[1], err)
		}
	}
}
