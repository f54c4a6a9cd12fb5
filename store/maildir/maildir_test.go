package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mkMaildir(t testing.TB, dir string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

// tree lists every file and directory under root with size, mode and mtime.
func tree(t testing.TB, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(&b, "%s %v %d %d\n", rel, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if !d.IsDir() {
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, "  %q\n", c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// files lists the names in dir/sub, sorted.
func files(t testing.TB, dir, sub string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, sub))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, d := range des {
		out = append(out, d.Name())
	}
	sort.Strings(out)
	return out
}

func open(t testing.TB, s *Store, name string, ro bool) *Mailbox {
	t.Helper()
	mb, err := s.OpenMailbox(context.Background(), name, ro)
	if err != nil {
		t.Fatal(err)
	}
	return mb.(*Mailbox)
}

func list(t testing.TB, mb engine.Mailbox) map[engine.UID]engine.Message {
	t.Helper()
	msgs, complete, err := mb.List(context.Background(), engine.ListQuery{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if !complete {
		t.Fatal("List not complete")
	}
	out := map[engine.UID]engine.Message{}
	for _, m := range msgs {
		if _, dup := out[m.UID]; dup {
			t.Fatalf("UID %d listed twice", m.UID)
		}
		out[m.UID] = m
	}
	return out
}

func fetch(t testing.TB, mb engine.Mailbox, uids ...engine.UID) map[engine.UID]string {
	t.Helper()
	out := map[engine.UID]string{}
	err := mb.Fetch(context.Background(), uids, func(uid engine.UID, r io.Reader) error {
		b, err := io.ReadAll(r)
		out[uid] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mbsyncTree lays out an INBOX as mbsync 1.4 leaves it, plus files a mail
// delivery agent and a mail client added since.
func mbsyncTree(t testing.TB, root string) string {
	inbox := filepath.Join(root, "INBOX")
	mkMaildir(t, inbox)
	writeFile(t, filepath.Join(inbox, ".uidvalidity"), "1795642845\n4\n")
	writeFile(t, filepath.Join(inbox, "cur", "1795642845.21566_1.vm,U=1:2,RS"), "Subject: one\n\nbody\n")
	writeFile(t, filepath.Join(inbox, "cur", "1795642845.21566_2.vm,U=2:2,Sa"), "Subject: two\n\n")
	writeFile(t, filepath.Join(inbox, "new", "1700000000.localmsg.host,U=4"), "Subject: four\n\n")
	writeFile(t, filepath.Join(inbox, "new", "1700000001.abc.host"), "Subject: delivered\n\n")
	writeFile(t, filepath.Join(inbox, "cur", "1700000002.xyz.host:2,FS"), "Subject: client\n\n")
	return inbox
}

func TestScanMbsyncTree(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	inbox := mbsyncTree(t, root)
	old := time.Date(2023, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(inbox, "cur", "1795642845.21566_1.vm,U=1:2,RS"), old, old); err != nil {
		t.Fatal(err)
	}
	mb := open(t, s, "INBOX", false)
	if st := mb.Status(); st.UIDValidity != 1795642845 || st.UIDNext != 5 || st.Messages != -1 {
		t.Fatalf("status %+v", st)
	}
	msgs := list(t, mb)
	if len(msgs) != 5 {
		t.Fatalf("got %d messages: %v", len(msgs), msgs)
	}
	if m := msgs[1]; m.Flags != engine.FlagReplied|engine.FlagSeen || m.Size != int64(len("Subject: one\n\nbody\n")) || !m.Date.Equal(old) {
		t.Errorf("message 1: %+v", m)
	}
	if m := msgs[2]; m.Flags != engine.FlagSeen {
		t.Errorf("message 2: %+v", m)
	}
	if m := msgs[4]; m.Flags != 0 {
		t.Errorf("message 4: %+v", m)
	}
	// The two files without ,U= got 5 and 6 (in base-name order), in place.
	if got, want := files(t, inbox, "new"), []string{"1700000000.localmsg.host,U=4", "1700000001.abc.host,U=5"}; !slices.Equal(got, want) {
		t.Errorf("new/ = %v, want %v", got, want)
	}
	if got := files(t, inbox, "cur"); !slices.Contains(got, "1700000002.xyz.host,U=6:2,FS") {
		t.Errorf("cur/ = %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(inbox, ".uidvalidity")); string(b) != "1795642845\n6\n" {
		t.Errorf(".uidvalidity = %q", b)
	}
	if got := fetch(t, mb, 5, 6, 99); got[5] != "Subject: delivered\n\n" || got[6] != "Subject: client\n\n" || len(got) != 2 {
		t.Errorf("fetch: %v", got)
	}
	if st := mb.Status(); st.Messages != 5 {
		t.Errorf("Messages after scan = %d", st.Messages)
	}
	uids, err := mb.UIDs(t.Context(), 5)
	if err != nil || !slices.Equal(uids, []engine.UID{1, 2, 4}) {
		t.Errorf("UIDs(5) = %v, %v", uids, err)
	}
	// A second open sees the same UIDs and changes nothing.
	before := tree(t, root)
	mb2 := open(t, s, "INBOX", false)
	if len(list(t, mb2)) != 5 || tree(t, root) != before {
		t.Error("second scan changed the tree")
	}
}

func TestReadOnlyChangesNothing(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	mbsyncTree(t, root)
	writeFile(t, filepath.Join(root, "INBOX", "cur", "1700000003.dup.host,U=2:2,"), "dup\n")
	mkMaildir(t, filepath.Join(root, "Fresh")) // no .uidvalidity yet
	writeFile(t, filepath.Join(root, "Fresh", "new", "m1"), "x\n")
	before := tree(t, root)

	mb := open(t, s, "INBOX", true)
	mb.SetKnownUIDs(func(u engine.UID) bool { return u != 4 })
	msgs := list(t, mb)
	if len(msgs) != 6 {
		t.Fatalf("got %d messages", len(msgs))
	}
	for u := range msgs {
		if u == 3 || u == 4 {
			t.Errorf("unexpected UID %d (4 is foreign)", u)
		}
	}
	// Temporary UIDs are above the last assigned one: 5..8 for the four files
	// without a usable UID (two new, one foreign, one duplicate).
	for u := engine.UID(5); u <= 8; u++ {
		if _, ok := msgs[u]; !ok {
			t.Errorf("temporary UID %d missing: %v", u, msgs)
		}
	}
	if got := fetch(t, mb, 5, 6, 7, 8); len(got) != 4 {
		t.Errorf("fetch of temporary UIDs: %v", got)
	}
	if err := mb.SetFlags(t.Context(), []engine.UID{1}, engine.FlagFlagged, 0); !errors.Is(err, engine.ErrReadOnly) {
		t.Errorf("SetFlags read-only: %v", err)
	}
	if err := mb.Expunge(t.Context(), []engine.UID{1}); !errors.Is(err, engine.ErrReadOnly) {
		t.Errorf("Expunge read-only: %v", err)
	}
	if _, err := mb.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader("x")}); !errors.Is(err, engine.ErrReadOnly) {
		t.Errorf("Stage read-only: %v", err)
	}
	fr := open(t, s, "Fresh", true)
	if len(list(t, fr)) != 1 || fr.Status().UIDValidity == 0 {
		t.Errorf("fresh folder read-only: %+v", fr.Status())
	}
	if _, err := s.ListMailboxes(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after := tree(t, root); after != before {
		t.Errorf("read-only mode changed the tree:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestForeignAndDuplicateUIDs(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "box")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, ".uidvalidity"), "42\n10\n")
	writeFile(t, filepath.Join(dir, "cur", "orig,U=3:2,S"), "original\n")
	time.Sleep(30 * time.Millisecond) // a later ctime for the copy
	writeFile(t, filepath.Join(dir, "cur", "copy,U=3:2,S"), "copy\n")
	writeFile(t, filepath.Join(dir, "cur", "moved,U=7:2,"), "moved here by a mail client\n")
	writeFile(t, filepath.Join(dir, "new", "high,U=50"), "UID above the last assigned\n")
	writeFile(t, filepath.Join(dir, "cur", "kept,U=5:2,"), "known\n")

	mb := open(t, s, "box", false)
	mb.SetKnownUIDs(func(u engine.UID) bool { return u == 3 || u == 5 || u > 10 })
	msgs := list(t, mb)
	if len(msgs) != 5 {
		t.Fatalf("got %v", msgs)
	}
	// Fresh UIDs come above every UID a file carried (50), not only above
	// .uidvalidity's last (10): see TestLastBelowFileUIDs.
	got := fetch(t, mb, 3, 5, 51, 52, 53)
	if got[3] != "original\n" || got[5] != "known\n" {
		t.Errorf("kept UIDs: %v", got)
	}
	var fresh []string
	for _, u := range []engine.UID{51, 52, 53} {
		fresh = append(fresh, got[u])
	}
	sort.Strings(fresh)
	if want := []string{"UID above the last assigned\n", "copy\n", "moved here by a mail client\n"}; !slices.Equal(fresh, want) {
		t.Errorf("fresh UIDs hold %q, want %q", fresh, want)
	}
	if c := files(t, dir, "cur"); !slices.Contains(c, "orig,U=3:2,S") || !slices.Contains(c, "copy,U=51:2,S") {
		t.Errorf("cur/ = %v", c)
	}
	if n := files(t, dir, "new"); len(n) != 1 || !strings.HasPrefix(n[0], "high,U=5") {
		t.Errorf("new/ = %v (the file must stay in new/)", n)
	}
	// Renumbered files are this mailbox's own now: a second scan keeps them.
	if again := list(t, mb); len(again) != 5 || again[51].UID != 51 {
		t.Errorf("rescan: %v", again)
	}
}

// TestLastBelowFileUIDs: .uidvalidity's last UID (10) is below UIDs files
// carry that the state records there with their idents (11 and 15): the file
// was restored from an older backup, or another tool rewrote it. The files
// keep their UIDs (before, the one with 15 was given 11, the UID the state
// pairs with the other file), the last UID is raised past them, and a
// message staged afterwards does not get one of them either.
func TestLastBelowFileUIDs(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, uidFile), "1700000000\n10\n")
	x := "1700000001.x.host,U=15:2,S"
	y := "1700000002.y.host,U=11:2,S"
	writeFile(t, filepath.Join(dir, "cur", x), "X\n")
	writeFile(t, filepath.Join(dir, "cur", y), "Y\n")
	ageFolder(t, dir)
	mb := open(t, s, "INBOX", false)
	mb.SetKnownUIDs(func(u engine.UID) bool { return u == 11 || u == 15 || u > 15 })
	rec := map[engine.UID]uint32{11: nameIdent(y), 15: nameIdent(x)}
	mb.SetKnownIdents(func(u engine.UID) uint32 { return rec[u] })
	if got := fetch(t, mb, 11, 15); got[11] != "Y\n" || got[15] != "X\n" {
		t.Fatalf("UIDs 11 and 15 hold %q and %q, want Y and X; files %v", got[11], got[15], files(t, dir, "cur"))
	}
	if st, ok, err := readUIDState(dir); err != nil || !ok || st.Last < 15 || st.Validity != 1700000000 {
		t.Fatalf(".uidvalidity after the scan: %+v %v %v, want last >= 15", st, ok, err)
	}
	x2, err := mb.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader("new\n")})
	if err != nil {
		t.Fatal(err)
	}
	if x2.UID() <= 15 {
		t.Fatalf("a staged message got UID %d, which a file already carries or the state may pair", x2.UID())
	}
	mb.Discard([]engine.Staged{x2})
}

func TestMailClientRenamesMeanwhile(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, ".uidvalidity"), "42\n3\n")
	writeFile(t, filepath.Join(dir, "new", "a,U=1"), "a\n")
	writeFile(t, filepath.Join(dir, "new", "b,U=2"), "b\n")
	writeFile(t, filepath.Join(dir, "cur", "c,U=3:2,S"), "c\n")
	mb := open(t, s, "INBOX", false)
	list(t, mb)
	// The client reads a (new → cur, seen) and b and c after our scan.
	rename := func(from, to string) {
		if err := os.Rename(filepath.Join(dir, from), filepath.Join(dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	rename("new/a,U=1", "cur/a,U=1:2,S")
	rename("new/b,U=2", "cur/b,U=2:2,S")
	rename("cur/c,U=3:2,S", "cur/c,U=3:2,RS")
	if got := fetch(t, mb, 1); got[1] != "a\n" {
		t.Errorf("fetch after rename: %v", got)
	}
	rename("cur/a,U=1:2,S", "cur/a,U=1:2,FS")
	if err := mb.SetFlags(t.Context(), []engine.UID{1, 3}, engine.FlagFlagged|engine.FlagDraft, engine.FlagSeen); err != nil {
		t.Fatal(err)
	}
	if err := mb.Expunge(t.Context(), []engine.UID{2}); err != nil {
		t.Fatal(err)
	}
	if got, want := files(t, dir, "cur"), []string{"a,U=1:2,DF", "c,U=3:2,DFR"}; !slices.Equal(got, want) {
		t.Errorf("cur/ = %v, want %v", got, want)
	}
	// Vanished messages are skipped silently.
	if err := os.Remove(filepath.Join(dir, "cur", "a,U=1:2,DF")); err != nil {
		t.Fatal(err)
	}
	if err := mb.SetFlags(t.Context(), []engine.UID{1}, engine.FlagSeen, 0); err != nil {
		t.Errorf("SetFlags on a vanished message: %v", err)
	}
	if err := mb.Expunge(t.Context(), []engine.UID{1, 2}); err != nil {
		t.Errorf("Expunge of vanished messages: %v", err)
	}
	if got := fetch(t, mb, 1, 2, 3); len(got) != 1 || got[3] != "c\n" {
		t.Errorf("fetch: %v", got)
	}
}

// A file listed \Deleted whose user takes the flag back before Expunge
// (renamed without T, found again by a rescan) stays, reported as kept;
// the others go, \Deleted or not.
func TestExpungeKeepsUndeleted(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, ".uidvalidity"), "42\n4\n")
	writeFile(t, filepath.Join(dir, "cur", "a,U=1:2,ST"), "a\n")
	writeFile(t, filepath.Join(dir, "cur", "b,U=2:2,T"), "b\n")
	writeFile(t, filepath.Join(dir, "cur", "c,U=3:2,S"), "c\n")
	writeFile(t, filepath.Join(dir, "cur", "d,U=4:2,T"), "d\n")
	mb := open(t, s, "INBOX", false)
	list(t, mb)
	// mutt's undelete of a; d renamed keeping its T (another flag added).
	for from, to := range map[string]string{"a,U=1:2,ST": "a,U=1:2,S", "d,U=4:2,T": "d,U=4:2,FT"} {
		if err := os.Rename(filepath.Join(dir, "cur", from), filepath.Join(dir, "cur", to)); err != nil {
			t.Fatal(err)
		}
	}
	err := mb.Expunge(t.Context(), []engine.UID{1, 2, 3, 4})
	var kept *engine.KeptError
	if !errors.As(err, &kept) || !slices.Equal(kept.UIDs, []engine.UID{1}) {
		t.Fatalf("Expunge: %v, want UID 1 kept", err)
	}
	if got, want := files(t, dir, "cur"), []string{"a,U=1:2,S"}; !slices.Equal(got, want) {
		t.Errorf("cur/ = %v, want %v", got, want)
	}
}

func TestFlagsKeepUnknownLetters(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, ".uidvalidity"), "42\n2\n")
	writeFile(t, filepath.Join(dir, "cur", "m,U=1,S=2:2,Sba"), "m\n")
	writeFile(t, filepath.Join(dir, "new", "n,U=2"), "n\n")
	mb := open(t, s, "INBOX", false)
	if err := mb.SetFlags(t.Context(), []engine.UID{1, 2}, engine.FlagFlagged, engine.FlagSeen); err != nil {
		t.Fatal(err)
	}
	if got, want := files(t, dir, "cur"), []string{"m,U=1,S=2:2,Fab", "n,U=2:2,F"}; !slices.Equal(got, want) {
		t.Errorf("cur/ = %v, want %v", got, want)
	}
	msgs := list(t, mb)
	if msgs[1].Flags != engine.FlagFlagged || msgs[2].Flags != engine.FlagFlagged {
		t.Errorf("flags: %v", msgs)
	}
	// A no-op change renames nothing.
	before := tree(t, root)
	if err := mb.SetFlags(t.Context(), []engine.UID{1}, engine.FlagFlagged, engine.FlagSeen); err != nil || tree(t, root) != before {
		t.Errorf("no-op SetFlags changed the tree (%v)", err)
	}
}

type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		f.n--
		return copy(p, "partial"), nil
	}
	return 0, errors.New("connection reset")
}

