package imap

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/quixysync/quixysync/engine"
)

// fakeServer accepts connections on 127.0.0.1 and runs script on each.
func fakeServer(t *testing.T, script func(c net.Conn, r *bufio.Reader)) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				go func() { <-done; c.Close() }()
				script(c, bufio.NewReader(c))
			}()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// scripted answers commands with handler; unknown commands get OK. It
// handles CAPABILITY, LOGIN and the delimiter LIST itself unless handler
// returns a non-empty answer for them.
func scripted(greeting string, handler func(tag, cmd string) string) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte(greeting))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			tag, cmd, _ := strings.Cut(line, " ")
			if ans := handler(tag, cmd); ans != "" {
				if ans == "HANG" {
					select {} // never answer (the test's cleanup closes the conn)
				}
				if ans == "CLOSE" {
					return
				}
				c.Write([]byte(ans))
				continue
			}
			up := strings.ToUpper(cmd)
			switch {
			case strings.HasPrefix(up, "CAPABILITY"):
				c.Write([]byte("* CAPABILITY IMAP4rev1\r\n" + tag + " OK done\r\n"))
			case strings.HasPrefix(up, `LIST "" ""`):
				c.Write([]byte(`* LIST (\Noselect) "/" ""` + "\r\n" + tag + " OK done\r\n"))
			case strings.HasPrefix(up, "LOGOUT"):
				c.Write([]byte("* BYE bye\r\n" + tag + " OK done\r\n"))
				return
			default:
				c.Write([]byte(tag + " OK done\r\n"))
			}
		}
	}
}

func fakeStore(t *testing.T, host string, port int, mod func(*Config)) *Store {
	return newMemStore(t, host, port, func(c *Config) {
		c.Timeout = 500 * time.Millisecond
		if mod != nil {
			mod(c)
		}
	})
}

const okGreeting = "* OK [CAPABILITY IMAP4rev1] fake ready\r\n"

func TestFakeNeverAnswers(t *testing.T) {
	host, port := fakeServer(t, func(c net.Conn, r *bufio.Reader) { select {} })
	s := fakeStore(t, host, port, nil)
	start := time.Now()
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "no answer") || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v with a 500ms timeout", d)
	}
}

func TestFakeHangsAfterSelect(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
		if strings.HasPrefix(cmd, "SELECT") {
			return "HANG"
		}
		return ""
	}))
	s := fakeStore(t, host, port, nil)
	start := time.Now()
	_, err := s.OpenMailbox(ctxT(t), "INBOX", false)
	if err == nil || !strings.Contains(err.Error(), "no answer from 127.0.0.1 for 500ms") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	// The broken connection is not reused: the next operation dials anew.
	n := s.dials.Load()
	s.ListMailboxes(ctxT(t))
	if s.dials.Load() != n+1 {
		t.Fatalf("broken connection reused")
	}
}

func TestFakeContextCancel(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
		if strings.HasPrefix(cmd, "SELECT") {
			return "HANG"
		}
		return ""
	}))
	s := fakeStore(t, host, port, func(c *Config) { c.Timeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.OpenMailbox(ctx, "INBOX", false)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestFakeIdleConnectionDoesNotTimeOut(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string { return "" }))
	s := fakeStore(t, host, port, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	ctx := ctxT(t)
	if _, err := s.ListMailboxes(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // idle in the pool, longer than Timeout
	if _, err := s.ListMailboxes(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.dials.Load(); n != 1 {
		t.Fatalf("idle pooled connection died: %d dials", n)
	}
}

func TestFakeGarbageGreeting(t *testing.T) {
	host, port := fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		time.Sleep(time.Second)
	})
	s := fakeStore(t, host, port, nil)
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "bad greeting") {
		t.Fatalf("got %v", err)
	}
}

func TestFakeByeGreeting(t *testing.T) {
	host, port := fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte("* BYE too many connections\r\n"))
	})
	s := fakeStore(t, host, port, nil)
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "too many connections") {
		t.Fatalf("got %v", err)
	}
}

