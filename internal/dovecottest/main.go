package dovecottest

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// Main is a complete TestMain body. With -short it runs the tests without a
// server (set(nil)). Without Dovecot installed it prints the install hint and
// exits 1: a missing server must not pass silently as skipped tests. Otherwise
// it starts a server, hands it to set, runs the tests and stops the server
// whatever happens (failure, panic, SIGINT/SIGTERM), then exits with the tests'
// code.
func Main(m *testing.M, opts Options, set func(*Server)) {
	os.Exit(run(m, opts, set))
}

func run(m *testing.M, opts Options, set func(*Server)) (code int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	// Fuzz workers are child processes that run only the fuzz function; each
	// would otherwise start (and, killed by the coordinator, leak) a Dovecot.
	if testing.Short() || flagIsTrue("test.fuzzworker") {
		set(nil)
		return m.Run()
	}
	if err := Available(); err != nil {
		fmt.Fprintf(os.Stderr, "dovecottest: these tests need Dovecot: %s\n", InstallHint)
		return 1
	}
	s, err := Start(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
		return 1
	}
	set(s)

	// An interrupted test run must still take the server down.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	stopSig := make(chan struct{})
	defer close(stopSig)
	go func() {
		select {
		case got := <-sig:
			fmt.Fprintf(os.Stderr, "dovecottest: %v: stopping dovecot\n", got)
			if err := s.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "%v\n", err)
			}
			os.Exit(2)
		case <-stopSig:
		}
	}()

	defer func() {
		signal.Stop(sig)
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "%v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	return m.Run()
}

func flagIsTrue(name string) bool {
	f := flag.Lookup(name)
	return f != nil && f.Value.String() == "true"
}
