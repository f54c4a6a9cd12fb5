package imap

import (
	"errors"
	"fmt"

	"github.com/emersion/go-sasl"
)

// xoauth2Client implements Google's and Microsoft's XOAUTH2 SASL mechanism
// (go-sasl does not ship it).
type xoauth2Client struct{ user, token string }

var _ sasl.Client = (*xoauth2Client)(nil)

func (c *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

// Next is only reached when the server rejected the token: it then sends a
// JSON error challenge and expects an empty answer before its tagged NO.
// Returning an error makes go-imap abandon the exchange; the caller closes
// the connection.
func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: %s", errTokenRejected, challenge)
}

// errTokenRejected is the server's refusal of an XOAUTH2 token: as definite
// as a NO to a password (see authenticate).
var errTokenRejected = errors.New("XOAUTH2 token rejected")

func newPlain(user, pass string) sasl.Client { return sasl.NewPlainClient("", user, pass) }

func newOAuthBearer(user, token, host string, port int) sasl.Client {
	return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: user, Token: token, Host: host, Port: port})
}
