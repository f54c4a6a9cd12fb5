package imap

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/internal/dovecottest"
)

// jwtHS256 signs claims with key, as an OAuth2 provider signs an access
// token (no "kid": Dovecot then looks the key up as "default").
func jwtHS256(t *testing.T, key []byte, claims map[string]any) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	msg := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(m.Sum(nil))
}

// XOAUTH2 and OAUTHBEARER against a real Dovecot that checks the token itself
// (its oauth2 passdb validating a signed JWT locally): a valid token logs in;
// an expired one, one for another user and one signed with another key are
// refused with an error that names the mechanism and never shows the token.
func TestDoveOAuth2(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Dovecot; skipped in -short mode")
	}
	// Dovecot's auth process runs as another user: the key must be readable
	// through every directory above it (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "dove-oauth2-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	keyDir := filepath.Join(dir, "keys", "default", "HS256")
	if err := os.MkdirAll(keyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keyDir, "default"), []byte(base64.StdEncoding.EncodeToString(key)), 0o644); err != nil {
		t.Fatal(err)
	}
	ext := filepath.Join(dir, "oauth2.conf.ext")
	if err := os.WriteFile(ext, []byte("introspection_mode = local\n"+
		"local_validation_key_dict = fs:posix:prefix="+filepath.Join(dir, "keys")+"/\n"+
		"username_attribute = email\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := dovecottest.Start(dovecottest.Options{ExtraConf: `
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = ` + ext + `
}
`})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	now := time.Now().Unix()
	good := jwtHS256(t, key, map[string]any{"email": "alice", "sub": "alice", "iat": now, "nbf": now, "exp": now + 600})
	for _, mech := range []string{"xoauth2", "oauthbearer"} {
		login := func(token string) error {
			s, err := New(Config{Name: "imap.dove", Host: srv.Host, Port: srv.TLSPort, TLS: "implicit", User: "alice",
				Auth: []string{mech}, Token: pw(token), CAFile: srv.CAFile, Timeout: 20 * time.Second, SpoolDir: t.TempDir()}, testLog(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = s.ListMailboxes(ctxT(t))
			return err
		}
		if err := login(good); err != nil {
			t.Fatalf("%s with a valid token: %v\ndovecot log:\n%s", mech, err, srv.LogTail(20))
		}
		other := make([]byte, 32)
		rand.Read(other)
		for name, token := range map[string]string{
			"expired":      jwtHS256(t, key, map[string]any{"email": "alice", "iat": now - 7200, "exp": now - 3600}),
			"another user": jwtHS256(t, key, map[string]any{"email": "bob", "iat": now, "exp": now + 600}),
			"another key":  jwtHS256(t, other, map[string]any{"email": "alice", "iat": now, "exp": now + 600}),
		} {
			err := login(token)
			want := "(mechanism " + strings.ToUpper(mech) + ")"
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), token) {
				t.Errorf("%s, %s token: %v; want a refusal naming the mechanism, without the token", mech, name, err)
			}
		}
	}
}
