package maildir

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// RenameMailbox moves the folder with its files (the UIDs stay the
// same) and, in the verbatim layout, its subfolders; the new place's
// parents are made, and every directory whose entries changed is made
// durable.
func TestRenameMailbox(t *testing.T) {
	for _, tc := range []struct {
		layout   Layout
		from, to string
		// synced: the directories fsynced, relative to the root.
		synced []string
	}{
		{LayoutVerbatim, "Foo", "Bar", []string{"."}},
		{LayoutVerbatim, "Foo", "Archive/2024/Foo", []string{".", "Archive", "Archive/2024"}},
		{LayoutVerbatim, "Old/Foo", "Bar", []string{".", "Old"}},
		{LayoutMaildirPP, "Foo", "Archive/Foo", []string{"."}},
	} {
		t.Run(tc.from+"→"+tc.to, func(t *testing.T) {
			root := t.TempDir()
			s, err := New("test", root, "", tc.layout, Options{Fsync: true})
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			for _, box := range []string{tc.from, tc.from + "/Sub"} {
				if err := s.CreateMailbox(ctx, box); err != nil {
					t.Fatal(err)
				}
			}
			src, _ := s.MailboxDir(tc.from)
			writeFile(t, filepath.Join(src, "cur", "1.m:2,S"), "x\n")
			writeFile(t, filepath.Join(src, engine.StateFileName), "state\n")
			before := open(t, s, tc.from, false)
			uids := slices.Collect(maps.Keys(list(t, before)))
			before.Close()
			var synced []string
			s.testHook = func(op, path string) error {
				if op == "fsyncdir" {
					rel, _ := filepath.Rel(root, path)
					synced = append(synced, rel)
				}
				return nil
			}
			if err := s.RenameMailbox(ctx, tc.from, tc.to); err != nil {
				t.Fatal(err)
			}
			slices.Sort(synced)
			if !slices.Equal(synced, tc.synced) {
				t.Errorf("directories made durable: %v, want %v", synced, tc.synced)
			}
			if _, err := os.Stat(src); !os.IsNotExist(err) {
				t.Errorf("%s still there (%v)", src, err)
			}
			mb := open(t, s, tc.to, true)
			defer mb.Close()
			if got := slices.Collect(maps.Keys(list(t, mb))); len(uids) != 1 || !slices.Equal(got, uids) {
				t.Errorf("%s holds UIDs %v, want %v", tc.to, got, uids)
			}
			dst, _ := s.MailboxDir(tc.to)
			if _, err := os.Stat(filepath.Join(dst, engine.StateFileName)); err != nil {
				t.Errorf("the state did not move along: %v", err)
			}
			// The subfolder moves along where it is inside (verbatim), and
			// stays where it is a folder of its own (Maildir++).
			sub, _ := s.MailboxDir(tc.to + "/Sub")
			oldSub, _ := s.MailboxDir(tc.from + "/Sub")
			moved := tc.layout == LayoutVerbatim
			if got := isMailbox(sub); got != moved {
				t.Errorf("%s/Sub there: %v, want %v", tc.to, got, moved)
			}
			if got := isMailbox(oldSub); got == moved {
				t.Errorf("%s/Sub there: %v, want %v", tc.from, got, !moved)
			}
		})
	}
}

// What RenameMailbox refuses, leaving everything where it was: a new place
// that holds anything (ErrTaken), a parent that is a file, a folder moved
// into itself or around its parent, the inbox, a folder that is not there.
func TestRenameMailboxRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		prepare        func(t *testing.T, root string)
		want           string
	}{
		{"onto a folder", "Foo", "Bar", func(t *testing.T, root string) { mkMaildir(t, filepath.Join(root, "Bar")) }, "exists"},
		{"onto a directory holding a file", "Foo", "Bar", func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "Bar", "notes.txt"), "mine")
		}, "exists"},
		{"onto a file", "Foo", "Bar", func(t *testing.T, root string) { writeFile(t, filepath.Join(root, "Bar"), "mine") }, "exists"},
		{"under a file", "Foo", "Bar/Foo", func(t *testing.T, root string) { writeFile(t, filepath.Join(root, "Bar"), "x") }, "not a directory"},
		{"into itself", "Foo", "Foo/Bar", nil, "apart"},
		{"around its parent", "Foo", "Foo/Sub", nil, "apart"},
		{"the inbox", "INBOX", "Bar", nil, "apart"},
		{"to the inbox", "Foo", "INBOX", nil, "apart"},
		{"not there", "Nope", "Bar", nil, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			s, err := New("test", root, filepath.Join(root, "inbox"), LayoutVerbatim, Options{Fsync: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, box := range []string{"INBOX", "Foo"} {
				if err := s.CreateMailbox(t.Context(), box); err != nil {
					t.Fatal(err)
				}
			}
			if tc.prepare != nil {
				tc.prepare(t, root)
			}
			before := tree(t, root)
			err = s.RenameMailbox(t.Context(), tc.from, tc.to)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if tc.want == "does not exist" && !errors.Is(err, engine.ErrNoMailbox) {
				t.Errorf("%v is not ErrNoMailbox", err)
			}
			if tc.want == "exists" && !errors.Is(err, engine.ErrTaken) {
				t.Errorf("%v is not ErrTaken", err)
			}
			if after := tree(t, root); after != before {
				t.Errorf("the tree changed:\n%s\nwas:\n%s", after, before)
			}
		})
	}
}

// An empty directory at the new place (a folder deleted by hand leaves
// one) is no folder: the rename takes its place.
func TestRenameMailboxOntoEmptyDirectory(t *testing.T) {
	root := t.TempDir()
	s, err := New("test", root, "", LayoutVerbatim, Options{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(t.Context(), "Foo"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "Bar"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameMailbox(t.Context(), "Foo", "Bar"); err != nil {
		t.Fatal(err)
	}
	if !isMailbox(filepath.Join(root, "Bar")) {
		t.Error("Bar is not the folder moved")
	}
}

// With the inbox configured outside the root (mbsync's Inbox ~/Maildir
// beside Path ~/Mail/), INBOX/... folders live under the inbox: a rename
// to a new place there makes its missing parents too, and one from there
// moves back under the root. The parents were taken for leaving the store
// and the rename refused, so a far rename into INBOX/A/ failed at every run
// and the far mailbox never synced.
func TestRenameMailboxUnderInboxOutsideRoot(t *testing.T) {
	dir := t.TempDir()
	s, err := New("test", filepath.Join(dir, "root"), filepath.Join(dir, "inbox"), LayoutVerbatim, Options{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, box := range []string{"INBOX", "Foo"} {
		if err := s.CreateMailbox(ctx, box); err != nil {
			t.Fatal(err)
		}
	}
	src, _ := s.MailboxDir("Foo")
	writeFile(t, filepath.Join(src, "cur", "1.m:2,S"), "x\n")
	for _, pair := range [][2]string{{"Foo", "INBOX/A/Foo"}, {"INBOX/A/Foo", "B/C/Foo"}} {
		if err := s.RenameMailbox(ctx, pair[0], pair[1]); err != nil {
			t.Fatal(err)
		}
		mb := open(t, s, pair[1], true)
		if n := len(list(t, mb)); n != 1 {
			t.Errorf("%s holds %d messages, want 1", pair[1], n)
		}
		mb.Close()
	}
	if d, _ := s.MailboxDir("INBOX/A/Foo"); !strings.HasPrefix(d, filepath.Join(dir, "inbox")+string(filepath.Separator)) {
		t.Errorf("INBOX/A/Foo's folder %s is not under the inbox", d)
	}
}
