package channel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
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
			return "", fmt.Errorf("%s: password_env: environment variable %s is not set or empty; export it before running quixysync", s.Ref(), s.PasswordEnv)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return "", fmt.Errorf("%s: password_env: the value of %s contains a line break or NUL character, which cannot be sent; remove it", s.Ref(), s.PasswordEnv)
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

// runSecretCmd runs command with sh -c, stdin from /dev/null, and returns
// the first line of its standard output. The command's stderr is inherited
// by nobody: it is captured and shown (trimmed) on failure, because that is
// where "gpg: decryption failed" appears; any line of stdout found in it is
// redacted first.
func runSecretCmd(ctx context.Context, what, command string) (string, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Stdin = nil // /dev/null
	var stdout, stderr capBuffer
	stdout.max, stderr.max = maxSecretOutput, 4*maxStderrShown
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A pipeline's other processes may keep the pipes open after sh is
	// killed; do not wait for them forever.
	cmd.WaitDelay = 500 * time.Millisecond
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("%s: stopped before it finished: %w", what, ctx.Err())
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
