package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Scenario helpers that act only through the Store interface, so the same
// scenarios run against the in-memory store, Maildir and IMAP.

func addMsg(t testing.TB, s Store, box, subject string, flags Flag) UID {
	t.Helper()
	return addBody(t, s, box, msgBody(subject), flags)
}

// addBody adds a message with exactly body (LF line ends) to box, creating
// box if needed, and returns its UID.
func addBody(t testing.TB, s Store, box, body string, flags Flag) UID {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, box); err != nil {
		t.Fatal(err)
	}
	mb, err := s.OpenMailbox(ctx, box, false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	st, err := mb.Stage(ctx, NewMessage{Flags: flags, Body: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := mb.Commit(ctx, []Staged{st})
	if err != nil || res[0].Err != nil {
		t.Fatalf("commit: %v %v", err, res)
	}
	return res[0].UID
}

// subjects maps each message's subject to its UIDs and flags.
func subjects(t testing.TB, s Store, box string) map[string][]Message {
	t.Helper()
	ctx := context.Background()
	mb, err := s.OpenMailbox(ctx, box, true)
	if err != nil {
		t.Fatalf("%s %s: %v", s.Name(), box, err)
	}
	defer mb.Close()
	msgs, _, err := mb.List(ctx, ListQuery{All: true})
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[UID]Message{}
	var uids []UID
	for _, m := range msgs {
		byUID[m.UID] = m
		uids = append(uids, m.UID)
	}
	out := map[string][]Message{}
	err = mb.Fetch(ctx, uids, func(uid UID, r io.Reader) error {
		sc := bufio.NewScanner(r)
		subj := "?"
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "Subject: "); ok {
				subj = v
			}
		}
		out[subj] = append(out[subj], byUID[uid])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func findUID(t testing.TB, s Store, box, subject string) UID {
	t.Helper()
	ms := subjects(t, s, box)[subject]
	if len(ms) != 1 {
		t.Fatalf("%s: %d messages with subject %q", s.Name(), len(ms), subject)
	}
	return ms[0].UID
}

func setFlagsBySubject(t testing.TB, s Store, box, subject string, add, remove Flag) {
	t.Helper()
	uid := findUID(t, s, box, subject)
	ctx := context.Background()
	mb, err := s.OpenMailbox(ctx, box, false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if err := mb.SetFlags(ctx, []UID{uid}, add, remove); err != nil {
		t.Fatal(err)
	}
}

func expungeBySubject(t testing.TB, s Store, box, subject string) {
	t.Helper()
	uid := findUID(t, s, box, subject)
	ctx := context.Background()
	mb, err := s.OpenMailbox(ctx, box, false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	if err := mb.Expunge(ctx, []UID{uid}); err != nil {
		t.Fatal(err)
	}
}

// view renders a side as "subject:flags" lines, sorted; duplicates show up
// as repeated lines.
func view(t testing.TB, s Store, box string) string {
	t.Helper()
	var lines []string
	for subj, ms := range subjects(t, s, box) {
		for _, m := range ms {
			lines = append(lines, subj+":"+m.Flags.String())
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, " ")
}

// testSpec is a two-way channel with everything enabled.
func testSpec(dir string, far, near Store) ChannelSpec {
	return ChannelSpec{
		Name: "test", Far: far, Near: near,
		Pull: OpAll, Push: OpAll, Expunge: [2]bool{true, true}, Create: [2]bool{true, true},
		StateDir: filepath.Join(dir, "state"), LockDir: filepath.Join(dir, "locks"),
	}
}

func mustSync(t testing.TB, spec ChannelSpec, opt RunOptions) ChannelResult {
	t.Helper()
	res := SyncChannel(context.Background(), spec, opt)
	if res.Err != nil {
		t.Fatalf("sync: %v", res.Err)
	}
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			t.Fatalf("sync %s: %v", m.Mailbox, m.Err)
		}
	}
	return res
}

// crashScenarioSetup fills both stores with a synced starting point and then
// makes changes on both sides: new messages, flag changes and deletions in
// both directions. The next sync has work of every kind to do.
func crashScenarioSetup(t testing.TB, spec ChannelSpec) {
	t.Helper()
	far, near := spec.Far, spec.Near
	for i := 1; i <= 8; i++ {
		addMsg(t, far, "INBOX", fmt.Sprintf("old%d", i), FlagSeen*Flag(i%2))
	}
	addMsg(t, near, "INBOX", "nold1", 0)
	addMsg(t, far, "Archive", "arch1", FlagSeen)
	mustSync(t, spec, RunOptions{})

	addMsg(t, far, "INBOX", "fnew1", 0)
	addMsg(t, far, "INBOX", "fnew2", FlagFlagged)
	addMsg(t, far, "INBOX", "fnew3", FlagSeen)
	addMsg(t, near, "INBOX", "nnew1", FlagSeen)
	addMsg(t, near, "INBOX", "nnew2", 0)
	addMsg(t, near, "Archive", "narch", FlagReplied)
	setFlagsBySubject(t, far, "INBOX", "old1", FlagFlagged, FlagSeen)
	setFlagsBySubject(t, near, "INBOX", "old2", FlagReplied, 0)
	setFlagsBySubject(t, near, "INBOX", "old4", FlagSeen, 0)
	setFlagsBySubject(t, far, "INBOX", "old4", FlagFlagged, 0)
	expungeBySubject(t, far, "INBOX", "old3")
	expungeBySubject(t, near, "INBOX", "old5")
	setFlagsBySubject(t, near, "INBOX", "old6", FlagDeleted, 0)
	setFlagsBySubject(t, far, "INBOX", "nold1", FlagDeleted, 0)
}
