package channel

import (
	"context"
	"strings"
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
		if strings.Contains(msg, secret) || strings.Contains(msg, "s3cr3t") {
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
