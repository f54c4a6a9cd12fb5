package maildir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/mutf7"
)

// Layout is how mailbox names map to directories.
type Layout int

const (
	// LayoutVerbatim maps "a/b" to root/a/b.
	LayoutVerbatim Layout = iota
	// LayoutMaildirPP maps "a/b" to root/.a.b (Maildir++); the inbox is the
	// root itself unless configured elsewhere.
	LayoutMaildirPP
)

// ParseLayout parses a layout name from the configuration.
func ParseLayout(s string) (Layout, error) {
	switch s {
	case "verbatim", "":
		return LayoutVerbatim, nil
	case "maildir++":
		return LayoutMaildirPP, nil
	}
	return 0, fmt.Errorf("unknown maildir layout %q (use \"verbatim\" or \"maildir++\")", s)
}

func (l Layout) String() string {
	if l == LayoutMaildirPP {
		return "maildir++"
	}
	return "verbatim"
}

// statePrefix starts the names of files we (and the engine) keep inside a
// mailbox directory.
const statePrefix = ".quixysync-"

// readComponent turns one directory name (or Maildir++ name part) into a
// name component: a valid modified UTF-7 string containing '&' (as mbsync 1.4
// writes) is read as the name it encodes; anything else is taken as UTF-8.
func readComponent(d string) string {
	if !strings.Contains(d, "&") {
		return d
	}
	s, err := mutf7.Decode(d)
	if err != nil {
		return d
	}
	return s
}

// badName builds the error for a refused mailbox name.
func (s *Store) badName(name, why string) error {
	return fmt.Errorf("maildir %s: mailbox %q: %s: %w", s.name, name, why, engine.ErrBadName)
}

// splitName checks a canonical name and returns its components.
func (s *Store) splitName(name string) ([]string, error) {
	switch {
	case name == "":
		return nil, s.badName(name, "empty name")
	case !utf8.ValidString(name):
		return nil, s.badName(name, "not valid UTF-8")
	case strings.IndexByte(name, 0) >= 0:
		return nil, s.badName(name, "contains a NUL byte")
	case strings.HasPrefix(name, "/"):
		return nil, s.badName(name, "starts with \"/\"")
	}
	comps := strings.Split(name, "/")
	if comps[0] != "INBOX" && strings.EqualFold(comps[0], "INBOX") {
		return nil, s.badName(name, "only \"INBOX\" may name the inbox")
	}
	for i, c := range comps {
		switch {
		case c == "":
			return nil, s.badName(name, "empty component")
		case c == "." || c == "..":
			return nil, s.badName(name, fmt.Sprintf("component %q", c))
		case s.layout == LayoutMaildirPP && strings.Contains(c, "."):
			// A server mailbox named so fails every run until the user acts:
			// say what to do.
			return nil, fmt.Errorf("%w; exclude it in the channel's mailboxes (e.g. %q), or set layout = \"verbatim\" in [%s]",
				s.badName(name, "a component contains \".\", which is the maildir++ separator"), "!"+name, s.name)
		case s.layout == LayoutVerbatim && strings.HasPrefix(c, "."):
			// Dot-directories are skipped when listing (.notmuch, our state
			// files), so such a mailbox would never be found again.
			return nil, s.badName(name, "a component starts with \".\" (hidden directories are not mailboxes in the verbatim layout)")
		case s.layout == LayoutVerbatim && (c == "cur" || c == "new" || c == "tmp") && (i > 0 || s.inbox == s.root):
			return nil, s.badName(name, fmt.Sprintf("component %q is a Maildir subdirectory", c))
		case s.layout == LayoutVerbatim && c == "cur":
			// The root's own cur/ would make the root look like a Maildir
			// folder, whose cur/, new/ and tmp/ a listing skips: the
			// mailbox (and any "new" or "tmp") would never be found again.
			return nil, s.badName(name, "a top-level \"cur\" would make the store's root look like a Maildir folder")
		}
	}
	return comps, nil
}

// diskComponent picks the directory name for one name component inside
// parent: an existing mbsync-style modified UTF-7 directory wins; otherwise
// UTF-8, unless the UTF-8 form would itself read back as a different name.
func diskComponent(parent, c string) string {
	enc := mutf7.Encode(c)
	if enc != c {
		if fi, err := os.Stat(filepath.Join(parent, enc)); err == nil && fi.IsDir() {
			return enc
		}
	}
	if readComponent(c) == c {
		return c
	}
	return enc
}

// mailboxPath maps a canonical mailbox name to its directory. It never
// returns a path outside the root (or the inbox directory for INBOX/...).
func (s *Store) mailboxPath(name string) (string, error) {
	comps, err := s.splitName(name)
	if err != nil {
		return "", err
	}
	if name == "INBOX" {
		return s.inbox, nil
	}
	base := s.root
	underInbox := comps[0] == "INBOX"
	if underInbox && s.layout == LayoutVerbatim {
		if within(s.inbox, s.root) {
			// INBOX/x would be the same directory as x.
			return "", s.badName(name, "the inbox is the store's root (or contains it), so it cannot have subfolders in the verbatim layout")
		}
		base = s.inbox
		comps = comps[1:]
	}
	var p string
	if s.layout == LayoutVerbatim {
		p = base
		for _, c := range comps {
			p = filepath.Join(p, diskComponent(p, c))
		}
	} else {
		p = filepath.Join(base, mppDirName(base, comps))
	}
	rel, err := filepath.Rel(base, p)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", s.badName(name, "would leave the store's root")
	}
	if !underInbox && !within(s.inbox, s.root) && within(s.inbox, p) {
		// An inbox configured inside the root: this name's directory is the
		// inbox's (or one of its subfolders'), which INBOX (INBOX/...)
		// already names; two server mailboxes would share one folder.
		return "", s.badName(name, fmt.Sprintf("its directory %s is the inbox's (%s) or inside it; leave the name out of the channel's patterns, or configure an inbox outside the store's path", p, s.inbox))
	}
	return p, nil
}

// mppDirName is the Maildir++ directory name (".a.b") for name components:
// the modified UTF-7 form when such a directory exists (mbsync 1.4),
// otherwise UTF-8 (each part encoded only if its UTF-8 form would read back
// as a different name).
func mppDirName(root string, comps []string) string {
	var utf, enc strings.Builder
	for _, c := range comps {
		utf.WriteByte('.')
		enc.WriteByte('.')
		e := mutf7.Encode(c)
		enc.WriteString(e)
		if readComponent(c) == c {
			utf.WriteString(c)
		} else {
			utf.WriteString(e)
		}
	}
	if enc.String() != utf.String() {
		if fi, err := os.Stat(filepath.Join(root, enc.String())); err == nil && fi.IsDir() {
			return enc.String()
		}
	}
	return utf.String()
}
