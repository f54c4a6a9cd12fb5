package imap

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
)

// Trust anchors without parsing the whole trust store.
//
// x509.SystemCertPool parses the distribution's bundle and then every file
// of /etc/ssl/certs again: 25-78 ms of CPU per run on Debian 12; the bundle
// alone, parsed whole, 6-10 ms. A server's chain can end only at an anchor
// whose subject is the issuer of one of the certificates it sent
// (crypto/x509 looks parents up by that name), so the bundle is read and
// PEM-decoded in the background, each certificate's subject is picked out of
// its DER, and only the anchors with a wanted subject are parsed. Verifying
// against those gives what verifying against the whole store would: the
// chains that can be built are the same. Should the bundle hold none,
// crypto/x509's own full SystemCertPool (the bundle and the directories, or
// what SSL_CERT_FILE and SSL_CERT_DIR name) is asked.

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

// anchors is the system's trust store, read at most once.
type anchors struct {
	bundle func() [][]byte       // DER of each certificate of the first bundle file holding any
	full   func() *x509.CertPool // crypto/x509's SystemCertPool
}

func systemAnchors() *anchors { return newAnchors(bundleFiles, os.Getenv) }

// newAnchors reads the first of files that holds a certificate, or the file
// SSL_CERT_FILE names, as crypto/x509 does. (SSL_CERT_DIR only changes which
// directories crypto/x509 reads beside that file: what they add is in the
// full pool.)
func newAnchors(files []string, getenv func(string) string) *anchors {
	if f := getenv("SSL_CERT_FILE"); f != "" {
		files = []string{f}
	}
	return &anchors{
		bundle: sync.OnceValue(func() [][]byte {
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					continue
				}
				if ders := pemCertificates(data); len(ders) > 0 {
					return ders
				}
			}
			return nil
		}),
		full: sync.OnceValue(func() *x509.CertPool {
			if pool, err := x509.SystemCertPool(); err == nil && pool != nil {
				return pool
			}
			return x509.NewCertPool()
		}),
	}
}

// pemCertificates returns the DER of each CERTIFICATE block of data.
func pemCertificates(data []byte) [][]byte {
	var ders [][]byte
	for len(data) > 0 {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" && len(b.Headers) == 0 {
			ders = append(ders, b.Bytes)
		}
	}
	return ders
}

// forChain returns a pool of the bundle's anchors that a chain made of
// certs can end at: those whose subject is the issuer of one of them.
func (a *anchors) forChain(certs []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, der := range a.bundle() {
		subject, ok := rawSubject(der)
		if !ok {
			continue
		}
		for _, c := range certs {
			if bytes.Equal(subject, c.RawIssuer) {
				if anchor, err := x509.ParseCertificate(der); err == nil {
					pool.AddCert(anchor)
				}
				break
			}
		}
	}
	return pool
}

// rawSubject returns the subject of a DER certificate as it stands, tag and
// length included (x509.Certificate's RawSubject), without parsing the rest.
func rawSubject(der []byte) ([]byte, bool) {
	cert, _, ok := derElement(der, 0x30) // Certificate
	if !ok {
		return nil, false
	}
	tbs, _, ok := derElement(cert, 0x30) // TBSCertificate
	if !ok {
		return nil, false
	}
	if len(tbs) > 0 && tbs[0] == 0xa0 { // [0] EXPLICIT version
		if _, tbs, ok = derElement(tbs, 0xa0); !ok {
			return nil, false
		}
	}
	// serialNumber, signature, issuer, validity; then the subject.
	for _, tag := range []byte{0x02, 0x30, 0x30, 0x30} {
		if _, tbs, ok = derElement(tbs, tag); !ok {
			return nil, false
		}
	}
	_, rest, ok := derElement(tbs, 0x30)
	if !ok {
		return nil, false
	}
	return tbs[:len(tbs)-len(rest)], true
}

// derElement splits the DER element of the given (one-byte) tag off the
// front of b: its content and what follows it. Only definite lengths, as
// DER requires.
func derElement(b []byte, tag byte) (content, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n, hdr := int(b[1]), 2
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return nil, nil, false
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		hdr += k
	}
	if n < 0 || n > len(b)-hdr {
		return nil, nil, false
	}
	return b[hdr : hdr+n : hdr+n], b[hdr+n:], true
}

// newTLSOnce prepares the lazy TLS configuration of New: the returned
// function starts reading the trust anchors in the background on its first
// call (Warm calls it beside the TCP connect); the handshake waits for them
// only when the server's certificate is there to be checked. The ca_file is
// read here, at New, so that a missing or bad file is a configuration error
// reported before anything connects.
func newTLSOnce(cfg Config) (func() (*tls.Config, error), error) {
	return newTLSOnceWith(cfg, systemAnchors())
}

func newTLSOnceWith(cfg Config, sys *anchors) (func() (*tls.Config, error), error) {
	// Not skipped: VerifyConnection does what crypto/tls would, with the
	// pools in turn.
	conf := &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: true}
	if cfg.CAFile == "" {
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyPeer(cs, cfg.Host,
				func() *x509.CertPool { return sys.forChain(cs.PeerCertificates) }, sys.full)
		}
	} else {
		data, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: ca_file: %w", cfg.Name, err)
		}
		own := x509.NewCertPool()
		if !own.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("%s: ca_file %s: no PEM certificate found", cfg.Name, cfg.CAFile)
		}
		// The system's anchors stay trusted beside the ca_file's, but a
		// server configured with a ca_file is nearly always one that file
		// vouches for: it is asked first.
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyPeer(cs, cfg.Host, func() *x509.CertPool { return own },
				func() *x509.CertPool { return sys.forChain(cs.PeerCertificates) }, sys.full)
		}
	}
	return sync.OnceValues(func() (*tls.Config, error) {
		if cfg.CAFile == "" {
			go sys.bundle() // with a ca_file, read only if that does not vouch for the server
		}
		return conf, nil
	}), nil
}

// verifyPeer verifies the server's chain and name as crypto/tls does,
// against each pool in turn until one knows an anchor for it: a wrong name
// or an expired certificate is that with any anchor.
func verifyPeer(cs tls.ConnectionState, host string, pools ...func() *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	var err error
	for _, pool := range pools {
		opts := x509.VerifyOptions{DNSName: host, Intermediates: inter, Roots: pool()}
		_, err = cs.PeerCertificates[0].Verify(opts)
		var ua x509.UnknownAuthorityError
		if err == nil || !errors.As(err, &ua) {
			return err
		}
	}
	return err
}
