package imap

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/dovecottest"
)

// limitedDovecot starts a private Dovecot that lets a user have at most max
// connections from one address (mail_max_userip_connections; other mail
// clients of the user count too).
func limitedDovecot(t *testing.T, max int) *dovecottest.Server {
	t.Helper()
	needDovecot(t)
	srv, err := dovecottest.Start(dovecottest.Options{ExtraConf: fmt.Sprintf("mail_max_userip_connections = %d\n", max)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

// TestDoveLoginRefusedAtLimit: when the user's other clients hold every
// connection the server allows, the login is refused with NO [LIMIT]. That
// says nothing about the password: the error must say what it is, and the
// refusal must not be remembered as a bad password, so that the next try,
// once a connection is free, logs in.
func TestDoveLoginRefusedAtLimit(t *testing.T) {
	srv := limitedDovecot(t, 1)
	other, err := imapclient.DialTLS(srv.TLSAddr(), &imapclient.Options{TLSConfig: srv.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Login("alice", srv.Password("alice")).Wait(); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Name: "imap.dove", Host: srv.Host, Port: srv.TLSPort, TLS: "implicit", User: "alice",
		Password: pw(srv.Password("alice")), CAFile: srv.CAFile, Timeout: 20 * time.Second, SpoolDir: t.TempDir()}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "login refused for alice") || !strings.Contains(err.Error(), "[LIMIT]") ||
		!strings.Contains(err.Error(), "takes no more connections") || strings.Contains(err.Error(), "password") ||
		strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("with the only connection taken by another client: %v; want the [LIMIT] refusal explained, no word of the password", err)
	}
	if err := other.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	other.Close()
	// Dovecot counts a connection until its process has gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err = s.ListMailboxes(ctxT(t)); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after the other client logged out: %v", err)
	}
}

// onlyFirstConn is a proxy to a server that passes the first connection and
// greets every later one with BYE, as servers at a per-user limit do that
// refuse before the login.
func onlyFirstConn(t *testing.T, host string, port int) (string, int) {
	return firstConnOnly(t, host, port, func(c net.Conn) {
		c.Write([]byte("* BYE Too many simultaneous connections\r\n"))
		c.Close()
	})
}

// firstConnOnly is a proxy to a server that passes the first connection and
// hands every later one to refuse.
func firstConnOnly(t *testing.T, host string, port int, refuse func(net.Conn)) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n > 0 {
				refuse(c)
				continue
			}
			up, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// TestMemExtraConnectionRefused: with one connection in use, another
// mailbox's dial is refused (BYE at the greeting). That mailbox waits for
// the connection in use instead of failing, and the pool does not dial again.
func TestMemExtraConnectionRefused(t *testing.T) {
	mhost, mport, u := memServer(t, imap.CapUIDPlus)
	if err := u.Create("B", nil); err != nil {
		t.Fatal(err)
	}
	host, port := onlyFirstConn(t, mhost, mport)
	s := newMemStore(t, host, port, nil)
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	opened := openLater(ctx, s, "B")
	select {
	case err := <-opened:
		t.Fatalf("B opened while the only connection the server allows was in use: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	mb.Close()
	if err := <-opened; err != nil {
		t.Fatalf("B, once INBOX was closed: %v", err)
	}
	// Later opens reuse the one connection; the refused dial is not retried
	// while it is in use.
	dials := s.dials.Load()
	for range 3 {
		mb, err := s.OpenMailbox(ctx, "INBOX", false)
		if err != nil {
			t.Fatal(err)
		}
		mb.Close()
	}
	if n := s.dials.Load(); n != dials {
		t.Errorf("%d more dials after the refusal", n-dials)
	}
}

// TestMemCommitExtraRefused: a commit that would APPEND over extra
// connections too, where the server refuses them, does it all over its own
// one (it must not wait for a connection it holds itself).
func TestMemCommitExtraRefused(t *testing.T) {
	mhost, mport, _ := memServer(t, imap.CapUIDPlus)
	host, port := onlyFirstConn(t, mhost, mport)
	s := newMemStore(t, host, port, func(c *Config) { c.CommitConnections = 4 })
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	var staged []engine.Staged
	for i := range 4 * minPerExtraConn {
		st, err := mb.Stage(ctx, engine.NewMessage{Body: strings.NewReader(fmt.Sprintf("Subject: %d\n\nbody %d\n", i, i))})
		if err != nil {
			t.Fatal(err)
		}
		staged = append(staged, st)
	}
	done := make(chan error, 1)
	go func() {
		res, err := mb.Commit(ctx, staged)
		for _, r := range res {
			if err == nil {
				err = r.Err
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("commit still waiting after 10 s: it waits for a connection it holds itself")
	}
	msgs, _, err := mb.List(ctx, engine.ListQuery{All: true})
	if err != nil || len(msgs) != len(staged) {
		t.Fatalf("INBOX holds %d messages (%v), want %d", len(msgs), err, len(staged))
	}
}

// TestMemExtraConnectionNeverGreeted: a server that takes one more
// connection but never greets it (Cyrus with every process busy, at
// maxchild) does not hold a mailbox for the whole timeout: the extra
// connection gives up after a short wait and the mailbox takes the one in
// use once it is free.
func TestMemExtraConnectionNeverGreeted(t *testing.T) {
	mhost, mport, u := memServer(t, imap.CapUIDPlus)
	if err := u.Create("B", nil); err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	host, port := firstConnOnly(t, mhost, mport, func(c net.Conn) {
		mu.Lock()
		held = append(held, c) // accepted, never answered
		mu.Unlock()
	})
	s := newMemStore(t, host, port, func(c *Config) { c.Timeout = 30 * time.Second })
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	opened := openLater(ctx, s, "B")
	time.Sleep(300 * time.Millisecond)
	mb.Close()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("B: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("B still waiting after 15 s: the silent extra connection held it toward the 30 s timeout")
	}
	t.Logf("B opened after %v", time.Since(start).Round(time.Millisecond))
}

// openLater opens box (and closes it again) on its own goroutine; the
// channel says how that went.
func openLater(ctx context.Context, s *Store, box string) <-chan error {
	opened := make(chan error, 1)
	go func() {
		mb, err := s.OpenMailbox(ctx, box, false)
		if err == nil {
			mb.Close()
		}
		opened <- err
	}()
	return opened
}
