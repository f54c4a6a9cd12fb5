package channel

import (
	"fmt"
	"strings"
	"unicode"
)

// Match reports whether the channel's mailboxes patterns select the mailbox
// name (canonical: "/"-separated, inbox "INBOX"). Patterns use IMAP wildcards:
// * matches any characters, % any except "/"; a pattern starting with "!"
// excludes. The last pattern that matches decides; a name no pattern matches
// is excluded. "INBOX" (as the first hierarchy level) is compared
// case-insensitively, in the name and in the patterns.
func (c *Channel) Match(name string) bool {
	return MatchPatterns(c.Patterns, name)
}

// MatchPatterns is Channel.Match for an arbitrary pattern list.
func MatchPatterns(patterns []string, name string) bool {
	name = canonInbox(name)
	for i := len(patterns) - 1; i >= 0; i-- {
		p := patterns[i]
		neg := strings.HasPrefix(p, "!")
		if neg {
			p = p[1:]
		}
		if globMatch(canonInbox(p), name) {
			return !neg
		}
	}
	return false
}

// canonInbox spells a first hierarchy level equal to INBOX in any case as
// "INBOX", as IMAP treats that name case-insensitively.
func canonInbox(s string) string {
	first, rest, _ := strings.Cut(s, "/")
	if len(first) == 5 && strings.EqualFold(first, "INBOX") && first != "INBOX" {
		if len(s) > 5 {
			return "INBOX/" + rest
		}
		return "INBOX"
	}
	return s
}

// globMatch matches byte-wise with dynamic programming, so hostile patterns
// such as "*%*%*%…" cost O(len(pat)·len(name)), never exponential time.
func globMatch(pat, name string) bool {
	n := len(name)
	prev := make([]bool, n+1)
	cur := make([]bool, n+1)
	prev[0] = true
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch c {
		case '*':
			cur[0] = prev[0]
			for j := 1; j <= n; j++ {
				cur[j] = prev[j] || cur[j-1]
			}
		case '%':
			cur[0] = prev[0]
			for j := 1; j <= n; j++ {
				cur[j] = prev[j] || (cur[j-1] && name[j-1] != '/')
			}
		default:
			cur[0] = false
			for j := 1; j <= n; j++ {
				cur[j] = prev[j-1] && name[j-1] == c
			}
		}
		prev, cur = cur, prev
	}
	return prev[n]
}

// checkPattern reports why a pattern cannot be used, or nil.
func checkPattern(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty pattern; write a mailbox name or a wildcard such as \"*\", or remove it")
	case p == "!":
		return fmt.Errorf("\"!\" alone excludes nothing; write \"!NAME\" (e.g. \"!Junk\") or remove it")
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("pattern %q contains a NUL character; remove it", p)
	case strings.TrimSpace(p) != p:
		// " !Junk" would include a mailbox named " !Junk" and exclude
		// nothing; "!Junk " would exclude only "Junk ".
		return fmt.Errorf("pattern %q starts or ends with a space, so it would not match what it seems to; write %q, "+
			"or %q to match a name that really has spaces there (%% matches any characters but \"/\", spaces included; ? is not a wildcard)",
			p, strings.TrimSpace(p), spaceWildcards(p))
	}
	return nil
}

// spaceWildcards puts a % in place of p's leading and of its trailing spaces:
// this matcher has no one-character wildcard, and % is the narrowest that
// matches a space.
func spaceWildcards(p string) string {
	t := strings.TrimSpace(p)
	if strings.TrimLeftFunc(p, unicode.IsSpace) != p {
		t = "%" + t
	}
	if strings.TrimRightFunc(p, unicode.IsSpace) != p {
		t += "%"
	}
	return t
}
