package maildir

import (
	"strconv"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

func TestParseName(t *testing.T) {
	cases := []struct {
		name  string
		base  string
		uid   engine.UID
		size  int64
		flags engine.Flag
		extra string
		info  bool
	}{
		// What mbsync writes (golibs.md §4.4).
		{"1795642845.21566_1.vm,U=1:2,RS", "1795642845.21566_1.vm", 1, -1, engine.FlagReplied | engine.FlagSeen, "", true},
		{"1700000000.localmsg.host,U=4", "1700000000.localmsg.host", 4, -1, 0, "", false},
		// Dovecot's own names with sizes and a keyword letter.
		{"1795642776.M978220P17764.vm,S=50,W=52:2,Sa", "1795642776.M978220P17764.vm", 0, 50, engine.FlagSeen, "a", true},
		{"1700000001.abc.host", "1700000001.abc.host", 0, -1, 0, "", false},
		{"x,U=0:2,", "x", 0, -1, 0, "", true},
		{"x,U=abc,U=7:2,T", "x", 0, -1, engine.FlagDeleted, "", true}, // the first U= counts, like mbsync's strstr
		{"x,U=4294967296:2,", "x", 0, -1, 0, "", true},
		{"a:b:2,DFPRST", "a:b", 0, -1, engine.AllFlags, "", true},
	}
	for _, c := range cases {
		n := parseName(c.name)
		if n.Base != c.base || n.UID != c.uid || n.Size != c.size || n.Flags != c.flags || n.extra() != c.extra || n.HasInfo != c.info {
			t.Errorf("parseName(%q) = %+v", c.name, n)
		}
		if got := n.String(); got != c.name {
			t.Errorf("parseName(%q).String() = %q", c.name, got)
		}
	}
}

func TestNameRewrite(t *testing.T) {
	cases := []struct {
		in   string
		f    func(fileName) fileName
		want string
	}{
		{"1700000000.localmsg.host", func(n fileName) fileName { return n.withUID(5) }, "1700000000.localmsg.host,U=5"},
		{"x:2,S", func(n fileName) fileName { return n.withUID(6) }, "x,U=6:2,S"},
		{"x,S=10:2,S", func(n fileName) fileName { return n.withUID(6) }, "x,S=10,U=6:2,S"},
		{"x,U=3,S=10:2,S", func(n fileName) fileName { return n.withUID(9) }, "x,U=9,S=10:2,S"},
		{"b,U=3:2,Sab", func(n fileName) fileName { return n.withFlags(engine.FlagFlagged | engine.FlagSeen) }, "b,U=3:2,FSab"},
		{"b,U=3:2,zSa", func(n fileName) fileName { return n.withFlags(engine.FlagFlagged) }, "b,U=3:2,Faz"},
		{"b,U=3", func(n fileName) fileName { return n.withFlags(engine.FlagSeen) }, "b,U=3:2,S"},
		{"b:1,exp", func(n fileName) fileName { return n.withFlags(engine.FlagSeen) }, "b:2,S"},
	}
	for _, c := range cases {
		if got := c.f(parseName(c.in)).String(); got != c.want {
			t.Errorf("%q → %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"1795642845.21566_1.vm,U=1:2,RS", "1700000000.localmsg.host,U=4",
		"1795642776.M978220P17764.vm,S=50,W=52:2,Sa", "x:1,foo", "a:b:2,\xff\xfeZ", ",,,:2,,", "",
	} {
		f.Add(s, uint32(7), uint8(0x15))
	}
	f.Fuzz(func(t *testing.T, s string, uid uint32, flags uint8) {
		n := parseName(s)
		// A scan's entry keeps a few fields of the parse and cuts the base
		// out itself: both must agree with the full parse.
		if e := newEntry("cur", s); e.uid != n.UID || e.flags != n.Flags || e.size != n.Size || e.base() != n.Base {
			t.Fatalf("entry of %q: uid %d flags %s size %d base %q; parse: %+v", s, e.uid, e.flags, e.size, e.base(), n)
		}
		out := n.String()
		n2 := parseName(out)
		if n2.String() != out {
			t.Fatalf("format not stable: %q → %q → %q", s, out, n2.String())
		}
		if n2.UID != n.UID || n2.Flags != n.Flags || n2.Size != n.Size || n2.Base != n.Base {
			t.Fatalf("round trip of %q changed meaning: %+v vs %+v", s, n, n2)
		}
		if uid == 0 {
			return
		}
		m := n.withUID(engine.UID(uid)).withFlags(engine.Flag(flags))
		out = m.String()
		m2 := parseName(out)
		if m2.UID != engine.UID(uid) || m2.Flags != engine.Flag(flags)&engine.AllFlags || m2.String() != out {
			t.Fatalf("%q with U=%d flags %s → %q parses as %+v", s, uid, engine.Flag(flags), out, m2)
		}
	})
}

// refName is the former fileName, with the fields split into a []string
// (strings.Split): kept to check that the one-string form parses, rewrites
// and formats names byte for byte as it did (mbsync compatibility).
type refName struct {
	base    string
	fields  []string
	uid     engine.UID
	size    int64
	hasInfo bool
	info    string
	flags   engine.Flag
	extra   string
}

func refParse(name string) refName {
	n := refName{size: -1}
	head := name
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		head = name[:i]
		info := name[i+1:]
		n.hasInfo = true
		if rest, ok := strings.CutPrefix(info, "2,"); ok {
			var extra strings.Builder
			for j := 0; j < len(rest); j++ {
				if f, ok := engine.FlagFromLetter(rest[j]); ok {
					n.flags |= f
				} else {
					extra.WriteByte(rest[j])
				}
			}
			n.extra = extra.String()
		} else {
			n.info = info
		}
	}
	parts := strings.Split(head, ",")
	n.base = parts[0]
	if len(parts) > 1 {
		n.fields = parts[1:]
	}
	haveU, haveS := false, false
	for _, f := range n.fields {
		switch {
		case !haveU && strings.HasPrefix(f, "U="):
			haveU = true
			if v, err := strconv.ParseUint(f[2:], 10, 32); err == nil && v > 0 {
				n.uid = engine.UID(v)
			}
		case !haveS && strings.HasPrefix(f, "S="):
			haveS = true
			if v, err := strconv.ParseInt(f[2:], 10, 64); err == nil && v >= 0 {
				n.size = v
			}
		}
	}
	return n
}

// refWithUID is the former withUID; the formatted result is the former
// String() of it (flags formatted by the current flagString).
func refWithUID(n refName, uid engine.UID) string {
	fields := []string{}
	done := false
	for _, f := range n.fields {
		if !done && strings.HasPrefix(f, "U=") {
			f = "U=" + strconv.FormatUint(uint64(uid), 10)
			done = true
		}
		fields = append(fields, f)
	}
	if !done {
		fields = append(fields, "U="+strconv.FormatUint(uint64(uid), 10))
	}
	return n.base + "," + strings.Join(fields, ",")
}

// refString is the former String (flagString is unchanged).
func refString(n refName) string {
	s := n.base
	for _, f := range n.fields {
		s += "," + f
	}
	if n.hasInfo {
		if n.info != "" {
			s += ":" + n.info
		} else {
			s += ":2," + fileName{Flags: n.flags, tail: n.extra}.flagString()
		}
	}
	return s
}

func FuzzParseNameMatchesSplit(f *testing.F) {
	for _, s := range []string{
		"1795642845.21566_1.vm,U=1:2,RS", "1700000000.localmsg.host,U=4",
		"1795642776.M978220P17764.vm,S=50,W=52:2,Sa", "x:1,foo", "a:b:2,\xff\xfeZ", ",,,:2,,", "",
		"x,U=abc,U=7:2,T", "b,U=3:2,zSa", "a,,U=1,:2,", "a,XU=1,U=2", "u:2,aSbFc", "a,U=:2,S",
	} {
		f.Add(s, uint32(7), uint8(0x15))
	}
	f.Fuzz(func(t *testing.T, s string, uid uint32, flags uint8) {
		n, r := parseName(s), refParse(s)
		if got, want := n.String(), refString(r); got != want {
			t.Fatalf("parseName(%q).String() = %q, was %q", s, got, want)
		}
		r2 := r
		r2.flags, r2.hasInfo, r2.info = engine.Flag(flags)&engine.AllFlags, true, ""
		if got, want := n.withFlags(engine.Flag(flags)).String(), refString(r2); got != want {
			t.Fatalf("%q with flags %#x: %q, was %q", s, flags, got, want)
		}
		if n.Base != r.base || n.UID != r.uid || n.Size != r.size || n.HasInfo != r.hasInfo ||
			n.info() != r.info || n.Flags != r.flags || n.extra() != r.extra {
			t.Fatalf("parseName(%q) = %+v, was %+v", s, n, r)
		}
		rhead := r.base
		if len(r.fields) > 0 {
			rhead += "," + strings.Join(r.fields, ",")
		}
		if head := n.Base + n.fields; head != rhead {
			t.Fatalf("parseName(%q): head %q, was %q", s, head, rhead)
		}
		if uid == 0 {
			return
		}
		if got, want := n.withUID(engine.UID(uid)), refWithUID(r, engine.UID(uid)); got.Base+got.fields != want {
			t.Fatalf("%q with U=%d: head %q, was %q", s, uid, got.Base+got.fields, want)
		}
	})
}
