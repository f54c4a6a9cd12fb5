package imap

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

// intermediate is a CA certified by ca.
func (ca testCA) intermediate(t testing.TB, name string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, key}
}

func (ca testCA) issue(t testing.TB, host string, notAfter time.Time) *x509.Certificate {
	t.Helper()
	c, _ := ca.issueWithKey(t, host, notAfter)
	return c
}

func (ca testCA) issueWithKey(t testing.TB, host string, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host},
		DNSNames: []string{host}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func pemOf(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func noEnv(string) string { return "" }

// The anchors come from the first bundle file holding a certificate, or
// from the file SSL_CERT_FILE names.
func TestAnchorsFromBundle(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "bundle CA")
	junk, good, later := filepath.Join(dir, "junk.pem"), filepath.Join(dir, "bundle.pem"), filepath.Join(dir, "later.pem")
	os.WriteFile(junk, []byte("no certificate here"), 0o600)
	os.WriteFile(good, pemOf(ca.cert), 0o600)
	os.WriteFile(later, pemOf(newTestCA(t, "later CA").cert), 0o600)
	files := []string{filepath.Join(dir, "missing.pem"), junk, good, later}
	got := newAnchors(files, noEnv).bundle()
	if len(got) != 1 || !bytes.Equal(got[0], ca.cert.Raw) {
		t.Fatalf("bundle holds %d certificates, want the first file's one", len(got))
	}
	// SSL_CERT_FILE names the file instead (the list is not read);
	// SSL_CERT_DIR changes only the directories crypto/x509 reads besides.
	env := func(k string) string {
		if k == "SSL_CERT_FILE" {
			return later
		}
		return ""
	}
	if got := newAnchors(files, env).bundle(); len(got) != 1 || bytes.Equal(got[0], ca.cert.Raw) {
		t.Fatal("SSL_CERT_FILE set, but its file was not the one read")
	}
	env = func(k string) string {
		if k == "SSL_CERT_DIR" {
			return "/somewhere"
		}
		return ""
	}
	if got := newAnchors(files, env).bundle(); len(got) != 1 || !bytes.Equal(got[0], ca.cert.Raw) {
		t.Fatal("SSL_CERT_DIR set: the bundle files were not read")
	}
}

// Only the anchors a chain can end at are taken from the bundle: those named
// as the issuer of one of the certificates the server sent.
func TestForChainPicksTheIssuers(t *testing.T) {
	root, other, third := newTestCA(t, "root"), newTestCA(t, "other"), newTestCA(t, "third")
	inter := root.intermediate(t, "intermediate")
	// A second anchor with the root's name (a re-keyed root): both are taken.
	twin := newTestCA(t, "root")
	file := filepath.Join(t.TempDir(), "bundle.pem")
	os.WriteFile(file, pemOf(other.cert, root.cert, third.cert, twin.cert), 0o600)
	a := newAnchors([]string{file}, noEnv)

	leaf := inter.issue(t, "mail.example", time.Now().Add(time.Hour))
	want := x509.NewCertPool()
	want.AddCert(root.cert)
	want.AddCert(twin.cert)
	if !a.forChain([]*x509.Certificate{leaf, inter.cert}).Equal(want) {
		t.Fatal("pool for leaf+intermediate is not the root's two anchors")
	}
	if !a.forChain([]*x509.Certificate{leaf}).Equal(x509.NewCertPool()) {
		t.Fatal("a leaf whose issuer is not an anchor got anchors")
	}
	want = x509.NewCertPool()
	want.AddCert(third.cert)
	if !a.forChain([]*x509.Certificate{third.issue(t, "mail.example", time.Now().Add(time.Hour))}).Equal(want) {
		t.Fatal("pool for a leaf of the third CA is not that CA")
	}
}

// rawSubject finds what crypto/x509 parses as RawSubject, in the system's
// bundle where there is one and in made-up certificates.
func TestRawSubject(t *testing.T) {
	var ders [][]byte
	for _, f := range bundleFiles {
		if data, err := os.ReadFile(f); err == nil {
			ders = append(ders, pemCertificates(data)...)
			break
		}
	}
	ca := newTestCA(t, "a CA")
	ders = append(ders, ca.cert.Raw, ca.issue(t, "mail.example", time.Now().Add(time.Hour)).Raw)
	// Version 1 (no [0] version field) and a long serial.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial := new(big.Int).Lsh(big.NewInt(1), 150)
	v1, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial,
		Subject: pkix.Name{CommonName: "v1", Organization: []string{"x"}}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)},
		ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	ders = append(ders, v1)
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			continue
		}
		got, ok := rawSubject(der)
		if !ok || !bytes.Equal(got, c.RawSubject) {
			t.Fatalf("certificate %d (%s): rawSubject %x, ok %v; want %x", i, c.Subject, got, ok, c.RawSubject)
		}
	}
	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x85, 1, 1, 1, 1, 1}, {0x30, 0x03, 0x30, 0x01}, {0x31, 0x00}, ca.cert.Raw[:40]} {
		if _, ok := rawSubject(bad); ok {
			t.Fatalf("rawSubject(%x) accepted", bad)
		}
	}
}

func FuzzRawSubject(f *testing.F) {
	ca := newTestCA(f, "fuzz CA")
	f.Add(ca.cert.Raw)
	f.Add(ca.issue(f, "mail.example", time.Now().Add(time.Hour)).Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		got, ok := rawSubject(der)
		if c, err := x509.ParseCertificate(der); err == nil && (!ok || !bytes.Equal(got, c.RawSubject)) {
			t.Fatalf("rawSubject %x, ok %v; crypto/x509 says %x", got, ok, c.RawSubject)
		}
	})
}

