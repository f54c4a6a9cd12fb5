package engine_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// onlyMessageFile is the one message file of a Maildir folder.
func onlyMessageFile(t *testing.T, dir string) string {
	t.Helper()
	var got []string
	for _, sub := range []string{"new", "cur"} {
		es, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range es {
			got = append(got, filepath.Join(dir, sub, e.Name()))
		}
	}
	if len(got) != 1 {
		t.Fatalf("%s holds %v, want one file", dir, got)
	}
	return got[0]
}

// checkBoth fails unless both sides of box hold exactly want.
func checkBoth(t *testing.T, spec engine.ChannelSpec, box, want string) {
	t.Helper()
	f, n := engine.ViewBox(t, spec.Far, box), engine.ViewBox(t, spec.Near, box)
	if f != want || n != want {
		t.Errorf("%s:\nfar:  %q\nnear: %q\nwant: %q", box, f, n, want)
	}
}

// checkIdle fails unless a run changes nothing.
func checkIdle(t *testing.T, spec engine.ChannelSpec) {
	t.Helper()
	res := engine.MustSync(t, spec, engine.RunOptions{})
	for _, m := range res.Mailboxes {
		if n := m.Copied[0] + m.Copied[1] + m.Flagged[0] + m.Flagged[1] + m.Deleted[0] + m.Deleted[1]; n != 0 {
			t.Errorf("the run after the sync changed %d messages in %s: %+v", n, m.Mailbox, m)
		}
	}
}

