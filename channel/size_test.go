package channel

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"0":           0,
		"4096":        4096,
		"100b":        100,
		"512k":        512 << 10,
		"512K":        512 << 10,
		"512KB":       512 << 10,
		"512 KiB":     512 << 10,
		"25MB":        25 << 20,
		"25m":         25 << 20,
		"1.5 MiB":     3 << 19,
		" 2G ":        2 << 30,
		"1gib":        1 << 30,
		"0.5k":        512,
		"0.0":         0,
		"1.0001k":     1024, // fractions round down to whole bytes
		"8589934591G": 8589934591 << 30,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "-1", "1.2.3", ".5k", "5.k", "25XB", "25 MBs", "1e6", "0x10",
		"9999999999999999999", "8589934592G", "1T", "MB25", "0.5", "0.999b"} {
		_, err := ParseSize(in)
		if err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), "1k = 1KB = 1KiB = 1024 bytes") {
			t.Errorf("ParseSize(%q) error does not list the accepted forms: %v", in, err)
		}
	}
}
