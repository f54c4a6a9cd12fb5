package maildir

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/quixysync/quixysync/engine"
)

// fileName is a parsed Maildir file name:
//
//	<base>[,U=n][,S=n][,W=n]...[:2,<flags>]
//
// Everything we do not interpret is kept so that a rename changes only what
// it means to change.
type fileName struct {
	// Base is the unique part, up to the first ',' of the part before the info.
	Base string
	// Fields are the ",X=..." parts after Base, as written (without the comma).
	Fields []string
	// UID is the value of the first "U=" field; 0 when there is none or it is
	// not a valid UID.
	UID engine.UID
	// Size is the value of the first "S=" field, -1 when absent or invalid.
	Size int64
	// HasInfo says the name had an info part (":..."). Info holds it (without
	// the ':') when it is not the usual "2,<flags>" form; it is dropped when we
	// write flags.
	HasInfo bool
	Info    string
	// Flags are the standard letters, Extra every other letter after "2,"
	// (Dovecot keywords a-z, unknown letters), in the order found.
	Flags engine.Flag
	Extra string
}

// parseName parses any file name; it never fails (a name without structure
// is all Base).
func parseName(name string) fileName {
	n := fileName{Size: -1}
	head := name
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		head = name[:i]
		info := name[i+1:]
		n.HasInfo = true
		if rest, ok := strings.CutPrefix(info, "2,"); ok {
			var extra strings.Builder
			for j := 0; j < len(rest); j++ {
				if f, ok := engine.FlagFromLetter(rest[j]); ok {
					n.Flags |= f
				} else {
					extra.WriteByte(rest[j])
				}
			}
			n.Extra = extra.String()
		} else {
			n.Info = info
		}
	}
	parts := strings.Split(head, ",")
	n.Base = parts[0]
	if len(parts) > 1 {
		n.Fields = parts[1:]
	}
	haveU, haveS := false, false
	for _, f := range n.Fields {
		switch {
		case !haveU && strings.HasPrefix(f, "U="):
			haveU = true
			if v, err := strconv.ParseUint(f[2:], 10, 32); err == nil && v > 0 {
				n.UID = engine.UID(v)
			}
		case !haveS && strings.HasPrefix(f, "S="):
			haveS = true
			if v, err := strconv.ParseInt(f[2:], 10, 64); err == nil && v >= 0 {
				n.Size = v
			}
		}
	}
	return n
}

// withUID returns n carrying uid: the first "U=" field is replaced, or one
// is appended after the other fields (before the info, as mbsync does).
func (n fileName) withUID(uid engine.UID) fileName {
	fields := make([]string, 0, len(n.Fields)+1)
	done := false
	for _, f := range n.Fields {
		if !done && strings.HasPrefix(f, "U=") {
			f = "U=" + strconv.FormatUint(uint64(uid), 10)
			done = true
		}
		fields = append(fields, f)
	}
	if !done {
		fields = append(fields, "U="+strconv.FormatUint(uint64(uid), 10))
	}
	n.Fields = fields
	n.UID = uid
	return n
}

// withFlags returns n with the standard flags replaced; unknown letters stay.
// The result always has a "2," info.
func (n fileName) withFlags(f engine.Flag) fileName {
	n.Flags = f & engine.AllFlags
	n.HasInfo = true
	n.Info = ""
	return n
}

// flagString is the letters after "2,": standard and unknown ones merged,
// sorted in ASCII order, without repeats. An unknown letter that is not a
// valid UTF-8 sequence is kept as a single byte.
func (n fileName) flagString() string {
	letters := make([]string, 0, 8)
	std := n.Flags.String()
	for i := 0; i < len(std); i++ {
		letters = append(letters, std[i:i+1])
	}
	for s := n.Extra; s != ""; {
		_, size := utf8.DecodeRuneInString(s)
		letters = append(letters, s[:size])
		s = s[size:]
	}
	sort.Strings(letters)
	var b strings.Builder
	for i, l := range letters {
		if i > 0 && letters[i-1] == l {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// String formats the name.
func (n fileName) String() string {
	var b strings.Builder
	b.WriteString(n.Base)
	for _, f := range n.Fields {
		b.WriteByte(',')
		b.WriteString(f)
	}
	if n.HasInfo {
		b.WriteByte(':')
		if n.Info != "" {
			b.WriteString(n.Info)
		} else {
			b.WriteString("2,")
			b.WriteString(n.flagString())
		}
	}
	return b.String()
}
