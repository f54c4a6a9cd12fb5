package channel

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

const testFile = "/cfg/test.toml"

// lines joins its arguments as file lines, so line numbers are argument
// positions (1-based) and test expectations stay readable.
func lines(l ...string) string { return strings.Join(l, "\n") + "\n" }

// base is a valid file (lines 1-9) that cases extend.
var base = []string{
	`[imap.a]`,                  // 1
	`host = "imap.example.com"`, // 2
	`user = "u"`,                // 3
	`password_cmd = "true"`,     // 4
	`[maildir.m]`,               // 5
	`path = "/mail"`,            // 6
	`[channel.c]`,               // 7
	`far = "imap.a"`,            // 8
	`near = "maildir.m"`,        // 9
}

func withBase(extra ...string) string {
	return lines(append(append([]string(nil), base...), extra...)...)
}

// withIMAP replaces the imap table's body (lines 2..) with body.
func withIMAP(body ...string) string {
	l := []string{`[imap.a]`}
	l = append(l, body...)
	l = append(l, base[4:]...)
	return lines(l...)
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := Parse(testFile, []byte(src))
	if err != nil {
		t.Fatalf("unexpected error:\n%v\nin:\n%s", err, src)
	}
	return cfg
}

func TestConfigErrors(t *testing.T) {
	tmp := t.TempDir()
	notPEM := filepath.Join(tmp, "ca.der")
	if err := os.WriteFile(notPEM, []byte("\x30\x82\x01\x0a not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", "/home/test")
	cases := []struct {
		name string
		src  string
		line int
		key  string
		msg  []string // substrings of Msg: what is wrong and how to fix it
	}{
		{"syntax", lines(`[imap.a]`, `host = imap.example.com`), 2, "",
			[]string{"TOML syntax error", "strings need double quotes"}},
		{"syntax unclosed table", lines(`[imap.a`, `host = "x"`), 1, "", []string{"TOML syntax error", "to end table name"}},
		{"syntax missing value", lines(`[imap.a]`, `host =`, `user = "u"`), 2, "", []string{"expected value"}},
		{"syntax unclosed string", lines(`[imap.a]`, `user = "u"`, `host = "abc`, ``), 3, "", []string{"strings cannot contain newlines"}},
		{"syntax unclosed table later", lines(`[imap.a]`, `user = "u"`, `[maildir.m`, `path = "/m"`), 3, "", []string{"to end table name"}},
		{"syntax duplicate key", lines(`[imap.a]`, `host = "x"`, `host = "y"`), 3, "", []string{"already been defined", "may appear only once"}},
		{"unknown key", withBase(`hots = "x"`), 10, "channel.c.hots",
			[]string{"unknown key in [channel.NAME]", "valid keys: far, near"}},
		{"unknown key suggestion", withIMAP(`host = "h"`, `hots = "x"`, `user = "u"`, `password = "p"`), 3, "imap.a.hots",
			[]string{`did you mean "host"?`}},
		{"misspelt password", withIMAP(`host = "h"`, `user = "u"`, `pasword = "p"`), 4, "imap.a.pasword",
			[]string{`did you mean "password"?`}},
		{"password_command", withIMAP(`host = "h"`, `user = "u"`, `password_command = "pass show x"`), 4, "imap.a.password_command",
			[]string{`did you mean "password_cmd"?`}},
		{"state_directory", withBase(`state_directory = "/s"`), 10, "channel.c.state_directory",
			[]string{`did you mean "state_dir"?`}},
		{"state_dir with a Maildir near side", withBase(`state_dir = "/s"`), 10, "channel.c.state_dir",
			[]string{"has no effect", "near is maildir.m, a Maildir", ".quixysync-state", "remove it"}},
		{"unknown key case", withBase(`Copy_Arrival_Date = true`), 10, "channel.c.Copy_Arrival_Date",
			[]string{`did you mean "copy_arrival_date"? keys are lower-case`}},
		{"unknown table", withBase(`[imapp.b]`, `host = "x"`), 10, "imapp",
			[]string{"unknown table [imapp]", "[imap.NAME]", `did you mean "imap"?`}},
		{"unknown top-level key", lines(append([]string{`verbose = true`}, base...)...), 1, "verbose",
			[]string{"unknown table [verbose]"}},
		{"table without name", lines(`[imap]`, `host = "x"`), 2, "imap.host",
			[]string{"[imap] needs a name", "[imap.work]"}},
		// A bare [imap] (or [maildir], ...) with nothing under it defines
		// no store: check passed it as "OK, 0 IMAP stores".
		{"empty table without name", lines(`[imap]`), 1, "imap",
			[]string{"[imap] is empty", "[imap.NAME]", `host = "imap.example.com"`, `user = "me@example.com"`}},
		{"empty table without name after others", lines(append(append([]string(nil), base[:4]...), `[maildir]`)...), 5, "maildir",
			[]string{"[maildir] is empty", "[maildir.NAME]", `path = "~/Mail/work"`}},
		{"empty inline table without name", lines(`imap = {}`), 1, "imap",
			[]string{"[imap] is empty", "[imap.NAME]"}},
		{"kind not a table", lines(`imap = 3`), 1, "imap",
			[]string{"must be tables written [imap.NAME]", "found an integer"}},
		{"channel name with colon", lines(`[channel."a:b"]`, `far = "x"`), 1, `channel."a:b"`,
			[]string{`channel name "a:b" is not allowed`}},
		{"array of tables", lines(`[[group.g]]`, `channels = []`), 1, "group.g",
			[]string{"write a single table [group.g], not [[group.g]]"}},
		{"bad name", lines(`[maildir."a b"]`, `path = "/x"`), 1, `maildir."a b"`,
			[]string{`maildir name "a b" is not allowed`, "use letters, digits"}},
		{"wrong type port", withIMAP(`host = "h"`, `port = "993"`, `user = "u"`, `password = "p"`), 3, "imap.a.port",
			[]string{"must be a whole number", "port = 993", "found a string"}},
		{"wrong type host", withIMAP(`host = 5`, `user = "u"`, `password = "p"`), 2, "imap.a.host",
			[]string{"must be a string", `host = "imap.example.com"`, "found an integer"}},
		{"wrong type bool", withBase(`copy_arrival_date = "yes"`), 10, "channel.c.copy_arrival_date",
			[]string{"must be true or false", "found a string"}},
		{"wrong type array", withIMAP(`host = "h"`, `user = "u"`, `password = "p"`, `auth = "plain"`), 5, "imap.a.auth",
			[]string{"must be an array of strings", `auth = ["plain", "login"]`}},
		{"wrong element type", withBase(`pull = ["new", 3]`), 10, "channel.c.pull",
			[]string{"element 2 is an integer", "must be a string"}},
		{"multi-line array element", withBase(`mailboxes = [`, `  "INBOX",`, `  "",`, `]`), 10, "channel.c.mailboxes",
			[]string{"empty pattern"}},
		{"missing store", withBase(`[channel.d]`, `far = "imap.b"`, `near = "maildir.m"`), 11, "channel.d.far",
			[]string{`store "imap.b" is not defined`, "add a [imap.b] table", "defined stores: imap.a, maildir.m"}},
		{"malformed ref", withBase(`[channel.d]`, `far = "work"`, `near = "maildir.m"`), 11, "channel.d.far",
			[]string{`"work" is not a store reference`, `"imap.NAME" or "maildir.NAME"`}},
		{"malformed ref kind", withBase(`[channel.d]`, `far = "pop.a"`, `near = "maildir.m"`), 11, "channel.d.far",
			[]string{"not a store reference"}},
		{"missing far", lines(append(append([]string(nil), base[:7]...), `near = "maildir.m"`)...), 7, "channel.c.far",
			[]string{"missing", `far = "imap.work"`}},
		{"far equals near", lines(append(append([]string(nil), base[:8]...), `near = "imap.a"`)...), 9, "channel.c.near",
			[]string{"same store as far (imap.a)"}},
		{"two password sources", withIMAP(`host = "h"`, `user = "u"`, `password = "p"`, `password_env = "X"`), 5, "imap.a.password_env",
			[]string{"password and password_env are all set", "keep exactly one of password, password_cmd, password_env"}},
		{"three password sources", withIMAP(`host = "h"`, `password_cmd = "c"`, `user = "u"`, `password = "p"`, `password_env = "X"`), 6, "imap.a.password_env",
			[]string{"password_cmd and password and password_env"}},
		{"no password source", withIMAP(`host = "h"`, `user = "u"`), 1, "imap.a.password",
			[]string{"no password source", `password_cmd = "pass show mail/work"`, "xoauth2"}},
		{"xoauth2 without token_cmd", withIMAP(`host = "h"`, `user = "u"`, `auth = ["xoauth2"]`), 4, "imap.a.auth",
			[]string{"need a token", "token_cmd ="}},
		{"password unused with xoauth2", withIMAP(`host = "h"`, `user = "u"`, `auth = ["XOAUTH2"]`, `token_cmd = "t"`, `password = "p"`), 6, "imap.a.password",
			[]string{"is not used", "auth = [xoauth2] takes token_cmd", `add "plain" to auth`}},
		{"token_cmd unused", withIMAP(`host = "h"`, `user = "u"`, `password = "p"`, `token_cmd = "t"`), 5, "imap.a.token_cmd",
			[]string{`only used by auth = ["xoauth2"]`}},
		{"unknown mechanism", withIMAP(`host = "h"`, `user = "u"`, `password = "p"`, `auth = ["cram-md5"]`), 5, "imap.a.auth",
			[]string{`unknown mechanism "cram-md5"`, "plain, login, xoauth2 or oauthbearer"}},
		{"empty auth", withIMAP(`host = "h"`, `user = "u"`, `password = "p"`, `auth = []`), 5, "imap.a.auth",
			[]string{"is empty", "remove it for the default"}},
		{"tls none remote", withIMAP(`host = "mail.example.org"`, `tls = "none"`, `user = "u"`, `password = "p"`), 3, "imap.a.tls",
			[]string{"unencrypted to mail.example.org", `tls = "implicit"`, `"starttls"`, "127.0.0.1, ::1 or localhost"}},
		{"tls none remote ip", withIMAP(`host = "10.0.0.1"`, `tls = "none"`, `user = "u"`, `password = "p"`), 3, "imap.a.tls",
			[]string{"unencrypted to 10.0.0.1"}},
		{"tls none token", withIMAP(`host = "example.org"`, `tls = "none"`, `user = "u"`, `auth = ["oauthbearer"]`, `token_cmd = "t"`), 3, "imap.a.tls",
			[]string{"password or token unencrypted"}},
		{"tls bad", withIMAP(`host = "h"`, `tls = "ssl"`, `user = "u"`, `password = "p"`), 3, "imap.a.tls",
			[]string{`"ssl" is not a TLS mode`, `"implicit"`, `"starttls"`, `"none"`}},
		{"port zero", withIMAP(`host = "h"`, `port = 0`, `user = "u"`, `password = "p"`), 3, "imap.a.port",
			[]string{"0 is not a TCP port", "1..65535"}},
		{"port big", withIMAP(`host = "h"`, `port = 70000`, `user = "u"`, `password = "p"`), 3, "imap.a.port",
			[]string{"70000 is not a TCP port"}},
		{"timeout garbage", withIMAP(`host = "h"`, `timeout = "soon"`, `user = "u"`, `password = "p"`), 3, "imap.a.timeout",
			[]string{`"soon" is not a duration`, `timeout = "60s"`}},
		{"timeout zero", withIMAP(`host = "h"`, `timeout = "0s"`, `user = "u"`, `password = "p"`), 3, "imap.a.timeout",
			[]string{"too short", `at least "1s"`}},
		{"timeout negative", withIMAP(`host = "h"`, `timeout = "-5s"`, `user = "u"`, `password = "p"`), 3, "imap.a.timeout",
			[]string{"too short"}},
		{"timeout integer", withIMAP(`host = "h"`, `timeout = 60`, `user = "u"`, `password = "p"`), 3, "imap.a.timeout",
			[]string{"must be a string", `timeout = "60s"`, "found an integer"}},
		{"connections zero", withIMAP(`host = "h"`, `connections = 0`, `user = "u"`, `password = "p"`), 3, "imap.a.connections",
			[]string{"0 is out of range", "1..64"}},
		{"connections big", withIMAP(`host = "h"`, `connections = 65`, `user = "u"`, `password = "p"`), 3, "imap.a.connections",
			[]string{"65 is out of range"}},
		{"empty host", withIMAP(`host = ""`, `user = "u"`, `password = "p"`), 2, "imap.a.host",
			[]string{"is empty", `host = "imap.example.com"`}},
		{"host with port", withIMAP(`host = "imap.example.com:993"`, `user = "u"`, `password = "p"`), 2, "imap.a.host",
			[]string{"put the port in port = 993"}},
		{"host with scheme", withIMAP(`host = "imaps://imap.example.com"`, `user = "u"`, `password = "p"`), 2, "imap.a.host",
			[]string{"without a scheme"}},
		{"missing host", withIMAP(`user = "u"`, `password = "p"`), 1, "imap.a.host",
			[]string{"missing", `host = "imap.example.com"`}},
		{"empty user", withIMAP(`host = "h"`, `user = " "`, `password = "p"`), 3, "imap.a.user",
			[]string{"is empty", `user = "me@example.com"`}},
		{"missing user", withIMAP(`host = "h"`, `password = "p"`), 1, "imap.a.user",
			[]string{"missing"}},
		{"empty password", withIMAP(`host = "h"`, `user = "u"`, `password = ""`), 4, "imap.a.password",
			[]string{"is empty", "password_cmd"}},
		{"password newline", withIMAP(`host = "h"`, `user = "u"`, `password = "p\n"`), 4, "imap.a.password",
			[]string{"line break"}},
		{"empty password_cmd", withIMAP(`host = "h"`, `user = "u"`, `password_cmd = " "`), 4, "imap.a.password_cmd",
			[]string{"is empty", "prints the password"}},
		{"bad password_env", withIMAP(`host = "h"`, `user = "u"`, `password_env = "$PW"`), 4, "imap.a.password_env",
			[]string{`"$PW" is not an environment variable name`, "(no $)"}},
		{"ca_file missing", withIMAP(`host = "h"`, `user = "u"`, `password = "p"`, `ca_file = "`+tmp+`/nope.pem"`), 5, "imap.a.ca_file",
			[]string{"cannot read " + tmp + "/nope.pem", "no such file", "PEM file"}},
		{"ca_file dir", withIMAP(`host = "h"`, `user = "u"`, `password = "p"`, `ca_file = "`+tmp+`"`), 5, "imap.a.ca_file",
			[]string{"is a directory"}},
		{"ca_file not PEM", withIMAP(`host = "h"`, `user = "u"`, `password = "p"`, `ca_file = "`+notPEM+`"`), 5, "imap.a.ca_file",
			[]string{"holds no PEM certificate", "BEGIN CERTIFICATE", "openssl x509 -inform der"}},
		{"max_size unit", withBase(`max_size = "25XB"`), 10, "channel.c.max_size",
			[]string{`unknown unit "xb"`, "1k = 1KB = 1KiB = 1024 bytes", `"25MB"`}},
		{"max_size negative string", withBase(`max_size = "-1"`), 10, "channel.c.max_size",
			[]string{`bad size "-1"`}},
		{"max_size negative int", withBase(`max_size = -1`), 10, "channel.c.max_size",
			[]string{"-1 is negative"}},
		{"max_size bool", withBase(`max_size = true`), 10, "channel.c.max_size",
			[]string{"found a boolean", `max_size = "25MB"`}},
		{"max_size float", withBase(`max_size = 1.5`), 10, "channel.c.max_size",
			[]string{"found a decimal number"}},
		{"bad op", withBase(`pull = ["new", "bogus"]`), 10, "channel.c.pull",
			[]string{`unknown operation "bogus"`, `"new", "flags", "gone"`, "[] for nothing"}},
		{"bad push op", withBase(`push = ["delete"]`), 10, "channel.c.push",
			[]string{`unknown operation "delete"`}},
		{"bad create", withBase(`create = "sometimes"`), 10, "channel.c.create",
			[]string{`"sometimes" is not a side`, `"none", "far", "near" or "both"`}},
		{"bad remove", withBase(`remove = "all"`), 10, "channel.c.remove", []string{"is not a side"}},
		{"bad expunge", withBase(`expunge = true`), 10, "channel.c.expunge", []string{"must be a string", "found a boolean"}},
		{"bad layout", lines(`[maildir.m]`, `path = "/m"`, `layout = "mh"`), 3, "maildir.m.layout",
			[]string{`"mh" is not a layout`, `"verbatim"`, `"maildir++"`}},
		{"missing path", lines(`[maildir.m]`, `inbox = "/m/INBOX"`), 1, "maildir.m.path",
			[]string{"missing", `path = "~/Mail/work"`}},
		{"empty path", lines(`[maildir.m]`, `path = ""`), 2, "maildir.m.path", []string{"empty path"}},
		{"unset variable", lines(`[maildir.m]`, `path = "$QX_UNSET_VAR/mail"`), 2, "maildir.m.path",
			[]string{"$QX_UNSET_VAR is not set"}},
		{"tilde user", lines(`[maildir.m]`, `path = "~bob/mail"`), 2, "maildir.m.path",
			[]string{"not ~user", "write the full path"}},
		{"empty patterns", withBase(`mailboxes = []`), 10, "channel.c.mailboxes",
			[]string{"would select nothing", `["*", "!Junk"]`}},
		{"only exclusions", withBase(`mailboxes = ["!Junk", "!Trash"]`), 10, "channel.c.mailboxes",
			[]string{`every pattern excludes`, `mailboxes = ["*", "!Junk"]`}},
		{"bang alone", withBase(`mailboxes = ["*", "!"]`), 10, "channel.c.mailboxes",
			[]string{`"!" alone excludes nothing`, `"!Junk"`}},
		{"group unknown channel", withBase(`[group.g]`, `channels = ["c", "d"]`), 11, "group.g.channels",
			[]string{`channel "d" is not defined`, "[channel.d]", "defined channels: c"}},
		{"group empty", withBase(`[group.g]`, `channels = []`), 11, "group.g.channels",
			[]string{"is empty", `channels = ["work", "home"]`}},
		{"group missing channels", withBase(`[group.g]`), 10, "group.g.channels", []string{"missing"}},
		{"group same name as channel", withBase(`[group.c]`, `channels = ["c"]`), 10, "group.c",
			[]string{"same name as [channel.c]", "ambiguous on the command line", "rename"}},
		{"store with errors not repeated", lines(`[maildir.m]`, `path = "/m"`, `layout = "x"`,
			`[channel.c]`, `far = "imap.a"`, `near = "maildir.m"`, `[imap.a]`, `host = "h"`, `user = "u"`, `password = "p"`), 3, "maildir.m.layout",
			[]string{"is not a layout"}},
		{"nested unknown once", withBase(`extra = { a = 1, b = { c = 2 } }`), 10, "channel.c.extra",
			[]string{"unknown key"}},
		{"tunnel empty", withIMAP(`tunnel = " "`), 2, "imap.a.tunnel", []string{"is empty", "ssh -q"}},
		{"tunnel with port", withIMAP(`tunnel = "ssh h imap"`, `port = 143`), 3, "imap.a.port",
			[]string{"no effect with tunnel", "remove it"}},
		{"tunnel tls without host", withIMAP(`tunnel = "ssh -W localhost:143 h"`, `tls = "starttls"`, `user = "u"`, `password = "p"`), 3, "imap.a.tls",
			[]string{"checks the server's certificate against host", `host = "imap.example.com"`}},
		{"tunnel password without user", withIMAP(`tunnel = "ssh h imap"`, `password_cmd = "pass x"`), 3, "imap.a.password_cmd",
			[]string{"no user to log in as", "PREAUTH"}},
		{"no host no tunnel", withIMAP(`user = "u"`, `password = "p"`), 1, "imap.a.host",
			[]string{"missing", "tunnel"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse(testFile, []byte(tc.src))
			if err == nil {
				t.Fatalf("no error; config %+v\nin:\n%s", cfg, tc.src)
			}
			if cfg != nil {
				t.Errorf("config returned along with an error")
			}
			errs := ConfigErrors(err)
			if len(errs) != 1 {
				t.Fatalf("want exactly one error, got %d:\n%v", len(errs), err)
			}
			e := errs[0]
			if e.File != testFile || e.Line != tc.line || e.Key != tc.key {
				t.Errorf("got file %q line %d key %q, want %q line %d key %q\n%v", e.File, e.Line, e.Key, testFile, tc.line, tc.key, e)
			}
			for _, m := range tc.msg {
				if !strings.Contains(e.Msg, m) {
					t.Errorf("message lacks %q:\n%s", m, e.Msg)
				}
			}
			prefix := testFile + ":"
			if !strings.HasPrefix(e.Error(), prefix) || (tc.key != "" && !strings.Contains(e.Error(), ": "+tc.key+": ")) {
				t.Errorf("Error() = %q: want FILE:LINE: KEY: MSG", e.Error())
			}
		})
	}
}

func TestConfigErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    ConfigError
		want string
	}{
		{ConfigError{"f.toml", 3, "imap.a.tls", "bad"}, "f.toml:3: imap.a.tls: bad"},
		{ConfigError{"f.toml", 0, "imap.a.tls", "bad"}, "f.toml: imap.a.tls: bad"},
		{ConfigError{"f.toml", 7, "", "bad"}, "f.toml:7: bad"},
		{ConfigError{"", 0, "", "bad"}, "bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// Several problems are all reported, sorted by line, each a *ConfigError.
func TestConfigSeveralErrors(t *testing.T) {
	src := lines(
		`[channel.c]`,             // 1
		`far = "imap.nope"`,       // 2
		`near = "maildir.m"`,      // 3
		`pull = ["everything"]`,   // 4
		`[maildir.m]`,             // 5
		`path = "/m"`,             // 6
		`layuot = "verbatim"`,     // 7
		`[imap.a]`,                // 8
		`host = "h"`,              // 9
		`port = -1`,               // 10
		`user = "u"`,              // 11
		`password = "p"`,          // 12
		`[group.g]`,               // 13
		`channels = ["c", "zzz"]`, // 14
	)
	_, err := Parse(testFile, []byte(src))
	errs := ConfigErrors(err)
	var got []int
	var keys []string
	for _, e := range errs {
		got = append(got, e.Line)
		keys = append(keys, e.Key)
	}
	want := []int{2, 4, 7, 10, 14}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("lines %v (keys %v), want %v\n%v", got, keys, want, err)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Line != 2 {
		t.Errorf("errors.As finds %+v", ce)
	}
	if n := strings.Count(err.Error(), "\n"); n != len(want)-1 {
		t.Errorf("joined error has %d lines:\n%v", n+1, err)
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/state")
	cfg := mustParse(t, withBase())
	im := cfg.IMAP["a"]
	want := &IMAPStore{Name: "a", Host: "imap.example.com", Port: 993, TLS: TLSImplicit, User: "u",
		PasswordCmd: "true", Auth: []string{"plain", "login"}, Connections: 4, Timeout: 60 * time.Second}
	if !reflect.DeepEqual(im, want) {
		t.Errorf("imap defaults\n got %+v\nwant %+v", im, want)
	}
	if im.Ref() != "imap.a" || im.Addr() != "imap.example.com:993" || im.PasswordSource() != "password_cmd" {
		t.Errorf("Ref %q Addr %q source %q", im.Ref(), im.Addr(), im.PasswordSource())
	}
	md := cfg.Maildir["m"]
	if *md != (MaildirStore{Name: "m", Path: "/mail", Inbox: "/mail/INBOX", Layout: LayoutVerbatim}) || md.Ref() != "maildir.m" {
		t.Errorf("maildir defaults %+v", md)
	}
	ch := cfg.Channels["c"]
	wantCh := &Channel{Name: "c", Far: "imap.a", Near: "maildir.m", Patterns: []string{"*"},
		Pull: engine.OpAll, Push: engine.OpAll, Create: SideBoth, Remove: SideNone, Expunge: SideNone,
		CopyArrivalDate: true, StateDir: "/state/quixysync/c"}
	if !reflect.DeepEqual(ch, wantCh) {
		t.Errorf("channel defaults\n got %+v\nwant %+v", ch, wantCh)
	}

	// starttls and none default to port 143; none is fine towards loopback.
	for _, host := range []string{"127.0.0.1", "127.3.4.5", "::1", "localhost", "LOCALHOST"} {
		cfg := mustParse(t, withIMAP(`host = "`+host+`"`, `tls = "none"`, `user = "u"`, `password = "p"`))
		if p := cfg.IMAP["a"].Port; p != 143 {
			t.Errorf("tls none %s: port %d", host, p)
		}
	}
	cfg = mustParse(t, withIMAP(`host = "h"`, `tls = "STARTTLS"`, `user = "u"`, `password_env = "PW"`, `port = 1143`))
	if s := cfg.IMAP["a"]; s.TLS != TLSStartTLS || s.Port != 1143 || s.PasswordEnv != "PW" {
		t.Errorf("starttls store %+v", s)
	}
	// A tunnel: no host, user or password needed (PREAUTH); tls none
	// (ssh keeps it private), one connection; both can be asked for.
	cfg = mustParse(t, withIMAP(`tunnel = "ssh -q h /usr/lib/dovecot/imap"`))
	if s := cfg.IMAP["a"]; s.Tunnel != "ssh -q h /usr/lib/dovecot/imap" || s.TLS != TLSNone || s.Connections != 1 || s.Host != "" ||
		s.Addr() != `tunnel "ssh -q h /usr/lib/dovecot/imap"` {
		t.Errorf("tunnel store %+v, Addr %q", s, s.Addr())
	}
	cfg = mustParse(t, withIMAP(`tunnel = "ssh -W localhost:143 h"`, `host = "mail.example.org"`, `tls = "starttls"`, `connections = 3`, `user = "u"`, `password = "p"`))
	if s := cfg.IMAP["a"]; s.TLS != TLSStartTLS || s.Connections != 3 || s.Host != "mail.example.org" || s.User != "u" {
		t.Errorf("tunnel store with starttls %+v", s)
	}
	cfg = mustParse(t, withIMAP(`tunnel = "ssh -W localhost:143 h"`, `host = "mail.example.org"`, `user = "u"`, `password = "p"`))
	if s := cfg.IMAP["a"]; s.TLS != TLSNone {
		t.Errorf("tunnel to a remote host without tls: %+v (the tunnel keeps it private)", s)
	}
	// OAuth only: no password source needed.
	cfg = mustParse(t, withIMAP(`host = "h"`, `user = "u"`, `auth = ["xoauth2", "OAuthBearer"]`, `token_cmd = "t"`))
	if s := cfg.IMAP["a"]; !reflect.DeepEqual(s.Auth, []string{"xoauth2", "oauthbearer"}) || s.PasswordSource() != "" {
		t.Errorf("oauth store %+v", s)
	}
}

func TestChannelKeys(t *testing.T) {
	cfg := mustParse(t, withBase(
		`mailboxes = ["INBOX", "Lists/%"]`,
		`pull = ["new"]`,
		`push = []`,
		`create = "near"`,
		`remove = "far"`,
		`expunge = "both"`,
		`copy_arrival_date = false`,
		`max_size = 1000`,
		`[maildir.n]`,
		`path = "/n"`,
		`layout = "Maildir++"`,
		`[channel.local]`,
		`far = "maildir.m"`,
		`near = "maildir.n"`,
		`[group.g]`,
		`channels = ["local", "c", "local"]`,
	))
	c := cfg.Channels["c"]
	if c.Pull != engine.OpNew || c.Push != 0 || c.Create != SideNear || c.Remove != SideFar ||
		c.Expunge != SideBoth || c.CopyArrivalDate || c.MaxSize != 1000 {
		t.Errorf("channel %+v", c)
	}
	if got := c.Expunge.Array(); got != [2]bool{true, true} {
		t.Errorf("Expunge.Array = %v", got)
	}
	if got := c.Create.Array(); got[engine.Far] || !got[engine.Near] {
		t.Errorf("Create.Array = %v", got)
	}
	if !c.Remove.Has(engine.Far) || c.Remove.Has(engine.Near) || SideNone.Has(engine.Far) {
		t.Errorf("Has is wrong")
	}
	if cfg.Maildir["n"].Layout != LayoutMaildirPP {
		t.Errorf("layout %q", cfg.Maildir["n"].Layout)
	}
	if g := cfg.Groups["g"]; !reflect.DeepEqual(g.Channels, []string{"local", "c"}) {
		t.Errorf("group channels %v", g.Channels)
	}
	if got := cfg.ChannelNames(); !reflect.DeepEqual(got, []string{"c", "local"}) {
		t.Errorf("ChannelNames %v", got)
	}
	if im, md, err := cfg.Store("maildir.n"); err != nil || im != nil || md.Name != "n" {
		t.Errorf("Store(maildir.n) = %v %v %v", im, md, err)
	}
	if _, _, err := cfg.Store("imap.zz"); err == nil {
		t.Errorf("Store(imap.zz) found something")
	}
}

func TestPathExpansion(t *testing.T) {
	ca := writeTestCA(t, filepath.Join(t.TempDir(), "ca.pem"))
	t.Setenv("HOME", "/home/test")
	t.Setenv("QX_ROOT", "/data")
	t.Setenv("QX_CA", ca)
	cfg := mustParse(t, lines(
		`[imap.a]`, `host = "h"`, `user = "u"`, `password = "p"`, `ca_file = "${QX_CA}"`,
		`[maildir.m]`, `path = "~/Mail/$QX_ROOT/x/../y"`, `inbox = "~"`,
		`[maildir.r]`, `path = "rel/mail"`,
		`[channel.c]`, `far = "maildir.m"`, `near = "imap.a"`, `state_dir = "${QX_ROOT}/state"`,
	))
	if got := cfg.IMAP["a"].CAFile; got != ca {
		t.Errorf("ca_file %q, want %q", got, ca)
	}
	if m := cfg.Maildir["m"]; m.Path != "/home/test/Mail/data/y" || m.Inbox != "/home/test" {
		t.Errorf("maildir.m %+v", m)
	}
	if r := cfg.Maildir["r"]; r.Path != "/cfg/rel/mail" || r.Inbox != "/cfg/rel/mail/INBOX" {
		t.Errorf("relative path not taken from the config's directory: %+v", r)
	}
	if s := cfg.Channels["c"].StateDir; s != "/data/state" {
		t.Errorf("state_dir %q", s)
	}
}

// A "${" without its "}" or naming nothing is an error, not a path
// os.Expand rewrote in silence.
func TestPathBadBraces(t *testing.T) {
	t.Setenv("ACCOUNT", "work")
	for _, p := range []string{"/mail/${ACCOUNT", "/mail/${}/x", "${ACCOUNT}/${"} {
		if got, err := expandPath(p, "/cfg"); err == nil {
			t.Errorf("%q accepted as %q", p, got)
		}
	}
	if got, err := expandPath("/mail/${ACCOUNT}/x$ACCOUNT", "/cfg"); err != nil || got != "/mail/work/xwork" {
		t.Errorf("good braces: %q %v", got, err)
	}
}

// The TOML library's key positions, learned through lineProbe, stay right
// for the forms a config uses.
func TestKeyLines(t *testing.T) {
	src := lines(
		`# comment`,                      // 1
		``,                               // 2
		`[imap."a"]  # quoted name`,      // 3
		`host = "h"`,                     // 4
		`user = 'u'`,                     // 5
		`password = "p"`,                 // 6
		`auth = [`,                       // 7
		`  "plain", # comment`,           // 8
		`]`,                              // 9
		`"port" = "x"`,                   // 10: quoted key, wrong type
		`[channel.c]`,                    // 11
		`far = "imap.a"`,                 // 12
		`near = "maildir.m"`,             // 13
		`x.y.z = 1`,                      // 14: dotted unknown key
		`[maildir.m]`,                    // 15
		`path = "/m"`,                    // 16
		`inline = { a = 1, b = [1, 2] }`, // 17
	)
	_, err := Parse(testFile, []byte(src))
	var got []string
	for _, e := range ConfigErrors(err) {
		got = append(got, e.Key+"@"+itoa(e.Line))
	}
	want := []string{"imap.a.port@10", "channel.c.x@14", "maildir.m.inline@17"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v\n%v", got, want, err)
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	s := ""
	for ; n > 0; n /= 10 {
		s = string(rune('0'+n%10)) + s
	}
	return s
}

func TestLoadAndDefaultPath(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(filepath.Join(dir, "missing.toml"))
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "no such file") || !strings.Contains(ce.Msg, "-c FILE") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := Load(""); !errors.As(err, &ce) {
		t.Errorf("empty path: %v", err)
	}
	// A directory: say to give the file in it.
	big := filepath.Join(dir, "big.toml")
	os.WriteFile(big, make([]byte, maxConfigSize+1), 0o600)
	for _, f := range []string{"/dev/zero", big} {
		if _, err := Load(f); !errors.As(err, &ce) || !strings.Contains(ce.Msg, "is larger than 1024 KiB") {
			t.Errorf("Load(%s): %v", f, err)
		}
	}
	if _, err := Load(dir); !errors.As(err, &ce) || !strings.Contains(ce.Msg, "is a directory; give the configuration file itself, e.g. -c "+filepath.Join(dir, "config.toml")) {
		t.Errorf("directory: %v", err)
	}
	// Unreadable: say how to fix it (root reads anything: nothing to test).
	if os.Geteuid() != 0 {
		locked := filepath.Join(dir, "locked.toml")
		if err := os.WriteFile(locked, []byte(withBase()), 0o200); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(locked); !errors.As(err, &ce) || !strings.Contains(ce.Msg, "permission denied; make it readable") {
			t.Errorf("unreadable: %v", err)
		}
	}
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte(withBase()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p)
	if err != nil || cfg.File != p {
		t.Fatalf("Load: %v", err)
	}

	t.Setenv("HOME", "/home/test")
	t.Setenv("QUIXYSYNC_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", "")
	if got := DefaultPath(); got != "/home/test/.config/quixysync/config.toml" {
		t.Errorf("DefaultPath = %q", got)
	}
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if got := DefaultPath(); got != "/xdg/quixysync/config.toml" {
		t.Errorf("DefaultPath with XDG = %q", got)
	}
	t.Setenv("QUIXYSYNC_CONFIG", "/etc/q.toml")
	if got := DefaultPath(); got != "/etc/q.toml" {
		t.Errorf("DefaultPath with QUIXYSYNC_CONFIG = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(withBase()))
	if b, err := os.ReadFile("../quixysync.toml.example"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("[imap]\nhost=1\n[[group.g]]\n[channel.c]\nfar={a=1}\n"))
	f.Add([]byte("a.b.c = [{x = 1}, {y = \"\"\"\nz\n\"\"\"}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		if err != nil {
			if cfg != nil {
				t.Fatal("config with error")
			}
			if len(ConfigErrors(err)) == 0 {
				t.Fatalf("error is not a *ConfigError: %v", err)
			}
		}
	})
}

// writeTestCA writes a self-signed certificate in PEM to path, a ca_file the
// configuration accepts.
func writeTestCA(t *testing.T, path string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "quixysync test CA"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The INBOX's default place: path/INBOX in the verbatim layout; the root
// itself in the maildir++ layout (Courier, Dovecot, mbsync), unless an
// earlier quixysync keeps it in path/INBOX already.
func TestDefaultInboxByLayout(t *testing.T) {
	root := t.TempDir()
	parse := func(layout string) string {
		t.Helper()
		src := lines(`[maildir.m]`, `path = "`+root+`"`, `layout = "`+layout+`"`)
		return mustParse(t, src).Maildir["m"].Inbox
	}
	if got := parse("verbatim"); got != filepath.Join(root, "INBOX") {
		t.Errorf("verbatim: inbox %q", got)
	}
	if got := parse("maildir++"); got != root {
		t.Errorf("maildir++: inbox %q, want the root %q", got, root)
	}
	if err := os.MkdirAll(filepath.Join(root, "INBOX", "cur"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got := parse("maildir++"); got != filepath.Join(root, "INBOX") {
		t.Errorf("maildir++ with an INBOX folder synced before: inbox %q, want it kept", got)
	}
}

// Two channels over the same two IMAP stores with a state each (the
// default: one state_dir per channel) are warned about; one state_dir for
// both, a Maildir near side, or other stores are not.
func TestSplitStates(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/state")
	src := func(nearKind, extra string) string {
		return lines(
			`[imap.a]`, `host = "a.example"`, `user = "u"`, `password = "p"`,
			`[imap.b]`, `host = "b.example"`, `user = "u"`, `password = "p"`,
			`[maildir.m]`, `path = "/m"`,
			`[channel.all]`, `far = "imap.a"`, `near = "`+nearKind+`"`, extra,
			`[channel.inbox]`, `far = "imap.a"`, `near = "`+nearKind+`"`, `mailboxes = ["INBOX"]`, extra,
		)
	}
	if w := mustParse(t, src("imap.b", "")).SplitStates(); len(w) != 1 || !strings.Contains(w[0].Msg, "all and inbox") || w[0].A != "all" || w[0].B != "inbox" {
		t.Errorf("IMAP near, a state_dir each: %q", w)
	}
	if w := mustParse(t, src("imap.b", `state_dir = "/s"`)).SplitStates(); len(w) != 0 {
		t.Errorf("one state_dir: %q", w)
	}
	if w := mustParse(t, src("maildir.m", "")).SplitStates(); len(w) != 0 {
		t.Errorf("Maildir near: %q", w)
	}
}

// A channel between two Maildir stores one of which lies inside the other
// would copy the whole tree one level deeper at every run (the outer store
// lists the inner one's folders as its own): refused, naming both.
func TestNestedMaildirStoresRefused(t *testing.T) {
	conf := func(farPath, nearPath, extra string) string {
		return lines(`[maildir.far]`, `path = "`+farPath+`"`, extra,
			`[maildir.near]`, `path = "`+nearPath+`"`,
			`[channel.c]`, `far = "maildir.far"`, `near = "maildir.near"`)
	}
	for _, tc := range []struct {
		name, far, near, extra string
		bad                    bool
	}{
		{"far inside near", "/m/Mail/backup", "/m/Mail", "", true},
		{"near inside far", "/m/Mail", "/m/Mail/local", "", true},
		{"same path", "/m/Mail", "/m/Mail/", "", true},
		{"far inbox inside near", "/m/Far", "/m/Mail", `inbox = "/m/Mail/INBOX"`, true},
		{"side by side", "/m/Mail2", "/m/Mail", "", false},
		{"far inbox elsewhere", "/m/Far", "/m/Mail", `inbox = "/var/mail/me"`, false},
		{"near inside far's inbox tree", "/m/Far", "/m/Maildir/backup", `inbox = "/m/Maildir"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(testFile, []byte(conf(tc.far, tc.near, tc.extra)))
			if !tc.bad {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			errs := ConfigErrors(err)
			if len(errs) != 1 || errs[0].Key != "channel.c.near" || !strings.Contains(errs[0].Msg, "overlap") ||
				!strings.Contains(errs[0].Msg, "maildir.far") || !strings.Contains(errs[0].Msg, "maildir.near") {
				t.Fatalf("got %v, want one error at channel.c.near saying the two stores overlap", err)
			}
		})
	}
}