func TestFakeByeOnLogin(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
		if strings.HasPrefix(cmd, "LOGIN") {
			return "* BYE account locked\r\n"
		}
		return ""
	}))
	s := fakeStore(t, host, port, nil)
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "authentication failed for alice at 127.0.0.1 (mechanism LOGIN): server said: account locked") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("secret in error: %v", err)
	}
}

func TestFakeStartTLSNotOffered(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string { return "" }))
	s := fakeStore(t, host, port, func(c *Config) { c.TLS = "starttls" })
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("got %v", err)
	}
}

func TestFakeStartTLSCapabilityCommand(t *testing.T) {
	// No capabilities in the greeting: the pre-phase asks, then refuses.
	var saw string
	host, port := fakeServer(t, scripted("* OK hi\r\n", func(tag, cmd string) string {
		saw += cmd + ";"
		return ""
	}))
	s := fakeStore(t, host, port, func(c *Config) { c.TLS = "starttls" })
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") || !strings.Contains(saw, "CAPABILITY") {
		t.Fatalf("got %v (server saw %q)", err, saw)
	}
	if strings.Contains(saw, "LOGIN") {
		t.Fatal("credentials sent")
	}
}

func TestFakePreauthOnCleartextRefused(t *testing.T) {
	host, port := fakeServer(t, scripted("* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome\r\n", func(tag, cmd string) string { return "" }))
	s := fakeStore(t, host, port, func(c *Config) { c.TLS = "starttls" })
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "PREAUTH") {
		t.Fatalf("got %v", err)
	}
}

func TestFakeStartTLSInjection(t *testing.T) {
	host, port := fakeServer(t, scripted("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", func(tag, cmd string) string {
		if strings.HasPrefix(cmd, "STARTTLS") {
			return tag + " OK begin TLS\r\n* OK injected\r\n"
		}
		return ""
	}))
	s := fakeStore(t, host, port, func(c *Config) { c.TLS = "starttls" })
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "injection") {
		t.Fatalf("got %v", err)
	}
}

func TestFakeHostileNames(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
		if strings.HasPrefix(cmd, `LIST "" "*"`) {
			return `* LIST () "/" "a/../b"` + "\r\n" +
				`* LIST () "/" {4}` + "\r\n" + "x\x00yz" + "\r\n" +
				`* LIST () "/" ".."` + "\r\n" +
				`* LIST () "/" "Good"` + "\r\n" +
				`* LIST (\Noselect) "/" "Parent"` + "\r\n" +
				`* LIST () "/" "Parent/Kid"` + "\r\n" +
				tag + " OK done\r\n"
		}
		return ""
	}))
	var logBuf syncBuf
	s := fakeStore(t, host, port, nil)
	s.log = slogTo(&logBuf)
	infos, err := s.ListMailboxes(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(infos), ","); got != "Good,Parent/Kid" {
		t.Fatalf("got %q", got)
	}
	if l := logBuf.String(); !strings.Contains(l, "a/../b") || !strings.Contains(l, "unsafe") {
		t.Fatalf("no warning logged: %s", l)
	}
}

func TestFakeUnknownUntagged(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
		if strings.HasPrefix(cmd, `LIST "" "*"`) {
			return "* XWEIRD 1 2 3\r\n" + tag + " OK done\r\n"
		}
		return ""
	}))
	s := fakeStore(t, host, port, nil)
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "connection to 127.0.0.1 failed") || !strings.Contains(err.Error(), "XWEIRD") {
		t.Fatalf("got %v", err)
	}
}

func TestFakeAppendTryCreateBeforeContinuation(t *testing.T) {
	// The mailbox vanished after SELECT: Commit must notice before APPEND.
	appended := false
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
		switch {
		case strings.HasPrefix(cmd, "SELECT"):
			return "* 0 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n* OK [UIDNEXT 1] x\r\n" + tag + " OK [READ-WRITE] done\r\n"
		case strings.HasPrefix(cmd, `LIST "" "Box"`):
			return tag + " OK nothing\r\n"
		case strings.HasPrefix(cmd, "APPEND"):
			appended = true
			return tag + " NO [TRYCREATE] no such mailbox\r\n"
		}
		return ""
	}))
	s := fakeStore(t, host, port, nil)
	ctx := ctxT(t)
	mb, err := s.OpenMailbox(ctx, "Box", false)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	st, err := mb.Stage(ctx, engine.NewMessage{Body: strings.NewReader(strings.Repeat("x\n", 5000))})
	if err != nil {
		t.Fatal(err)
	}
	res, err := mb.Commit(ctx, []engine.Staged{st})
	if !errors.Is(err, engine.ErrNoMailbox) || !errors.Is(res[0].Err, engine.ErrNoMailbox) || appended {
		t.Fatalf("got %v %v appended=%v", err, res, appended)
	}
}