func TestStageCommitDiscard(t *testing.T) {
	root := t.TempDir()
	s, err := New("maildir.test", root, "", LayoutVerbatim, Options{Fsync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateMailbox(t.Context(), "Archive/2024"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "Archive", "2024")
	mb := open(t, s, "Archive/2024", false)
	date := time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)
	var st []engine.Staged
	for i, f := range []engine.Flag{0, engine.FlagSeen | engine.FlagFlagged, engine.FlagReplied} {
		x, err := mb.Stage(t.Context(), engine.NewMessage{Flags: f, Date: date, Body: strings.NewReader(fmt.Sprintf("msg %d\n", i))})
		if err != nil {
			t.Fatal(err)
		}
		if x.UID() == 0 || x.Size() != 6 {
			t.Fatalf("staged UID %d size %d", x.UID(), x.Size())
		}
		st = append(st, x)
	}
	if n := len(files(t, dir, "tmp")); n != 3 {
		t.Fatalf("%d files in tmp/", n)
	}
	// Each UID is reserved durably before Commit.
	b, _ := os.ReadFile(filepath.Join(dir, ".uidvalidity"))
	var v, last uint32
	fmt.Sscanf(string(b), "%d\n%d\n", &v, &last)
	if engine.UID(last) < st[2].UID() {
		t.Fatalf(".uidvalidity %q does not cover UID %d", b, st[2].UID())
	}
	if _, err := mb.Stage(t.Context(), engine.NewMessage{Body: &failingReader{n: 2}}); err == nil {
		t.Fatal("Stage with a failing body succeeded")
	}
	if n := len(files(t, dir, "tmp")); n != 3 {
		t.Fatalf("failed Stage left a file: %d files in tmp/", n)
	}
	mb.Discard(st[2:])
	res, err := mb.Commit(t.Context(), st[:2])
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.UID != st[i].UID() {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	if n := files(t, dir, "tmp"); len(n) != 0 {
		t.Errorf("tmp/ not empty: %v", n)
	}
	newF, curF := files(t, dir, "new"), files(t, dir, "cur")
	if len(newF) != 1 || !strings.HasSuffix(newF[0], fmt.Sprintf(",U=%d:2,", st[0].UID())) {
		t.Errorf("new/ = %v (unseen goes to new/ with an empty info)", newF)
	}
	if len(curF) != 1 || !strings.HasSuffix(curF[0], fmt.Sprintf(",U=%d:2,FS", st[1].UID())) {
		t.Errorf("cur/ = %v", curF)
	}
	fi, err := os.Stat(filepath.Join(dir, "cur", curF[0]))
	if err != nil || !fi.ModTime().Equal(date) || fi.Mode().Perm() != 0o600 {
		t.Errorf("committed file: mtime %v mode %v (%v)", fi.ModTime(), fi.Mode(), err)
	}
	// Committing again is refused; the file is not touched.
	if res, _ := mb.Commit(t.Context(), st[:1]); res[0].Err == nil {
		t.Error("second Commit of the same message succeeded")
	}
	msgs := list(t, mb)
	if len(msgs) != 2 || msgs[st[1].UID()].Flags != engine.FlagSeen|engine.FlagFlagged {
		t.Errorf("listed %v", msgs)
	}
	if got := fetch(t, mb, st[0].UID()); got[st[0].UID()] != "msg 0\n" {
		t.Errorf("fetch %v", got)
	}
	// A fresh open sees UIDNext above everything handed out.
	if st2 := open(t, s, "Archive/2024", false).Status(); st2.UIDNext <= st[2].UID() {
		t.Errorf("UIDNext %d after handing out %d", st2.UIDNext, st[2].UID())
	}
	// Zero date: the store picks now.
	x, err := mb.Stage(t.Context(), engine.NewMessage{Flags: engine.FlagSeen, Body: strings.NewReader("now\n")})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := mb.Commit(t.Context(), []engine.Staged{x}); err != nil || res[0].Err != nil {
		t.Fatal(err, res)
	}
	if m := list(t, mb)[x.UID()]; time.Since(m.Date) > time.Minute {
		t.Errorf("zero date gave mtime %v", m.Date)
	}
}

func TestCommitNeverOverwrites(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	if err := s.CreateMailbox(t.Context(), "INBOX"); err != nil {
		t.Fatal(err)
	}
	mb := open(t, s, "INBOX", false)
	x, err := mb.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader("new\n")})
	if err != nil {
		t.Fatal(err)
	}
	// Something already sits at the target name.
	target := filepath.Join(root, "INBOX", "new", x.(*staged).name)
	writeFile(t, target, "existing\n")
	res, err := mb.Commit(t.Context(), []engine.Staged{x})
	if err != nil || res[0].Err == nil {
		t.Fatalf("commit over an existing file: %+v, %v", res, err)
	}
	if b, _ := os.ReadFile(target); string(b) != "existing\n" {
		t.Errorf("existing file overwritten: %q", b)
	}
	if n := files(t, filepath.Join(root, "INBOX"), "tmp"); len(n) != 0 {
		t.Errorf("failed commit left %v in tmp/", n)
	}
}

