package imap

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// Warm's connection is the one the first command uses: one dial in all.
func TestWarmConnectionIsReused(t *testing.T) {
	host, port, _ := memServer(t)
	s := newMemStore(t, host, port, nil)
	s.Warm(ctxT(t))
	s.Warm(ctxT(t)) // a second call does nothing
	if _, err := s.ListMailboxes(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	mb, err := s.OpenMailbox(ctxT(t), "INBOX", false)
	if err != nil {
		t.Fatal(err)
	}
	mb.Close()
	if n := s.dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled, want 1 (the warm one)", n)
	}
}

// A refused login during Warm is reported by the first command, and the
// server is not asked again with the same bad secret.
func TestWarmBadPasswordReportedOnce(t *testing.T) {
	host, port, _ := memServer(t)
	s := newMemStore(t, host, port, func(c *Config) { c.Password = pw("wrong-pass") })
	s.Warm(ctxT(t))
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "authentication failed for alice") {
		t.Fatalf("got %v", err)
	}
	if !strings.HasSuffix(err.Error(), `Authentication failed; check user ("alice") and the password`) {
		t.Errorf("the refusal does not say what to check: %v", err)
	}
	if n := s.dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled, want 1: the refused secret was tried again", n)
	}
}

// A server that cannot be reached: the first command dials again and says why.
func TestWarmUnreachable(t *testing.T) {
	s := newMemStore(t, "127.0.0.1", closedPort(t), nil)
	s.Warm(ctxT(t))
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "connecting to 127.0.0.1") {
		t.Fatalf("got %v", err)
	}
}

// A connection that cannot be made says what to check: a refused port
// names host and port, a name that does not resolve names host.
func TestDialErrorsSayWhatToCheck(t *testing.T) {
	port := closedPort(t)
	s := newMemStore(t, "127.0.0.1", port, nil)
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "connection refused; nothing accepts connections on port "+strconv.Itoa(port)+" there: check host and port") {
		t.Errorf("refused: got %v", err)
	}
	s = newMemStore(t, "no-such-host.invalid", 993, nil)
	_, err = s.ListMailboxes(ctxT(t))
	var dns *net.DNSError
	if !errors.As(err, &dns) || !dns.IsNotFound {
		t.Skipf("the resolver did not say no-such-host.invalid does not exist: %v", err)
	}
	if !strings.Contains(err.Error(), `; check host: "no-such-host.invalid" is not a name this machine can resolve`) {
		t.Errorf("unresolvable: got %v", err)
	}
}

