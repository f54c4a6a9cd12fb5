package dovecottest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

var srv *Server

func TestMain(m *testing.M) {
	Main(m, Options{}, func(s *Server) { srv = s })
}

func need(t *testing.T) *Server {
	t.Helper()
	if srv == nil {
		t.Skip("no Dovecot in -short mode")
	}
	return srv
}

func caConfig(t *testing.T, s *Server) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", s.CAFile)
	}
	return &tls.Config{RootCAs: pool}
}

func TestLoginAndCapabilities(t *testing.T) {
	s := need(t)
	cfg := caConfig(t, s)
	dials := []struct {
		name string
		dial func() (*imapclient.Client, error)
		tls  bool
	}{
		{"plain", func() (*imapclient.Client, error) { return imapclient.DialInsecure(s.Addr(), nil) }, false},
		{"starttls", func() (*imapclient.Client, error) {
			return imapclient.DialStartTLS(s.Addr(), &imapclient.Options{TLSConfig: cfg})
		}, true},
		{"tls", func() (*imapclient.Client, error) {
			return imapclient.DialTLS(s.TLSAddr(), &imapclient.Options{TLSConfig: cfg})
		}, true},
		{"tls-helper-config", func() (*imapclient.Client, error) {
			return imapclient.DialTLS(s.TLSAddr(), &imapclient.Options{TLSConfig: s.TLSConfig()})
		}, true},
	}
	for _, d := range dials {
		t.Run(d.name, func(t *testing.T) {
			c, err := d.dial()
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			pre, err := c.Capability().Wait()
			if err != nil {
				t.Fatalf("CAPABILITY: %v", err)
			}
			// Dovecot offers STARTTLS only on a connection that is not yet encrypted.
			if _, ok := pre[imap.CapStartTLS]; ok == d.tls {
				t.Errorf("STARTTLS offered=%v on a connection with tls=%v", ok, d.tls)
			}
			if err := c.Login("alice", "secret").Wait(); err != nil {
				t.Fatalf("login: %v", err)
			}
			caps, err := c.Capability().Wait()
			if err != nil {
				t.Fatalf("CAPABILITY: %v", err)
			}
			for _, want := range []imap.Cap{imap.CapCondStore, imap.CapUIDPlus, imap.CapListStatus} {
				if _, ok := caps[want]; !ok {
					t.Errorf("capability %s missing from %v", want, caps)
				}
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Errorf("SELECT INBOX: %v", err)
			}
			if err := c.Logout().Wait(); err != nil {
				t.Errorf("logout: %v", err)
			}
		})
	}
}

func TestUntrustedCertificateRejected(t *testing.T) {
	s := need(t)
	// Without the CA the handshake must fail: proves the listener really speaks
	// TLS with our certificate and the positive test above is meaningful.
	c, err := imapclient.DialTLS(s.TLSAddr(), &imapclient.Options{TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}})
	if err == nil {
		c.Close()
		t.Fatal("TLS with an empty trust store succeeded")
	}
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Logf("error (not UnknownAuthorityError, still a failure): %v", err)
	}
}

func TestWrongPassword(t *testing.T) {
	s := need(t)
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "wrong").Wait(); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if err := c.Login("bob", "secret2").Wait(); err != nil {
		t.Fatalf("bob: %v", err)
	}
}

func TestDoveadmAndResetUser(t *testing.T) {
	s := need(t)
	if _, err := s.Doveadm("mailbox", "create", "-u", "bob", "Some/Nested"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(s.MailDir("bob"), "Some", "Nested", "cur")); err != nil || !fi.IsDir() {
		t.Fatalf("LAYOUT=fs maildir not where MailDir says: %v", err)
	}
	out, err := s.Doveadm("mailbox", "list", "-u", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "Some/Nested") {
		t.Fatalf("mailbox list lacks Some/Nested:\n%s", out)
	}
	if _, err := s.Doveadm("no-such-command"); err == nil {
		t.Error("doveadm with a bad command reported no error")
	}

	if err := s.ResetUser("bob"); err != nil {
		t.Fatal(err)
	}
	out, err = s.Doveadm("mailbox", "list", "-u", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); len(got) != 1 || got[0] != "INBOX" {
		t.Fatalf("after ResetUser: mailboxes %q, want only INBOX", got)
	}
	if err := s.ResetUser("nobody-here"); err == nil {
		t.Error("ResetUser of an unknown user succeeded")
	}
}