// Of files sharing a UID the state knows, the one unchanged since the last
// sync keeps it; when none or several are, all get fresh UIDs (the engine
// then sees the old pair's message removed and every file new: copied again,
// nothing paired with the wrong message).
func TestDuplicateUIDOwnerSinceLastSync(t *testing.T) {
	tick := func() { time.Sleep(30 * time.Millisecond) } // past the file system's clock tick
	// moveAfterSync: the owner's file, the state saved, then a file moved in.
	moveAfterSync := func(dir string) time.Time {
		writeFile(t, filepath.Join(dir, "cur", "owner,U=3:2,S"), "owner\n")
		tick()
		last := time.Now()
		tick()
		writeFile(t, filepath.Join(dir, "cur", "moved,U=3:2,S"), "moved\n")
		return last
	}
	for _, tc := range []struct {
		name string
		// setup writes the files; last is when the state was saved.
		setup func(dir string) (last time.Time)
		keep  string // content keeping UID 3; "" = none
	}{
		{"moved in after the sync", moveAfterSync, "owner\n"},
		{"owner changed after the move", func(dir string) time.Time {
			last := moveAfterSync(dir)
			tick()
			if err := os.Rename(filepath.Join(dir, "cur", "owner,U=3:2,S"), filepath.Join(dir, "cur", "owner,U=3:2,FS")); err != nil {
				t.Fatal(err)
			}
			return last
		}, ""},
		{"both there before the sync", func(dir string) time.Time {
			writeFile(t, filepath.Join(dir, "cur", "owner,U=3:2,S"), "owner\n")
			writeFile(t, filepath.Join(dir, "cur", "moved,U=3:2,S"), "moved\n")
			tick()
			return time.Now()
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newTestStore(t, LayoutVerbatim)
			dir := filepath.Join(root, "box")
			mkMaildir(t, dir)
			writeFile(t, filepath.Join(dir, ".uidvalidity"), "42\n10\n")
			last := tc.setup(dir)
			mb := open(t, s, "box", false)
			mb.SetKnownUIDs(func(u engine.UID) bool { return true })
			mb.SetLastSync(last)
			msgs := list(t, mb)
			if len(msgs) != 2 {
				t.Fatalf("got %v", msgs)
			}
			got := fetch(t, mb, 3, 11, 12)
			if got[3] != tc.keep {
				t.Errorf("UID 3 holds %q, want %q", got[3], tc.keep)
			}
			held := []string{got[3], got[11], got[12]}
			sort.Strings(held)
			want := []string{"", "moved\n", "owner\n"}
			if !slices.Equal(held, want) {
				t.Errorf("UIDs 3, 11, 12 hold %q; want each file once", held)
			}
		})
	}
}

