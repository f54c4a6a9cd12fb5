package engine

import (
	"fmt"
	"strings"
)

// Flag is a set of the six standard message flags. Only these are synced;
// IMAP keywords and unknown Maildir letters stay untouched on each side.
type Flag uint8

// The flags in Maildir letter order D F P R S T.
const (
	FlagDraft   Flag = 1 << iota // D  \Draft
	FlagFlagged                  // F  \Flagged
	FlagPassed                   // P  $Forwarded
	FlagReplied                  // R  \Answered
	FlagSeen                     // S  \Seen
	FlagDeleted                  // T  \Deleted ("trashed")
	flagEnd
)

// AllFlags is every standard flag.
const AllFlags = flagEnd - 1

const flagLetters = "DFPRST"

// String returns the Maildir letters in canonical order, e.g. "FS".
func (f Flag) String() string {
	var b strings.Builder
	for i := 0; i < len(flagLetters); i++ {
		if f&(1<<i) != 0 {
			b.WriteByte(flagLetters[i])
		}
	}
	return b.String()
}

// Has reports whether every flag in g is set in f.
func (f Flag) Has(g Flag) bool { return f&g == g }

// FlagFromLetter maps one Maildir letter to its flag; ok is false for letters
// that are not one of the six standard flags.
func FlagFromLetter(c byte) (f Flag, ok bool) {
	if i := strings.IndexByte(flagLetters, c); i >= 0 {
		return 1 << i, true
	}
	return 0, false
}

// ParseFlags parses Maildir letters ("FS"). Letters that are not standard
// flags are an error; stores that must keep unknown letters parse themselves.
func ParseFlags(s string) (Flag, error) {
	var f Flag
	for i := 0; i < len(s); i++ {
		g, ok := FlagFromLetter(s[i])
		if !ok {
			return 0, fmt.Errorf("unknown flag letter %q in %q", s[i], s)
		}
		f |= g
	}
	return f, nil
}
