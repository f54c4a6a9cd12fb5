package channel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const secret = "s3cr3t pass\tword" // spaces and a tab are part of it

func TestPassword(t *testing.T) {
	t.Setenv("QX_PW", secret)
	t.Setenv("QX_SECRET", secret)
	ctx := context.Background()
	good := []struct {
		name  string
		store IMAPStore
		want  string
	}{
		{"literal", IMAPStore{PasswordLiteral: secret}, secret},
		{"env", IMAPStore{PasswordEnv: "QX_PW"}, secret},
		{"cmd", IMAPStore{PasswordCmd: `printf '%s\n' "$QX_SECRET"`}, secret},
		{"cmd without newline", IMAPStore{PasswordCmd: `printf '%s' "$QX_SECRET"`}, secret},
		{"cmd crlf", IMAPStore{PasswordCmd: `printf 'pw\r\n'`}, "pw"},
		{"cmd first line only", IMAPStore{PasswordCmd: `printf 'first line\nsecond line\n'`}, "first line"},
		{"cmd keeps leading and trailing spaces", IMAPStore{PasswordCmd: `printf '  pw  \n'`}, "  pw  "},
		{"cmd stdin is empty", IMAPStore{PasswordCmd: `read -r x; printf 'got[%s]\n' "$x"`}, "got[]"},
		{"cmd stderr ignored on success", IMAPStore{PasswordCmd: `echo noise >&2; echo pw`}, "pw"},
	}
	for _, tc := range good {
		s := tc.store
		s.Name = "a"
		got, err := s.Password(ctx)
		if err != nil || got != tc.want {
			t.Errorf("%s: Password = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}

	t.Setenv("QX_EMPTY", "")
	t.Setenv("QX_NL", "pw\n")
	bad := []struct {
		name  string
		store IMAPStore
		want  []string
	}{
		{"env unset", IMAPStore{PasswordEnv: "QX_UNSET_9"}, []string{"imap.a: password_env", "QX_UNSET_9 is not set or empty"}},
		{"env empty", IMAPStore{PasswordEnv: "QX_EMPTY"}, []string{"QX_EMPTY is not set or empty"}},
		// A password put in password_env by mistake is a valid name too:
		// not echoed into a cron mail.
		{"env lower case unset", IMAPStore{PasswordEnv: "hunter2secret"}, []string{"environment variable (name not shown", "is not set or empty"}},
		{"env newline", IMAPStore{PasswordEnv: "QX_NL"}, []string{"line break"}},
		{"none", IMAPStore{}, []string{"no password configured"}},
		{"cmd fails", IMAPStore{PasswordCmd: `echo "$QX_SECRET"; echo "gpg: decryption failed" >&2; exit 3`},
			[]string{"imap.a: password_cmd failed", "exit status 3", "gpg: decryption failed"}},
		{"cmd echoes secret on stderr", IMAPStore{PasswordCmd: `echo "$QX_SECRET"; echo "oops $QX_SECRET" >&2; exit 1`},
			[]string{"exit status 1", "oops [redacted]"}},
		{"cmd not found", IMAPStore{PasswordCmd: `qx-no-such-command-here`}, []string{"exit status 127", "not found"}},
		{"cmd prints nothing", IMAPStore{PasswordCmd: `true`}, []string{"printed nothing on its first line"}},
		{"cmd empty first line", IMAPStore{PasswordCmd: `printf '\n%s\n' "$QX_SECRET"`}, []string{"printed nothing on its first line"}},
		{"cmd floods", IMAPStore{PasswordCmd: `head -c 200000 /dev/zero | tr '\0' x`}, []string{"printed more than"}},
	}
	for _, tc := range bad {
		s := tc.store
		s.Name = "a"
		got, err := s.Password(ctx)
		if err == nil {
			t.Errorf("%s: no error, got %d bytes", tc.name, len(got))
			continue
		}
		msg := err.Error()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error lacks %q: %s", tc.name, w, msg)
			}
		}
		// Neither the secret nor the command text may appear.
		if strings.Contains(msg, secret) || strings.Contains(msg, "s3cr3t") || strings.Contains(msg, "hunter2") {
			t.Errorf("%s: error reveals the secret: %s", tc.name, msg)
		}
	}
}

func TestToken(t *testing.T) {
	ctx := context.Background()
	s := IMAPStore{Name: "g", TokenCmd: `echo ya29.token`}
	if got, err := s.Token(ctx); err != nil || got != "ya29.token" {
		t.Errorf("Token = %q, %v", got, err)
	}
	s.TokenCmd = `echo ya29.secret-token; echo "refresh failed" >&2; exit 2`
	_, err := s.Token(ctx)
	if err == nil || !strings.Contains(err.Error(), "imap.g: token_cmd failed") || !strings.Contains(err.Error(), "refresh failed") ||
		strings.Contains(err.Error(), "secret-token") {
		t.Errorf("failing token_cmd: %v", err)
	}
	s.TokenCmd = ""
	if _, err := s.Token(ctx); err == nil || !strings.Contains(err.Error(), "no token_cmd") {
		t.Errorf("no token_cmd: %v", err)
	}
}

// A hanging command is stopped by the context, including a pipeline whose
// other process keeps stdout open.
func TestSecretCmdTimeout(t *testing.T) {
	for _, cmd := range []string{`sleep 30`, `sleep 30 | cat`} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		s := IMAPStore{Name: "a", PasswordCmd: cmd}
		start := time.Now()
		_, err := s.Password(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "stopped before it finished") {
			t.Errorf("%s: %v", cmd, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", cmd, d)
		}
	}
}

// A secret key given twice is a duplicate key, not a bad value: the message
// says so (the key is shown, neither value is).
func TestDuplicatePasswordKey(t *testing.T) {
	for _, key := range []string{"password", "password_env"} {
		src := "[imap.work]\nhost = \"h\"\nuser = \"me\"\n" + key + ` = "FirstSecret"` + "\n" + key + ` = "SecondSecret"` + "\n"
		_, err := Parse("/cfg/q.toml", []byte(src))
		if err == nil {
			t.Fatalf("%s twice accepted", key)
		}
		msg := err.Error()
		if !strings.Contains(msg, "q.toml:5") || !strings.Contains(msg, "already been defined") || !strings.Contains(msg, "may appear only once") ||
			!strings.Contains(msg, key) || strings.Contains(msg, "in the value of") {
			t.Errorf("%s twice: %v; want the line, and that the key is given twice", key, msg)
		}
		if strings.Contains(msg, "Secret") {
			t.Errorf("%s twice: the error shows a value: %v", key, msg)
		}
	}
}

// A syntax error in a password's value (an mbsync user's unquoted Pass)
// names the line and the key but never shows the value: the parser's own
// message quotes what it found there. The same for a password pasted into
// password_env.
func TestErrorsDoNotShowPasswords(t *testing.T) {
	for _, pw := range []string{"MyPrivatePass", "trustno1", "privy.pass", "hunter2!x"} {
		for _, line := range []string{"password = " + pw, `password_env = "` + pw + `"`} {
			src := "[imap.work]\nhost = \"h\"\nuser = \"me\"\n" + line + "\n"
			_, err := Parse("/cfg/q.toml", []byte(src))
			if strings.HasPrefix(line, "password_env") && validEnvName(pw) {
				continue // a valid name: no error here
			}
			if err == nil {
				t.Fatalf("%q accepted", line)
			}
			msg := err.Error()
			for _, part := range []string{pw, strings.TrimRight(pw[:strings.IndexAny(pw+".0123456789!", ".0123456789!")], ".")} {
				if len(part) >= 4 && strings.Contains(msg, part) {
					t.Errorf("%q: the error shows %q: %v", line, part, msg)
				}
			}
			if !strings.Contains(msg, "q.toml:4") {
				t.Errorf("%q: the error does not name the line: %v", line, msg)
			}
		}
	}
}

// When a run without a terminal is stopped (SIGTERM from systemd, Ctrl-C
// sent with kill), the secret command's children die with it: the command
// runs in its own process group, and the whole group is killed. Killing
// only sh left a pinentry or a "sleep" running under init.
func TestSecretCmdStopKillsItsChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	command := `sleep 30 & echo $! >"$QX_PIDFILE"; wait`
	t.Setenv("QX_PIDFILE", pidFile)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := runSecret(ctx, "imap.a: password_cmd", command, secretRun{ownGroup: true})
		done <- err
	}()
	pid := waitPID(t, pidFile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // our own child, if the test failed
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "imap.a: password_cmd: stopped before it finished") {
			t.Fatalf("got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5s after the cancel")
	}
	if !gone(pid, 2*time.Second) {
		t.Fatalf("the command's child %d still runs after the cancel", pid)
	}
}

// waitPID waits for the command to write its child's PID to file.
func waitPID(t *testing.T, file string) int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(file)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	t.Fatal("the command did not start its child")
	return 0
}

// gone reports whether process pid has ended within wait: it no longer
// exists, or is a zombie that its new parent has not reaped yet.
func gone(pid int, wait time.Duration) bool {
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return true
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		// "pid (comm) S ...": the state follows the last ')'.
		if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// With nobody at a terminal, a secret command that hangs (a passphrase
// prompt nobody answers) is stopped after the limit, with an error that
// says so and what it printed on stderr; its children are killed too.
func TestSecretCmdUnattendedLimit(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	t.Setenv("QX_PIDFILE", pidFile)
	command := `echo "waiting for a passphrase" >&2; sleep 30 & echo $! >"$QX_PIDFILE"; wait`
	start := time.Now()
	_, err := runSecret(context.Background(), "imap.a: password_cmd", command, secretRun{ownGroup: true, limit: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "imap.a: password_cmd did not finish within 300ms and was stopped") ||
		!strings.Contains(err.Error(), "waiting for a passphrase") {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	pid := waitPID(t, pidFile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if !gone(pid, 2*time.Second) {
		t.Fatalf("the command's child %d still runs after the limit", pid)
	}
}
