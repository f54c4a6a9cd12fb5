package imap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
)

// Start-up latency. A sync with nothing to do is a login and a few STATUS
// commands, so what happens before the first byte reaches the server is a
// large part of it. Two things are moved off that path here:
//
//   - the trust anchors: x509.SystemCertPool parses the distribution's bundle
//     and then every file of /etc/ssl/certs again (30-78 ms measured on
//     Debian 12; the bundle alone 8-10 ms). They are loaded once, from the
//     bundle file, in the background, and waited for only when the TLS
//     handshake needs them;
//   - the first connection: Warm dials and logs in while the caller lists
//     the local side and reads state files.

// bundleFiles are the CA bundle files of the common distributions, in the
// order crypto/x509 tries them (src/crypto/x509/root_linux.go); each holds
// every trust anchor the directory form holds.
var bundleFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt",                // Debian, Ubuntu, Gentoo, Arch
	"/etc/pki/tls/certs/ca-bundle.crt",                  // Fedora, RHEL 6
	"/etc/ssl/ca-bundle.pem",                            // openSUSE
	"/etc/pki/tls/cacert.pem",                           // OpenELEC
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7
	"/etc/ssl/cert.pem",                                 // Alpine
}

// systemRoots returns the system's trust anchors: the first bundle file that
// holds any, else what crypto/x509 finds. SSL_CERT_FILE and SSL_CERT_DIR,
// when set, are honoured by handing over to crypto/x509 altogether.
func systemRoots() *x509.CertPool { return rootsFrom(bundleFiles, os.Getenv) }

func rootsFrom(files []string, getenv func(string) string) *x509.CertPool {
	if getenv("SSL_CERT_FILE") == "" && getenv("SSL_CERT_DIR") == "" {
		for _, f := range files {
			pem, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				return pool
			}
		}
	}
	if pool, err := x509.SystemCertPool(); err == nil && pool != nil {
		return pool
	}
	return x509.NewCertPool()
}

// newTLSOnce prepares the lazy TLS configuration of New: the returned
// function loads the trust anchors on its first call (concurrent callers wait
// for the one load). The ca_file is read
// here, at New, so that a missing or bad file is a configuration error
// reported before anything connects.
func newTLSOnce(cfg Config) (func() (*tls.Config, error), error) {
	roots := sync.OnceValue(systemRoots)
	if cfg.CAFile == "" {
		return sync.OnceValues(func() (*tls.Config, error) {
			return &tls.Config{ServerName: cfg.Host, RootCAs: roots(), MinVersion: tls.VersionTLS12}, nil
		}), nil
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%s: ca_file: %w", cfg.Name, err)
	}
	own := x509.NewCertPool()
	if !own.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: ca_file %s: no PEM certificate found", cfg.Name, cfg.CAFile)
	}
	// The system's anchors stay trusted beside the ca_file's, but a server
	// configured with a ca_file is nearly always one that file vouches for:
	// verify against it alone first and read the system's anchors (8-10 ms)
	// only when that is not enough.
	both := sync.OnceValue(func() *x509.CertPool {
		p := roots().Clone()
		p.AppendCertsFromPEM(pem)
		return p
	})
	conf := &tls.Config{
		ServerName: cfg.Host,
		MinVersion: tls.VersionTLS12,
		// Not skipped: VerifyConnection below does what crypto/tls would,
		// with the two pools in turn.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs, cfg.Host, own, both)
		},
	}
	return func() (*tls.Config, error) { return conf, nil }, nil
}

// verifyPeer verifies the server's chain and name as crypto/tls does, against
// first and, when first knows no anchor for it, against more().
func verifyPeer(cs tls.ConnectionState, host string, first *x509.CertPool, more func() *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{DNSName: host, Intermediates: inter, Roots: first}
	_, err := cs.PeerCertificates[0].Verify(opts)
	var ua x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &ua) {
		return err // a wrong name or an expired certificate is that with any anchor
	}
	opts.Roots = more()
	_, err = cs.PeerCertificates[0].Verify(opts)
	return err
}

// Warm starts connecting and logging in in the background, so that the first
// command finds a connection ready (or waits for the one being made instead
// of making another). It returns at once; errors surface at that first
// command, which dials again and reports them (a refused login is not
// retried: see authErr). Calling it more than once, or after Close, does
// nothing.
func (s *Store) Warm() {
	s.mu.Lock()
	if s.closed || s.warming != nil {
		s.mu.Unlock()
		return
	}
	done := make(chan struct{})
	s.warming = done
	s.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
	default:
		close(done) // every slot is in use already: nothing to warm
		return
	}
	go func() {
		defer close(done)
		if s.tlsOnce != nil {
			go s.tlsOnce() // the handshake waits for it; start it beside the TCP connect
		}
		cn, err := s.dial(s.bg)
		if err != nil {
			s.log.Debug("warm-up connection failed; the first command will say why", "store", s.cfg.Name, "err", err)
			<-s.sem
			return
		}
		s.put(cn)
	}()
	// Let the dial reach its connect before the caller goes on: on one
	// processor (GOMAXPROCS 1, or a one-CPU machine) the caller's local
	// work would otherwise run first and the login start after it.
	runtime.Gosched()
}

// waitWarm waits for a Warm in progress to finish, so that a caller takes the
// connection it makes rather than dialling a second one beside it.
func (s *Store) waitWarm(ctx context.Context) error {
	s.mu.Lock()
	w := s.warming
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: waiting for the connection being made: %w", s.cfg.Name, ctx.Err())
	}
}

// WarmFor is engine.Warmer: it dials and logs in, in the background, as many
// more connections as it takes for the pool to hold one per mailbox about to
// be opened (up to the pool's size, see size.go). Each login costs the server
// a process start and the client a round trip or three; made here they
// overlap with the work that comes before the mailboxes are opened. Failures
// are left to the commands that need the connections, as with Warm.
//
// How many the pool will use depends on whether the server is near, known
// once Warm's connection has its first answer: up to smallPool are dialled
// at once (either way the pool has them), the others, for a remote server,
// once that is known.
func (s *Store) WarmFor(mailboxes int) {
	s.mu.Lock()
	warming := s.warming != nil
	s.mu.Unlock()
	select {
	case <-s.answered:
		warming = false
	default:
	}
	if !warming {
		s.warmFor(mailboxes)
		return
	}
	s.warmFor(min(mailboxes, smallPool))
	if mailboxes <= smallPool {
		return
	}
	go func() {
		select {
		case <-s.answered:
		case <-s.bg.Done():
			return
		}
		s.warmFor(mailboxes)
	}()
}

func (s *Store) warmFor(mailboxes int) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	room, have := s.poolRoom()
	for ; have < min(mailboxes, room); have++ {
		select {
		case s.sem <- struct{}{}:
		default:
			return
		}
		go func() {
			cn, err := s.dial(s.bg)
			if err != nil {
				s.log.Debug("warm-up connection failed; a later command will say why", "store", s.cfg.Name, "err", err)
				<-s.sem
				return
			}
			s.put(cn)
		}()
	}
}
