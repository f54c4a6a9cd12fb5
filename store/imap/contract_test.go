package imap_test

import (
	"context"
	"net"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/cyrustest"
	"github.com/quixysync/quixysync/internal/dovecottest"
	"github.com/quixysync/quixysync/store/imap"
	"github.com/quixysync/quixysync/store/storetest"
)

func password(p string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return p, nil }
}

// opener returns a new store per call (as a later run would connect anew),
// closed when the calling test ends.
func opener(cfg imap.Config) storetest.Opener {
	return func(t *testing.T) engine.Store {
		st, err := imap.New(cfg, nil)
		if err != nil {
			t.Fatalf("imap.New: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
}

// TestContractDovecot runs the store contract against a private Dovecot,
// over STARTTLS and implicit TLS (each run in its own user account).
func TestContractDovecot(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Dovecot; skipped in -short mode")
	}
	if err := dovecottest.Available(); err != nil {
		t.Fatal(err)
	}
	srv, err := dovecottest.Start(dovecottest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	for _, tc := range []struct {
		tls, user string
		port      int
	}{
		{"starttls", "alice", srv.Port},
		{"implicit", "bob", srv.TLSPort},
	} {
		t.Run(tc.tls, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, opener(imap.Config{
				Name:     "imap.dovecot",
				Host:     srv.Host,
				Port:     tc.port,
				TLS:      tc.tls,
				User:     tc.user,
				Password: password(srv.Password(tc.user)),
				CAFile:   srv.CAFile,
			}), storetest.Caps{CondStore: true, UIDPlus: true})
			if t.Failed() {
				t.Logf("dovecot log:\n%s", srv.LogTail(30))
			}
		})
	}
}

// TestContractCyrus runs the contract against a private Cyrus IMAP, a second
// real server with its own answers (CONDSTORE, UIDPLUS, QRESYNC offered,
// LOGINDISABLED-free plain IMAP on loopback). Skipped where Cyrus is not
// installed, unless QUIXYSYNC_REQUIRE_CYRUS=1 (.ci/run sets it).
func TestContractCyrus(t *testing.T) {
	srv := cyrustest.ForTest(t, map[string]string{"carol": "carol-pw"})
	storetest.Run(t, opener(imap.Config{
		Name:     "imap.cyrus",
		Host:     srv.Host,
		Port:     srv.Port,
		TLS:      "none",
		User:     "carol",
		Password: password("carol-pw"),
	}), storetest.Caps{CondStore: true, UIDPlus: true})
}

// TestContractMemServer runs the contract against go-imap's in-memory server:
// no CONDSTORE, and once without UIDPLUS, so the fallbacks are held to the
// same behaviour.
func TestContractMemServer(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps []goimap.Cap
		sc   storetest.Caps
	}{
		{"uidplus", []goimap.Cap{goimap.CapUIDPlus, goimap.CapListStatus}, storetest.Caps{UIDPlus: true}},
		{"rev1-only", nil, storetest.Caps{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, port := startMemServer(t, tc.caps...)
			storetest.Run(t, opener(imap.Config{
				Name:     "imap.mem",
				Host:     host,
				Port:     port,
				TLS:      "none",
				User:     "alice",
				Password: password("secret"),
			}), tc.sc)
		})
	}
}

func startMemServer(t *testing.T, caps ...goimap.Cap) (string, int) {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "secret")
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	cs := goimap.CapSet{goimap.CapIMAP4rev1: {}}
	for _, c := range caps {
		cs[c] = struct{}{}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         cs,
		InsecureAuth: true,
		Logger:       quietLog{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
