package engine

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// A first sync where both sides already hold the same messages (a Maildir
// made by another tool, a lost state file) copies only what one side lacks,
// and merges the flags of the messages it pairs.
func TestFirstSyncPairsWhatBothSidesHold(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addMsg(t, far, "INBOX", "a", FlagSeen)
		addMsg(t, far, "INBOX", "b", 0)
		addMsg(t, far, "INBOX", "c", FlagFlagged)
		addMsg(t, far, "INBOX", "d", 0)
		addMsg(t, near, "INBOX", "a", FlagSeen)
		addMsg(t, near, "INBOX", "b", FlagReplied)
		addMsg(t, near, "INBOX", "c", FlagSeen)
		addMsg(t, near, "INBOX", "e", FlagFlagged)
		// A dry run, as a careful user makes before the first real one,
		// already shows the pairing and changes nothing.
		before := [2]string{view(t, far, "INBOX"), view(t, near, "INBOX")}
		res := mustSync(t, spec, RunOptions{DryRun: true})
		if res.Copied != [2]int{1, 1} {
			t.Fatalf("dry run would copy %v, want one each way: %+v", res.Copied, res.Counts)
		}
		if after := [2]string{view(t, far, "INBOX"), view(t, near, "INBOX")}; after != before {
			t.Fatalf("dry run changed the mailboxes: %v → %v", before, after)
		}
		res = mustSync(t, spec, RunOptions{})
		checkEqual(t, spec, "INBOX", "a:S b:R c:FS d: e:F")
		if res.Copied != [2]int{1, 1} {
			t.Fatalf("copied %v, want one each way (d and e): %+v", res.Copied, res.Counts)
		}
		res = mustSync(t, spec, RunOptions{})
		if res.Copied != [2]int{} || res.Flagged != [2]int{} || res.Deleted != [2]int{} {
			t.Fatalf("second run not idempotent: %+v", res.Counts)
		}
	})
}

// Only the same Message-ID and the same size pair messages: a changed
// version is copied (never left out), a message without a Message-ID pairs
// only with the same content, and a Message-ID held twice on one side pairs
// once.
func TestFirstSyncPairsOnlyIdentical(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addBody(t, far, "INBOX", "Message-ID: <v@test>\nSubject: v1\n\nfirst version\n", 0)
		addBody(t, near, "INBOX", "Message-ID: <v@test>\nSubject: v2\n\nthe second, longer version\n", 0)
		addBody(t, far, "INBOX", "Subject: noid\n\nno Message-ID here\n", 0)
		addBody(t, near, "INBOX", "Subject: noid\n\nno Message-ID here\n", 0)
		addMsg(t, far, "INBOX", "twice", 0)
		addMsg(t, far, "INBOX", "twice", 0)
		addMsg(t, near, "INBOX", "twice", FlagSeen)
		// CRLF in a file and LF in the other are the same message.
		addBody(t, far, "INBOX", "Message-ID: <crlf@test>\nSubject: crlf\n\nline\n", 0)
		addBody(t, near, "INBOX", "Message-ID: <crlf@test>\r\nSubject: crlf\r\n\r\nline\r\n", 0)
		mustSync(t, spec, RunOptions{})
		checkEqual(t, spec, "INBOX", "crlf: noid: twice: twice:S v1: v2:")
	})
}

// A header line longer than the reader's 4 KiB buffer does not hide the
// Message-ID after it (a first sync then paired nothing and copied the
// message both ways), and nothing inside such a line passes for one (a
// forged Message-ID of another message of the same size paired the two, and
// neither was copied).
func TestFirstSyncPastLongHeaderLine(t *testing.T) {
	long := "X-Long: " + strings.Repeat("y", 4096-len("X-Long: ")) + "\n" // the buffer's size, then LF
	forger := "X-Long: " + strings.Repeat("z", 4096-len("X-Long: ")) + "Message-ID: <victim@test>\nSubject: forger\n\n.\n"
	victim := "Message-ID: <victim@test>\nSubject: victim\n\n"
	victim += strings.Repeat(".", len(forger)-len(victim)-1) + "\n" // the forger's size, LF and CRLF
	if len(victim) != len(forger) || strings.Count(victim, "\n") != strings.Count(forger, "\n") {
		t.Fatal("the victim is not the forger's size")
	}
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addBody(t, far, "INBOX", long+"Message-ID: <long@test>\nSubject: long\n\nbody\n", 0)
		addBody(t, near, "INBOX", long+"Message-ID: <long@test>\nSubject: long\n\nbody\n", FlagSeen)
		addBody(t, far, "INBOX", forger, 0)
		addBody(t, near, "INBOX", victim, 0)
		mustSync(t, spec, RunOptions{})
		checkEqual(t, spec, "INBOX", "forger: long:S victim:")
	})
}

