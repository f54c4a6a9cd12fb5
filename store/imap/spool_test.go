package imap

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// Messages staged one after the other share one spool file, each read back
// as its own CRLF bytes; the file goes when the last of them is released
// (twice for some: Commit discards, then the engine discards what failed),
// and the next message starts a new one. Nothing is left in the spool dir.
func TestStageSharesOneSpoolFile(t *testing.T) {
	dir := t.TempDir()
	m := &Mailbox{s: &Store{cfg: Config{SpoolDir: dir}}, name: "INBOX"}
	ctx := context.Background()
	bodies := []string{"Subject: a\n\nfirst\n", "Subject: b\n\n" + strings.Repeat("x", 100<<10) + "\n", "Subject: c\n\nthird\n"}
	var st []engine.Staged
	for _, b := range bodies {
		s, err := m.Stage(ctx, engine.NewMessage{Body: strings.NewReader(b)})
		if err != nil {
			t.Fatal(err)
		}
		st = append(st, s)
	}
	f := st[0].(*staged).sp
	for i, s := range st {
		sp := s.(*staged)
		if sp.sp != f {
			t.Fatalf("message %d in a spool file of its own", i)
		}
		got, err := io.ReadAll(sp.body())
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.ReplaceAll(bodies[i], "\n", "\r\n"); string(got) != want || sp.Size() != int64(len(bodies[i])) {
			t.Fatalf("message %d reads back %d bytes (size %d), want %d (%d)", i, len(got), sp.Size(), len(want), len(bodies[i]))
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("spool dir holds %d entries; the file is unlinked at once", len(ents))
	}
	m.Discard(st[:2])
	m.Discard(st[:1]) // again: no second release
	if m.spool != f || f.refs != 1 {
		t.Fatalf("spool %p refs %d after two of three released; want the same file, 1", m.spool, f.refs)
	}
	m.Discard(st[2:])
	if m.spool != nil || f.refs != 0 {
		t.Fatalf("spool %p refs %d after all released; want none, 0", m.spool, f.refs)
	}
	if _, err := f.f.Stat(); err == nil {
		t.Fatal("the spool file is still open after its last message was released")
	}
	s, err := m.Stage(ctx, engine.NewMessage{Body: strings.NewReader(bodies[0])})
	if err != nil {
		t.Fatal(err)
	}
	if s.(*staged).sp == f || s.(*staged).off != 0 {
		t.Fatal("a message staged after the last release went into the closed file")
	}
	m.Discard([]engine.Staged{s})
}

// BenchmarkStage100 stages a batch of 100 messages of 14 KB (the size of
// the benchmark's pushes) and discards it, as a push that commits them would.
func BenchmarkStage100(b *testing.B) {
	m := &Mailbox{s: &Store{cfg: Config{SpoolDir: b.TempDir()}}, name: "INBOX"}
	body := "Subject: x\n\n" + strings.Repeat(strings.Repeat("y", 70)+"\n", 200)
	ctx := context.Background()
	st := make([]engine.Staged, 100)
	for b.Loop() {
		for i := range st {
			s, err := m.Stage(ctx, engine.NewMessage{Body: strings.NewReader(body)})
			if err != nil {
				b.Fatal(err)
			}
			st[i] = s
		}
		m.Discard(st)
	}
}

// A message staged while another is still being written into the spool
// file (not what the engine does, but two messages at one offset would be
// both corrupted, silently) goes into a file of its own; once a message is
// written, or its writing failed, the next goes behind what the file holds.
func TestStageWhileWritingTakesAnotherFile(t *testing.T) {
	m := &Mailbox{s: &Store{cfg: Config{SpoolDir: t.TempDir()}}, name: "INBOX"}
	create := func() (*os.File, error) { return os.CreateTemp(t.TempDir(), "spool") }
	a, _, err := m.spoolAt(create)
	if err != nil {
		t.Fatal(err)
	}
	b, offB, err := m.spoolAt(create)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("a second message went into the file a first one is being written into")
	}
	m.spoolWritten(b, offB, 100)
	c, offC, err := m.spoolAt(create)
	if err != nil {
		t.Fatal(err)
	}
	if c != b || offC != 100 {
		t.Fatalf("the next message goes to another file or offset %d, want behind the 100 bytes written", offC)
	}
	m.spoolWritten(c, offC, 0) // its writing failed
	d, offD, err := m.spoolAt(create)
	if err != nil {
		t.Fatal(err)
	}
	if d != b || offD != 100 {
		t.Fatalf("after a failed write the next message goes to offset %d, want 100", offD)
	}
}
