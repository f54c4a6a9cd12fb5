package channel

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		patterns []string
		name     string
		want     bool
	}{
		{[]string{"*"}, "INBOX", true},
		{[]string{"*"}, "a/b/c", true},
		{[]string{"*"}, "", true},
		{[]string{"%"}, "Sent", true},
		{[]string{"%"}, "Lists/go", false},
		{[]string{"Lists/%"}, "Lists/go", true},
		{[]string{"Lists/%"}, "Lists/go/nuts", false},
		{[]string{"Lists/*"}, "Lists/go/nuts", true},
		{[]string{"Lists/*"}, "Lists", false},
		{[]string{"a%c"}, "abc", true},
		{[]string{"a%c"}, "a/c", false},
		{[]string{"a*c"}, "a/c", true},
		{[]string{"Sent"}, "Sent", true},
		{[]string{"Sent"}, "sent", false}, // only INBOX ignores case
		{[]string{"Sent"}, "Sent/x", false},
		// No pattern matches: excluded.
		{[]string{"INBOX"}, "Sent", false},
		{nil, "INBOX", false},
		// Exclusion, and the last matching pattern wins.
		{[]string{"*", "!Junk"}, "Junk", false},
		{[]string{"*", "!Junk"}, "Junk/x", true},
		{[]string{"*", "!Junk*"}, "Junk/x", false},
		{[]string{"!Junk", "*"}, "Junk", true},
		{[]string{"*", "!Archive/*", "Archive/2024"}, "Archive/2024", true},
		{[]string{"*", "!Archive/*", "Archive/2024"}, "Archive/2023", false},
		{[]string{"*", "!Archive/*", "Archive/2024"}, "Archive", true},
		{[]string{"!*"}, "INBOX", false},
		// INBOX in any case, in names and patterns.
		{[]string{"INBOX"}, "inbox", true},
		{[]string{"inbox"}, "INBOX", true},
		{[]string{"Inbox/%"}, "INBOX/sub", true},
		{[]string{"INBOX/%"}, "inbox/sub", true},
		{[]string{"*", "!inbox"}, "InBoX", false},
		{[]string{"INBOX"}, "INBOXES", false},
		{[]string{"INBOX*"}, "inboxes", false}, // "inboxes" is not INBOX, so case matters
		// Wildcards are the only special characters.
		{[]string{"[Gmail]/*"}, "[Gmail]/All Mail", true},
		{[]string{"a?c"}, "abc", false},
		{[]string{"Entwürfe"}, "Entwürfe", true},
		{[]string{"Entw%rfe"}, "Entwürfe", true},
	}
	for _, tc := range cases {
		c := &Channel{Patterns: tc.patterns}
		if got := c.Match(tc.name); got != tc.want {
			t.Errorf("%q.Match(%q) = %v, want %v", tc.patterns, tc.name, got, tc.want)
		}
	}
}

// A pattern with a leading or trailing space is refused; the advice for a
// name that really has one must give a pattern this matcher matches it with
// (? is literal here, so advising it would match nothing).
func TestSpacePatternAdvice(t *testing.T) {
	for _, tc := range []struct{ pattern, name, want string }{
		{" Junk", " Junk", "%Junk"},
		{"Junk ", "Junk ", "Junk%"},
		{" Old Mail  ", " Old Mail  ", "%Old Mail%"},
	} {
		err := checkPattern(tc.pattern)
		if err == nil {
			t.Fatalf("%q accepted", tc.pattern)
		}
		msg := err.Error()
		if !strings.Contains(msg, `"`+tc.want+`"`) || !strings.Contains(msg, `"`+strings.TrimSpace(tc.pattern)+`"`) || strings.Contains(msg, "with ?") {
			t.Errorf("%q: %v; want the advice %q (and the trimmed pattern), not ?", tc.pattern, err, tc.want)
		}
		if err := checkPattern(tc.want); err != nil {
			t.Errorf("the advised %q is refused: %v", tc.want, err)
		}
		if !MatchPatterns([]string{tc.want}, tc.name) {
			t.Errorf("the advised %q does not match %q", tc.want, tc.name)
		}
		if q := strings.ReplaceAll(tc.pattern, " ", "?"); MatchPatterns([]string{q}, tc.name) {
			t.Errorf("%q matches %q: ? is a wildcard after all", q, tc.name)
		}
	}
}

// A pathological pattern must not take exponential time.
func TestMatchHostile(t *testing.T) {
	pat := strings.Repeat("*%", 200) + "x"
	name := strings.Repeat("a/", 500)
	if MatchPatterns([]string{pat}, name) {
		t.Error("matched without the final x")
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("*", "INBOX")
	f.Add("!Lists/%", "Lists/go")
	f.Add("inbox/*%", "INBOX/a/b")
	f.Add("%%**", "")
	f.Fuzz(func(t *testing.T, pattern, name string) {
		got := MatchPatterns([]string{pattern}, name)
		// Consistency checks that hold for every input.
		if MatchPatterns([]string{"*"}, name) != true {
			t.Fatalf("* does not match %q", name)
		}
		if strings.HasPrefix(pattern, "!") && got {
			t.Fatalf("exclusion %q selected %q", pattern, name)
		}
		if !strings.ContainsAny(pattern, "*%!") && got != (canonInbox(pattern) == canonInbox(name)) {
			t.Fatalf("literal %q vs %q: %v", pattern, name, got)
		}
		if got && !strings.HasPrefix(pattern, "!") {
			if MatchPatterns([]string{pattern, "!" + pattern}, name) {
				t.Fatalf("later exclusion did not win for %q", pattern)
			}
		}
	})
}

func TestCheckPattern(t *testing.T) {
	for _, p := range []string{"*", "!Junk", "INBOX", "%/x"} {
		if err := checkPattern(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"", "!", "a\x00b", " !Junk", "!Junk ", "\tINBOX"} {
		if checkPattern(p) == nil {
			t.Errorf("%q accepted", p)
		}
	}
}