// A pull as the first run pairs too: the Maildir does not get a second copy
// of what it has, and a later sync pushes only what the far side lacks.
func TestFirstPullPairs(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addMsg(t, far, "INBOX", "a", 0)
		addMsg(t, far, "INBOX", "b", 0)
		addMsg(t, near, "INBOX", "a", 0)
		addMsg(t, near, "INBOX", "local", 0)
		res := mustSync(t, spec, RunOptions{Mode: ModePull})
		if res.Copied != [2]int{Near: 1} {
			t.Fatalf("pull copied %v, want b only: %+v", res.Copied, res.Counts)
		}
		if got := view(t, near, "INBOX"); got != "a: b: local:" {
			t.Fatalf("near after pull: %s", got)
		}
		res = mustSync(t, spec, RunOptions{})
		checkEqual(t, spec, "INBOX", "a: b: local:")
		if res.Copied != [2]int{Far: 1} {
			t.Fatalf("sync copied %v, want local only: %+v", res.Copied, res.Counts)
		}
	})
}

// Killed at any journal step of a first sync where both sides hold mail,
// the next run still ends with every message once on each side.
func TestFirstSyncCrashAtEveryStep(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.name, func(t *testing.T) {
			build := func() ChannelSpec {
				far, near := k.mk()
				spec := testSpec(t.TempDir(), far, near)
				for i := 1; i <= 6; i++ {
					addMsg(t, far, "INBOX", fmt.Sprintf("both%d", i), FlagSeen*Flag(i%2))
					addMsg(t, near, "INBOX", fmt.Sprintf("both%d", i), FlagFlagged*Flag(i%3/2))
				}
				addMsg(t, far, "INBOX", "far1", 0)
				addMsg(t, far, "INBOX", "far2", FlagSeen)
				addMsg(t, near, "INBOX", "near1", FlagReplied)
				addMsg(t, near, "INBOX", "near2", 0)
				return spec
			}
			ref := build()
			var lines atomic.Int64
			mustSync(t, ref, RunOptions{journalLines: &lines})
			want := view(t, ref.Far, "INBOX")
			checkEqual(t, ref, "INBOX", want)
			if strings.Count(want, "both1:") != 1 || strings.Count(want, "far1:") != 1 {
				t.Fatalf("reference run duplicated: %s", want)
			}
			steps := int(lines.Load())
			if steps < 4 {
				t.Fatalf("scenario has only %d journal steps", steps)
			}
			for n := 1; n <= steps; n++ {
				spec := build()
				res := SyncChannel(context.Background(), spec, RunOptions{CrashAfter: n})
				crashed := false
				for _, m := range res.Mailboxes {
					crashed = crashed || errors.Is(m.Err, errCrash)
				}
				if !crashed {
					t.Fatalf("step %d: no crash happened", n)
				}
				mustSync(t, spec, RunOptions{})
				checkEqual(t, spec, "INBOX", want)
				res = mustSync(t, spec, RunOptions{})
				if res.Copied != [2]int{} || res.Deleted != [2]int{} {
					t.Fatalf("step %d: run after resume not idempotent: %+v", n, res.Counts)
				}
			}
		})
	}
}

func TestCRLFSizer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"", 0}, {"a", 1}, {"a\n", 3}, {"a\r\n", 3}, {"\n\n", 4}, {"\r\n\r\n", 4}, {"a\rb\n", 5}, {"x\r", 2},
	} {
		for chunk := 1; chunk <= 3; chunk++ {
			c := &crlfSizer{r: &chunkReader{s: tc.in, n: chunk}}
			buf := make([]byte, 8)
			for {
				if _, err := c.Read(buf); err != nil {
					break
				}
			}
			if got := c.size(); got != tc.want {
				t.Errorf("%q in chunks of %d: %d, want %d", tc.in, chunk, got, tc.want)
			}
		}
	}
}

// chunkReader returns s n bytes at a time, so that a CR and its LF can fall
// into different reads.
type chunkReader struct {
	s string
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.s)
	r.s = r.s[k:]
	return k, nil
}

