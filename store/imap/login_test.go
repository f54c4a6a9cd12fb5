package imap

import (
	"bufio"
	"context"
	"encoding/base64"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The login phase over the wire, against scripted servers that stall or
// refuse: a run must end within the timeout, and its error must say what
// happened — a refusal of the credentials only when there was one.

// returnsWithin runs fn and fails the test when it has not returned after d.
func returnsWithin(t *testing.T, d time.Duration, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("still waiting after %v (the store's timeout is 500ms)", d)
		return nil
	}
}

// A login answer without capabilities (Exchange's "OK LOGIN completed.")
// makes the store ask for them after the login; a server that goes silent
// then must meet the timeout, not hold a cron run for good.
func TestFakeSilentAfterLogin(t *testing.T) {
	host, port := fakeServer(t, scripted("* OK [CAPABILITY IMAP4rev1] hi\r\n", func(tag, cmd string) string {
		if strings.HasPrefix(strings.ToUpper(cmd), "LOGIN") {
			return tag + " OK LOGIN completed.\r\n"
		}
		return "HANG"
	}))
	s := fakeStore(t, host, port, nil)
	err := returnsWithin(t, 10*time.Second, func() error {
		_, err := s.ListMailboxes(context.Background())
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "(timeout)") ||
		!strings.Contains(err.Error(), "reading the capabilities after login") {
		t.Fatalf("got %v, want a timeout naming what waited", err)
	}
}

// A server that never answers the login, or hangs up during it, has not
// refused the credentials: the error must not send the user to them.
func TestFakeLoginUnansweredIsNoRefusal(t *testing.T) {
	for _, tc := range []struct {
		name, answer, want string
	}{
		{"silent", "HANG", "logging in: no answer from 127.0.0.1 for 500ms (timeout)"},
		{"hung up", "CLOSE", "logging in: connection to 127.0.0.1 failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string {
				if strings.HasPrefix(cmd, "LOGIN") {
					return tc.answer
				}
				return ""
			}))
			s := fakeStore(t, host, port, nil)
			_, err := s.ListMailboxes(ctxT(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) ||
				strings.Contains(err.Error(), "authentication failed") || strings.Contains(err.Error(), "check user") {
				t.Fatalf("got %v, want an error containing %q and no verdict on the credentials", err, tc.want)
			}
			if n := strings.Count(err.Error(), "timeout"); n > 1 {
				t.Errorf("the timeout is said %d times: %v", n, err)
			}
		})
	}
}

// An expired XOAUTH2 token (the server's JSON error challenge) is a refused
// login with the token hint and what the server said, not a broken
// connection.
func TestFakeXOAUTH2RejectionSaysToken(t *testing.T) {
	status := `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`
	host, port := fakeServer(t, scripted("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2] hi\r\n", func(tag, cmd string) string {
		if strings.HasPrefix(cmd, "AUTHENTICATE XOAUTH2 ") {
			return "+ " + base64.StdEncoding.EncodeToString([]byte(status)) + "\r\n"
		}
		if cmd == "" || cmd == "*" {
			return "HANG"
		}
		return ""
	}))
	s := fakeStore(t, host, port, func(c *Config) { c.Auth = []string{"xoauth2"}; c.Token = pw("expired") })
	_, err := s.ListMailboxes(ctxT(t))
	if err == nil || strings.Contains(err.Error(), "connection to") || !strings.Contains(err.Error(), "token_cmd") ||
		!strings.Contains(err.Error(), `"status":"401"`) || strings.Contains(err.Error(), "expired\"") {
		t.Fatalf("got %v, want a refused token with the server's status and the token_cmd hint", err)
	}
}

// A SELECT answer without UIDVALIDITY (RFC 3501 requires one) is refused:
// taken as 0 it would read as a changed UIDVALIDITY against a state, or
// hide a later real change once recorded.
func TestFakeSelectWithoutUIDValidity(t *testing.T) {
	host, port := selectedServer(t, "IMAP4rev1", "* 3 EXISTS\r\n* OK [UIDNEXT 4] n\r\n",
		func(tag, cmd string, r *bufio.Reader, say func(string)) bool { return false })
	s := fakeStore(t, host, port, nil)
	mb, err := s.OpenMailbox(ctxT(t), "INBOX", false)
	if err == nil {
		defer mb.Close()
		t.Fatalf("opened with status %+v: a missing UIDVALIDITY went unnoticed", mb.Status())
	}
	if !strings.Contains(err.Error(), "no UIDVALIDITY") || !strings.Contains(err.Error(), `"INBOX"`) {
		t.Fatalf("got %v, want an error naming the mailbox and the missing UIDVALIDITY", err)
	}
}

// A server drops a client that says nothing for a while (Dovecot: "BYE
// Disconnected for inactivity" after a minute). A password_cmd that takes
// longer — a passphrase typed slowly — found the connection gone, and the
// run failed. The login is tried once more on a new connection, with the
// secret fetched once.
func TestFakeDroppedWhilePasswordTyped(t *testing.T) {
	var conns atomic.Int32
	normal := scripted(okGreeting, func(tag, cmd string) string { return "" })
	host, port := fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		if conns.Add(1) == 1 {
			c.Write([]byte(okGreeting))
			time.Sleep(200 * time.Millisecond)
			c.Write([]byte("* BYE Disconnected for inactivity.\r\n"))
			return
		}
		normal(c, r)
	})
	var asked atomic.Int32
	s := fakeStore(t, host, port, func(c *Config) {
		c.Password = func(ctx context.Context) (string, error) {
			asked.Add(1)
			time.Sleep(800 * time.Millisecond) // over slowSecret (the 500 ms timeout here)
			return "pw", nil
		}
	})
	if _, err := s.ListMailboxes(ctxT(t)); err != nil {
		t.Fatalf("the login after a slow password failed: %v", err)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("password_cmd ran %d times, want once", n)
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the dropped one, and one more)", n)
	}
}