func TestRefuseCleartextPasswordToRemote(t *testing.T) {
	s, err := New(Config{Name: "imap.x", Host: "mail.example.com", TLS: "none", User: "u", Password: pw("p")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, "AUTH=PLAIN": {}}
	err = s.authenticate(context.Background(), nil, caps, false, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 143})
	if err == nil || !strings.Contains(err.Error(), "refusing to send credentials unencrypted") {
		t.Fatalf("got %v", err)
	}
}

func TestExplainTLSHostname(t *testing.T) {
	s, err := New(Config{Name: "imap.x", Host: "mail.example.com", User: "u", Password: pw("p")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.explainTLS(x509.HostnameError{Certificate: &x509.Certificate{DNSNames: []string{"other.example"}}, Host: "mail.example.com"})
	if err == nil || !strings.Contains(err.Error(), `not valid for host "mail.example.com"`) {
		t.Fatalf("got %v", err)
	}
}

func TestFakeXOAUTH2(t *testing.T) {
	var got string
	var tries atomic.Int32
	host, port := fakeServer(t, scripted("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=PLAIN] hi\r\n", func(tag, cmd string) string {
		if strings.HasPrefix(cmd, "AUTHENTICATE XOAUTH2 ") {
			tries.Add(1)
			got = strings.TrimPrefix(cmd, "AUTHENTICATE XOAUTH2 ")
			if got == base64.StdEncoding.EncodeToString([]byte("user=alice\x01auth=Bearer good-token\x01\x01")) {
				return tag + " OK welcome\r\n"
			}
			return "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"
		}
		if cmd == "" || cmd == "*" { // the client's answer to the error challenge
			return "HANG"
		}
		return ""
	}))
	checkTokenAuth(t, host, port, "xoauth2", func() string { return got })
	// A rejected token is not sent again by the store's other connections
	// (as a refused password is not): each would get the same answer.
	s := fakeStore(t, host, port, func(c *Config) { c.Auth = []string{"xoauth2"}; c.Token = pw("bad-token") })
	n := tries.Load()
	for range 3 {
		if _, err := s.ListMailboxes(ctxT(t)); err == nil {
			t.Fatal("a bad token was accepted")
		}
	}
	if d := tries.Load() - n; d != 1 {
		t.Errorf("the rejected token was sent %d times, want once", d)
	}
}

// checkTokenAuth logs in with mech and "good-token", which the server must
// accept, then with "bad-token", which must fail with an error naming the
// user, host and mechanism but not the token. sent is what the server got.
func checkTokenAuth(t *testing.T, host string, port int, mech string, sent func() string) {
	t.Helper()
	s := fakeStore(t, host, port, func(c *Config) { c.Auth = []string{mech}; c.Token = pw("good-token") })
	if _, err := s.ListMailboxes(ctxT(t)); err != nil {
		raw, _ := base64.StdEncoding.DecodeString(sent())
		t.Fatalf("%s: %v (server got %q)", mech, err, raw)
	}
	s = fakeStore(t, host, port, func(c *Config) { c.Auth = []string{mech}; c.Token = pw("bad-token") })
	_, err := s.ListMailboxes(ctxT(t))
	want := "authentication failed for alice at 127.0.0.1 (mechanism " + strings.ToUpper(mech) + ")"
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "bad-token") {
		t.Fatalf("%s with a bad token: got %v, want an error containing %q", mech, err, want)
	}
}

// OAUTHBEARER (RFC 7628) over the wire: the initial response carries the user,
// the host and port the client connected to, and the token; a refused token
// (the server's JSON error challenge, answered by the client's cancel) is an
// authentication error that does not show the token.
func TestFakeOAuthBearer(t *testing.T) {
	var got, authTag string
	var port int
	host, port := fakeServer(t, scripted("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER AUTH=PLAIN] hi\r\n", func(tag, cmd string) string {
		if strings.HasPrefix(cmd, "AUTHENTICATE OAUTHBEARER ") {
			authTag, got = tag, strings.TrimPrefix(cmd, "AUTHENTICATE OAUTHBEARER ")
			want := fmt.Sprintf("n,a=alice,\x01host=127.0.0.1\x01port=%d\x01auth=Bearer good-token\x01\x01", port)
			if got == base64.StdEncoding.EncodeToString([]byte(want)) {
				return tag + " OK welcome\r\n"
			}
			return "+ " + base64.StdEncoding.EncodeToString([]byte(`{"status":"invalid_token","scope":"mail"}`)) + "\r\n"
		}
		if tag == "*" { // the client's cancel of the exchange
			return authTag + " NO [AUTHENTICATIONFAILED] invalid token\r\n"
		}
		return ""
	}))
	checkTokenAuth(t, host, port, "oauthbearer", func() string { return got })
}

// Close logs out of every idle connection without waiting for the answers
// (nothing depends on them; over a network each is a round trip). The server
// here never answers LOGOUT: all three arrive, and Close returns at once
// instead of after the store's 5 s timeout.
func TestFakeCloseLogsOutAtOnce(t *testing.T) {
	var mu sync.Mutex
	var arrived []time.Time
	all := make(chan struct{})
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
		if !strings.HasPrefix(strings.ToUpper(cmd), "LOGOUT") {
			return ""
		}
		mu.Lock()
		arrived = append(arrived, time.Now())
		if len(arrived) == 3 {
			close(all)
		}
		mu.Unlock()
		return "HANG"
	}))
	s := fakeStore(t, host, port, func(c *Config) { c.Connections = 3; c.Timeout = 5 * time.Second })
	s.nearBelow = time.Nanosecond // the whole pool, not the near server's two
	var cns []*conn
	for range 3 {
		cn, err := s.get(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		cns = append(cns, cn)
	}
	for _, cn := range cns {
		s.put(cn)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v: it waited for the answers to LOGOUT", d)
	}
	select {
	case <-all:
	case <-time.After(5 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrived) != 3 {
		t.Fatalf("%d LOGOUTs, want 3", len(arrived))
	}
	if spread := arrived[2].Sub(arrived[0]); spread > 400*time.Millisecond {
		t.Fatalf("the LOGOUTs came %v apart: one after the other", spread)
	}
}

// A store's first STATUS commands do not wait for the hierarchy delimiter:
// they go out behind LIST "" "", written with "/". On a server whose
// delimiter is "." the names that guess got wrong are asked again, and what
// came back for them (here another mailbox, literally "Lists/go") is dropped.
func TestFakeStatusDoesNotWaitForTheDelimiter(t *testing.T) {
	var mu sync.Mutex
	pipelined := false
	var asked []string
	host, port := fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		c.Write([]byte(okGreeting))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
			up := strings.ToUpper(cmd)
			switch {
			case strings.HasPrefix(up, `LIST "" ""`):
				// Answered once the next command is in (or after a while).
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, perr := r.Peek(1)
				c.SetReadDeadline(time.Time{})
				mu.Lock()
				pipelined = perr == nil
				mu.Unlock()
				c.Write([]byte(`* LIST (\Noselect) "." ""` + "\r\n" + tag + " OK done\r\n"))
			case strings.HasPrefix(up, "STATUS "):
				name := strings.TrimPrefix(cmd[len("STATUS "):], `"`)
				name, _, _ = strings.Cut(name, ` `)
				name = strings.TrimSuffix(name, `"`)
				mu.Lock()
				asked = append(asked, name)
				mu.Unlock()
				n, ok := map[string]int{"INBOX": 3, "Lists.go": 5, "Lists/go": 99}[name]
				if !ok {
					c.Write([]byte(tag + " NO no such mailbox\r\n"))
					continue
				}
				fmt.Fprintf(c, "* STATUS %q (MESSAGES %d UIDNEXT %d UIDVALIDITY 7)\r\n%s OK done\r\n", name, n, n+1, tag)
			case strings.HasPrefix(up, "CAPABILITY"):
				c.Write([]byte("* CAPABILITY IMAP4rev1\r\n" + tag + " OK done\r\n"))
			case strings.HasPrefix(up, `LIST "" "*"`):
				c.Write([]byte(`* LIST () "." INBOX` + "\r\n" + `* LIST () "." Lists.go` + "\r\n" + tag + " OK done\r\n"))
			case strings.HasPrefix(up, "LOGOUT"):
				c.Write([]byte("* BYE bye\r\n" + tag + " OK done\r\n"))
				return
			default:
				c.Write([]byte(tag + " OK done\r\n"))
			}
		}
	})
	s := fakeStore(t, host, port, func(c *Config) { c.Timeout = 5 * time.Second })
	st, list, err := s.StatusThenList(t.Context(), []string{"INBOX", "Lists/go"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !pipelined {
		t.Error("the STATUS commands waited for the answer to LIST \"\" \"\"")
	}
	if st["INBOX"].Messages != 3 || st["Lists/go"].Messages != 5 || len(st) != 2 {
		t.Errorf("statuses %+v; want INBOX 3 messages and Lists/go (Lists.go on the wire) 5", st)
	}
	if want := []string{"INBOX", "Lists/go", "Lists.go"}; !slices.Equal(asked, want) {
		t.Errorf("asked %q, want %q", asked, want)
	}
	if len(list) != 2 || list[0].Name != "INBOX" || list[1].Name != "Lists/go" {
		t.Errorf("listing %+v", list)
	}
	// Known now: no guessing, one round.
	asked = nil
	mu.Unlock()
	st, err = s.StatusAll(t.Context(), []string{"Lists/go"})
	mu.Lock()
	if err != nil || st["Lists/go"].Messages != 5 || !slices.Equal(asked, []string{"Lists.go"}) {
		t.Errorf("second StatusAll: %+v %v, asked %q", st, err, asked)
	}
}

// A run cancelled in the middle of a message body: the body's reader fails
// once the connection is closed under it, the callback returns that error,
// and Fetch releases the command. go-imap's decoder goes on as soon as the
// body has failed; Fetch must not read the body again while it does (run
// with -race: that was a data race on the connection's buffer).
func TestFakeFetchCancelledInTheMiddleOfABody(t *testing.T) {
	const size = 400 << 10
	host, port := selectedServer(t, "IMAP4rev1", "* 1 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 2] n\r\n",
		func(tag, cmd string, r *bufio.Reader, say func(string)) bool {
			if !strings.HasPrefix(strings.ToUpper(cmd), "UID FETCH") {
				return false
			}
			// A part of the body, then nothing more: the client's cancel
			// closes the connection.
			say(fmt.Sprintf("* 1 FETCH (UID 1 BODY[] {%d}\r\n", size) + strings.Repeat("x", 96<<10))
			return true
		})
	s := fakeStore(t, host, port, func(c *Config) { c.Timeout = time.Minute })
	for round := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		mb, err := s.OpenMailbox(ctx, "INBOX", false)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var read int64
		err = mb.Fetch(ctx, []engine.UID{1}, func(uid engine.UID, r io.Reader) error {
			buf := make([]byte, 4<<10)
			for {
				n, err := r.Read(buf)
				read += int64(n)
				if read >= 8<<10 {
					cancel()
				}
				if err != nil {
					return fmt.Errorf("body: %w", err)
				}
			}
		})
		cancel()
		if err == nil || !strings.Contains(err.Error(), "body:") {
			t.Fatalf("round %d: Fetch returned %v, want the callback's error", round, err)
		}
		if read >= size {
			t.Fatalf("round %d: read the whole body (%d bytes) from a server that sent part of it", round, read)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("round %d: took %v", round, d)
		}
		mb.Close()
	}
}

