package cmd

import (
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/dovecottest"
)

// srv is the package's private Dovecot, shared by every test (nil with
// -short: tests that need it skip).
var srv *dovecottest.Server

// holdLockEnv, in a child process re-executed from this test binary, names a
// lock file the child takes with engine.LockFile and holds until its standard
// input closes: another quixysync run, as far as a lock can tell.
const holdLockEnv = "QUIXYSYNC_CMD_TEST_HOLD_LOCK"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdLockEnv); path != "" {
		os.Exit(holdLock(path))
	}
	dovecottest.Main(m, dovecottest.Options{}, func(s *dovecottest.Server) { srv = s })
}

// holdLock takes the lock, says so on stdout and keeps it until stdin is
// closed (or the parent dies, which closes it too).
func holdLock(path string) int {
	lk, err := engine.LockFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer lk.Unlock()
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
	return 0
}
