package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/trace"
	"testing"
)

// TestStartTrace: QUIXYSYNC_TRACE's file is a Go execution trace that `go
// tool trace` reads (it begins with the format's header), and a path that
// cannot be created leaves the run untraced rather than failing it.
func TestStartTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.trace")
	stop := startTrace(path)
	done := make(chan struct{})
	go close(done)
	<-done
	stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 16 || !bytes.HasPrefix(b, []byte("go 1.")) || !bytes.Contains(b[:16], []byte(" trace")) {
		t.Fatalf("not a Go execution trace: %d bytes, header %q", len(b), b[:min(len(b), 16)])
	}
	// A second trace in the same process works: the first was stopped.
	stop = startTrace(filepath.Join(t.TempDir(), "again.trace"))
	stop()

	stop = startTrace(filepath.Join(t.TempDir(), "no", "such", "dir", "run.trace"))
	if trace.IsEnabled() {
		t.Fatal("a trace runs although its file could not be created")
	}
	stop() // no trace, no panic
	stop = startTrace("")
	if trace.IsEnabled() {
		t.Fatal("empty path: a trace runs")
	}
	stop()
}