// A server certificate is checked against each pool in turn, the next one
// asked only when the last did not know the issuer: a wrong name or an
// expired certificate fails without that.
func TestVerifyPeerPoolsInTurn(t *testing.T) {
	own, public, stranger := newTestCA(t, "own CA"), newTestCA(t, "public CA"), newTestCA(t, "stranger")
	ownPool, publicPool := x509.NewCertPool(), x509.NewCertPool()
	ownPool.AddCert(own.cert)
	publicPool.AddCert(public.cert)
	later := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name     string
		cert     *x509.Certificate
		wantMore bool
		check    func(error) bool
	}{
		{"own", own.issue(t, "mail.example", later), false, func(err error) bool { return err == nil }},
		{"public", public.issue(t, "mail.example", later), true, func(err error) bool { return err == nil }},
		{"stranger", stranger.issue(t, "mail.example", later), true, func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua)
		}},
		{"wrong name", own.issue(t, "other.example", later), false, func(err error) bool {
			var he x509.HostnameError
			return errors.As(err, &he)
		}},
		{"expired", own.issue(t, "mail.example", time.Now().Add(-time.Minute)), false, func(err error) bool {
			var ci x509.CertificateInvalidError
			return errors.As(err, &ci)
		}},
	} {
		asked := false
		more := func() *x509.CertPool { asked = true; return publicPool }
		err := verifyPeer(tls.ConnectionState{PeerCertificates: []*x509.Certificate{tc.cert}}, "mail.example",
			func() *x509.CertPool { return ownPool }, more)
		if !tc.check(err) || asked != tc.wantMore {
			t.Errorf("%s: err %v, second pool asked %v (want %v)", tc.name, err, asked, tc.wantMore)
		}
	}
	if err := verifyPeer(tls.ConnectionState{}, "mail.example", func() *x509.CertPool { return ownPool }); err == nil {
		t.Error("no certificate accepted")
	}
}

// Over a real handshake, without a ca_file: a server whose chain ends at a
// bundle anchor is trusted without the full system store being read; one the
// bundle does not know is checked against the full store, and refused when
// that does not know it either; a wrong name is refused.
func TestHandshakeWithBundleAnchors(t *testing.T) {
	root, stranger := newTestCA(t, "bundle root"), newTestCA(t, "stranger")
	inter := root.intermediate(t, "bundle intermediate")
	file := filepath.Join(t.TempDir(), "bundle.pem")
	os.WriteFile(file, pemOf(newTestCA(t, "unrelated").cert, root.cert), 0o600)

	serve := func(ca testCA, chain ...*x509.Certificate) string {
		leaf, key := ca.issueWithKey(t, "mail.example", time.Now().Add(time.Hour))
		cert := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key}
		for _, c := range chain {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		host, port := fakeServer(t, func(c net.Conn, _ *bufio.Reader) {
			tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}}).Handshake()
		})
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	handshake := func(addr, host string, fullAsked *bool) error {
		a := newAnchors([]string{file}, noEnv)
		a.full = func() *x509.CertPool { *fullAsked = true; return x509.NewCertPool() }
		once, err := newTLSOnceWith(Config{Host: host}, a)
		if err != nil {
			t.Fatal(err)
		}
		conf, _ := once()
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return tls.Client(raw, conf).HandshakeContext(ctx)
	}

	known := serve(inter, inter.cert)
	var fullAsked bool
	if err := handshake(known, "mail.example", &fullAsked); err != nil || fullAsked {
		t.Fatalf("chain to a bundle anchor: %v (full store read: %v)", err, fullAsked)
	}
	var ua x509.UnknownAuthorityError
	unknown := serve(stranger)
	fullAsked = false
	if err := handshake(unknown, "mail.example", &fullAsked); !errors.As(err, &ua) || !fullAsked {
		t.Fatalf("unknown issuer: %v (full store read: %v)", err, fullAsked)
	}
	var he x509.HostnameError
	if err := handshake(known, "other.example", &fullAsked); !errors.As(err, &he) {
		t.Fatalf("wrong name: %v", err)
	}
}

// BenchmarkVerifyWithSystemAnchors is what the certificate check of one
// connection costs without a ca_file: reading the trust store and verifying
// a chain to one of its anchors ("bundle": the anchors the chain can end
// at, parsed on demand; "full": the whole bundle parsed, as before).
// Skipped where the system has no bundle file.
func BenchmarkVerifyWithSystemAnchors(b *testing.B) {
	var data []byte
	for _, f := range bundleFiles {
		if d, err := os.ReadFile(f); err == nil {
			data = d
			break
		}
	}
	ders := pemCertificates(data)
	if len(ders) == 0 {
		b.Skip("no CA bundle on this system")
	}
	// A chain made here cannot end at a real anchor; one made with a test
	// root added to the bundle's end costs the same search.
	root := newTestCA(b, "bench root")
	leaf := root.issue(b, "mail.example", time.Now().Add(time.Hour))
	bundle := append(append([]byte{}, data...), pemOf(root.cert)...)
	file := filepath.Join(b.TempDir(), "bundle.pem")
	os.WriteFile(file, bundle, 0o600)
	cs := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
	b.Run("bundle", func(b *testing.B) {
		for b.Loop() {
			a := newAnchors([]string{file}, noEnv)
			if err := verifyPeer(cs, "mail.example", func() *x509.CertPool { return a.forChain(cs.PeerCertificates) }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(bundle)
			if err := verifyPeer(cs, "mail.example", func() *x509.CertPool { return pool }); err != nil {
				b.Fatal(err)
			}
		}
	})
}
