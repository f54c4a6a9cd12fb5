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
//
// The fields are ordered so that the struct has no padding holes: a scan
// keeps one per file.
type fileName struct {
	// Base is the unique part, up to the first ',' of the part before the info.
	Base string
	// fields are the ",X=..." parts after Base as written, each with its
	// leading comma ("" or e.g. ",S=50,W=52,U=7"). One substring of the name
	// rather than a []string: parsing the 100 000 names of a large folder
	// then allocates nothing per name.
	fields string
	// tail is what info() or extra() return, whichever rawInfo says: they
	// never both have something, and one string instead of two makes the
	// struct 16 bytes smaller.
	tail string
	// Size is the value of the first "S=" field, -1 when absent or invalid.
	Size int64
	// UID is the value of the first "U=" field; 0 when there is none or it is
	// not a valid UID.
	UID engine.UID
	// Flags are the standard letters after "2,".
	Flags engine.Flag
	// HasInfo says the name had an info part (":...") at all; rawInfo that
	// it is not the usual "2,<flags>" form.
	HasInfo, rawInfo bool
}

// info is the info part (without the ':') when it is not the usual
// "2,<flags>" form; it is dropped when we write flags.
func (n fileName) info() string {
	if n.rawInfo {
		return n.tail
	}
	return ""
}

// extra is every letter after "2," but the standard flags (Dovecot keywords
// a-z, unknown letters), in the order found.
func (n fileName) extra() string {
	if n.rawInfo {
		return ""
	}
	return n.tail
}

// parseName parses any file name; it never fails (a name without structure
// is all Base). The strings in the result are substrings of name.
func parseName(name string) fileName {
	n := fileName{Size: -1}
	head, info, hasInfo := cutInfo(name)
	if hasInfo {
		n.HasInfo = true
		if rest, ok := strings.CutPrefix(info, "2,"); ok {
			n.Flags, n.tail = parseFlags(rest)
		} else {
			n.tail, n.rawInfo = info, true
		}
	}
	n.Base, n.fields = cutBase(head)
	haveU, haveS := false, false
	for f, rest := "", n.fields; rest != "" && !(haveU && haveS); {
		f, rest = nextField(rest)
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

// cutInfo splits a file name at its last ':' into what comes before and the
// info part; ok says there was a ':'.
func cutInfo(name string) (head, info string, ok bool) {
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		return name[:i], name[i+1:], true
	}
	return name, "", false
}

// cutBase splits what comes before the info into the unique base and the
// ",X=..." fields (with their leading comma).
func cutBase(head string) (base, fields string) {
	if i := strings.IndexByte(head, ','); i >= 0 {
		return head[:i], head[i:]
	}
	return head, ""
}

// nextField splits fields (",a,b...") into its first field without the
// comma ("a") and the rest (",b..."). fields must start with a comma.
func nextField(fields string) (f, rest string) {
	fields = fields[1:]
	if i := strings.IndexByte(fields, ','); i >= 0 {
		return fields[:i], fields[i:]
	}
	return fields, ""
}

// parseFlags splits the letters after "2," into standard flags and the
// other letters in the order found. When those other letters are one run
// (the usual case: none, or Dovecot keywords after the standard ones)
// extra is a substring of letters, not a copy.
func parseFlags(letters string) (f engine.Flag, extra string) {
	first, last, count := -1, -1, 0
	for j := 0; j < len(letters); j++ {
		if fl, ok := engine.FlagFromLetter(letters[j]); ok {
			f |= fl
			continue
		}
		if first < 0 {
			first = j
		}
		last = j
		count++
	}
	switch {
	case count == 0:
		return f, ""
	case last-first+1 == count:
		return f, letters[first : last+1]
	}
	b := make([]byte, 0, count)
	for j := first; j <= last; j++ {
		if _, ok := engine.FlagFromLetter(letters[j]); !ok {
			b = append(b, letters[j])
		}
	}
	return f, string(b)
}

// withUID returns n carrying uid: the first "U=" field is replaced, or one
// is appended after the other fields (before the info, as mbsync does).
func (n fileName) withUID(uid engine.UID) fileName {
	u := "U=" + strconv.FormatUint(uint64(uid), 10)
	n.UID = uid
	for i := 0; i < len(n.fields); i++ {
		// Every field starts after a comma: the first ",U=" starts the
		// first field that is a U= one.
		if n.fields[i] != ',' || !strings.HasPrefix(n.fields[i+1:], "U=") {
			continue
		}
		end := len(n.fields)
		if j := strings.IndexByte(n.fields[i+1:], ','); j >= 0 {
			end = i + 1 + j
		}
		n.fields = n.fields[:i+1] + u + n.fields[end:]
		return n
	}
	n.fields += "," + u
	return n
}

// withFlags returns n with the standard flags replaced; unknown letters stay.
// The result always has a "2," info.
func (n fileName) withFlags(f engine.Flag) fileName {
	n.Flags = f & engine.AllFlags
	n.HasInfo = true
	if n.rawInfo { // the info is dropped; there were no extra letters
		n.tail, n.rawInfo = "", false
	}
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
	for s := n.extra(); s != ""; {
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
	b.WriteString(n.fields)
	if n.HasInfo {
		b.WriteByte(':')
		if info := n.info(); info != "" {
			b.WriteString(info)
		} else {
			b.WriteString("2,")
			b.WriteString(n.flagString())
		}
	}
	return b.String()
}
