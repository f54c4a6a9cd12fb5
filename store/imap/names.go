package imap

import (
	"fmt"
	"strings"

	"github.com/quixysync/quixysync/engine"
)

// checkCanonical validates a canonical ("/"-separated, UTF-8) mailbox name.
func checkCanonical(name string) error {
	if name == "" {
		return fmt.Errorf("mailbox name is empty: %w", engine.ErrBadName)
	}
	for _, comp := range strings.Split(name, "/") {
		if err := checkComponent(comp); err != nil {
			return fmt.Errorf("mailbox %q: %w", name, err)
		}
	}
	return nil
}

func checkComponent(comp string) error {
	switch comp {
	case "":
		return fmt.Errorf("empty name component: %w", engine.ErrBadName)
	case ".", "..":
		return fmt.Errorf("%q component: %w", comp, engine.ErrBadName)
	}
	for _, r := range comp {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("control character %U in name: %w", r, engine.ErrBadName)
		}
	}
	if !validUTF8(comp) {
		return fmt.Errorf("invalid UTF-8 in name: %w", engine.ErrBadName)
	}
	return nil
}

func validUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func isInbox(s string) bool { return strings.EqualFold(s, "INBOX") }

// toServer maps a canonical name to the server's hierarchy delimiter
// (0 = flat namespace). The result is UTF-8; go-imap encodes it as modified
// UTF-7 on the wire.
func toServer(name string, delim rune) (string, error) {
	if err := checkCanonical(name); err != nil {
		return "", err
	}
	comps := strings.Split(name, "/")
	if isInbox(comps[0]) {
		comps[0] = "INBOX"
	}
	if delim == '/' {
		return strings.Join(comps, "/"), nil
	}
	if delim == 0 {
		if len(comps) > 1 {
			return "", fmt.Errorf("mailbox %q: the server has no hierarchy: %w", name, engine.ErrBadName)
		}
		return comps[0], nil
	}
	for _, c := range comps {
		if strings.ContainsRune(c, delim) {
			return "", fmt.Errorf("mailbox %q: component %q contains the server's hierarchy delimiter %q: %w",
				name, c, delim, engine.ErrBadName)
		}
	}
	return strings.Join(comps, string(delim)), nil
}

// fromServer maps a server mailbox name (already decoded from modified
// UTF-7) to its canonical form.
func fromServer(name string, delim rune) (string, error) {
	if name == "" {
		return "", fmt.Errorf("server mailbox name is empty: %w", engine.ErrBadName)
	}
	var comps []string
	if delim == 0 {
		comps = []string{name}
	} else {
		comps = strings.Split(name, string(delim))
	}
	if isInbox(comps[0]) {
		comps[0] = "INBOX"
	}
	for _, c := range comps {
		if delim != '/' && strings.ContainsRune(c, '/') {
			return "", fmt.Errorf("server mailbox %q: component %q contains \"/\": %w", name, c, engine.ErrBadName)
		}
		if err := checkComponent(c); err != nil {
			return "", fmt.Errorf("server mailbox %q: %w", name, err)
		}
	}
	return strings.Join(comps, "/"), nil
}
