// Package cyrustest runs a private Cyrus IMAP server for interoperability
// tests: a second real server beside Dovecot (internal/dovecottest), with
// its own answers to the same commands. It listens on 127.0.0.1 on a free
// port (plain IMAP), keeps everything in a throwaway directory, and knows
// the users it was started with (password logins through its own sasldb).
//
// Debian's cyrus-imapd conflicts with dovecot-imapd, so .ci/run installs
// cyrus-common and sasl2-bin and unpacks imapd from the cyrus-imapd package
// into a directory of its own; Imapd finds it there (or where
// QUIXYSYNC_CYRUS_IMAPD says). Cyrus drops to the "cyrus" user, so starting
// it needs root (to hand it the directory).
package cyrustest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// binDir holds Cyrus' master and tools (Debian's cyrus-common).
const binDir = "/usr/lib/cyrus/bin"

// imapdDirs are where .ci/run and the benchmark's cyrus.sh unpack imapd.
var imapdDirs = []string{binDir, "/var/tmp/qscyrus-imapd/usr/lib/cyrus/bin"}

// InstallHint says how to get what Start needs.
const InstallHint = "as root: apt-get install -y --no-install-recommends cyrus-common sasl2-bin && " +
	"apt-get download cyrus-imapd && dpkg -x cyrus-imapd_*.deb /var/tmp/qscyrus-imapd (what .ci/run does)"

// Server is a running private Cyrus.
type Server struct {
	Host  string // 127.0.0.1
	Port  int    // plain IMAP
	Dir   string // everything of this instance
	users map[string]string
	cmd   *exec.Cmd
}

// imapd returns the path of the IMAP server binary.
func imapd() (string, error) {
	if p := os.Getenv("QUIXYSYNC_CYRUS_IMAPD"); p != "" {
		return p, nil
	}
	for _, d := range imapdDirs {
		if p := filepath.Join(d, "imapd"); isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("cyrus imapd not found in %s", strings.Join(imapdDirs, " or "))
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Available says why Start cannot work here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("cyrustest needs root (Cyrus drops to the cyrus user, which must own its files)")
	}
	for _, b := range []string{"master", "ctl_cyrusdb"} {
		if !isExec(filepath.Join(binDir, b)) {
			return fmt.Errorf("%s/%s missing: %s", binDir, b, InstallHint)
		}
	}
	if _, err := imapd(); err != nil {
		return fmt.Errorf("%v: %s", err, InstallHint)
	}
	if _, err := exec.LookPath("saslpasswd2"); err != nil {
		return fmt.Errorf("saslpasswd2 missing: %s", InstallHint)
	}
	if _, err := user.Lookup("cyrus"); err != nil {
		return fmt.Errorf("no cyrus user: %s", InstallHint)
	}
	return nil
}