// identifyAnswers is a Mailbox whose Identify answers as a careless server
// might: a UID twice (the first answer counts), one not asked for, one
// without a size.
type identifyAnswers struct{ Mailbox }

func (identifyAnswers) Identify(ctx context.Context, uids []UID, fn func(UID, io.Reader, int64) error) error {
	for _, a := range []struct {
		uid  UID
		id   string
		size int64
	}{{1, "<a@x>", 10}, {2, "<b@x>", 20}, {2, "<c@x>", 30}, {99, "<d@x>", 40}, {3, "<e@x>", -1}, {4, "", 50}} {
		h := "Message-ID: " + a.id + "\r\nDate: d\r\nSubject: s\r\n\r\n"
		if a.id == "" {
			h = "\r\n"
		}
		if err := fn(a.uid, strings.NewReader(h), a.size); err != nil {
			return err
		}
	}
	return nil
}

func TestIdentifyKeepsToWhatWasAsked(t *testing.T) {
	got, noID, err := identify(context.Background(), identifyAnswers{}, []UID{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	want := []keyedUID{{keyOfTest("<a@x>", 10), 1}, {keyOfTest("<b@x>", 20), 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("identify: %v, want %v", got, want)
	}
	if wantNoID := []sizedUID{{4, 50}}; !slices.Equal(noID, wantNoID) {
		t.Fatalf("identify: without Message-ID %v, want %v", noID, wantNoID)
	}
}

// keyOfTest computes a key the way identify does, independently, for a
// message whose Date is "d" and Subject "s".
func keyOfTest(id string, size int64) identKey {
	b := binary.BigEndian.AppendUint64(nil, uint64(size))
	for _, f := range []string{id, "d", "s"} {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	sum := sha256.Sum256(b)
	var k identKey
	copy(k[:], sum[:])
	return k
}

// mbsync writes an X-TUID header into every message it copies, in either
// direction: the Maildir file of a message it pulled has one the server's
// copy lacks, the server's copy of a message it pushed has one the file
// lacks. A first sync after mbsync pairs them all the same (it copied every
// message mbsync had copied back to where it came from).
func TestFirstSyncIgnoresMbsyncTUID(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addBody(t, far, "INBOX", "Message-ID: <pulled@test>\nSubject: pulled\n\nbody\n", FlagSeen)
		addBody(t, near, "INBOX", "Message-ID: <pulled@test>\nSubject: pulled\nX-TUID: ZYJQgcJ/uOgF\n\nbody\n", FlagSeen)
		addBody(t, far, "INBOX", "Message-ID: <pushed@test>\nSubject: pushed\nX-TUID: TttcoFH3r3g0\n\nbody\n", 0)
		addBody(t, near, "INBOX", "Message-ID: <pushed@test>\nSubject: pushed\n\nbody\n", 0)
		res := mustSync(t, spec, RunOptions{})
		if res.Copied != [2]int{} {
			t.Fatalf("copied %v, want nothing: both sides hold both messages", res.Copied)
		}
		checkEqual(t, spec, "INBOX", "pulled:S pushed:")
	})
}

// Messages without a Message-ID (drafts, mail from scripts and old mailers)
// that are the same on both sides — LF or CRLF, with or without mbsync's
// X-TUID — are paired by content: copying each side's to the other put
// every one of them twice on both sides. Same size but other content is
// not the same message.
func TestFirstSyncPairsSameContentWithoutMessageID(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addBody(t, far, "INBOX", "Subject: noid\n\nno Message-ID here\n", FlagSeen)
		addBody(t, near, "INBOX", "Subject: noid\r\nX-TUID: ZYJQgcJ/uOgF\r\n\r\nno Message-ID here\r\n", FlagFlagged)
		addBody(t, far, "INBOX", "Subject: twice\n\nsame\n", 0)
		addBody(t, far, "INBOX", "Subject: twice\n\nsame\n", 0)
		addBody(t, near, "INBOX", "Subject: twice\n\nsame\n", 0)
		addBody(t, far, "INBOX", "Subject: other\n\nversion A\n", 0)
		addBody(t, near, "INBOX", "Subject: other\n\nversion B\n", 0)
		res := mustSync(t, spec, RunOptions{})
		checkEqual(t, spec, "INBOX", "noid:FS other: other: twice: twice:")
		if res.Copied != [2]int{Far: 1, Near: 2} {
			t.Fatalf("copied %v, want the second twice and version A down, version B up", res.Copied)
		}
		if res.Paired != 2 {
			t.Fatalf("paired %d, want 2", res.Paired)
		}
	})
}

