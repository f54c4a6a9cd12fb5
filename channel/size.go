package channel

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeForms is quoted in every size error so the fix is on screen.
const sizeForms = `write a number of bytes, or a number with a unit k, M or G ` +
	`(binary, as in mbsync: 1k = 1KB = 1KiB = 1024 bytes), e.g. "25MB", "512k", "1.5 MiB"; "0" means no limit`

// ParseSize reads a size such as "0", "4096", "512k", "25MB", "1.5 MiB".
// Units are case-insensitive and all binary (k, kb, kib = 1024; m, mb, mib =
// 1024²; g, gb, gib = 1024³; b = bytes), matching mbsync's MaxSize, so a
// limit copied from an mbsync configuration keeps its meaning. A fraction is
// rounded down to whole bytes.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" || strings.Count(num, ".") > 1 || num[0] == '.' || num[len(num)-1] == '.' {
		return 0, fmt.Errorf("bad size %q: %s", s, sizeForms)
	}
	var mult int64
	switch unit {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("bad size %q: unknown unit %q; %s", s, unit, sizeForms)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q is too large: %s", s, sizeForms)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: %s", s, sizeForms)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large: %s", s, sizeForms)
	}
	if v > 0 && v < 1 {
		// Rounded down it would be 0, which means no limit at all: the
		// opposite of what was written (most likely a unit left out).
		return 0, fmt.Errorf("size %q is less than one byte; a unit may be missing: %s", s, sizeForms)
	}
	return int64(v), nil
}
