package maildir

import (
	"hash/fnv"
	"path/filepath"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

func TestNameIdent(t *testing.T) {
	fnv32a := func(s string) uint32 {
		h := fnv.New32a()
		h.Write([]byte(s))
		return h.Sum32()
	}
	for name, unique := range map[string]string{
		"1700000000.1234_5.host,U=7:2,S":      "1700000000.1234_5.host",
		"1700000000.1234_5.host,U=9:2,FS":     "1700000000.1234_5.host",
		"1700000000.1234_5.host":              "1700000000.1234_5.host",
		"1234.M5P6.host,S=1234,W=1260:2,S":    "1234.M5P6.host,S=1234,W=1260",
		"1234.M5P6.host:2,":                   "1234.M5P6.host",
		"1234.M5P6.host,S=1234,W=1260,U=3:2,": "1234.M5P6.host,S=1234,W=1260",
		"1234.M5P6.host,U=3,S=1234:2,":        "1234.M5P6.host,S=1234",
		"m,1,U=2:2,S":                         "m,1",
	} {
		if got, want := nameIdent(name), fnv32a("\x01"+unique); got != want || got == 0 {
			t.Errorf("nameIdent(%q) = %#x, want FNV-1a of 0x01 and %q = %#x", name, got, unique, want)
		}
	}
	if nameIdent("a,U=1") == nameIdent("b,U=1") || nameIdent("m,1,U=2") == nameIdent("m,2,U=2") {
		t.Error("two messages with the same UID share an ident")
	}
	// An ident recorded the way states did before (of the part before the
	// first ',') still names its file; one recorded now for a name without
	// fields does not name another file that only adds fields to it.
	if !identMatches(fnv32a("1234.M5P6.host"), "1234.M5P6.host,S=1234,W=1260,U=3:2,S") {
		t.Error("an ident recorded before does not match its file")
	}
	if identMatches(nameIdent("m,U=2:2,"), "m,2,U=2:2,") {
		t.Error(`the ident of "m" matches "m,2"`)
	}
}

// A file carrying a UID the state knows, but whose name is not the one the
// state paired under that UID, was moved in from another folder: it gets a
// fresh UID, by a scan (List) as by a locate (WillTouch) — which must not
// decide otherwise than the scan. Without recorded idents the UID is trusted.
func TestForeignIdentGetsFreshUID(t *testing.T) {
	const (
		own   = "1700000001.own.host,U=1:2,S"   // this folder's message 1, flag changed
		moved = "1700000002.moved.host,U=1:2,"  // another folder's message 1, moved here
		alone = "1700000003.moved2.host,U=2:2," // another folder's 2; ours went
	)
	recorded := map[engine.UID]uint32{1: nameIdent("1700000001.own.host,U=1:2,"), 2: nameIdent("1700000009.gone.host,U=2:2,")}
	for _, c := range []struct {
		name   string
		idents bool
		hint   bool
	}{{"scan", true, false}, {"locate", true, true}, {"no idents", false, false}} {
		t.Run(c.name, func(t *testing.T) {
			s, root := newTestStore(t, LayoutVerbatim)
			dir := filepath.Join(root, "INBOX")
			mkMaildir(t, dir)
			writeFile(t, filepath.Join(dir, uidFile), "1700000000\n5\n")
			for _, n := range []string{own, moved, alone} {
				writeFile(t, filepath.Join(dir, "cur", n), n+"\n")
			}
			ageFolder(t, dir)
			mb := open(t, s, "INBOX", false)
			mb.SetKnownUIDs(func(u engine.UID) bool { return u <= 2 || u > 5 })
			if c.idents {
				mb.SetKnownIdents(func(u engine.UID) uint32 { return recorded[u] })
			}
			if c.hint {
				// A locate that trusted UID 2's file would fetch it.
				mb.WillTouch([]engine.UID{2})
				if got := fetch(t, mb, 2); len(got) != 0 || !mb.scanned {
					t.Errorf("locate: UID 2 = %v (scanned %v), want none after a scan", got, mb.scanned)
				}
			}
			got := fetch(t, mb, 1, 2, 6, 7)
			if !c.idents {
				// Today's rule: 1 is on two files, and without a last
				// sync time the oldest ctime keeps it; 2 is trusted.
				if got[2] != alone+"\n" {
					t.Errorf("without idents, UID 2 = %q, want the file carrying it", got[2])
				}
				return
			}
			if got[1] != own+"\n" {
				t.Errorf("UID 1 = %q, want the file the state paired", got[1])
			}
			if _, ok := got[2]; ok {
				t.Errorf("UID 2 kept by a foreign file: %q", got[2])
			}
			if len(got) != 3 || got[6] == "" || got[7] == "" {
				t.Errorf("the moved files did not get fresh UIDs 6 and 7: %v", got)
			}
			if id, ok := mb.IdentOf(1); !ok || id != recorded[1] {
				t.Errorf("IdentOf(1) = %#x %v, want %#x", id, ok, recorded[1])
			}
			for _, u := range []engine.UID{6, 7} {
				if id, ok := mb.IdentOf(u); !ok || id == recorded[1] || id == recorded[2] {
					t.Errorf("IdentOf(%d) = %#x %v", u, id, ok)
				}
			}
			if _, ok := mb.IdentOf(2); ok {
				t.Error("IdentOf(2) known, but no file has UID 2 now")
			}
		})
	}
}
