package channel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Limits on what a secret command may print; a password or token is short,
// and a runaway command must not fill memory.
const (
	maxSecretOutput = 64 << 10
	maxStderrShown  = 512
)

// Password resolves the store's password from password, password_env or
// password_cmd. Errors name the store and key, never the secret, the command
// or its standard output.
func (s *IMAPStore) Password(ctx context.Context) (string, error) {
	switch {
	case s.PasswordCmd != "":
		return runSecretCmd(ctx, s.Ref()+": password_cmd", s.PasswordCmd)
	case s.PasswordEnv != "":
		v, ok := os.LookupEnv(s.PasswordEnv)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: password_env: environment variable %s is not set or empty; export it before running quixysync", s.Ref(), envNameShown(s.PasswordEnv))
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return "", fmt.Errorf("%s: password_env: the value of %s contains a line break or NUL character, which cannot be sent; remove it", s.Ref(), envNameShown(s.PasswordEnv))
		}
		return v, nil
	case s.PasswordLiteral != "":
		return s.PasswordLiteral, nil
	}
	return "", fmt.Errorf("%s: no password configured; set one of password_cmd, password_env or password", s.Ref())
}

// Token runs token_cmd and returns the OAuth2 access token it prints, with
// the same rules as password_cmd.
func (s *IMAPStore) Token(ctx context.Context) (string, error) {
	if s.TokenCmd == "" {
		return "", fmt.Errorf("%s: no token_cmd configured; add token_cmd = \"...\" for xoauth2/oauthbearer", s.Ref())
	}
	return runSecretCmd(ctx, s.Ref()+": token_cmd", s.TokenCmd)
}

// unattendedSecretLimit bounds a secret command run with nobody at a
// terminal (cron, a systemd timer). pass with a cached key answers in
// milliseconds and a token refresh in seconds; a graphical pinentry that
// someone present answers, in a minute or two. Beyond that the command is
// waiting for what will not come, and a run hung for good would hold the
// lock against every later run. At a terminal there is no limit, as with
// mbsync's PassCmd: the user can take their time, and Ctrl-C stops it.
const unattendedSecretLimit = 5 * time.Minute

// secretRun says how a secret command runs; runSecretCmd decides it from
// the terminal, tests set it.
type secretRun struct {
	// ownGroup puts the command in a process group of its own, which is
	// killed as a whole when the run is stopped.
	ownGroup bool
	// limit, when not 0, stops the command after that long.
	limit time.Duration
}

// runSecretCmd runs command with sh -c, stdin from /dev/null, and returns
// the first line of its standard output. The command's stderr is inherited
// by nobody: it is captured and shown (trimmed) on failure, because that is
// where "gpg: decryption failed" appears; any line of stdout found in it is
// redacted first.
//
// Stopping it must stop what it started too (gpg, a pinentry it waits
// for, a "sleep"): killing only sh would leave them running under init.
// The sure way is a process group of its own, killed as a whole. But a
// command in a process group other than the terminal's foreground one
// cannot use the terminal: reading it (age or gpg --pinentry-mode loopback
// asking for a passphrase on /dev/tty, ssh or sudo asking for a password)
// stops it with SIGTTIN, and switching off echo with SIGTTOU, and the run
// would hang. (gpg's usual pinentry is not affected: gpg-agent starts it,
// outside our session.) So when we are in the terminal's foreground the
// command stays in our process group, where Ctrl-C reaches it and all its
// children from the terminal itself; only a signal sent to quixysync alone
// (kill, or another store's failure ending the run) then leaves children
// of a dying sh behind. Everywhere else (cron, systemd, a background job)
// nobody can answer a prompt anyway: there it gets its own group, and a
// time limit.
func runSecretCmd(ctx context.Context, what, command string) (string, error) {
	run := secretRun{ownGroup: true, limit: unattendedSecretLimit}
	if inForeground() {
		run = secretRun{}
	}
	return runSecret(ctx, what, command, run)
}

