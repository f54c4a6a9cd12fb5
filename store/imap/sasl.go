package imap

import "github.com/emersion/go-sasl"

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
	return nil, &tokenRejected{mech: "XOAUTH2", challenge: string(challenge)}
}

// tokenRejected is the server's refusal of a token (its JSON error
// challenge, e.g. {"status":"401",...}): as definite as a NO to a password
// (see authenticate).
type tokenRejected struct{ mech, challenge string }

func (e *tokenRejected) Error() string { return e.mech + " token rejected: " + e.challenge }

func newPlain(user, pass string) sasl.Client { return sasl.NewPlainClient("", user, pass) }

// oauthBearerClient is go-sasl's OAUTHBEARER (RFC 7628) with its refusal
// read as tokenRejected: a challenge only ever says the token was refused.
type oauthBearerClient struct{ sasl.Client }

func (c oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	return nil, &tokenRejected{mech: "OAUTHBEARER", challenge: string(challenge)}
}

func newOAuthBearer(user, token, host string, port int) sasl.Client {
	return oauthBearerClient{sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: user, Token: token, Host: host, Port: port})}
}
