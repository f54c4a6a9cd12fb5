package imap

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// hangUp, said by a selectedServer handler, closes the connection.
const hangUp = "\x00hang up"

// selectedServer is a scripted server for tests past the login: it greets
// with caps, accepts any login, has INBOX (answering SELECT with the untagged
// lines of selected) and says OK to the rest, unless handle (given the tag,
// the command, the reader for literals and a writer) answers first. Saying
// hangUp closes the connection.
func selectedServer(t *testing.T, caps, selected string, handle func(tag, cmd string, r *bufio.Reader, say func(string)) bool) (string, int) {
	return fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		w := bufio.NewWriter(c)
		say := func(s string) {
			if s == hangUp {
				c.Close()
				return
			}
			w.WriteString(s)
			w.Flush()
		}
		say("* OK [CAPABILITY " + caps + "] fake ready\r\n")
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			if handle(tag, cmd, r, say) {
				continue
			}
			up := strings.ToUpper(cmd)
			switch {
			case strings.HasPrefix(up, "AUTHENTICATE") || strings.HasPrefix(up, "LOGIN"):
				say(tag + " OK [CAPABILITY " + caps + "] in\r\n")
			case strings.HasPrefix(up, `LIST "" ""`):
				say(`* LIST (\Noselect) "/" ""` + "\r\n" + tag + " OK done\r\n")
			case strings.HasPrefix(up, "LIST"):
				say(`* LIST () "/" INBOX` + "\r\n" + tag + " OK done\r\n")
			case strings.HasPrefix(up, "SELECT") || strings.HasPrefix(up, "EXAMINE"):
				say(selected + tag + " OK [READ-WRITE] done\r\n")
			case strings.HasPrefix(up, "LOGOUT"):
				say("* BYE bye\r\n" + tag + " OK done\r\n")
				return
			default:
				say(tag + " OK done\r\n")
			}
		}
	})
}