// contentKey sees the same message in LF and CRLF form, read in any pieces,
// with or without X-TUID fields (folded too), and past header lines longer
// than its reader's buffer; any other byte makes another key.
func TestContentKey(t *testing.T) {
	long := "X-Long: " + strings.Repeat("y", 5000) + "\n"
	base := "Subject: s\n" + long + "From: a\n\nbody\nX-TUID: in the body counts\n"
	same := []string{
		base,
		strings.ReplaceAll(base, "\n", "\r\n"),
		"X-TUID: ZYJQgcJ/uOgF\n" + base,
		"Subject: s\n" + long + "x-tuid:\n folded\r\nFrom: a\n\nbody\nX-TUID: in the body counts\n",
	}
	differ := []string{
		strings.Replace(base, "body\n", "body \n", 1),
		strings.Replace(base, "X-TUID: in the body counts\n", "", 1),
		strings.TrimSuffix(base, "\n"),
		strings.Replace(base, "\n\n", "\r\n\n", 1) + "x",
	}
	br := bufio.NewReaderSize(nil, 4096)
	key := func(s string, n int) identKey {
		k, err := contentKey(&chunkReader{s, n}, br)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	want := key(base, 1<<20)
	for i, s := range same {
		for _, n := range []int{1, 7, 4096, 1 << 20} {
			if key(s, n) != want {
				t.Errorf("same[%d] read %d bytes at a time: another key", i, n)
			}
		}
	}
	for i, s := range differ {
		if key(s, 3) == want {
			t.Errorf("differ[%d]: the same key", i)
		}
	}
}

// Software that stamps every mail with the same Message-ID (a monitoring
// script, a scanner) sends reports of the same size that differ in their
// Date and Subject. Those are different messages: paired, each side kept
// its own and never got the other's, and removing one on a side removed the
// other, which had never been copied, on the other side.
func TestFirstSyncFixedMessageIDDifferentMail(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addBody(t, far, "INBOX", "Message-ID: <report@host>\nDate: Mon, 01 Jan 2024 10:00:00 +0000\nSubject: disk 85%\n\nok\n", 0)
		addBody(t, near, "INBOX", "Message-ID: <report@host>\nDate: Mon, 01 Jan 2024 11:00:00 +0000\nSubject: disk 86%\n\nok\n", 0)
		res := mustSync(t, spec, RunOptions{})
		if res.Paired != 0 || res.Copied != [2]int{1, 1} {
			t.Fatalf("paired %d, copied %v: want the two reports copied each way", res.Paired, res.Copied)
		}
		checkEqual(t, spec, "INBOX", "disk 85%: disk 86%:")
	})
}

// A first sync whose state could not be written recorded none of the pairs
// it found: its result must not say "N already on both sides", nor its log
// that it paired them (the summary printed that for a mailbox that had
// failed; the next run pairs them again, and says so then).
func TestFirstSyncPairedOnlyOnceRecorded(t *testing.T) {
	forEachKind(t, func(t *testing.T, far, near *memStore) {
		spec := testSpec(t.TempDir(), far, near)
		addMsg(t, far, "INBOX", "a", FlagSeen)
		addMsg(t, far, "INBOX", "b", 0)
		addMsg(t, far, "INBOX", "c", 0)
		addMsg(t, near, "INBOX", "a", 0)
		addMsg(t, near, "INBOX", "b", 0)
		statePath, err := StatePath(spec, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		var logs strings.Builder
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		res := SyncChannel(context.Background(), spec, RunOptions{Log: log, fileErr: func(path string) error {
			if path == statePath {
				return syscall.EIO
			}
			return nil
		}})
		if len(res.Mailboxes) != 1 || res.Mailboxes[0].Err == nil {
			t.Fatalf("the state write's failure was not reported: %+v", res)
		}
		if res.Paired != 0 || res.Mailboxes[0].Paired != 0 {
			t.Errorf("paired %d (mailbox %d) with no state recording it", res.Paired, res.Mailboxes[0].Paired)
		}
		if strings.Contains(logs.String(), "paired messages both sides already hold") {
			t.Errorf("the log says it paired what no state records:\n%s", logs.String())
		}
		res = mustSync(t, spec, RunOptions{})
		if res.Paired != 2 {
			t.Errorf("the next run paired %d, want 2 (a and b)", res.Paired)
		}
		checkEqual(t, spec, "INBOX", "a:S b: c:")
	})
}