func TestForceResyncSeesDirectWrites(t *testing.T) {
	s := need(t)
	if err := s.ResetUser("bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Doveadm("mailbox", "status", "-u", "bob", "messages", "INBOX"); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(s.MailDir("bob"), "new", "1.test.host")
	if err := os.WriteFile(f, []byte("Subject: x\n\nhi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f, s.mailUID, s.mailGID); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	if err := s.ForceResync("bob", "INBOX"); err != nil {
		t.Fatal(err)
	}
	out, err := s.Doveadm("mailbox", "status", "-u", "bob", "messages", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "messages=1") {
		t.Fatalf("status after force-resync: %q, want messages=1", out)
	}
}

// TestStopLeavesNothing runs its own second server: it must not disturb the
// shared one, and after Stop neither processes nor files may remain.
func TestStopLeavesNothing(t *testing.T) {
	need(t)
	s, err := Start(Options{Users: map[string]string{"carol": "pw"}, StrictSyncs: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Port == srv.Port || s.TLSPort == srv.TLSPort {
		t.Errorf("second server shares ports with the first")
	}
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("carol", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	// Keep the session open across Stop: its imap process must go too.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("master %d still exists after Stop (kill 0: %v)", pid, err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process group %d still exists after Stop (kill 0: %v)", pid, err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop: %v", s.Dir, err)
	}
	if portOpen(s.Addr()) {
		t.Errorf("%s still accepts connections after Stop", s.Addr())
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	// The shared server is unaffected.
	c2, err := imapclient.DialInsecure(srv.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestStartReportsBadConfig(t *testing.T) {
	need(t)
	_, err := Start(Options{ExtraConf: "this_setting_does_not_exist = 1"})
	if err == nil {
		t.Fatal("Start with a broken config succeeded")
	}
	if !strings.Contains(err.Error(), "this_setting_does_not_exist") {
		t.Errorf("error does not show Dovecot's complaint: %v", err)
	}
}

func TestBadUserName(t *testing.T) {
	if _, err := Start(Options{Users: map[string]string{"a:b": "x"}}); err == nil {
		t.Fatal("user name with ':' accepted")
	}
}

func TestRemoveStale(t *testing.T) {
	s := need(t)
	old := time.Now().Add(-2 * staleAge)
	mk := func(withConf bool) string {
		d, err := os.MkdirTemp("", dirPrefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		if withConf {
			if err := os.WriteFile(filepath.Join(d, "dovecot.conf"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	stale := mk(true)
	foreign := mk(false) // no dovecot.conf: not ours to judge
	fresh := mk(true)
	for _, d := range []string{stale, foreign, s.Dir} {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
	removeStale()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale dir %s not removed: %v", stale, err)
	}
	for _, d := range []string{foreign, fresh, s.Dir} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed though it must stay: %v", d, err)
		}
	}
	if err := os.Chtimes(s.Dir, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatalf("live server damaged by removeStale: %v", err)
	}
}

func TestSessionPIDsAndWaitSessionsGone(t *testing.T) {
	s := need(t)
	if err := s.WaitSessionsGone(10*time.Second, "bob"); err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("bob", "secret2").Wait(); err != nil {
		t.Fatal(err)
	}
	pids, err := s.SessionPIDs("bob")
	if err != nil || len(pids) != 1 {
		t.Fatalf("SessionPIDs with one session: %v, %v", pids, err)
	}
	if err := syscall.Kill(pids[0], 0); err != nil {
		t.Errorf("session process %d: %v", pids[0], err)
	}
	if err := s.WaitSessionsGone(200*time.Millisecond, "bob"); err == nil {
		t.Error("WaitSessionsGone returned while a session was open")
	}
	// A client that goes without LOGOUT: the server ends its session.
	c.Close()
	if err := s.WaitSessionsGone(10*time.Second, "bob"); err != nil {
		t.Fatal(err)
	}
}
