// Package dovecottest runs a private, throwaway Dovecot IMAP server for tests.
//
// The server listens on random ports on 127.0.0.1 only, keeps everything
// (config, certificate, sockets, logs, mail) in one temporary directory and is
// stopped by the PID in its own master.pid, so tests never touch a system-wide
// Dovecot. Typical use from a package's TestMain:
//
//	var srv *dovecottest.Server
//
//	func TestMain(m *testing.M) {
//		dovecottest.Main(m, dovecottest.Options{}, func(s *dovecottest.Server) { srv = s })
//	}
//
// With `go test -short` no server is started and srv stays nil; tests that
// need it call t.Skip.
package dovecottest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Default binaries; Debian installs them in /usr/sbin and /usr/bin.
const (
	dovecotBin = "dovecot"
	doveadmBin = "doveadm"
)

// InstallHint tells how to get Dovecot when it is missing.
const InstallHint = "install it with `apt-get install -y dovecot-imapd` (or run the tests with -short)"

// startTimeout bounds how long Start waits for the listeners.
const startTimeout = 10 * time.Second

// Options configures a server. The zero value is ready to use.
type Options struct {
	// Users maps user names to passwords. Default: alice/secret, bob/secret2.
	Users map[string]string
	// StrictSyncs turns maildir_very_dirty_syncs off, so Dovecot notices mail
	// files changed behind its back (through MailDir) on every access. By default
	// it is on, as on production servers: Dovecot then answers from its index and
	// a test that changes files directly must call ForceResync.
	StrictSyncs bool
	// ExtraConf is appended verbatim to the generated dovecot.conf.
	ExtraConf string
}

// Server is a running private Dovecot.
type Server struct {
	Host    string // 127.0.0.1
	Port    int    // plain IMAP and STARTTLS
	TLSPort int    // implicit TLS
	// CAFile is the server's self-signed certificate (SAN IP:127.0.0.1,
	// DNS:localhost) in PEM; clients trust it as their CA.
	CAFile string
	// Dir is the throwaway base directory; Stop removes it.
	Dir string
	// ConfFile is the generated dovecot.conf.
	ConfFile string
	// LogFile is Dovecot's log.
	LogFile string

	users   map[string]string
	mailUID int
	mailGID int
	caPEM   []byte
	pid     int           // master PID as read from master.pid
	done    chan struct{} // closed when the master process has been reaped
	waitErr error         // the master's exit status, valid after done

	stopMu  sync.Mutex // Stop may come from a signal handler and a defer at once
	stopped bool
}

// Available returns nil when Dovecot is installed, else an error with the
// install hint.
func Available() error {
	if _, err := lookBin(dovecotBin); err != nil {
		return fmt.Errorf("dovecottest: dovecot not found: %s", InstallHint)
	}
	if _, err := lookBin(doveadmBin); err != nil {
		return fmt.Errorf("dovecottest: doveadm not found: %s", InstallHint)
	}
	return nil
}

// lookBin finds a binary on PATH or in the sbin directories PATH often lacks
// for non-root users.
func lookBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found", name)
}

// Start writes a config into a fresh temporary directory and starts Dovecot on
// random free ports of 127.0.0.1. It returns once both listeners accept
// connections.
func Start(opts Options) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	var lastErr error
	// A port picked free may be taken by someone else before Dovecot binds it;
	// then start over with new ports.
	for attempt := 0; attempt < 5; attempt++ {
		s, err := start(opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	return nil, lastErr
}

var errPortInUse = errors.New("address already in use")

func start(opts Options) (_ *Server, err error) {
	users := opts.Users
	if users == nil {
		users = map[string]string{"alice": "secret", "bob": "secret2"}
	}
	for u, p := range users {
		if u == "" || strings.ContainsAny(u, ":/\n\r\t\x00 ") || strings.HasPrefix(u, ".") {
			return nil, fmt.Errorf("dovecottest: invalid user name %q", u)
		}
		if strings.ContainsAny(p, ":\n\r\x00") {
			return nil, fmt.Errorf("dovecottest: password of %q must not contain ':' or line breaks", u)
		}
	}

	removeStale()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("dovecottest: %w", err)
	}
	s := &Server{
		Host:     "127.0.0.1",
		Dir:      dir,
		ConfFile: filepath.Join(dir, "dovecot.conf"),
		LogFile:  filepath.Join(dir, "log", "dovecot.log"),
		CAFile:   filepath.Join(dir, "ssl", "cert.pem"),
		users:    make(map[string]string, len(users)),
		done:     make(chan struct{}),
	}
	for u, p := range users {
		s.users[u] = p
	}
	defer func() {
		if err != nil {
			s.kill()
			os.RemoveAll(dir)
		}
	}()

	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	for {
		if s.TLSPort, err = freePort(); err != nil {
			return nil, err
		}
		if s.TLSPort != s.Port {
			break
		}
	}
	if err := s.writeFiles(opts); err != nil {
		return nil, err
	}
	if err := s.launch(); err != nil {
		return nil, err
	}
	return s, nil
}

