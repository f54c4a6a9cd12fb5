// Package mutf7 encodes and decodes IMAP's modified UTF-7 (RFC 3501 §5.1.3),
// the form mbsync 1.4 uses for folder names on disk (e.g. "Entw&APw-rfe").
package mutf7

import (
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrInvalid is returned (wrapped) for input that is not modified UTF-7.
var ErrInvalid = errors.New("invalid modified UTF-7")

// The base64 alphabet of modified UTF-7: standard base64 with ',' for '/'.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

func decodeDigit(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+':
		return 62
	case c == ',':
		return 63
	}
	return -1
}

func printable(r rune) bool { return r >= 0x20 && r <= 0x7e }

// Encode returns s in modified UTF-7. Invalid UTF-8 bytes are encoded as
// U+FFFD, so callers that need a faithful round trip must check utf8.ValidString.
func Encode(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		b.WriteByte('&')
		units := utf16.Encode(run)
		var acc uint32
		bits := 0
		for _, u := range units {
			acc = acc<<16 | uint32(u)
			bits += 16
			for bits >= 6 {
				bits -= 6
				b.WriteByte(alphabet[(acc>>uint(bits))&0x3f])
			}
		}
		if bits > 0 {
			b.WriteByte(alphabet[(acc<<uint(6-bits))&0x3f])
		}
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		switch {
		case r == '&':
			flush()
			b.WriteString("&-")
		case printable(r):
			flush()
			b.WriteRune(r)
		default:
			run = append(run, r)
		}
	}
	flush()
	return b.String()
}

// Decode parses modified UTF-7 strictly: raw bytes must be printable ASCII,
// shifted sections must be non-empty, hold whole UTF-16 units with zero
// padding bits, well-formed surrogate pairs and no printable ASCII, and two
// shifted sections may not be adjacent. This strictness is what lets callers
// tell an mbsync-encoded directory name from an ordinary UTF-8 one.
func Decode(s string) (string, error) {
	var b strings.Builder
	prevShift := false
	for i := 0; i < len(s); {
		c := s[i]
		if c != '&' {
			if c < 0x20 || c > 0x7e {
				return "", ErrInvalid
			}
			b.WriteByte(c)
			i++
			prevShift = false
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", ErrInvalid
		}
		seg := s[i+1 : i+1+end]
		i += end + 2
		if seg == "" {
			b.WriteByte('&')
			prevShift = false
			continue
		}
		if prevShift {
			return "", ErrInvalid
		}
		prevShift = true
		var units []uint16
		var acc uint32
		bits := 0
		for j := 0; j < len(seg); j++ {
			d := decodeDigit(seg[j])
			if d < 0 {
				return "", ErrInvalid
			}
			acc = acc<<6 | uint32(d)
			bits += 6
			if bits >= 16 {
				bits -= 16
				units = append(units, uint16(acc>>uint(bits)))
				acc &= 1<<uint(bits) - 1
			}
		}
		if bits >= 6 || acc != 0 || len(units) == 0 {
			return "", ErrInvalid
		}
		for k := 0; k < len(units); k++ {
			u := rune(units[k])
			switch {
			case utf16.IsSurrogate(u):
				if u >= 0xdc00 || k+1 >= len(units) {
					return "", ErrInvalid
				}
				r := utf16.DecodeRune(u, rune(units[k+1]))
				if r == utf8.RuneError {
					return "", ErrInvalid
				}
				b.WriteRune(r)
				k++
			case printable(u):
				return "", ErrInvalid
			default:
				b.WriteRune(u)
			}
		}
	}
	return b.String(), nil
}
