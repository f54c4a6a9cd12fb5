package maildir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

func newTestStore(t testing.TB, layout Layout) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	// Every folder watched, however small, as in the tests before watchMin.
	s, err := New("maildir.test", root, "", layout, Options{WatchAll: true})
	if err != nil {
		t.Fatal(err)
	}
	// Its inotify instance: a user has 128, and a test binary that leaves
	// them open leaves later tests without watches.
	t.Cleanup(func() { s.Close() })
	return s, root
}

func TestNamePath(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	for name, want := range map[string]string{
		"INBOX":         "INBOX",
		"INBOX/sub":     "INBOX/sub",
		"a/b":           "a/b",
		"Entwürfe":      "Entwürfe",
		"Tom & Jerry":   "Tom & Jerry",
		"A&-B":          "A&--B", // its UTF-8 form would read back as "A&B"
		"Sent Messages": "Sent Messages",
	} {
		got, err := s.mailboxPath(name)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("mailboxPath(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	pp, proot := newTestStore(t, LayoutMaildirPP)
	for name, want := range map[string]string{
		"INBOX":     "",
		"a/b":       ".a.b",
		"INBOX/x":   ".INBOX.x",
		"Entwürfe":  ".Entwürfe",
		"a/Tom & J": ".a.Tom & J",
	} {
		got, err := pp.mailboxPath(name)
		if err != nil || got != filepath.Join(proot, want) {
			t.Errorf("maildir++ mailboxPath(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestBadNames(t *testing.T) {
	s, _ := newTestStore(t, LayoutVerbatim)
	pp, _ := newTestStore(t, LayoutMaildirPP)
	bad := []string{"", "/etc", "a//b", "a/", "../x", "a/../../x", "..", ".", "a/./b", "a\x00b", "\xff", ".hidden", "a/.git", "a/cur", "cur", "cur/x", "Inbox", "inbox/x"}
	for _, name := range bad {
		_, err := s.mailboxPath(name)
		if !errors.Is(err, engine.ErrBadName) || !strings.Contains(err.Error(), "maildir.test") {
			t.Errorf("verbatim %q: got %v, want ErrBadName naming the store", name, err)
		}
		if err := s.CreateMailbox(t.Context(), name); !errors.Is(err, engine.ErrBadName) {
			t.Errorf("CreateMailbox(%q) = %v", name, err)
		}
		if _, err := s.OpenMailbox(t.Context(), name, false); !errors.Is(err, engine.ErrBadName) {
			t.Errorf("OpenMailbox(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"a.b", "x/.y", "..", "a/b/", "/a"} {
		if _, err := pp.mailboxPath(name); !errors.Is(err, engine.ErrBadName) {
			t.Errorf("maildir++ %q: got %v, want ErrBadName", name, err)
		}
	}
	// A server mailbox with a "." can only be left out, or the layout
	// changed: the error, which comes back every run, says so.
	_, err := pp.mailboxPath("Lists/Foo.Bar")
	if !errors.Is(err, engine.ErrBadName) || !strings.Contains(err.Error(), `exclude it in the channel's mailboxes (e.g. "!Lists/Foo.Bar")`) ||
		!strings.Contains(err.Error(), `layout = "verbatim"`) {
		t.Errorf("maildir++ \"Lists/Foo.Bar\": %v; want ErrBadName and how to fix it", err)
	}
	// The error names the mailbox.
	_, err = s.mailboxPath("../../etc")
	if err == nil || !strings.Contains(err.Error(), `"../../etc"`) {
		t.Errorf("error does not name the mailbox: %v", err)
	}
}

// An inbox configured inside the store's root: no other name may map to
// its directory or below it (INBOX and INBOX/... name those), so two server
// mailboxes never share a folder; the error says what to change.
func TestInboxInsideRootNotAliased(t *testing.T) {
	for _, layout := range []Layout{LayoutVerbatim, LayoutMaildirPP} {
		root := t.TempDir()
		inboxDir := filepath.Join(root, "Archive")
		if layout == LayoutMaildirPP {
			inboxDir = filepath.Join(root, ".Archive")
		}
		s, err := New("maildir.test", root, inboxDir, layout, Options{})
		if err != nil {
			t.Fatal(err)
		}
		in, err := s.MailboxDir("INBOX")
		if err != nil || in != inboxDir {
			t.Fatalf("layout %v: INBOX at %q, %v", layout, in, err)
		}
		for _, name := range []string{"Archive", "Archive/x"} {
			p, err := s.MailboxDir(name)
			if layout == LayoutMaildirPP && name == "Archive/x" {
				// .Archive.x is a sibling of .Archive: its own folder.
				if err != nil || p != filepath.Join(root, ".Archive.x") {
					t.Errorf("maildir++ %q: %q, %v", name, p, err)
				}
				continue
			}
			if !errors.Is(err, engine.ErrBadName) || !strings.Contains(err.Error(), "inbox") {
				t.Errorf("layout %v: %q maps to %q, %v; want ErrBadName naming the inbox", layout, name, p, err)
			}
		}
		if p, err := s.MailboxDir("Other"); err != nil || within(inboxDir, p) {
			t.Errorf("layout %v: Other at %q, %v", layout, p, err)
		}
	}
	// An inbox that is the root, or outside it, aliases nothing this way.
	s, root := newTestStore(t, LayoutVerbatim)
	if p, err := s.MailboxDir("Archive"); err != nil || p != filepath.Join(root, "Archive") {
		t.Errorf("Archive with the inbox outside the root: %q, %v", p, err)
	}
}

func FuzzNamePath(f *testing.F) {
	for _, s := range []string{"INBOX", "a/b", "../x", "Entwürfe", "A&-B", "a/./b", "x\x00", "/abs", "INBOX/..", "a/.."} {
		f.Add(s, false)
		f.Add(s, true)
	}
	root := f.TempDir()
	// Existing mbsync-style directories make the mapping take the other branch.
	for _, d := range []string{"Entw&APw-rfe", ".Entw&APw-rfe", "a/&AOQ-"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			f.Fatal(err)
		}
	}
	stores := map[bool]*Store{}
	for pp, l := range map[bool]Layout{false: LayoutVerbatim, true: LayoutMaildirPP} {
		s, err := New("maildir.fuzz", root, "", l, Options{})
		if err != nil {
			f.Fatal(err)
		}
		stores[pp] = s
	}
	f.Fuzz(func(t *testing.T, name string, pp bool) {
		s := stores[pp]
		p, err := s.mailboxPath(name)
		if err != nil {
			if !errors.Is(err, engine.ErrBadName) {
				t.Fatalf("%q: error not ErrBadName: %v", name, err)
			}
			return
		}
		if name == "INBOX" {
			if p != s.inbox {
				t.Fatalf("INBOX → %q", p)
			}
			return
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
			t.Fatalf("%q maps to %q, outside the root %q", name, p, root)
		}
		if p != filepath.Clean(p) {
			t.Fatalf("%q maps to unclean %q", name, p)
		}
	})
}