// A path or inbox that is a file is named, with the key to fix, rather than
// reported as Go's "open ...: not a directory".
func TestPathThatIsAFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mbox")
	if err := os.WriteFile(file, []byte("From x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ root, inbox, want string }{
		{file, "", "maildir.test: path " + file + " is not a directory: set path to the directory"},
		// inbox is the INBOX folder itself, not the directory of folders.
		{dir, file, "maildir.test: inbox " + file + " is not a directory: move that file away, or set inbox to the INBOX's Maildir folder"},
	} {
		s, err := New("maildir.test", tc.root, tc.inbox, LayoutVerbatim, Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.ListMailboxes(context.Background())
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("got %v, want %s...", err, tc.want)
		}
	}
}

// Two stores in one process — two channels, or a store opened again — write
// in the same second: pid and delivery count repeat, so the names must
// still differ, or a mail client moving a file from one folder into the
// other under its name (mu4e, mv) replaces the message there.
func TestFileNamesDifferAcrossStores(t *testing.T) {
	root := t.TempDir()
	seen := map[string]string{}
	for i := range 2 {
		s, err := New("maildir.test", root, "", LayoutVerbatim, Options{})
		if err != nil {
			t.Fatal(err)
		}
		box := fmt.Sprintf("Box%d", i)
		if err := s.CreateMailbox(t.Context(), box); err != nil {
			t.Fatal(err)
		}
		mb := open(t, s, box, false)
		x, err := mb.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader("msg\n")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mb.Commit(t.Context(), []engine.Staged{x}); err != nil {
			t.Fatal(err)
		}
		names := files(t, filepath.Join(root, box), "new")
		if len(names) != 1 {
			t.Fatalf("%s/new holds %v", box, names)
		}
		unique, _, _ := strings.Cut(names[0], ",")
		if other, ok := seen[unique]; ok {
			t.Fatalf("%s and %s both named %s", other, box, unique)
		}
		seen[unique] = box
	}
}

