package cmd

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
)

func TestHumanHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newHumanHandler(&buf, slog.LevelWarn)).With("channel", "work")
	log.Info("not shown")
	log.Warn("sync error", "mailbox", "Sent Items", "err", errors.New(`NO [LIMIT] "too big"`))
	log.WithGroup("g").Error("failed", "n", 3)
	want := `quixysync: warning: sync error: channel=work mailbox="Sent Items" err="NO [LIMIT] \"too big\""` + "\n" +
		"quixysync: error: failed: channel=work g.n=3\n"
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