// The password source's error already names the store and the key
// (channel.IMAPStore.Password): it is passed on without naming the store a
// second time; an error that does not name it gets the store and what failed.
func TestPasswordErrorNamesTheStoreOnce(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string { return "" }))
	for _, tc := range []struct{ err, want string }{
		{"imap.test: password_cmd failed: exit status 3: gpg: decryption failed", "imap.test: password_cmd failed: exit status 3: gpg: decryption failed"},
		{"keyring locked", "imap.test: getting the password: keyring locked"},
	} {
		s := fakeStore(t, host, port, func(c *Config) {
			c.Password = func(context.Context) (string, error) { return "", errors.New(tc.err) }
		})
		_, err := s.ListMailboxes(ctxT(t))
		if err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %s", err, tc.want)
		}
	}
}

// A server whose LOGIN answer lists no capabilities (so the list from
// before the login is void) has the connection use the list it gives after
// the login. go-imap wakes the login's caller before it forgets the old
// list, so taking Caps() then could keep the greeting's list.
func TestFakeCapabilitiesAfterLogin(t *testing.T) {
	host, port := fakeServer(t, scripted("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n", func(tag, cmd string) string {
		if strings.HasPrefix(strings.ToUpper(cmd), "CAPABILITY") {
			return "* CAPABILITY IMAP4rev1 UIDPLUS CONDSTORE\r\n" + tag + " OK done\r\n"
		}
		return ""
	}))
	for i := range 40 {
		s := fakeStore(t, host, port, nil)
		cn, err := s.getFirst(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if !cn.caps.Has(imap.CapUIDPlus) || !cn.caps.Has(imap.CapCondStore) {
			t.Fatalf("connection %d: capabilities %v, want the list given after login", i, cn.caps)
		}
		s.put(cn)
		s.Close()
	}
}

// Without UIDPLUS, Expunge takes other clients' \Deleted marks off around
// its EXPUNGE. A run interrupted once they are off still finishes the
// sequence and puts them back: otherwise those messages would come back
// undeleted, and the next run would carry that over as the user's change.
// An unmarking refused (part-way, or here at once) is undone as well, and
// nothing is expunged.
func TestFakeExpungeNoUIDPlusPutsMarksBack(t *testing.T) {
	mark := "UID STORE 5 +FLAGS.SILENT (\\Deleted)"
	search := "UID SEARCH DELETED"
	unmark := "UID STORE 7 -FLAGS.SILENT (\\Deleted)"
	remark := "UID STORE 7 +FLAGS.SILENT (\\Deleted)"
	for _, tc := range []struct {
		name    string
		refuse  bool // the unmarking is answered NO
		wantErr bool
		want    []string
	}{
		{"interrupted", false, false, []string{mark, search, unmark, "EXPUNGE", remark}},
		{"unmark refused", true, true, []string{mark, search, unmark, remark}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
				mu.Lock()
				defer mu.Unlock()
				up := strings.ToUpper(cmd)
				switch {
				case strings.HasPrefix(up, "SELECT"):
					return "* 2 EXISTS\r\n* OK [UIDVALIDITY 9] ok\r\n* OK [UIDNEXT 8] ok\r\n" + tag + " OK [READ-WRITE] done\r\n"
				case strings.HasPrefix(up, "UID SEARCH"):
					got = append(got, cmd)
					return "* SEARCH 5 7\r\n" + tag + " OK done\r\n"
				case strings.HasPrefix(up, "UID STORE 7 -FLAGS"):
					got = append(got, cmd)
					if tc.refuse {
						return tag + " NO not now\r\n"
					}
					cancel() // interrupted while the other client's mark is off
					time.Sleep(50 * time.Millisecond)
					return tag + " OK done\r\n"
				case strings.HasPrefix(up, "UID STORE"), strings.HasPrefix(up, "EXPUNGE"):
					got = append(got, cmd)
				}
				return ""
			}))
			s := fakeStore(t, host, port, nil)
			mb, err := s.OpenMailbox(t.Context(), "INBOX", false)
			if err != nil {
				t.Fatal(err)
			}
			defer mb.Close()
			err = mb.Expunge(ctx, []engine.UID{5})
			if (err != nil) != tc.wantErr {
				t.Errorf("Expunge: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(got, tc.want) {
				t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