// TestHugeFileUIDNotRaised: a file name claiming a UID near the top of the
// range (an odd tool, a hostile file) is renumbered; it does not raise the
// folder's last UID so far that new mail could get no UID.
func TestHugeFileUIDNotRaised(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	writeFile(t, filepath.Join(dir, uidFile), "1700000000\n10\n")
	writeFile(t, filepath.Join(dir, "cur", "odd,U=4294967295:2,S"), "odd\n")
	mb := open(t, s, "INBOX", false)
	msgs := list(t, mb)
	if len(msgs) != 1 {
		t.Fatalf("listing: %v", msgs)
	}
	if st, ok, err := readUIDState(dir); err != nil || !ok || st.Last > 1000 {
		t.Fatalf(".uidvalidity after the scan: %+v %v %v", st, ok, err)
	}
	x, err := mb.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader("new\n")})
	if err != nil {
		t.Fatalf("no UID for new mail after an odd file name: %v", err)
	}
	mb.Discard([]engine.Staged{x})
}

// Stage's clean-up of tmp/ leaves a file another program is writing there
// now, even when it gave the file the message's old date already (mbsync
// and Dovecot do before moving it into place): its change time is recent.
// (A file older than 36 hours by both times goes; the test cannot make a
// change time that old.)
func TestTmpCleanupSparesFreshFileWithOldDate(t *testing.T) {
	s, root := newTestStore(t, LayoutVerbatim)
	dir := filepath.Join(root, "INBOX")
	mkMaildir(t, dir)
	other := filepath.Join(dir, "tmp", "1500000000.M1P2.elsewhere")
	writeFile(t, other, "being delivered\n")
	old := time.Now().Add(-30 * 24 * time.Hour)
	if err := os.Chtimes(other, old, old); err != nil {
		t.Fatal(err)
	}
	mb := open(t, s, "INBOX", false)
	sg, err := mb.Stage(t.Context(), engine.NewMessage{Body: strings.NewReader("x\n")})
	if err != nil {
		t.Fatal(err)
	}
	mb.Discard([]engine.Staged{sg})
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("another program's file in tmp/ removed: %v", err)
	}
}
