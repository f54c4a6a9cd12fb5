package imap

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// benchBody returns a deterministic message of about size bytes (LF form)
// whose Message-ID and subject carry i.
func benchBody(i, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: bench@example.org\nTo: user@example.org\nSubject: message %d\nMessage-ID: <bench-%d@example.org>\nDate: Mon, 2 Jan 2006 15:04:05 +0000\n\n", i, i)
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.String()
}

// seedDovecot puts n messages of about size bytes straight into user's
// Dovecot Maildir for mailbox (created through s), then makes Dovecot pick
// them up: much faster than APPENDing when a test needs thousands.
func seedDovecot(tb testing.TB, s *Store, user, mailbox string, n, size int) {
	tb.Helper()
	d := dove
	ctx := context.Background()
	if err := s.CreateMailbox(ctx, mailbox); err != nil {
		tb.Fatal(err)
	}
	mb, err := s.OpenMailbox(ctx, mailbox, true) // makes Dovecot create the directories
	if err != nil {
		tb.Fatal(err)
	}
	mb.Close()
	dir := d.MailDir(user)
	if mailbox != "INBOX" {
		dir = filepath.Join(dir, mailbox)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		tb.Fatal(err)
	}
	sys := fi.Sys().(*syscall.Stat_t)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		body := strings.ReplaceAll(benchBody(i, size), "\n", "\r\n")
		name := filepath.Join(dir, "cur", fmt.Sprintf("%d.seed%d.bench,S=%d:2,S", base.Unix()+int64(i), i, len(body)))
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
		if err := os.Chown(name, int(sys.Uid), int(sys.Gid)); err != nil && os.Geteuid() == 0 {
			tb.Fatal(err)
		}
		mt := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(name, mt, mt); err != nil {
			tb.Fatal(err)
		}
	}
	if err := d.ForceResync(user, mailbox); err != nil {
		tb.Fatal(err)
	}
}

// benchStore is doveStore for benchmarks (alice's account is wiped).
func benchStore(b *testing.B, conns int) *Store {
	b.Helper()
	if dove == nil {
		b.Skip("no Dovecot in -short mode")
	}
	if err := dove.ResetUser("alice"); err != nil {
		b.Fatal(err)
	}
	cfg := Config{Name: "imap.bench", Host: dove.Host, Port: dove.Port, TLS: "none", User: "alice",
		Password: pw(dove.Password("alice")), Timeout: 60 * time.Second, SpoolDir: b.TempDir(), Connections: conns, CommitConnections: conns}
	s, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkFetchBodies fetches 2 000 messages of ~5 KiB into io.Discard.
func BenchmarkFetchBodies(b *testing.B) {
	const n = 2000
	s := benchStore(b, 4)
	seedDovecot(b, s, "alice", "INBOX", n, 5<<10)
	ctx := context.Background()
	mb, err := s.OpenMailbox(ctx, "INBOX", true)
	if err != nil {
		b.Fatal(err)
	}
	defer mb.Close()
	uids, err := mb.UIDs(ctx, mb.Status().UIDNext)
	if err != nil || len(uids) != n {
		b.Fatalf("%d UIDs, %v", len(uids), err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var bytes int64
	for b.Loop() {
		got := 0
		err := mb.Fetch(ctx, uids, func(uid engine.UID, r io.Reader) error {
			got++
			m, err := io.Copy(io.Discard, r)
			bytes += m
			return err
		})
		if err != nil || got != n {
			b.Fatalf("fetched %d: %v", got, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.SetBytes(bytes / int64(b.N))
}

// BenchmarkAppendParallel commits batches of 100 messages of ~5 KiB, as the
// engine does, with 1 and with 4 connections.
func BenchmarkAppendParallel(b *testing.B) {
	for _, conns := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			const batch = 100
			s := benchStore(b, conns)
			ctx := context.Background()
			mb, err := s.OpenMailbox(ctx, "INBOX", false)
			if err != nil {
				b.Fatal(err)
			}
			defer mb.Close()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				st := make([]engine.Staged, batch)
				for k := range st {
					st[k], err = mb.Stage(ctx, engine.NewMessage{Flags: engine.FlagSeen, Body: strings.NewReader(benchBody(i, 5<<10))})
					if err != nil {
						b.Fatal(err)
					}
					i++
				}
				b.StartTimer()
				res, err := mb.Commit(ctx, st)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Err != nil || r.UID == 0 {
						b.Fatalf("%+v", r)
					}
				}
			}
			b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkListIncremental lists the changes of a 10 000-message mailbox
// (100 flag changes, no new messages) with CHANGEDSINCE.
func BenchmarkListIncremental(b *testing.B) {
	const n = 10000
	s := benchStore(b, 4)
	seedDovecot(b, s, "alice", "Big", n, 512)
	ctx := context.Background()
	mb, err := s.OpenMailbox(ctx, "Big", false)
	if err != nil {
		b.Fatal(err)
	}
	defer mb.Close()
	st := mb.Status()
	if st.Messages != n || st.HighestModSeq == 0 {
		b.Fatalf("status %+v", st)
	}
	var changed []engine.UID
	for u := engine.UID(1); u < st.UIDNext && len(changed) < 100; u += 97 {
		changed = append(changed, u)
	}
	if err := mb.SetFlags(ctx, changed, engine.FlagFlagged, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		msgs, complete, err := mb.List(ctx, engine.ListQuery{From: st.UIDNext, ChangedSince: st.HighestModSeq})
		if err != nil || complete || len(msgs) != len(changed) {
			b.Fatalf("%d msgs complete=%v: %v %v %+v", len(msgs), complete, err, msgs, st)
		}
	}
}
