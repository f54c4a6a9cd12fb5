package mutf7

import (
	"testing"
	"unicode/utf8"
)

func TestKnown(t *testing.T) {
	cases := []struct{ dec, enc string }{
		{"INBOX", "INBOX"},
		{"Entwürfe", "Entw&APw-rfe"},
		{"Entwürfe & Co", "Entw&APw-rfe &- Co"},
		{"&", "&-"},
		{"~peter/mail/日本語/台北", "~peter/mail/&ZeVnLIqe-/&U,BTFw-"},
		{"😀", "&2D3eAA-"},
		{"a\tb", "a&AAk-b"},
		{"", ""},
	}
	for _, c := range cases {
		if got := Encode(c.dec); got != c.enc {
			t.Errorf("Encode(%q) = %q, want %q", c.dec, got, c.enc)
		}
		got, err := Decode(c.enc)
		if err != nil || got != c.dec {
			t.Errorf("Decode(%q) = %q, %v; want %q", c.enc, got, err, c.dec)
		}
	}
}

func TestInvalid(t *testing.T) {
	for _, s := range []string{
		"Tom & Jerry", // '&' not starting a shift
		"&APw",        // unterminated
		"&AGE-",       // encodes printable 'a'
		"&APw-&APw-",  // adjacent shifts
		"&2D0-",       // lone high surrogate
		"&3gA-",       // lone low surrogate
		"&APx-",       // non-zero padding bits
		"Entwürfe",    // raw non-ASCII
		"a\x00b",      // raw control
		"&A-",         // too few bits for a unit
	} {
		if got, err := Decode(s); err == nil {
			t.Errorf("Decode(%q) = %q, want error", s, got)
		}
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"Entwürfe & Co", "&-", "日本語", "😀x", "a&b-c", "&APw-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if utf8.ValidString(s) {
			enc := Encode(s)
			dec, err := Decode(enc)
			if err != nil || dec != s {
				t.Fatalf("round trip of %q: Encode=%q Decode=%q, %v", s, enc, dec, err)
			}
		}
		// Anything Decode accepts must re-encode to itself (canonical form).
		if dec, err := Decode(s); err == nil {
			if enc := Encode(dec); enc != s {
				t.Fatalf("Decode(%q)=%q re-encodes to %q", s, dec, enc)
			}
		}
	})
}
