package demo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestServerSeed(t *testing.T) {
	s, err := Start(ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := s.Seed()
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, mb := range Tree() {
		want += len(mb.Messages)
	}
	if n != want || n < 35 {
		t.Fatalf("seeded %d messages, want %d (>= 35)", n, want)
	}
	ctx := context.Background()
	for _, mb := range Tree() {
		got, err := s.Count(ctx, mb.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got != len(mb.Messages) {
			t.Errorf("%s: %d messages over IMAP, want %d", mb.Name, got, len(mb.Messages))
		}
	}
	if err := s.AddFlags(ctx, "INBOX", 1, imap.FlagFlagged); err != nil {
		t.Fatal(err)
	}
	// Deterministic: two calls give the same bytes.
	a, b := Tree(), Tree()
	for i := range a {
		for j := range a[i].Messages {
			if !bytes.Equal(a[i].Messages[j].Raw, b[i].Messages[j].Raw) {
				t.Fatalf("%s message %d differs between calls", a[i].Name, j)
			}
		}
	}
	// Some messages carry an attachment.
	att := 0
	for _, mb := range Tree() {
		for _, m := range mb.Messages {
			if bytes.Contains(m.Raw, []byte("Content-Transfer-Encoding: base64")) {
				att++
			}
		}
	}
	if att < 3 {
		t.Errorf("%d messages with an attachment, want >= 3", att)
	}
}

func TestLocalHelpers(t *testing.T) {
	root := t.TempDir()
	inbox := filepath.Join(root, "INBOX")
	sub := filepath.Join(root, "Archive", "2025")
	for _, d := range []string{inbox, sub} {
		for _, s := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(d, s), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.MkdirAll(filepath.Join(root, ".notmuch", "cur"), 0o755)
	os.MkdirAll(filepath.Join(root, ".notmuch", "new"), 0o755)
	os.WriteFile(filepath.Join(inbox, "cur", "1.a,U=1:2,S"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(inbox, "cur", "2.b,U=2:2,RF"), []byte("x"), 0o644)
	p, err := MarkSeen(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "2.b,U=2:2,FRS" {
		t.Errorf("MarkSeen renamed to %s, want 2.b,U=2:2,FRS", filepath.Base(p))
	}
	if _, err := MarkSeen(inbox); err == nil {
		t.Error("MarkSeen with every message seen: no error")
	}
	if _, err := Deliver(sub, LocalSent()); err != nil {
		t.Fatal(err)
	}
	fs, err := Folders(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0] != (Folder{"Archive/2025", 1}) || fs[1] != (Folder{"INBOX", 2}) {
		t.Errorf("Folders = %v", fs)
	}
	var buf bytes.Buffer
	if err := PrintTree(&buf, root); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "Archive/\n") || !strings.Contains(buf.String(), "2025") || strings.Contains(buf.String(), "notmuch") {
		t.Errorf("tree:\n%s", buf.String())
	}
}

func TestWriteConfigQuotes(t *testing.T) {
	dir := t.TempDir()
	s := &Server{Host: "127.0.0.1", Port: 1143, User: "demo", Password: `p"w\d`}
	path, err := WriteConfig(dir, filepath.Join(dir, `Mail "x"`), s)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `password = "p\"w\\d"`) || !strings.Contains(string(b), `Mail \"x\""`) {
		t.Errorf("config:\n%s", b)
	}
}

// The demo tells the user to edit its config into a real one: a re-run
// replaces the file only while it is the demo's own, whatever port the
// earlier run's server had, and leaves an edited one alone.
func TestWriteConfigKeepsAnEditedFile(t *testing.T) {
	dir := t.TempDir()
	mail := filepath.Join(dir, "Mail")
	path, err := WriteConfig(dir, mail, &Server{Host: "127.0.0.1", Port: 1143, User: "demo", Password: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteConfig(dir, mail, &Server{Host: "127.0.0.1", Port: 2143, User: "demo", Password: "demo"}); err != nil {
		t.Fatalf("re-run over the demo's own file: %v", err)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "port = 2143\n") {
		t.Errorf("the re-run did not write its own port:\n%s", b)
	}
	edited := strings.Replace(mustRead(t, path), `host = "127.0.0.1"`, `host = "imap.example.com"`, 1)
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = WriteConfig(dir, mail, &Server{Host: "127.0.0.1", Port: 3143, User: "demo", Password: "demo"})
	var ce *ConfigExistsError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another DIR") {
		t.Errorf("over an edited file: %v, want a ConfigExistsError naming %s and what to do", err, path)
	}
	if got := mustRead(t, path); got != edited {
		t.Errorf("the edited file was changed:\n%s", got)
	}
	// A file the demo never wrote.
	other := t.TempDir()
	writeAt := filepath.Join(other, ConfigName)
	if err := os.WriteFile(writeAt, []byte("# mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteConfig(other, mail, &Server{Host: "127.0.0.1", Port: 1143, User: "demo", Password: "demo"}); !errors.As(err, &ce) {
		t.Errorf("over a foreign file: %v, want a ConfigExistsError", err)
	}
	if got := mustRead(t, writeAt); got != "# mine\n" {
		t.Errorf("the foreign file was changed: %q", got)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
