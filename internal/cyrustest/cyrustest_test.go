package cyrustest

import (
	"os"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
)

// Start gives a server the users can log in to, each with an INBOX; Stop
// takes it down and leaves nothing behind.
func TestStartLoginStop(t *testing.T) {
	if err := Available(); err != nil {
		Skip(t, err)
	}
	s, err := Start(map[string]string{"ann": "ann-pw"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("ann", "ann-pw").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT INBOX: %v", err)
	}
	c.Close()
	c, err = imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("ann", "wrong").Wait(); err == nil {
		t.Error("a login with a wrong password succeeded")
	}
	c.Close()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind (%v)", s.Dir, err)
	}
}