// twoFolders syncs A (message a1) and B (message b1) and returns the near
// files of a1 and b1: every Maildir folder numbers from 1, so both are ",U=1".
func twoFolders(t *testing.T) (spec engine.ChannelSpec, dir, a1, b1 string) {
	dir = t.TempDir()
	spec = maildirSpec(t, dir)
	engine.AddMsg(t, spec.Far, "A", "a1", 0)
	engine.AddMsg(t, spec.Far, "B", "b1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	checkBoth(t, spec, "A", "a1:")
	checkBoth(t, spec, "B", "b1:")
	a1, b1 = onlyMessageFile(t, filepath.Join(dir, "near", "A")), onlyMessageFile(t, filepath.Join(dir, "near", "B"))
	if !strings.Contains(a1, ",U=1") || !strings.Contains(b1, ",U=1") {
		t.Fatalf("want both files with UID 1: %s %s", a1, b1)
	}
	return spec, dir, a1, b1
}

// moveInto moves a near file into folder box keeping its name, as mutt,
// aerc or afew do.
func moveInto(t *testing.T, dir, file, box string) {
	t.Helper()
	if err := os.Rename(file, filepath.Join(dir, "near", box, "cur", filepath.Base(file))); err != nil {
		t.Fatal(err)
	}
}

// The user deletes b1 and moves a1 from A into B in one sync interval: the
// one file in near B carries UID 1, which B's state knows (b1's). Trusted,
// a1 was paired with far b1: far a1 was expunged as gone from A and never
// uploaded to B, and far b1 stayed. a1 must end up in B on both sides, A and
// b1 gone on both.
func TestMaildirMoveOntoDeletedKnownUID(t *testing.T) {
	spec, dir, a1, b1 := twoFolders(t)
	if err := os.Remove(b1); err != nil {
		t.Fatal(err)
	}
	moveInto(t, dir, a1, "B")
	engine.MustSync(t, spec, engine.RunOptions{})
	checkBoth(t, spec, "A", "")
	checkBoth(t, spec, "B", "a1:")
	checkIdle(t, spec)
	checkBoth(t, spec, "B", "a1:")
	checkStateStays(t, spec, "A", "B")
}

// b1 is read (a flag change renames its file) and a1 moved into B while
// far b1 gets \Flagged: two files with B's known UID 1, both changed since
// the last sync. The ctime rule cannot tell them apart and renumbers both,
// which lost the far flag (b1 looked removed and came back as new). The
// recorded ident keeps UID 1 with b1.
func TestMaildirDupBothChanged(t *testing.T) {
	spec, dir, a1, b1 := twoFolders(t)
	time.Sleep(20 * time.Millisecond) // after the state save, for the ctimes
	engine.SetFlagsBySubject(t, spec.Far, "B", "b1", engine.FlagFlagged, 0)
	if err := os.Rename(b1, b1+"S"); err != nil {
		t.Fatal(err)
	}
	moveInto(t, dir, a1, "B")
	engine.MustSync(t, spec, engine.RunOptions{})
	checkBoth(t, spec, "A", "")
	checkBoth(t, spec, "B", "a1: b1:FS")
	checkIdle(t, spec)
	checkStateStays(t, spec, "A", "B")
}

// checkStateStays fails unless an idle run, which lists the folders (their
// stamps are not trusted yet: changed within the last second), leaves their
// state files alone: idents filled in anew each run must not look like a
// change. Should the stamps become trusted in between (a slow machine), the
// state is rewritten for them: then only its pairs must stay.
func checkStateStays(t *testing.T, spec engine.ChannelSpec, boxes ...string) {
	t.Helper()
	read := func(box string) string {
		path, err := engine.StatePath(spec, box)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	stamps := regexp.MustCompile(`(?m)^(far|near)-stamp .*$`)
	engine.MustSync(t, spec, engine.RunOptions{})
	before := map[string]string{}
	for _, box := range boxes {
		before[box] = read(box)
	}
	engine.MustSync(t, spec, engine.RunOptions{})
	for _, box := range boxes {
		after := read(box)
		if stamps.FindAllString(after, -1)[0] != stamps.FindAllString(before[box], -1)[0] ||
			stamps.FindAllString(after, -1)[1] != stamps.FindAllString(before[box], -1)[1] {
			_, pb, _ := strings.Cut(before[box], "\n\n")
			_, pa, _ := strings.Cut(after, "\n\n")
			if pa != pb {
				t.Errorf("%s: an idle run changed the pairs:\n%s\nthen\n%s", box, pb, pa)
			}
			continue
		}
		if after != before[box] {
			t.Errorf("%s: an idle run rewrote the state:\n%s\nthen\n%s", box, before[box], after)
		}
	}
}

var identField = regexp.MustCompile(` #[0-9a-f]+/[0-9a-f]+\n`)

// A state written before idents existed (no ident field) loads and syncs as
// it did, the next save records the idents, and the run after it is idle.
func TestMaildirStateWithoutIdents(t *testing.T) {
	spec, _, _, _ := twoFolders(t)
	var states []string
	for _, box := range []string{"A", "B"} {
		path, err := engine.StatePath(spec, box)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !identField.Match(b) {
			t.Fatalf("%s: no idents recorded:\n%s", box, b)
		}
		if err := os.WriteFile(path, identField.ReplaceAll(b, []byte("\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		states = append(states, path)
	}
	engine.SetFlagsBySubject(t, spec.Far, "A", "a1", engine.FlagFlagged, 0)
	engine.AddMsg(t, spec.Near, "B", "b2", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	checkBoth(t, spec, "A", "a1:F")
	checkBoth(t, spec, "B", "b1: b2:")
	for _, path := range states {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !identField.Match(b) {
			t.Errorf("%s: idents not recorded again:\n%s", path, b)
		}
	}
	checkIdle(t, spec)
}

// The same with names that differ only after a ',' (a deliverer's "m,1"
// and "m,2", or "m" and "m,2", each given UID 2 in its folder): the move is
// told from the file the state paired all the same. Told apart by the part
// before the ',' alone, the moved b1 was taken for A's a1: far A kept a1,
// which the user deleted, and far B lost b1.
func TestMaildirMoveOntoDeletedKnownUIDCommaNames(t *testing.T) {
	for _, names := range [][2]string{{"m,1", "m,2"}, {"m", "m,2"}} {
		t.Run(names[0]+" "+names[1], func(t *testing.T) {
			dir := t.TempDir()
			spec := maildirSpec(t, dir)
			engine.AddMsg(t, spec.Far, "A", "seedA", 0)
			engine.AddMsg(t, spec.Far, "B", "seedB", 0)
			engine.MustSync(t, spec, engine.RunOptions{})
			for i, box := range []string{"A", "B"} {
				body := "Subject: " + strings.ToLower(box) + "1\n\nx\n"
				if err := os.WriteFile(filepath.Join(dir, "near", box, "new", names[i]), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			engine.MustSync(t, spec, engine.RunOptions{})
			checkBoth(t, spec, "A", "a1: seedA:")
			checkBoth(t, spec, "B", "b1: seedB:")
			find := func(box, name string) string {
				es, _ := os.ReadDir(filepath.Join(dir, "near", box, "new"))
				for _, e := range es {
					if strings.HasPrefix(e.Name(), name+",U=") {
						return filepath.Join(dir, "near", box, "new", e.Name())
					}
				}
				t.Fatalf("no %s,U=* in near %s/new", name, box)
				return ""
			}
			a1, b1 := find("A", names[0]), find("B", names[1])
			if !strings.Contains(a1, ",U=2") || !strings.Contains(b1, ",U=2") {
				t.Fatalf("want both files with UID 2: %s %s", a1, b1)
			}
			if err := os.Remove(a1); err != nil {
				t.Fatal(err)
			}
			moveInto(t, dir, b1, "A")
			engine.MustSync(t, spec, engine.RunOptions{})
			checkBoth(t, spec, "A", "b1: seedA:")
			checkBoth(t, spec, "B", "seedB:")
		})
	}
}