const dirPrefix = "dovecottest-"

// staleAge is how old a directory without a live master must be before it
// counts as left over: a starting instance has no master.pid for a moment.
const staleAge = 10 * time.Minute

// removeStale deletes directories of earlier instances whose test process
// died without Stop (go test timeout, killed fuzz worker): Dovecot went with
// it (Pdeathsig) but the directory stayed. Only our own, only dead ones.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < staleAge {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "dovecot.conf")); err != nil {
			continue // not one of ours
		}
		s := &Server{Dir: d}
		if _, err := s.masterPID(); err == nil {
			continue // still running
		}
		_ = os.RemoveAll(d)
	}
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("dovecottest: picking a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// identities decides who owns the mail and which users Dovecot's internal and
// login processes run as. Dovecot refuses uid 0 for mail, so as root the mail
// belongs to nobody; otherwise everything runs as the current user.
func identities() (mailUID, mailGID int, internalUser, internalGroup, loginUser string, err error) {
	if os.Geteuid() != 0 {
		cur, err := user.Current()
		if err != nil {
			return 0, 0, "", "", "", fmt.Errorf("dovecottest: current user: %w", err)
		}
		grp, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
		if err != nil {
			return 0, 0, "", "", "", fmt.Errorf("dovecottest: current group: %w", err)
		}
		return os.Geteuid(), os.Getegid(), cur.Username, grp.Name, cur.Username, nil
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		return 0, 0, "", "", "", fmt.Errorf("dovecottest: running as root needs the user nobody to own the mail: %w", err)
	}
	uid, err1 := strconv.Atoi(nobody.Uid)
	gid, err2 := strconv.Atoi(nobody.Gid)
	if err1 != nil || err2 != nil {
		return 0, 0, "", "", "", fmt.Errorf("dovecottest: user nobody has a non-numeric uid/gid %q/%q", nobody.Uid, nobody.Gid)
	}
	for _, name := range []string{"dovecot", "dovenull"} {
		if _, err := user.Lookup(name); err != nil {
			return 0, 0, "", "", "", fmt.Errorf("dovecottest: system user %q is missing (it comes with dovecot-core; reinstall it): %w", name, err)
		}
	}
	return uid, gid, "dovecot", "dovecot", "dovenull", nil
}

func (s *Server) writeFiles(opts Options) error {
	uid, gid, internalUser, internalGroup, loginUser, err := identities()
	if err != nil {
		return err
	}
	s.mailUID, s.mailGID = uid, gid

	for _, d := range []string{"run", "state", "log", "ssl", "home", "mail"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o755); err != nil {
			return fmt.Errorf("dovecottest: %w", err)
		}
	}
	// MkdirTemp makes the directory 0700; the mail and login processes run as
	// other users and must traverse it.
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	if err := s.chownMail(filepath.Join(s.Dir, "mail")); err != nil {
		return err
	}

	certPEM, keyPEM, err := selfSignedCert()
	if err != nil {
		return err
	}
	s.caPEM = certPEM
	keyFile := filepath.Join(s.Dir, "ssl", "key.pem")
	if err := os.WriteFile(s.CAFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}

	var pw strings.Builder
	for _, u := range sortedKeys(s.users) {
		home := filepath.Join(s.Dir, "home", u)
		if err := os.MkdirAll(home, 0o755); err != nil {
			return fmt.Errorf("dovecottest: %w", err)
		}
		if err := s.chownMail(home); err != nil {
			return err
		}
		fmt.Fprintf(&pw, "%s:{PLAIN}%s:%d:%d::%s::\n", u, s.users[u], uid, gid, home)
	}
	usersFile := filepath.Join(s.Dir, "users")
	if err := os.WriteFile(usersFile, []byte(pw.String()), 0o644); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}

	veryDirty := "yes"
	if opts.StrictSyncs {
		veryDirty = "no"
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	conf := fmt.Sprintf(confTemplate,
		hex.EncodeToString(rnd[:]),
		filepath.Join(s.Dir, "run"),
		filepath.Join(s.Dir, "state"),
		s.LogFile,
		s.Host,
		s.CAFile, keyFile,
		uid, uid, gid,
		internalUser, internalGroup, loginUser,
		filepath.Join(s.Dir, "mail"),
		veryDirty,
		usersFile, usersFile,
		s.Host, s.Port, s.Host, s.TLSPort,
	)
	conf += "\n" + opts.ExtraConf + "\n"
	if err := os.WriteFile(s.ConfFile, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	return nil
}

// confTemplate is a Dovecot 2.3 config; it does not include the system's
// conf.d, so only what is written here applies.
const confTemplate = `# generated by dovecottest: private throwaway test instance, loopback only
instance_name = dovecottest-%s
base_dir = %s
state_dir = %s
log_path = %s
protocols = imap
listen = %s
shutdown_clients = yes

ssl = yes
ssl_cert = <%s
ssl_key = <%s
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
# tests of wrong passwords should not wait the default 2 s
auth_failure_delay = 0
auth_verbose = yes

first_valid_uid = %d
last_valid_uid = %d
first_valid_gid = %d
default_internal_user = %s
default_internal_group = %s
default_login_user = %s

# INBOX is the user's root Maildir; "a/b" is the directory a/b
mail_location = maildir:%s/%%u:LAYOUT=fs
namespace inbox {
  inbox = yes
  separator = /
  prefix =
}
mail_fsync = optimized
maildir_very_dirty_syncs = %s
mail_max_userip_connections = 200

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %s
}
userdb {
  driver = passwd-file
  args = username_format=%%u %s
}

service imap-login {
  inet_listener imap {
    address = %s
    port = %d
  }
  inet_listener imaps {
    address = %s
    port = %d
    ssl = yes
  }
  # one login process serves many connections: faster for tests that connect often
  service_count = 0
  process_min_avail = 1
  # chroot needs root; a test server does not need the isolation
  chroot =
}
# Without this socket auth applies no growing delay to the next login from an IP
# that failed once (seconds per test of a wrong password).
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
`

func (s *Server) chownMail(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := os.Chown(path, s.mailUID, s.mailGID); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// selfSignedCert makes an ECDSA P-256 certificate that is its own CA, so the
// same file serves as server certificate and as the clients' trust root.
func selfSignedCert() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("dovecottest: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("dovecottest: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "dovecottest 127.0.0.1"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("dovecottest: creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("dovecottest: encoding key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// launch starts the master in the foreground (-F) as our own child, so we can
// reap it and notice at once when it dies during start-up.
func (s *Server) launch() error {
	bin, err := lookBin(dovecotBin)
	if err != nil {
		return err
	}
	started := make(chan error, 1)
	var proc *os.Process
	go func() {
		// Pdeathsig fires when the thread that forked the child exits. Keep this
		// goroutine on its own thread for the child's lifetime so the signal only
		// comes when the whole test process dies (e.g. a go test timeout), taking
		// Dovecot with it instead of leaving it running.
		runtime.LockOSThread()
		cmd := exec.Command(bin, "-F", "-c", s.ConfFile)
		// Stdin/stdout are /dev/null and stderr a file: a pipe held by the
		// daemon would make go test wait for it forever. Config errors go to
		// stderr, before log_path is open.
		stderr, err := os.OpenFile(s.stderrFile(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			started <- fmt.Errorf("dovecottest: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer stderr.Close()
		cmd.Stderr = stderr
		cmd.Dir = s.Dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("dovecottest: starting %s: %w", bin, err)
			runtime.UnlockOSThread()
			return
		}
		proc = cmd.Process
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.done)
		// Leaving the thread locked makes the runtime discard it: that is fine.
	}()
	if err := <-started; err != nil {
		close(s.done)
		return err
	}
	s.pid = proc.Pid

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-s.done:
			tail := s.logTail(20)
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("dovecottest: %w (ports %d/%d): %s", errPortInUse, s.Port, s.TLSPort, tail)
			}
			return fmt.Errorf("dovecottest: dovecot exited during start-up (%v); config %s; log:\n%s", s.waitErr, s.ConfFile, tail)
		default:
		}
		// master.pid names the master; with -F it is our child. It may appear
		// after the listeners, and Stop relies on it.
		pid, pidErr := s.masterPID()
		if pidErr == nil && portOpen(s.Addr()) && portOpen(s.TLSAddr()) {
			if pid != s.pid {
				return fmt.Errorf("dovecottest: master.pid says %d, but the started process is %d", pid, s.pid)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dovecottest: dovecot did not accept connections on %s and %s within %v (master.pid: %v); log:\n%s",
				s.Addr(), s.TLSAddr(), startTimeout, pidErr, s.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func portOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// masterPID reads master.pid and makes sure the process is a dovecot.
func (s *Server) masterPID() (int, error) {
	f := filepath.Join(s.Dir, "run", "master.pid")
	b, err := os.ReadFile(f)
	if err != nil {
		return 0, fmt.Errorf("dovecottest: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("dovecottest: %s: bad pid %q", f, strings.TrimSpace(string(b)))
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return 0, fmt.Errorf("dovecottest: pid %d from %s: %w", pid, f, err)
	}
	if strings.TrimSpace(string(comm)) != "dovecot" {
		return 0, fmt.Errorf("dovecottest: pid %d from %s is %q, not dovecot", pid, f, strings.TrimSpace(string(comm)))
	}
	return pid, nil
}

func (s *Server) stderrFile() string { return filepath.Join(s.Dir, "log", "stderr.log") }

// logTail returns the last n lines of Dovecot's log, preceded by what it wrote
// to stderr (config errors) if anything.
func (s *Server) logTail(n int) string {
	var out []string
	if b, err := os.ReadFile(s.stderrFile()); err == nil && len(bytes.TrimSpace(b)) > 0 {
		out = append(out, tail(b, n))
	}
	b, err := os.ReadFile(s.LogFile)
	switch {
	case err == nil:
		out = append(out, tail(b, n))
	case len(out) == 0:
		out = append(out, fmt.Sprintf("(no log: %v)", err))
	}
	return strings.Join(out, "\n")
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogTail returns the last n lines of Dovecot's log, for test failure messages.
func (s *Server) LogTail(n int) string { return s.logTail(n) }

// kill stops a master that failed to come up; only our own child.
func (s *Server) kill() {
	if s.pid == 0 {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(s.pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
		<-s.done
	}
}

// Stop shuts Dovecot down (the PID in its master.pid, checked to be a
// dovecot), waits until the master and its children are gone and removes Dir.
// Calling it again is a no-op.
func (s *Server) Stop() error {
	if s == nil {
		return nil
	}
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	var errs []error
	select {
	case <-s.done:
		errs = append(errs, fmt.Errorf("dovecottest: dovecot had already exited (%v); log:\n%s", s.waitErr, s.logTail(20)))
	default:
		pid, err := s.masterPID()
		if err != nil {
			errs = append(errs, err)
			pid = s.pid // still our own child: stop it anyway
		} else if pid != s.pid {
			errs = append(errs, fmt.Errorf("dovecottest: master.pid changed to %d (started %d)", pid, s.pid))
			pid = s.pid
		}
		// The whole group at once: the master alone takes seconds to wind down
		// its children one by one.
		if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil {
			errs = append(errs, fmt.Errorf("dovecottest: signalling dovecot %d: %w", pid, err))
		}
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("dovecottest: dovecot %d did not stop within 10s; killed", pid))
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-s.done
		}
	}
	// The master leaves some children (log, stats, imap sessions) to end on
	// their own. They are in the process group Start created for Dovecot and
	// nothing else is: end them too, so nothing outlives Stop.
	if groupAlive(s.pid) {
		_ = syscall.Kill(-s.pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for groupAlive(s.pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-s.pid, syscall.SIGKILL)
			errs = append(errs, fmt.Errorf("dovecottest: processes of group %d ignored SIGTERM; killed", s.pid))
			time.Sleep(100 * time.Millisecond)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		errs = append(errs, fmt.Errorf("dovecottest: removing %s: %w", s.Dir, err))
	}
	return errors.Join(errs...)
}

// groupAlive reports whether any process of process group pgid still exists.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// PID returns the master's process id.
func (s *Server) PID() int { return s.pid }

// Addr is host:port of the plain/STARTTLS listener.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// TLSAddr is host:port of the implicit-TLS listener.
func (s *Server) TLSAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.TLSPort)) }

// TLSConfig returns a client TLS config that trusts the server's certificate.
func (s *Server) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.caPEM)
	return &tls.Config{RootCAs: pool, ServerName: s.Host, MinVersion: tls.VersionTLS12}
}

// Users returns the configured user names, sorted.
func (s *Server) Users() []string { return sortedKeys(s.users) }

// Password returns a user's password ("" for unknown users).
func (s *Server) Password(user string) string { return s.users[user] }

// MailDir is the root of a user's Maildir tree on the server (LAYOUT=fs:
// INBOX is the root itself, "a/b" is MailDir/a/b). It exists after the user's
// first login or Doveadm access.
func (s *Server) MailDir(user string) string { return filepath.Join(s.Dir, "mail", user) }

// Doveadm runs `doveadm -c <conf> args...` and returns its standard output;
// on failure the error holds its standard error.
func (s *Server) Doveadm(args ...string) ([]byte, error) {
	bin, err := lookBin(doveadmBin)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-c", s.ConfFile}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("doveadm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// ForceResync makes Dovecot re-read a user's Maildir after a test changed
// files directly (needed unless Options.StrictSyncs). mailbox "" means all.
func (s *Server) ForceResync(user, mailbox string) error {
	if mailbox == "" {
		mailbox = "*"
	}
	_, err := s.Doveadm("force-resync", "-u", user, mailbox)
	return err
}

// ResetUser wipes all of a user's mail and indexes, so a test starts with an
// empty account (only INBOX, created again on the next access, with a new
// UIDVALIDITY). Close the user's IMAP connections first: sessions still open
// would keep their view of the old mailboxes.
func (s *Server) ResetUser(user string) error {
	if _, ok := s.users[user]; !ok {
		return fmt.Errorf("dovecottest: unknown user %q", user)
	}
	// Kick leftover sessions so none writes into the fresh tree; "no users
	// found" is fine.
	_, _ = s.Doveadm("kick", user)
	if err := os.RemoveAll(s.MailDir(user)); err != nil {
		return fmt.Errorf("dovecottest: wiping %s: %w", s.MailDir(user), err)
	}
	home := filepath.Join(s.Dir, "home", user)
	if err := os.RemoveAll(home); err != nil {
		return fmt.Errorf("dovecottest: wiping %s: %w", home, err)
	}
	if err := os.MkdirAll(home, 0o755); err != nil {
		return fmt.Errorf("dovecottest: %w", err)
	}
	return s.chownMail(home)
}

// SessionPIDs returns the processes serving the IMAP sessions of users, as
// `doveadm who` lists them. It needs only ConfFile: a helper child process
// can ask about its parent's server with &Server{ConfFile: ...}.
func (s *Server) SessionPIDs(users ...string) ([]int, error) {
	out, err := s.Doveadm("who")
	if err != nil {
		return nil, err
	}
	// username  #  proto  (pids)  (ips)
	var pids []int
	for line := range strings.SplitSeq(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !slices.Contains(users, f[0]) {
			continue
		}
		open, _, _ := strings.Cut(line, ")")
		_, list, ok := strings.Cut(open, "(")
		if !ok {
			return nil, fmt.Errorf("dovecottest: unexpected doveadm who line %q", line)
		}
		for _, p := range strings.Fields(list) {
			pid, err := strconv.Atoi(p)
			if err != nil {
				return nil, fmt.Errorf("dovecottest: unexpected doveadm who line %q", line)
			}
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// WaitSessionsGone waits until none of users has an IMAP session left, for
// at most timeout. A client that died leaves its session to the server until
// that has read the end of the connection: a command the client had sent in
// full (an APPEND) is carried out first, and what it does is seen only after.
func (s *Server) WaitSessionsGone(timeout time.Duration, users ...string) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := s.SessionPIDs(users...)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dovecottest: sessions of %v still open after %v (processes %v)", users, timeout, pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
