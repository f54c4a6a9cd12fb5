package maildir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

func names(t testing.TB, s *Store) []string {
	t.Helper()
	infos, err := s.ListMailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, i := range infos {
		out = append(out, i.Name)
	}
	return out
}

func TestListVerbatim(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	if got := names(t, s); len(got) != 0 {
		t.Fatalf("empty root lists %v", got)
	}
	mkMaildir(t, filepath.Join(root, "INBOX"))
	mkMaildir(t, filepath.Join(root, "INBOX", "Sub"))
	mkMaildir(t, filepath.Join(root, "Entw&APw-rfe &- Co", "Sub")) // mbsync 1.4, parent not a Maildir
	mkMaildir(t, filepath.Join(root, "Archiv", "2024"))
	mkMaildir(t, filepath.Join(root, "Archiv"))
	mkMaildir(t, filepath.Join(root, "Tom & Jerry")) // '&' but not modified UTF-7: UTF-8
	mkMaildir(t, filepath.Join(root, "日本語"))
	mkMaildir(t, filepath.Join(root, ".notmuch"))
	mkMaildir(t, filepath.Join(root, ".git"))
	mkMaildir(t, filepath.Join(root, "Archiv", ".hidden"))
	if err := os.MkdirAll(filepath.Join(root, "not-a-maildir", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "notes.txt"), "x")
	writeFile(t, filepath.Join(root, "INBOX", ".quixysync-state"), "x")
	want := []string{"Archiv", "Archiv/2024", "Entwürfe & Co/Sub", "INBOX", "INBOX/Sub", "Tom & Jerry", "日本語"}
	if got := names(t, s); !slices.Equal(got, want) {
		t.Errorf("ListMailboxes = %q, want %q", got, want)
	}
	// The mUTF-7 directory is used for that name: no second directory.
	if err := s.CreateMailbox(t.Context(), "Entwürfe & Co/Sub"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(t.Context(), "Entwürfe & Co/Neu"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Entwürfe & Co")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a UTF-8 twin of the mbsync directory was created (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(root, "Entw&APw-rfe &- Co", "Neu", "cur")); err != nil {
		t.Error(err)
	}
	// New folders are UTF-8 on disk.
	if err := s.CreateMailbox(t.Context(), "Gelöscht/Älter"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Gelöscht", "Älter", "new")); err != nil {
		t.Error(err)
	}
	got := names(t, s)
	for _, n := range []string{"Gelöscht/Älter", "Entwürfe & Co/Neu"} {
		if !slices.Contains(got, n) {
			t.Errorf("%q missing from %q", n, got)
		}
	}
	// Status is filled cheaply for folders with a .uidvalidity.
	infos, _ := s.ListMailboxes(t.Context())
	for _, i := range infos {
		if i.Name == "Gelöscht/Älter" && (i.Status == nil || i.Status.UIDValidity == 0 || i.Status.UIDNext != 1) {
			t.Errorf("status of %s: %+v", i.Name, i.Status)
		}
		if i.Name == "Archiv" && i.Status != nil {
			t.Errorf("Archiv has no .uidvalidity yet but a status %+v", i.Status)
		}
	}
	mb, err := s.OpenMailbox(t.Context(), "Entwürfe & Co/Sub", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Entw&APw-rfe &- Co", "Sub", ".uidvalidity")); err != nil {
		t.Errorf("open did not use the mbsync directory: %v", err)
	}
	_ = mb.Close()
	if _, err := s.OpenMailbox(t.Context(), "Nope", false); !errors.Is(err, engine.ErrNoMailbox) {
		t.Errorf("OpenMailbox of a missing mailbox: %v", err)
	}
	if d, err := s.MailboxDir("INBOX/Sub"); err != nil || d != filepath.Join(root, "INBOX", "Sub") {
		t.Errorf("MailboxDir = %q, %v", d, err)
	}
}

func TestInboxElsewhere(t *testing.T) {
	root := t.TempDir()
	inbox := filepath.Join(t.TempDir(), "inbox")
	s, err := New("maildir.x", root, inbox, LayoutVerbatim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mkMaildir(t, filepath.Join(root, "INBOX")) // not the inbox: skipped with a warning
	mkMaildir(t, filepath.Join(root, "Sent"))
	if err := s.CreateMailbox(t.Context(), "INBOX/Sub"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(t.Context(), "INBOX"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(inbox, "Sub", "cur")); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, s), []string{"INBOX", "INBOX/Sub", "Sent"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMaildirPP(t *testing.T) {
	s, root := newTestStore(t, LayoutMaildirPP)
	mkMaildir(t, root)
	mkMaildir(t, filepath.Join(root, ".a.b"))
	mkMaildir(t, filepath.Join(root, ".Entw&APw-rfe"))
	mkMaildir(t, filepath.Join(root, ".Sent"))
	mkMaildir(t, filepath.Join(root, ".bad..name"))
	if err := os.MkdirAll(filepath.Join(root, ".notmuch", "xapian"), 0o700); err != nil {
		t.Fatal(err)
	}
	want := []string{"Entwürfe", "INBOX", "Sent", "a/b"}
	if got := names(t, s); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if err := s.CreateMailbox(t.Context(), "x/Gelöscht"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".x.Gelöscht", "cur")); err != nil {
		t.Error(err)
	}
	if err := s.CreateMailbox(t.Context(), "Entwürfe"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".Entwürfe")); !errors.Is(err, os.ErrNotExist) {
		t.Error("created a UTF-8 twin of .Entw&APw-rfe")
	}
	if err := s.CreateMailbox(t.Context(), "a.b"); !errors.Is(err, engine.ErrBadName) || !strings.Contains(err.Error(), `"a.b"`) {
		t.Errorf("a.b: %v", err)
	}
	// The inbox is the root: messages in root/new are INBOX's.
	writeFile(t, filepath.Join(root, "new", "m1"), "hello\n")
	mb := open(t, s, "INBOX", false)
	if msgs := list(t, mb); len(msgs) != 1 {
		t.Errorf("INBOX = %v", msgs)
	}
}

func TestDeleteMailbox(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	ctx := t.Context()
	for _, n := range []string{"a", "a/b"} {
		if err := s.CreateMailbox(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(root, "a")
	writeFile(t, filepath.Join(dir, "cur", "m,U=1:2,S"), "x\n")
	if err := s.DeleteMailbox(ctx, "a"); !errors.Is(err, engine.ErrNotEmpty) {
		t.Fatalf("deleting a non-empty mailbox: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cur", "m,U=1:2,S")); err != nil {
		t.Fatal("message lost")
	}
	os.Remove(filepath.Join(dir, "cur", "m,U=1:2,S"))
	writeFile(t, filepath.Join(dir, "tmp", "delivering"), "x\n")
	if err := s.DeleteMailbox(ctx, "a"); !errors.Is(err, engine.ErrNotEmpty) {
		t.Fatalf("deleting with a fresh tmp file: %v", err)
	}
	os.Remove(filepath.Join(dir, "tmp", "delivering"))
	writeFile(t, filepath.Join(dir, ".quixysync-state"), "x")
	if err := s.DeleteMailbox(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadDir(dir)
	if len(got) != 1 || got[0].Name() != "b" {
		t.Errorf("left in a/: %v", got)
	}
	if n := names(t, s); !slices.Equal(n, []string{"a/b"}) {
		t.Errorf("mailboxes %q", n)
	}
	if err := s.DeleteMailbox(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a/b still there")
	}
	if err := s.DeleteMailbox(ctx, "a"); !errors.Is(err, engine.ErrNoMailbox) {
		t.Errorf("deleting a missing mailbox: %v", err)
	}
}

func TestStamp(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	if err := s.CreateMailbox(t.Context(), "INBOX"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "INBOX")
	if st := open(t, s, "INBOX", false).Status(); st.Stamp != "" {
		t.Errorf("just-modified folder has stamp %q", st.Stamp)
	}
	age := func() {
		old := time.Now().Add(-time.Hour)
		for _, sub := range []string{"new", "cur"} {
			if err := os.Chtimes(filepath.Join(dir, sub), old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	age()
	st1 := open(t, s, "INBOX", false).Status()
	st2 := open(t, s, "INBOX", false).Status()
	if st1.Stamp == "" || st1.Stamp != st2.Stamp {
		t.Errorf("stamps %q %q", st1.Stamp, st2.Stamp)
	}
	writeFile(t, filepath.Join(dir, "new", "m"), "x\n")
	if st := open(t, s, "INBOX", false).Status(); st.Stamp != "" {
		t.Errorf("stamp right after a delivery: %q", st.Stamp)
	}
	time.Sleep(10 * time.Millisecond)
	old := time.Now().Add(-30 * time.Minute)
	os.Chtimes(filepath.Join(dir, "new"), old, old)
	if st := open(t, s, "INBOX", false).Status(); st.Stamp == "" || st.Stamp == st1.Stamp {
		t.Errorf("stamp after a delivery: %q (before %q)", st.Stamp, st1.Stamp)
	}
}

// stageMany stages and commits n messages, returning their UIDs.
func stageMany(t testing.TB, s *Store, n int) []engine.UID {
	mb, err := s.OpenMailbox(context.Background(), "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	var uids []engine.UID
	for i := 0; i < n; i++ {
		x, err := mb.Stage(context.Background(), engine.NewMessage{Body: strings.NewReader("m\n")})
		if err != nil {
			t.Fatal(err)
		}
		res, err := mb.Commit(context.Background(), []engine.Staged{x})
		if err != nil || res[0].Err != nil {
			t.Fatal(err, res)
		}
		uids = append(uids, res[0].UID)
		// A new Mailbox every few messages: each one reserves its own batch.
		if i%7 == 6 {
			if mb, err = s.OpenMailbox(context.Background(), "INBOX", false); err != nil {
				t.Fatal(err)
			}
		}
	}
	return uids
}

func checkDistinct(t *testing.T, root string, lists ...[]engine.UID) {
	seen := map[engine.UID]bool{}
	total := 0
	for _, l := range lists {
		for _, u := range l {
			if seen[u] {
				t.Errorf("UID %d handed out twice", u)
			}
			seen[u] = true
			total++
		}
	}
	// And the files agree.
	s, _ := New("check", root, "", LayoutVerbatim, Options{})
	mb, err := s.OpenMailbox(context.Background(), "INBOX", true)
	if err != nil {
		t.Fatal(err)
	}
	msgs := list(t, mb)
	if len(msgs) != total {
		t.Errorf("%d files, %d UIDs", len(msgs), total)
	}
	for u := range msgs {
		if !seen[u] {
			t.Errorf("file with UID %d nobody was given", u)
		}
	}
}

func TestConcurrentStageGoroutines(t *testing.T) {
	root := t.TempDir()
	var lists [4][]engine.UID
	var wg sync.WaitGroup
	for i := range lists {
		s, err := New("maildir.g"+strconv.Itoa(i), root, "", LayoutVerbatim, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateMailbox(t.Context(), "INBOX"); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { lists[i] = stageMany(t, s, 40) })
	}
	wg.Wait()
	checkDistinct(t, root, lists[:]...)
}

const helperEnv = "QUIXYSYNC_MAILDIR_HELPER_ROOT"

// TestHelperProcess is the other process of TestConcurrentStageProcesses.
func TestHelperProcess(t *testing.T) {
	root := os.Getenv(helperEnv)
	if root == "" {
		t.Skip("helper process only")
	}
	s, err := New("maildir.p", root, "", LayoutVerbatim, Options{Fsync: false})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range stageMany(t, s, 40) {
		fmt.Println("UID", u)
	}
}

func TestConcurrentStageProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root := t.TempDir()
	s, _ := New("maildir.p", root, "", LayoutVerbatim, Options{})
	if err := s.CreateMailbox(t.Context(), "INBOX"); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for i := 0; i < 3; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"="+root)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	var lists [][]engine.UID
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
		var l []engine.UID
		for _, line := range strings.Split(outs[i].String(), "\n") {
			if v, ok := strings.CutPrefix(line, "UID "); ok {
				u, _ := strconv.Atoi(v)
				l = append(l, engine.UID(u))
			}
		}
		if len(l) != 40 {
			t.Fatalf("helper %d reported %d UIDs:\n%s", i, len(l), outs[i])
		}
		lists = append(lists, l)
	}
	checkDistinct(t, root, lists...)
}

func TestInboxIsRoot(t *testing.T) {
	root := t.TempDir()
	s, err := New("maildir.r", root, root, LayoutVerbatim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mkMaildir(t, root)
	mkMaildir(t, filepath.Join(root, "x"))
	if got, want := names(t, s), []string{"INBOX", "x"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := s.MailboxDir("INBOX/x"); !errors.Is(err, engine.ErrBadName) {
		t.Errorf("INBOX/x with the inbox at the root: %v", err)
	}
	if _, err := s.MailboxDir("cur"); !errors.Is(err, engine.ErrBadName) {
		t.Errorf("cur with the inbox at the root: %v", err)
	}
}

// TestScanWhileClientRenames: a mail client moves files new/ → cur/ and
// changes their flags while we list. Every listing that succeeds must hold
// every message under its UID (a missing one would be taken as deleted).
func TestScanWhileClientRenames(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	const n = 60
	writeFile(t, filepath.Join(dir, ".uidvalidity"), fmt.Sprintf("42\n%d\n", n))
	for i := 1; i <= n; i++ {
		writeFile(t, filepath.Join(dir, "new", fmt.Sprintf("m%02d,U=%d", i, i)), "x\n")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; i++ {
			base := fmt.Sprintf("m%02d,U=%d", i, i)
			os.Rename(filepath.Join(dir, "new", base), filepath.Join(dir, "cur", base+":2,S"))
			time.Sleep(2 * time.Millisecond)
			os.Rename(filepath.Join(dir, "cur", base+":2,S"), filepath.Join(dir, "cur", base+":2,RS"))
			time.Sleep(2 * time.Millisecond)
		}
	}()
	mb := open(t, s, "INBOX", false)
	ok, failed := 0, 0
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		msgs, complete, err := mb.List(t.Context(), engine.ListQuery{All: true})
		if err != nil {
			failed++ // "kept changing": acceptable, the run is retried
			continue
		}
		ok++
		if !complete || len(msgs) != n {
			t.Fatalf("listing with %d of %d messages (complete=%v)", len(msgs), n, complete)
		}
		for i, m := range msgs {
			if m.UID != engine.UID(i+1) {
				t.Fatalf("message %d has UID %d", i, m.UID)
			}
		}
	}
	t.Logf("%d listings, %d gave up", ok, failed)
	if ok == 0 {
		t.Error("no listing succeeded, not even after the client stopped")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ".uidvalidity")); string(b) != fmt.Sprintf("42\n%d\n", n) {
		t.Errorf("UIDs were reassigned: .uidvalidity %q", b)
	}
}

// A folder whose cur/ is missing while new/ holds a delivery is a mailbox
// (its mail is synced, and a dry run sees it as the real run does); read
// only it is left as it is, opened for writing it gets cur/ and tmp/ back.
// A folder named "new" does not make its parent one.
func TestFolderWithNewAlone(t *testing.T) {
	root := t.TempDir()
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	odd := filepath.Join(root, "Odd")
	os.MkdirAll(filepath.Join(odd, "new"), 0o700)
	os.WriteFile(filepath.Join(odd, "new", "1700000000.1.host"), []byte("Subject: odd\n\nbody\n"), 0o600)
	// Lists is a container; its subfolder "new" is a Dovecot Maildir.
	sub := filepath.Join(root, "Lists", "new")
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(sub, d), 0o700)
	}
	os.WriteFile(filepath.Join(sub, "dovecot-uidlist"), []byte("3 V1 N1\n"), 0o600)
	os.MkdirAll(filepath.Join(root, "Empty", "new"), 0o700) // nothing delivered: not a mailbox

	infos, err := s.ListMailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range infos {
		got = append(got, i.Name)
	}
	// ("Lists/new" itself is not a name this layout maps: a component may
	// not be cur, new or tmp.)
	if want := []string{"Odd"}; !slices.Equal(got, want) {
		t.Fatalf("mailboxes %q, want %q", got, want)
	}
	ro := open(t, s, "Odd", true)
	msgs, _, err := ro.List(ctx, engine.ListQuery{All: true})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("read-only listing: %v, %v", msgs, err)
	}
	ro.Close()
	if isDir(filepath.Join(odd, "cur")) {
		t.Fatal("a read-only open created cur/")
	}
	rw := open(t, s, "Odd", false)
	defer rw.Close()
	if !isDir(filepath.Join(odd, "cur")) || !isDir(filepath.Join(odd, "tmp")) {
		t.Fatal("opened for writing, the folder did not get cur/ and tmp/")
	}
	if msgs, _, err := rw.List(ctx, engine.ListQuery{All: true}); err != nil || len(msgs) != 1 {
		t.Fatalf("listing after completing: %v, %v", msgs, err)
	}
}

// A folder moved to another disk and linked back is walked like any other:
// its subfolders are the user's folders. A link into the tree, to an
// ancestor of it, or back to a linked directory being walked is not
// followed (no loop, no folder listed under a second name by way of a link).
func TestListFollowsLinkedFolders(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	elsewhere := t.TempDir()
	mkMaildir(t, filepath.Join(elsewhere, "Lists"))
	mkMaildir(t, filepath.Join(elsewhere, "Lists", "go"))
	mkMaildir(t, filepath.Join(elsewhere, "Lists", "go", "nuts"))
	mkMaildir(t, filepath.Join(root, "INBOX"))
	mkMaildir(t, filepath.Join(root, "Archiv", "2024"))
	for link, target := range map[string]string{
		filepath.Join(root, "Lists"):                    filepath.Join(elsewhere, "Lists"),
		filepath.Join(root, "Old"):                      filepath.Join(root, "Archiv"), // into the tree
		filepath.Join(root, "Archiv", "Loop"):           root,                          // an ancestor
		filepath.Join(elsewhere, "Lists", "go", "back"): filepath.Join(elsewhere, "Lists"),
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	got := names(t, s)
	// (A link to a Maildir folder is a mailbox under its own name, as
	// before: "back" is one; not walked into, it adds nothing below it.)
	want := []string{"Archiv/2024", "INBOX", "Lists", "Lists/go", "Lists/go/back", "Lists/go/nuts"}
	if !slices.Equal(got, want) {
		t.Errorf("ListMailboxes = %q, want %q", got, want)
	}
	// A folder created below the link goes there, and is listed.
	if err := s.CreateMailbox(t.Context(), "Lists/rust"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "Lists", "rust", "cur")); err != nil {
		t.Error(err)
	}
	if !slices.Contains(names(t, s), "Lists/rust") {
		t.Errorf("a folder created in a linked folder is not listed: %q", names(t, s))
	}
}

// An inbox outside the root is walked too (its subfolders are INBOX/...):
// a link from the root into it is a link into the tree, not followed, or
// its folders would be listed under a second name.
func TestListLinkIntoOutsideInbox(t *testing.T) {
	root := t.TempDir()
	inbox := filepath.Join(t.TempDir(), "Maildir")
	mkMaildir(t, inbox)
	mkMaildir(t, filepath.Join(inbox, "Projects", "alpha"))
	if err := os.Symlink(filepath.Join(inbox, "Projects"), filepath.Join(root, "Projects")); err != nil {
		t.Fatal(err)
	}
	s, err := New("maildir.test", root, inbox, LayoutVerbatim, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, s), []string{"INBOX", "INBOX/Projects/alpha"}; !slices.Equal(got, want) {
		t.Errorf("ListMailboxes = %q, want %q", got, want)
	}
}