// Start starts a server with these users (name → password), each with an
// empty INBOX.
func Start(users map[string]string) (_ *Server, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "cyrustest-")
	if err != nil {
		return nil, fmt.Errorf("cyrustest: %w", err)
	}
	s := &Server{Host: "127.0.0.1", Dir: dir, users: users}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	admin := "admin" + strconv.Itoa(os.Getpid())
	adminPass := "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := s.writeFiles(admin, adminPass); err != nil {
		return nil, fmt.Errorf("cyrustest: %w", err)
	}
	if err := s.launch(); err != nil {
		return nil, err
	}
	if err := s.createInboxes(admin, adminPass); err != nil {
		return nil, err
	}
	return s, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("cyrustest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) conf() string  { return filepath.Join(s.Dir, "imapd.conf") }
func (s *Server) mconf() string { return filepath.Join(s.Dir, "cyrus.conf") }
func (s *Server) logFile() string {
	return filepath.Join(s.Dir, "master.log")
}

// writeFiles writes the configuration, the sasldb with the users and the
// admin, and hands the tree to the cyrus user.
func (s *Server) writeFiles(admin, adminPass string) error {
	lib := filepath.Join(s.Dir, "lib")
	for _, d := range []string{"db", "proc", "socket", "lock", "log", "msg", "ptclient", "quota", "sieve", "user", "sync"} {
		if err := os.MkdirAll(filepath.Join(lib, d), 0o750); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(s.Dir, "spool"), 0o750); err != nil {
		return err
	}
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return err
	}
	imapdPath, err := imapd()
	if err != nil {
		return err
	}
	sasldb := filepath.Join(s.Dir, "sasldb2")
	conf := fmt.Sprintf(`configdirectory: %s
partition-default: %s
sievedir: %s
servername: cyrustest
admins: %s
unixhierarchysep: yes
altnamespace: yes
virtdomains: off
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: %s
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
lmtpsocket: %s
idlesocket: %s
notifysocket: %s
autocreate_quota: -1
delete_mode: immediate
expunge_mode: immediate
`, lib, filepath.Join(s.Dir, "spool"), filepath.Join(lib, "sieve"), admin, sasldb,
		filepath.Join(lib, "socket", "lmtp"), filepath.Join(lib, "socket", "idle"), filepath.Join(lib, "socket", "notify"))
	if err := os.WriteFile(s.conf(), []byte(conf), 0o644); err != nil {
		return err
	}
	mconf := fmt.Sprintf(`START {
  recover cmd="%s/ctl_cyrusdb -C %s -r"
}
SERVICES {
  imap cmd="%s -C %s" listen="%s:%d" prefork=0 maxchild=32
}
EVENTS {
}
DAEMON {
}
`, binDir, s.conf(), imapdPath, s.conf(), s.Host, s.Port)
	if err := os.WriteFile(s.mconf(), []byte(mconf), 0o644); err != nil {
		return err
	}
	all := map[string]string{admin: adminPass}
	for u, p := range s.users {
		all[u] = p
	}
	for u, p := range all {
		cmd := exec.Command("saslpasswd2", "-p", "-c", "-f", sasldb, "-u", "cyrustest", u)
		cmd.Stdin = strings.NewReader(p)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("saslpasswd2 %s: %v: %s", u, err, out)
		}
	}
	cy, err := user.Lookup("cyrus")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(cy.Uid)
	gid, _ := strconv.Atoi(cy.Gid)
	return filepath.Walk(s.Dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// launch starts the master in the foreground of its own process group,
// detached from our stdio, and waits until it accepts connections.
func (s *Server) launch() error {
	logf, err := os.Create(s.logFile())
	if err != nil {
		return fmt.Errorf("cyrustest: %w", err)
	}
	defer logf.Close()
	s.cmd = exec.Command(filepath.Join(binDir, "master"), "-C", s.conf(), "-M", s.mconf(),
		"-p", filepath.Join(s.Dir, "master.pid"))
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("cyrustest: starting master: %w", err)
	}
	exited := make(chan error, 1)
	cmd := s.cmd // Stop clears the field while this goroutine may still wait
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			s.cmd = nil
			return fmt.Errorf("cyrustest: master exited (%v): %s", err, s.logTail())
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("cyrustest: no listener on %s after 20 s: %s", s.Addr(), s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logFile())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// createInboxes makes each user's INBOX as the admin (Cyrus creates none by
// itself here).
func (s *Server) createInboxes(admin, pass string) error {
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		return fmt.Errorf("cyrustest: %w", err)
	}
	defer c.Close()
	if err := c.Login(admin, pass).Wait(); err != nil {
		return fmt.Errorf("cyrustest: admin login: %w", err)
	}
	for u := range s.users {
		if err := c.Create("user/"+u, nil).Wait(); err != nil {
			return fmt.Errorf("cyrustest: CREATE user/%s: %w", u, err)
		}
	}
	return c.Logout().Wait()
}

// Addr is host:port of the plain IMAP listener.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Password returns a user's password.
func (s *Server) Password(user string) string { return s.users[user] }

// Stop stops the server (its whole process group, by the PID we started)
// and removes its directory.
func (s *Server) Stop() error {
	var err error
	if s.cmd != nil && s.cmd.Process != nil {
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(-pgid, 0) == nil {
			if time.Now().After(deadline) {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				err = fmt.Errorf("cyrustest: master %d did not stop within 10 s; killed", pgid)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		s.cmd = nil
	}
	if rmErr := os.RemoveAll(s.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// ForTest starts a server with users for the test t and stops it when t
// ends. It skips t in -short mode and where Cyrus is not available (see
// Skip).
func ForTest(t testing.TB, users map[string]string) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Cyrus; skipped in -short mode")
	}
	if err := Available(); err != nil {
		Skip(t, err)
	}
	s, err := Start(users)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// RequireEnv, set to 1 (as .ci/run does once it installed Cyrus), turns a
// missing Cyrus from a skip into a failure.
const RequireEnv = "QUIXYSYNC_REQUIRE_CYRUS"

// Skip skips t because Cyrus is not available (why), or fails it when
// RequireEnv is set.
func Skip(t testing.TB, why error) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s=1 but Cyrus is not available: %v", RequireEnv, why)
	}
	t.Skipf("no Cyrus here (%v)", why)
}