// A server that accepts the connection and never greets: the warm-up
// waits out the timeout once, and the first command reports that instead of
// dialling again and waiting as long a second time. The message names the
// store once and says what to check.
func TestWarmSilentServerWaitsOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // never greets
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	const timeout = 700 * time.Millisecond
	s := newMemStore(t, "127.0.0.1", port, func(c *Config) { c.Timeout = timeout })
	start := time.Now()
	s.Warm(ctxT(t))
	_, err = s.ListMailboxes(ctxT(t))
	took := time.Since(start)
	if err == nil {
		t.Fatal("no error from a server that never greets")
	}
	msg := err.Error()
	for _, want := range []string{"imap.test: connecting to 127.0.0.1:", "no answer for 700ms (timeout)", "sent no IMAP greeting", `tls = "none"`, `tls = "implicit"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if strings.Count(msg, "imap.test") != 1 || strings.Contains(msg, "i/o timeout") {
		t.Errorf("message repeats the store or shows Go's read error: %s", msg)
	}
	if n := s.dials.Load(); n != 1 {
		t.Errorf("%d connections dialled, want 1", n)
	}
	if took >= 2*timeout {
		t.Errorf("took %v: the timeout (%v) was waited out more than once", took, timeout)
	}
}

// A command started while Warm is still waiting for the server's greeting
// waits for that connection instead of opening a second one, and gives up
// when its own context ends.
func TestWarmSlowServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // never greets
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	s := newMemStore(t, "127.0.0.1", port, func(c *Config) { c.Timeout = 10 * time.Second })
	s.Warm(ctxT(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = s.ListMailboxes(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the caller's deadline", err)
	}
	if n := s.dials.Load(); n != 1 {
		t.Fatalf("%d connections dialled while the warm one was pending, want 1", n)
	}
	// Close ends the pending warm-up without waiting for the timeout.
	start := time.Now()
	s.Close()
	s.mu.Lock()
	w := s.warming
	s.mu.Unlock()
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("warm-up still pending 5 s after Close")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v", d)
	}
	for len(accepted) > 0 {
		(<-accepted).Close()
	}
}

// A ca_file that is missing or holds no certificate is an error at New, before
// anything connects.
func TestNewBadCAFile(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	for _, f := range []string{filepath.Join(dir, "missing.pem"), junk} {
		_, err := New(Config{Host: "127.0.0.1", TLS: "implicit", User: "u", Password: pw("p"), CAFile: f}, nil)
		if err == nil || !strings.Contains(err.Error(), "ca_file") {
			t.Fatalf("%s: got %v", f, err)
		}
	}
}

// New normalises its own copy of Auth: channels of one account share the
// configured slice and open their stores at the same time.
func TestNewLeavesCallersAuthAlone(t *testing.T) {
	auth := []string{"PLAIN", "Login"}
	s, err := New(Config{Host: "127.0.0.1", TLS: "none", User: "u", Password: pw("p"), Auth: auth}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if auth[0] != "PLAIN" || auth[1] != "Login" || s.cfg.Auth[0] != "plain" {
		t.Fatalf("caller's %v, store's %v", auth, s.cfg.Auth)
	}
}

// warmedStore returns a store of 4 connections, taken for a near server or
// not whatever the real connect time, with its first connection logged in
// and idle.
func warmedStore(t *testing.T, near bool) *Store {
	t.Helper()
	host, port, _ := memServer(t)
	s := newMemStore(t, host, port, func(c *Config) { c.Connections = 4 })
	s.nearBelow = time.Hour
	if !near {
		s.nearBelow = time.Nanosecond
	}
	s.Warm(ctxT(t))
	if err := s.waitWarm(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitIdle waits until the store holds want idle connections, and checks
// that it dialled no more than those.
func waitIdle(t *testing.T, s *Store, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		idle := len(s.idle)
		s.mu.Unlock()
		if idle == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d idle connections after WarmFor, want %d (%d dialled)", idle, want, s.dials.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // a dial too many would show now
	if n := s.dials.Load(); n != int64(want) {
		t.Fatalf("%d connections dialled, want %d", n, want)
	}
}

// openAll opens INBOX n times, failing the test unless each gets a connection.
func openAll(t *testing.T, s *Store, n int) []engine.Mailbox {
	t.Helper()
	var mbs []engine.Mailbox
	for range n {
		mb, err := s.OpenMailbox(ctxT(t), "INBOX", false)
		if err != nil {
			t.Fatal(err)
		}
		mbs = append(mbs, mb)
	}
	return mbs
}

// For a remote server, WarmFor logs in, ahead of time, one connection per
// mailbox about to be opened, up to the pool's size, and those are the
// connections the mailboxes then use: no dial beyond them.
func TestWarmForDialsAhead(t *testing.T) {
	s := warmedStore(t, false)
	s.WarmFor(ctxT(t), 3)
	waitIdle(t, s, 3)
	s.WarmFor(ctxT(t), 3) // as many as it makes are there already: nothing more
	for _, mb := range openAll(t, s, 3) {
		mb.Close()
	}
	if n := s.dials.Load(); n != 3 {
		t.Fatalf("%d connections dialled, want 3", n)
	}
	s = warmedStore(t, false)
	s.WarmFor(ctxT(t), 10)
	waitIdle(t, s, 4)
}

// For a near server the pool keeps to smallPool connections while the plans
// copy little: a third mailbox waits for a connection instead of a login
// (tryGet, which never waits, finds none), and WarmFor makes no more. Once
// the plans reported add up to more than growMessages, the pool grows to its
// size.
func TestNearServerPoolGrowsWithThePlannedCopies(t *testing.T) {
	s := warmedStore(t, true)
	s.WarmFor(ctxT(t), 10)
	waitIdle(t, s, smallPool)
	mbs := openAll(t, s, smallPool)
	if cn, err := s.tryGet(ctxT(t)); cn != nil || err != nil {
		t.Fatalf("a connection beyond %d: %v, %v", smallPool, cn, err)
	}
	s.PlannedCopies(growMessages/2, 1000)
	if cn, _ := s.tryGet(ctxT(t)); cn != nil {
		t.Fatal("the pool grew for half the messages that make it grow")
	}
	s.PlannedCopies(growMessages/2+1, 1000) // together: one more than growMessages
	more := openAll(t, s, 4-smallPool)
	if cn, _ := s.tryGet(ctxT(t)); cn != nil {
		t.Fatal("a connection beyond the pool's size")
	}
	for _, mb := range append(mbs, more...) {
		mb.Close()
	}
	if n := s.dials.Load(); n != 4 {
		t.Fatalf("%d connections dialled, want 4", n)
	}

	// Bytes count as well.
	s = warmedStore(t, true)
	s.PlannedCopies(1, growBytes+1)
	s.WarmFor(ctxT(t), 10)
	waitIdle(t, s, 4)
}

// slowProxy forwards connections to addr, holding back what the server sends
// by delay: a far server reached through a local tunnel, whose connect is
// answered at once.
func slowProxy(t *testing.T, addr string, delay time.Duration) (host string, port int) {
	t.Helper()
	return fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		up, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer up.Close()
		go func() { io.Copy(up, r); up.Close() }()
		relayToClient(up, c, func() { time.Sleep(delay) })
	})
}

// Whether the server is near is judged by its first answer, not by the
// connect: behind a local tunnel the connect is instant however far the
// server is. Directly on loopback it is near; through a tunnel that delays
// the answers by 20 ms it is not, and the pool is warmed whole.
func TestNearIsJudgedByTheFirstAnswer(t *testing.T) {
	host, port, _ := memServer(t)
	// A busy machine can stall one answer past nearAnswer: a few tries.
	var answers []time.Duration
	for range 5 {
		direct := newMemStore(t, host, port, func(c *Config) { c.Connections = 4 })
		direct.Warm(ctxT(t))
		if err := direct.waitWarm(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		answers = append(answers, time.Duration(direct.answerNanos.Load()))
		if direct.near() {
			break
		}
	}
	if a := answers[len(answers)-1]; a <= 0 || a >= nearAnswer {
		t.Fatalf("a server on loopback is not near (first answers after %v)", answers)
	}

	ph, pp := slowProxy(t, net.JoinHostPort(host, strconv.Itoa(port)), 20*time.Millisecond)
	far := newMemStore(t, ph, pp, func(c *Config) { c.Connections = 4 })
	far.Warm(ctxT(t))
	far.WarmFor(ctxT(t), 4) // before the first answer: it waits for it
	if err := far.waitWarm(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if far.near() {
		t.Fatalf("a server behind a 20 ms tunnel is near (first answer after %v)", time.Duration(far.answerNanos.Load()))
	}
	waitIdle(t, far, 4)
}

// While a store-wide command (LIST, STATUS, CREATE, DELETE) waits for a
// connection, a mailbox does not take one, not even a free one: the engine
// lists the far side while it already opens mailboxes, and a LIST behind
// those would hold up every other mailbox. Once the command has its
// connection, the mailbox gets the next.
func TestStoreCommandsGoBeforeMailboxes(t *testing.T) {
	host, port, _ := memServer(t)
	s := newMemStore(t, host, port, func(c *Config) { c.Connections = 2 })
	busy, err := s.getFirst(ctxT(t)) // one connection in use, the other slot free
	if err != nil {
		t.Fatal(err)
	}
	// A LIST about to ask for a connection (as getFirst counts itself).
	s.mu.Lock()
	s.urgent++
	s.mu.Unlock()
	opened := make(chan error, 1)
	go func() {
		mb, err := s.OpenMailbox(ctxT(t), "INBOX", false)
		if err == nil {
			mb.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("a mailbox opened while a store-wide command waited (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	// The LIST gets the free connection, and then no longer waits.
	list, err := s.take(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	s.urgentDone()
	s.put(list)
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	s.put(busy)
	if _, err := s.ListMailboxes(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

// closedPort is a loopback port nothing listens on (one just closed).
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// gatedGreeting relays connections to host:port, but only once open is
// closed: until then a client waits for the server's greeting.
func gatedGreeting(t *testing.T, host string, port int, open <-chan struct{}) int {
	t.Helper()
	_, gated := fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		<-open
		b, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return
		}
		defer b.Close()
		go io.Copy(b, r)
		io.Copy(c, b)
	})
	return gated
}

// The password is fetched beside the connect and the greeting, not after
// them: here the server greets only once the password has been asked for.
func TestWarmFetchesThePasswordBeforeTheGreeting(t *testing.T) {
	host, port, _ := memServer(t)
	open := make(chan struct{})
	gated := gatedGreeting(t, host, port, open)
	var calls atomic.Int32
	s := newMemStore(t, host, gated, func(c *Config) {
		c.Timeout = 3 * time.Second
		c.Password = func(context.Context) (string, error) {
			if calls.Add(1) == 1 {
				close(open)
			}
			return "secret", nil
		}
	})
	s.Warm(ctxT(t))
	if _, err := s.ListMailboxes(ctxT(t)); err != nil {
		t.Fatalf("the password was not asked for before the greeting: %v", err)
	}
	// A second connection logs in with the same password.
	cn, err := s.dial(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	cn.logout()
	if n := calls.Load(); n != 1 {
		t.Fatalf("password fetched %d times, want once", n)
	}
}

// A password that cannot be had is asked for once, however many
// connections need it, and the failure is what the command reports.
func TestFailedPasswordIsFetchedOnce(t *testing.T) {
	host, port, _ := memServer(t)
	var calls atomic.Int32
	s := newMemStore(t, host, port, func(c *Config) {
		c.Password = func(context.Context) (string, error) {
			calls.Add(1)
			return "", errors.New("imap.test: password_cmd failed: gpg: decryption failed")
		}
	})
	s.Warm(ctxT(t))
	for range 3 {
		_, err := s.ListMailboxes(ctxT(t))
		if err == nil || !strings.Contains(err.Error(), "gpg: decryption failed") {
			t.Fatalf("got %v, want the password_cmd's failure", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("password fetched %d times, want once", n)
	}
}

// The secret is fetched only once the server accepted the connection (a
// passphrase prompt for a server that is down would be for nothing), and
// only when the configuration leaves one kind: with a password and a token
// the server's mechanisms decide which one the login uses.
func TestPrefetchOnlyWhenItWillServe(t *testing.T) {
	var calls atomic.Int32
	fetch := func(context.Context) (string, error) { calls.Add(1); return "x", nil }
	down := newMemStore(t, "127.0.0.1", closedPort(t), func(c *Config) { c.Password = fetch })
	down.Warm(ctxT(t))
	down.waitWarm(ctxT(t))
	if n := calls.Load(); n != 0 {
		t.Fatalf("password fetched %d times for a server that is down", n)
	}
	never := make(chan struct{}) // the server accepts and never greets
	host, port, _ := memServer(t)
	silent := gatedGreeting(t, host, port, never)
	both := newMemStore(t, "127.0.0.1", silent, func(c *Config) {
		c.Password, c.Token = fetch, fetch
		c.Auth = []string{"xoauth2", "plain"}
		c.Timeout = 300 * time.Millisecond
	})
	both.Warm(ctxT(t))
	both.waitWarm(ctxT(t))
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d secrets fetched before the server said which it takes", n)
	}
	one := newMemStore(t, "127.0.0.1", silent, func(c *Config) {
		c.Password = fetch
		c.Timeout = 300 * time.Millisecond
	})
	one.Warm(ctxT(t))
	one.waitWarm(ctxT(t))
	if n := calls.Load(); n != 1 {
		t.Fatalf("password fetched %d times while the server was greeting, want 1", n)
	}
}
