package oneproc

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The test binary imports the package, so its init has run here: on a
// machine with more than one processor the program is on one, unless the
// environment says otherwise (checked in a child below).
func TestStartsOnOneProcessor(t *testing.T) {
	if os.Getenv("ONEPROC_CHILD") != "" {
		// The child reports what it found and exits.
		os.Stdout.WriteString(strconv.Itoa(runtime.GOMAXPROCS(0)) + " " + strconv.FormatBool(Lowered()) + "\n")
		return
	}
	if _, set := os.LookupEnv("GOMAXPROCS"); set {
		t.Skip("GOMAXPROCS is set for the test run")
	}
	if !Lowered() {
		if n := runtime.GOMAXPROCS(0); n != 1 {
			t.Fatalf("not lowered, yet GOMAXPROCS is %d", n)
		}
		t.Skip("one processor by default: nothing to lower")
	}
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("lowered, yet GOMAXPROCS is %d", n)
	}
	for _, tc := range []struct{ env, want string }{
		{"", "1 true"},
		{"GOMAXPROCS=2", "2 false"},
		{"GOMAXPROCS=1", "1 false"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStartsOnOneProcessor$")
		cmd.Env = append(withoutGOMAXPROCS(os.Environ()), "ONEPROC_CHILD=1")
		if tc.env != "" {
			cmd.Env = append(cmd.Env, tc.env)
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%q: %v", tc.env, err)
		}
		got, _, _ := strings.Cut(string(out), "\n")
		if got != tc.want {
			t.Errorf("environment %q: child found %q, want %q", tc.env, got, tc.want)
		}
	}
}

func withoutGOMAXPROCS(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return out
}
