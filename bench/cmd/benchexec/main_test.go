package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunReportsStatusOutputAndRSS(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")

	res, err := run([]string{"sh", "-c", "echo hello; exit 3"}, logPath, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res.RC != 3 || res.TimedOut {
		t.Errorf("rc = %d, timed out = %v; want 3, false", res.RC, res.TimedOut)
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "hello") {
		t.Errorf("log holds %q, want the command's output", b)
	}
	// The point of benchexec: a small command must not inherit a big parent's RSS.
	if res.MaxRSSKiB <= 0 || res.MaxRSSKiB > 8<<10 {
		t.Errorf("peak RSS of sh = %d KiB, want between 0 and 8 MiB", res.MaxRSSKiB)
	}

	// 64 MiB touched by the child must show up in its peak RSS.
	res, err = run([]string{"python3", "-c", "b = bytearray(64 << 20)"}, logPath, time.Minute)
	if err != nil {
		t.Skipf("python3 not available: %v", err)
	}
	if res.RC != 0 || res.MaxRSSKiB < 64<<10 {
		t.Errorf("rc = %d, peak RSS = %d KiB; want 0 and at least 64 MiB", res.RC, res.MaxRSSKiB)
	}
}

func TestRunTimeoutKillsTheGroup(t *testing.T) {
	start := time.Now()
	res, err := run([]string{"sh", "-c", "sleep 30 & sleep 30; wait"}, os.DevNull, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.RC != 124 {
		t.Errorf("timed out = %v, rc = %d; want true, 124", res.TimedOut, res.RC)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v; the process group was not killed", d)
	}
}

func TestRunUnknownCommand(t *testing.T) {
	if _, err := run([]string{"no-such-command-quixybench"}, os.DevNull, time.Minute); err == nil {
		t.Error("want an error for a command that does not exist")
	}
}