// fakeInbox opens INBOX of a fake server (2 s timeout), closed at the end.
func fakeInbox(t *testing.T, host string, port int) engine.Mailbox {
	t.Helper()
	s := fakeStore(t, host, port, func(c *Config) { c.Timeout = 2 * time.Second })
	mb, err := s.OpenMailbox(ctxT(t), "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mb.Close() })
	return mb
}

// interleavingServer answers the two pipelined UID FETCHes of an incremental
// List the way a server running them in parallel may: every reply to the
// second command (more than go-imap buffers per command) before the one
// reply to the first.
func interleavingServer(t *testing.T, newMsgs int) (string, int) {
	selected := fmt.Sprintf("* %d EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT %d] n\r\n* OK [HIGHESTMODSEQ 900] m\r\n",
		100+newMsgs, 101+newMsgs)
	var fetchTags []string
	return selectedServer(t, "IMAP4rev1 CONDSTORE UIDPLUS", selected, func(tag, cmd string, _ *bufio.Reader, say func(string)) bool {
		if !strings.HasPrefix(strings.ToUpper(cmd), "UID FETCH") {
			return false
		}
		fetchTags = append(fetchTags, tag)
		if len(fetchTags) < 2 {
			return true
		}
		var b strings.Builder
		for u := 101; u <= 100+newMsgs; u++ {
			fmt.Fprintf(&b, "* %d FETCH (UID %d FLAGS () RFC822.SIZE 10 INTERNALDATE \"01-Jan-2024 00:00:00 +0000\")\r\n", u, u)
		}
		b.WriteString("* 5 FETCH (UID 5 FLAGS (\\Seen) MODSEQ (901))\r\n")
		say(b.String() + fetchTags[0] + " OK done\r\n" + fetchTags[1] + " OK done\r\n")
		fetchTags = nil
		return true
	})
}

// An incremental List must not deadlock when the server interleaves the
// replies of its two pipelined FETCH commands.
func TestFakeListInterleavedReplies(t *testing.T) {
	host, port := interleavingServer(t, 300)
	mb := fakeInbox(t, host, port)
	type result struct {
		msgs []engine.Message
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, _, err := mb.List(ctxT(t), engine.ListQuery{From: 101, ChangedSince: 5})
		done <- result{msgs, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if len(r.msgs) != 301 || r.msgs[0].UID != 5 || r.msgs[0].Flags != engine.FlagSeen {
			t.Fatalf("%d messages, first %+v", len(r.msgs), r.msgs[0])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("List hangs: the replies of one pipelined FETCH blocked go-imap's reader")
	}
}

// SetFlagsBatch sends every change's STORE before reading any reply, and a
// refused STORE fails only its own change.
func TestFakeSetFlagsBatch(t *testing.T) {
	var stores []string
	var pending []string // replies held until three STOREs are in
	selected := "* 9 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 10] n\r\n"
	host, port := selectedServer(t, "IMAP4rev1 UIDPLUS", selected, func(tag, cmd string, _ *bufio.Reader, say func(string)) bool {
		up := strings.ToUpper(cmd)
		if !strings.HasPrefix(up, "UID STORE") {
			return false
		}
		stores = append(stores, cmd)
		reply := tag + " OK done\r\n"
		if strings.HasPrefix(up, "UID STORE 5 ") {
			reply = tag + " NO [CANNOT] not this one\r\n"
		}
		pending = append(pending, reply)
		if len(pending) == 3 { // all three arrived without waiting for a reply
			say(strings.Join(pending, ""))
			pending = nil
		}
		return true
	})
	mb := fakeInbox(t, host, port)
	errs := mb.(*Mailbox).SetFlagsBatch(ctxT(t), []engine.FlagChange{
		{UIDs: []engine.UID{1, 2}, Add: engine.FlagSeen},
		{UIDs: []engine.UID{5}, Add: engine.FlagFlagged},
		{UIDs: []engine.UID{7}, Remove: engine.FlagSeen},
	})
	if len(stores) != 3 || errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("STOREs %q, errors %v", stores, errs)
	}
	if !strings.Contains(errs[1].Error(), "not this one") {
		t.Fatalf("error %v", errs[1])
	}
}

// Close sends UNSELECT and returns without waiting for the answer; the
// connection's next user collects it and then uses the connection.
func TestCloseDoesNotWaitForUnselect(t *testing.T) {
	release := make(chan struct{})
	host, port := selectedServer(t, "IMAP4rev1 UNSELECT", "* 0 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n* OK [UIDNEXT 1] x\r\n",
		func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
			if strings.EqualFold(cmd, "UNSELECT") {
				<-release
				say(tag + " OK unselected\r\n")
				return true
			}
			return false
		})
	s := fakeStore(t, host, port, func(c *Config) { c.Timeout = 5 * time.Second })
	mb, err := s.OpenMailbox(ctxT(t), "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- mb.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Second):
		close(release)
		t.Fatal("Close waited for the UNSELECT's answer")
	}
	close(release)
	mb, err = s.OpenMailbox(ctxT(t), "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	mb.Close()
	if n := s.dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled, want the one, reused", n)
	}
}

// The next mailbox's SELECT goes out right behind the previous one's
// UNSELECT, without waiting for its answer (a round trip per mailbox over a
// network). The server here answers UNSELECT only once the next command is in.
func TestSelectFollowsUnselectAtOnce(t *testing.T) {
	host, port := selectedServer(t, "IMAP4rev1 UNSELECT", "* 0 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n* OK [UIDNEXT 1] x\r\n",
		func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
			if strings.EqualFold(cmd, "UNSELECT") {
				if _, err := r.Peek(1); err != nil {
					return true
				}
				say(tag + " OK unselected\r\n")
				return true
			}
			return false
		})
	s := fakeStore(t, host, port, func(c *Config) { c.Timeout = 2 * time.Second })
	for _, name := range []string{"INBOX", "INBOX", "INBOX"} {
		mb, err := s.OpenMailbox(ctxT(t), name, false)
		if err != nil {
			t.Fatalf("open after an UNSELECT: %v (did it wait for the answer?)", err)
		}
		if err := mb.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled, want the one, reused", n)
	}
}

