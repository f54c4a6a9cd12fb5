// Command benchexec runs one command and prints, as one JSON line on stdout, what
// /usr/bin/time -v would: wall clock, user and system CPU, and peak RSS.
//
//	benchexec [-log FILE] [-timeout 1h] -- COMMAND [ARG...]
//	benchexec -nothing
//
// With -nothing it exits at once: timed by another benchexec, that is what starting
// and ending a Go program costs on this machine, a floor under any Go client's run.
//
// It exists because the benchmark driver is a Python process of 10-30 MiB: a child
// forked from it starts with that RSS, and Linux carries the pre-exec high-water mark
// into ru_maxrss, so a tool's peak RSS could never read lower than the driver's size.
// A child forked from this small process starts at about 2 MiB.
//
// The command runs in its own process group with stdin from /dev/null and stdout and
// stderr appended to -log; after -timeout the whole group is killed (rc 124). Exit
// status: 0 when the JSON line was printed (the command's own status is in it), 2 on
// usage or start errors.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
)

// Result is one timed run; wait4's rusage covers the command and the children it waited for.
type Result struct {
	WallS     float64 `json:"wall_s"`
	UserS     float64 `json:"user_s"`
	SysS      float64 `json:"sys_s"`
	MaxRSSKiB int64   `json:"maxrss_kib"`
	RC        int     `json:"rc"`
	TimedOut  bool    `json:"timed_out,omitempty"`
}

func main() {
	logPath := flag.String("log", "/dev/null", "file that receives the command's stdout and stderr (appended)")
	timeout := flag.Duration("timeout", time.Hour, "kill the command's process group after this long")
	nothing := flag.Bool("nothing", false, "exit at once (what a Go program's start and exit cost)")
	flag.Parse()
	if *nothing {
		return
	}
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: benchexec [-log FILE] [-timeout D] -- COMMAND [ARG...]")
		os.Exit(2)
	}
	res, err := run(flag.Args(), *logPath, *timeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchexec: %v\n", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintf(os.Stderr, "benchexec: %v\n", err)
		os.Exit(2)
	}
}

func run(argv []string, logPath string, timeout time.Duration) (Result, error) {
	var res Result
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return res, fmt.Errorf("command %s: %w", argv[0], err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return res, fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer null.Close()
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return res, fmt.Errorf("log %s: %w", logPath, err)
	}
	defer logf.Close()

	start := time.Now()
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{null.Fd(), logf.Fd(), logf.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true}, // a hung tool is killed with all its children
	})
	if err != nil {
		return res, fmt.Errorf("start %s: %w", path, err)
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	})
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	for {
		_, err = syscall.Wait4(pid, &ws, 0, &ru)
		if err != syscall.EINTR {
			break
		}
	}
	wall := time.Since(start)
	timer.Stop()
	if err != nil {
		return res, fmt.Errorf("wait for %s: %w", path, err)
	}
	res.WallS = wall.Seconds()
	res.UserS = time.Duration(ru.Utime.Nano()).Seconds()
	res.SysS = time.Duration(ru.Stime.Nano()).Seconds()
	res.MaxRSSKiB = int64(ru.Maxrss) // int32 on 32-bit systems
	res.TimedOut = timedOut.Load()
	switch {
	case res.TimedOut:
		res.RC = 124
	case ws.Signaled():
		res.RC = 128 + int(ws.Signal())
	default:
		res.RC = ws.ExitStatus()
	}
	return res, nil
}
