package maildir

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// logBuf is a log destination that a Prefetch goroutine and the test may
// write and read at once.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// badLinks are the symbolic links that are no message: each makes its link
// at path.
var badLinks = []struct {
	kind string
	make func(path string) error
}{
	{"dangling", func(p string) error { return os.Symlink("/nonexistent/quixysync/file", p) }},
	{"loop", func(p string) error { return os.Symlink(filepath.Base(p), p) }},
	{"dir", func(p string) error { return os.Symlink(filepath.Dir(filepath.Dir(p)), p) }},
}

// A symbolic link in new/ or cur/ that leads to no file (dangling, a loop)
// or to a directory is left alone — not renamed to carry a ",U=", not
// listed — and named in one warning per run; the folder's messages are
// listed as if it were not there, by a scan and by a locate. Before, the
// scan renamed it, statAll took its ENOENT for a mail client's rename, and
// List failed every time.
func TestBadLinkLeftAlone(t *testing.T) {
	for _, bl := range badLinks {
		for _, sub := range []string{"new", "cur"} {
			t.Run(bl.kind+"/"+sub, func(t *testing.T) {
				root := t.TempDir()
				var logs logBuf
				s, err := New("near", root, "", LayoutVerbatim, Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
				if err != nil {
					t.Fatal(err)
				}
				dir := filepath.Join(root, "INBOX")
				mkMaildir(t, dir)
				writeFile(t, filepath.Join(dir, ".uidvalidity"), "42\n2\n")
				writeFile(t, filepath.Join(dir, "cur", "a,U=1:2,S"), "a\n")
				writeFile(t, filepath.Join(dir, "new", "b,U=2"), "b\n")
				writeFile(t, filepath.Join(dir, "new", "c"), "c\n") // gets a UID
				link := filepath.Join(dir, sub, "999.link.host")
				if sub == "cur" {
					link += ":2,S"
				}
				if err := bl.make(link); err != nil {
					t.Fatal(err)
				}
				for run := 0; run < 2; run++ {
					mb := open(t, s, "INBOX", false)
					mb.Prefetch(t.Context())
					msgs := list(t, mb)
					if len(msgs) != 3 || msgs[1].Size != 2 || msgs[2].Size != 2 {
						t.Fatalf("listing %d: %+v, want UIDs 1, 2 and a fresh one, of 2 bytes each", run, msgs)
					}
					if _, err := os.Lstat(link); err != nil {
						t.Fatalf("the link was touched: %v", err)
					}
					// SetFlags on an unlisted folder locates its files.
					mb = open(t, s, "INBOX", false)
					mb.WillTouch([]engine.UID{1})
					if err := mb.SetFlags(t.Context(), []engine.UID{1}, engine.FlagFlagged, 0); err != nil {
						t.Fatal(err)
					}
				}
				if got := strings.Count(logs.String(), link); got != 1 {
					t.Errorf("the log names %s %d times, want once:\n%s", link, got, logs.String())
				}
				if !strings.Contains(logs.String(), "level=WARN") {
					t.Errorf("no warning:\n%s", logs.String())
				}
				if _, err := os.Lstat(link); err != nil {
					t.Errorf("the link was touched: %v", err)
				}
			})
		}
	}
}

// A symbolic link to a message file is a message, as it always was: it gets
// a UID (the link is renamed, not its target), its size and date are the
// target's, and its content is read through it.
func TestLinkToFileIsMessage(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	target := filepath.Join(root, "elsewhere")
	writeFile(t, target, "linked body\n")
	if err := os.Symlink(target, filepath.Join(dir, "new", "1.link.host")); err != nil {
		t.Fatal(err)
	}
	mb := open(t, s, "INBOX", false)
	msgs := list(t, mb)
	if len(msgs) != 1 || msgs[1].Size != 12 {
		t.Fatalf("listing: %+v", msgs)
	}
	if got := fetch(t, mb, 1); got[1] != "linked body\n" {
		t.Errorf("fetch: %v", got)
	}
	names := files(t, dir, "new")
	if !slices.Equal(names, []string{"1.link.host,U=1"}) {
		t.Fatalf("new/ = %v", names)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "new", names[0])); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", fi, err)
	}
}

// A run between two Maildir trees with a dangling link and a link loop in
// the near INBOX's new/ and cur/ still moves mail both ways, and the warning
// names the files.
func TestBadLinksDoNotStopSync(t *testing.T) {
	dir := t.TempDir()
	var logs logBuf
	newStore := func(side string) *Store {
		s, err := New(side, filepath.Join(dir, side), "", LayoutVerbatim, Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	far, near := newStore("far"), newStore("near")
	ctx := context.Background()
	for _, s := range []*Store{far, near} {
		if err := s.CreateMailbox(ctx, "INBOX"); err != nil {
			t.Fatal(err)
		}
	}
	farDir, nearDir := filepath.Join(dir, "far", "INBOX"), filepath.Join(dir, "near", "INBOX")
	writeFile(t, filepath.Join(farDir, "cur", "1700000000.f1.host:2,S"), "Subject: far\n\nbody\n")
	writeFile(t, filepath.Join(nearDir, "new", "1700000001.n1.host"), "Subject: near\n\nbody\n")
	var links []string
	for _, sub := range []string{"new", "cur"} {
		d := filepath.Join(nearDir, sub, "1700000002.dangling.host")
		l := filepath.Join(nearDir, sub, "1700000003.loop.host")
		if err := os.Symlink("/nonexistent/quixysync/file", d); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Base(l), l); err != nil {
			t.Fatal(err)
		}
		links = append(links, d, l)
	}
	spec := engine.ChannelSpec{
		Name: "links", Far: far, Near: near,
		Pull: engine.OpAll, Push: engine.OpAll, Create: [2]bool{true, true},
		StateDir: filepath.Join(dir, "state"), LockDir: filepath.Join(dir, "locks"),
	}
	subjects := func(d string) []string {
		var out []string
		for _, sub := range []string{"new", "cur"} {
			for _, n := range files(t, d, sub) {
				b, err := os.ReadFile(filepath.Join(d, sub, n))
				if err != nil {
					continue // the links
				}
				out = append(out, strings.SplitN(string(b), "\n", 2)[0])
			}
		}
		slices.Sort(out)
		return out
	}
	for run := 0; run < 2; run++ {
		res := engine.SyncChannel(ctx, spec, engine.RunOptions{})
		if res.Err != nil || len(res.Mailboxes) != 1 || res.Mailboxes[0].Err != nil {
			t.Fatalf("run %d: %+v", run, res)
		}
	}
	want := []string{"Subject: far", "Subject: near"}
	for _, d := range []string{farDir, nearDir} {
		if got := subjects(d); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
	for _, l := range links {
		if _, err := os.Lstat(l); err != nil {
			t.Errorf("link touched: %v", err)
		}
		if !strings.Contains(logs.String(), fmt.Sprintf("file=%s", l)) {
			t.Errorf("no warning names %s:\n%s", l, logs.String())
		}
	}
}