// An UNSELECT the server refuses leaves the connection in doubt: the command
// sent behind it goes through, and the connection is not used again.
func TestRefusedUnselectDropsConnection(t *testing.T) {
	host, port := selectedServer(t, "IMAP4rev1 UNSELECT", "* 0 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n* OK [UIDNEXT 1] x\r\n",
		func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
			if strings.EqualFold(cmd, "UNSELECT") {
				say(tag + " BAD no\r\n")
				return true
			}
			return false
		})
	s := fakeStore(t, host, port, nil)
	for i := range 3 {
		mb, err := s.OpenMailbox(ctxT(t), "INBOX", false)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if err := mb.Close(); err != nil {
			t.Fatal(err)
		}
		// 1st: dialled; 2nd: reused behind the refused UNSELECT, then
		// dropped; 3rd: dialled afresh.
		if want := []int64{1, 1, 2}[i]; s.dials.Load() != want {
			t.Fatalf("after open %d: %d connections dialled, want %d", i+1, s.dials.Load(), want)
		}
	}
}

// Expunge sends each UID EXPUNGE right behind its STORE +FLAGS (\Deleted),
// before the STORE is answered: the server here answers the STORE only
// once the next command is in.
func TestExpungeFollowsStoreAtOnce(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	host, port := selectedServer(t, "IMAP4rev1 UIDPLUS", "* 3 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n* OK [UIDNEXT 4] x\r\n",
		func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
			up := strings.ToUpper(cmd)
			switch {
			case strings.HasPrefix(up, "UID STORE"):
				_, err := r.Peek(1) // the UID EXPUNGE, if it was sent at once
				mu.Lock()
				seen = append(seen, cmd)
				mu.Unlock()
				if err != nil {
					return true
				}
				say(tag + " OK stored\r\n")
				return true
			case strings.HasPrefix(up, "UID EXPUNGE"):
				mu.Lock()
				seen = append(seen, cmd)
				mu.Unlock()
				say("* 2 EXPUNGE\r\n" + tag + " OK expunged\r\n")
				return true
			}
			return false
		})
	mb := fakeInbox(t, host, port)
	if err := mb.Expunge(ctxT(t), []engine.UID{2}); err != nil {
		t.Fatalf("Expunge: %v (did the UID EXPUNGE wait for the STORE's answer?)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || !strings.Contains(seen[0], `+FLAGS.SILENT (\Deleted)`) || !strings.HasPrefix(strings.ToUpper(seen[1]), "UID EXPUNGE 2") {
		t.Fatalf("commands %q", seen)
	}
}

// SetFlagsAndExpunge writes the flag STOREs, the STORE +FLAGS (\Deleted)
// and the UID EXPUNGE before reading any answer: the server here answers
// nothing until it has read all three.
func TestFlagsAndExpungeInOneRoundTrip(t *testing.T) {
	var mu sync.Mutex
	var got []string
	host, port := selectedServer(t, "IMAP4rev1 UIDPLUS", "* 3 EXISTS\r\n* OK [UIDVALIDITY 1] x\r\n* OK [UIDNEXT 4] x\r\n",
		func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
			if !strings.HasPrefix(strings.ToUpper(cmd), "UID STORE") || strings.Contains(cmd, `\Deleted`) {
				return false
			}
			// The first STORE: read the two commands behind it before
			// answering anything.
			tags, cmds := []string{tag}, []string{cmd}
			for range 2 {
				line, err := r.ReadString('\n')
				if err != nil {
					return true
				}
				tg, c, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
				tags, cmds = append(tags, tg), append(cmds, c)
			}
			mu.Lock()
			got = cmds
			mu.Unlock()
			say(tags[0] + " OK stored\r\n" + tags[1] + " OK stored\r\n* 2 EXPUNGE\r\n" + tags[2] + " OK expunged\r\n")
			return true
		})
	mb := fakeInbox(t, host, port)
	flagErrs, expErr := mb.(engine.ChangeBatcher).SetFlagsAndExpunge(ctxT(t),
		[]engine.FlagChange{{UIDs: []engine.UID{1}, Add: engine.FlagSeen}}, []engine.UID{2})
	if len(flagErrs) != 1 || flagErrs[0] != nil || expErr != nil {
		t.Fatalf("flags %v, expunge %v (did it wait for an answer between commands?)", flagErrs, expErr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || !strings.Contains(got[0], `+FLAGS.SILENT (\Seen)`) || !strings.Contains(got[1], `+FLAGS.SILENT (\Deleted)`) ||
		!strings.HasPrefix(strings.ToUpper(got[2]), "UID EXPUNGE 2") {
		t.Fatalf("commands %q", got)
	}
}