// inForeground reports whether this process is in the foreground process
// group of its controlling terminal, where someone can answer a prompt.
func inForeground() bool {
	// O_NOCTTY: never make it our controlling terminal (it is already,
	// or the open fails with ENXIO: cron, systemd, setsid).
	tty, err := os.OpenFile("/dev/tty", os.O_RDONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		return false
	}
	defer tty.Close()
	pgrp, err := unix.IoctlGetInt(int(tty.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

func runSecret(ctx context.Context, what, command string, run secretRun) (string, error) {
	runCtx := ctx
	if run.limit > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, run.limit)
		defer cancel()
	}
	cmd := exec.CommandContext(runCtx, "sh", "-c", command)
	cmd.Stdin = nil // /dev/null
	var stdout, stderr capBuffer
	stdout.max, stderr.max = maxSecretOutput, 4*maxStderrShown
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if run.ownGroup {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error {
			// SIGKILL: a command that traps SIGTERM must not outlive the
			// run either. Its group has sh's PID; ESRCH (all gone) is
			// os.ErrProcessDone to Wait.
			if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
				if errors.Is(err, syscall.ESRCH) {
					return os.ErrProcessDone
				}
				return err
			}
			return nil
		}
	}
	// A pipeline's other processes, or a child that left our group, may
	// keep the pipes open after sh is killed; do not wait for them forever.
	cmd.WaitDelay = 500 * time.Millisecond
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("%s: stopped before it finished: %w", what, context.Cause(ctx))
	}
	if runCtx.Err() != nil {
		msg := fmt.Sprintf("%s did not finish within %v and was stopped: with no terminal, nobody can answer a prompt for a passphrase; unlock the key beforehand (e.g. gpg-agent's cache) or run quixysync from a terminal", what, run.limit)
		if e := redact(stderr.String(), stdout.String()); e != "" {
			msg += "; it said: " + e
		}
		return "", errors.New(msg)
	}
	if err != nil {
		msg := fmt.Sprintf("%s failed: %s", what, exitText(err))
		if e := redact(stderr.String(), stdout.String()); e != "" {
			msg += ": " + e
		}
		return "", errors.New(msg)
	}
	if stdout.overflow {
		return "", fmt.Errorf("%s printed more than %d bytes; it must print only the secret, on its first line", what, maxSecretOutput)
	}
	out := stdout.String()
	line, _, _ := strings.Cut(out, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s printed nothing on its first line; it must print the secret as the first line of its output", what)
	}
	if strings.ContainsRune(line, 0) {
		return "", fmt.Errorf("%s printed a NUL character, which cannot be sent; check the command", what)
	}
	return line, nil
}

func exitText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String() // "exit status 1", "signal: killed"
	}
	// Start failures (no sh, bad working directory) carry no output.
	return err.Error()
}

// redact trims stderr to one short line and removes anything the command
// also printed on stdout, where the secret is.
func redact(stderr, stdout string) string {
	for _, l := range strings.Split(stdout, "\n") {
		l = strings.TrimSpace(l)
		if len(l) >= 3 {
			stderr = strings.ReplaceAll(stderr, l, "[redacted]")
		}
	}
	stderr = strings.Join(strings.Fields(stderr), " ")
	if len(stderr) > maxStderrShown {
		stderr = stderr[:maxStderrShown] + "…"
	}
	return stderr
}

// capBuffer keeps the first max bytes and remembers whether there was more.
// (The buffer is a field, not embedded: an embedded bytes.Buffer would lend
// its ReadFrom to io.Copy and bypass the cap.)
type capBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room < len(p) {
		b.overflow = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *capBuffer) String() string { return b.buf.String() }

// envNameShown is how an error names password_env's variable: as written
// when it looks like one (upper case, digits and _, as environment names
// are by convention), else not at all. A password pasted there by mistake
// can be a valid name too (hunter2), and an error is mailed by cron.
func envNameShown(name string) string {
	for _, c := range name {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "(name not shown: in lower case it may be a password put there by mistake)"
		}
	}
	return name
}
