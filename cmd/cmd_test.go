package cmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quixysync/quixysync/channel"
	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/internal/demo"
)

// run runs the command line in-process and returns what it printed and its
// exit status. It isolates the environment: no user config, state in a
// temporary directory.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code = execute(ctx, args, &out, &errb)
	t.Logf("quixysync %s → %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return out.String(), errb.String(), code
}

// isolate points every default location into a temporary directory.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	t.Setenv("QUIXYSYNC_CONFIG", "")
	return dir
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mkMaildir creates a Maildir folder.
func mkMaildir(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func goodConfig(t *testing.T, dir string) string {
	return writeFile(t, filepath.Join(dir, "good.toml"), fmt.Sprintf(`
[imap.work]
host = "127.0.0.1"
port = 1143
tls = "none"
user = "me"
password = "secret"

[maildir.local]
path = %q

[channel.work]
far = "imap.work"
near = "maildir.local"

[channel.other]
far = "imap.work"
near = "maildir.local"
mailboxes = ["INBOX"]

[group.everything]
channels = ["work", "other"]
`, filepath.Join(dir, "Mail")))
}

func TestUsageErrorsExit2(t *testing.T) {
	dir := isolate(t)
	cfg := goodConfig(t, dir)
	for _, args := range [][]string{
		{"nosuchcommand"},
		{"--no-such-flag", "version"},
		{"version", "extra"},
		{"-v", "-q", "version"},
		{"completion"},
		{"completion", "tcsh"},
		{"check", "--bogus"},
		{"-c", cfg, "list", "nosuchchannel"},
		{"-c", cfg, "sync", "nosuchchannel"},
		{"-c", cfg, "sync", "work", "--all"},
		{"-c", cfg, "sync", "work:"},
		{"-c", "", "sync", "--all"},
		{"--config=", "check"},
		{"demo", "a", "b"},
	} {
		_, stderr, code := run(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
		if !strings.HasPrefix(stderr, "quixysync: ") {
			t.Errorf("%v: stderr does not start with an error message: %q", args, stderr)
		}
	}
}

// -c "" (a variable that is not set) is refused, not taken as "no -c": the
// default file could be another configuration whose channels would sync.
func TestEmptyConfigFlagRefused(t *testing.T) {
	dir := isolate(t)
	t.Setenv("QUIXYSYNC_CONFIG", goodConfig(t, dir))
	_, stderr, code := run(t, "-c", "", "check")
	if code != exitUsage || !strings.Contains(stderr, "-c/--config: the file name is empty") {
		t.Errorf("-c \"\": exit %d, stderr %q; want 2 and what is wrong", code, stderr)
	}
}

func TestNoTargetListsChannels(t *testing.T) {
	dir := isolate(t)
	cfg := goodConfig(t, dir)
	for _, c := range []string{"sync", "pull", "push"} {
		stdout, stderr, code := run(t, "-c", cfg, c)
		if code != exitUsage {
			t.Errorf("%s without target: exit %d, want 2", c, code)
		}
		if !strings.Contains(stderr, "other, work") || !strings.Contains(stderr, "everything") {
			t.Errorf("%s without target: stderr does not list channels and groups: %q", c, stderr)
		}
		if stdout != "" {
			t.Errorf("%s without target printed to stdout: %q", c, stdout)
		}
	}
}

func TestConfigErrorsExit2WithLine(t *testing.T) {
	dir := isolate(t)
	bad := writeFile(t, filepath.Join(dir, "bad.toml"), `
[imap.work]
host = "imap.example.com"
colour = "blue"
`)
	syntax := writeFile(t, filepath.Join(dir, "syntax.toml"), "[imap.work]\nhost = \n")
	for _, tc := range []struct {
		file, want string
		args       []string
	}{
		{bad, "bad.toml:4", []string{"check"}},
		{bad, "bad.toml:4", []string{"list"}},
		{bad, "bad.toml:4", []string{"sync", "--all"}},
		{syntax, "syntax.toml:2", []string{"check"}},
		{filepath.Join(dir, "missing.toml"), "missing.toml", []string{"check"}},
	} {
		args := append([]string{"-c", tc.file}, tc.args...)
		_, stderr, code := run(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: stderr %q does not name %s", args, stderr, tc.want)
		}
	}
	// QUIXYSYNC_CONFIG is used without -c, and -c wins over it.
	t.Setenv("QUIXYSYNC_CONFIG", bad)
	if _, stderr, code := run(t, "check"); code != exitUsage || !strings.Contains(stderr, "bad.toml") {
		t.Errorf("check with QUIXYSYNC_CONFIG=bad: exit %d, stderr %q", code, stderr)
	}
	if _, _, code := run(t, "-c", goodConfig(t, dir), "check"); code != exitOK {
		t.Errorf("-c good with QUIXYSYNC_CONFIG=bad: exit %d", code)
	}
}

func TestCheckGoodConfig(t *testing.T) {
	dir := isolate(t)
	cfg := goodConfig(t, dir)
	if err := os.Mkdir(filepath.Join(dir, "Mail"), 0o700); err != nil {
		t.Fatal(err)
	}
	stdout, _, code := run(t, "-c", cfg, "check")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	want := "config " + cfg + ": OK, 2 channels, 1 IMAP store, 1 Maildir store, 1 group\n"
	if stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if stdout, stderr, code := run(t, "-q", "-c", cfg, "check"); code != 0 || stdout != "" || stderr != "" {
		t.Errorf("-q check: exit %d, stdout %q, stderr %q; want silence", code, stdout, stderr)
	}
	// A file that defines stores but no channel is valid, and sync has
	// nothing to do with it: check says so.
	empty := writeFile(t, filepath.Join(dir, "stores.toml"), "[maildir.m]\npath = \"/m\"\n")
	if stdout, _, code := run(t, "-c", empty, "check"); code != exitOK || !strings.Contains(stdout, "warning: no channel is defined") ||
		strings.Contains(stdout, "not used by any channel") {
		t.Errorf("no channel: exit %d, stdout %q", code, stdout)
	}
	// A store no channel pairs, and a channel that neither pulls nor
	// pushes: valid, and check says so.
	idle := writeFile(t, filepath.Join(dir, "idle.toml"), `
[maildir.a]
path = "/a"
[maildir.b]
path = "/b"
[maildir.old]
path = "/old"
[channel.c]
far = "maildir.a"
near = "maildir.b"
pull = []
push = []
`)
	stdout, _, code = run(t, "-c", idle, "check")
	if code != exitOK || !strings.Contains(stdout, "warning: maildir.old is not used by any channel") ||
		!strings.Contains(stdout, "warning: channel c has pull = [] and push = []") || strings.Contains(stdout, "maildir.a is not used") {
		t.Errorf("unused parts: exit %d, stdout %q", code, stdout)
	}
}

// A bare [imap] left empty (the store's keys meant to follow, or to go
// under [imap.NAME]) is a mistake check reports with its line, not "OK, 0
// IMAP stores".
func TestCheckEmptyBareIMAP(t *testing.T) {
	dir := isolate(t)
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), "[maildir.m]\npath = \"/m\"\n\n[imap]\n")
	stdout, stderr, code := run(t, "-c", cfg, "check")
	if code != exitUsage || strings.Contains(stdout, "OK") ||
		!strings.Contains(stderr, cfg+":4: imap: [imap] is empty") || !strings.Contains(stderr, "[imap.work] with host = ") {
		t.Errorf("empty [imap]: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestCheckMaildirPath: check says when a Maildir path does not exist yet
// (a typo there would sync the account into a new directory) and fails when
// it is not a directory.
func TestCheckMaildirPath(t *testing.T) {
	dir := isolate(t)
	cfg := goodConfig(t, dir)
	mail := filepath.Join(dir, "Mail")
	stdout, _, code := run(t, "-c", cfg, "check")
	if code != exitOK || !strings.Contains(stdout, "maildir.local: "+mail+" does not exist yet") {
		t.Errorf("missing path: exit %d, stdout %q", code, stdout)
	}
	writeFile(t, mail, "not a directory")
	stdout, stderr, code := run(t, "-c", cfg, "check")
	if code != exitUsage || !strings.Contains(stderr, "maildir.local: path "+mail+" is not a directory") {
		t.Errorf("file as path: exit %d, stderr %q", code, stderr)
	}
	if strings.Contains(stdout, ": OK,") || !strings.Contains(stdout, ": problems (above),") {
		t.Errorf("file as path: stdout %q, want no OK for a configuration with a problem", stdout)
	}
	// An inbox that is a file: the default path/INBOX here.
	os.Remove(mail)
	writeFile(t, filepath.Join(mail, "INBOX"), "not a directory")
	_, stderr, code = run(t, "-c", cfg, "check")
	if code != exitUsage || !strings.Contains(stderr, "maildir.local: inbox "+filepath.Join(mail, "INBOX")+" is not a directory") {
		t.Errorf("file as inbox: exit %d, stderr %q", code, stderr)
	}
}

func TestCheckConnect(t *testing.T) {
	dir := isolate(t)
	srv, err := demo.Start(demo.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), fmt.Sprintf(`
[imap.good]
host = "127.0.0.1"
port = %d
tls = "none"
user = "demo"
password = "demo"

[imap.wrongpass]
host = "127.0.0.1"
port = %d
tls = "none"
user = "demo"
password = "nope"
`, srv.Port, srv.Port))
	stdout, stderr, code := run(t, "-c", cfg, "check", "--connect")
	if code != exitFailure {
		t.Errorf("exit %d, want 1 (one store cannot log in)", code)
	}
	if !strings.Contains(stdout, "imap.good") || !strings.Contains(stdout, "UIDPLUS") {
		t.Errorf("stdout lacks imap.good's capabilities: %q", stdout)
	}
	if !strings.Contains(stderr, "imap.wrongpass") {
		t.Errorf("stderr does not name the failing store: %q", stderr)
	}
	if strings.Contains(stdout+stderr, "nope") {
		t.Errorf("the password appears in the output")
	}
}

func TestDebugTraceRedactsPassword(t *testing.T) {
	dir := isolate(t)
	const pw = "s3cr3t-Passw0rd"
	srv, err := demo.Start(demo.ServerOptions{Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), fmt.Sprintf(`
[imap.good]
host = "127.0.0.1"
port = %d
tls = "none"
user = "demo"
password = %q
`, srv.Port, pw))
	_, stderr, code := run(t, "--debug", "-c", cfg, "check", "--connect")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stderr, "CAPABILITY") {
		t.Errorf("--debug printed no protocol trace: %q", stderr)
	}
	if strings.Contains(stderr, pw) {
		t.Errorf("the password appears in the --debug trace")
	}
}

func TestInterruptedExitsNonZero(t *testing.T) {
	dir := isolate(t)
	cfg, _, near := maildirPair(t, dir, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as if Ctrl-C came at once
	var out, errb bytes.Buffer
	code := execute(ctx, []string{"-c", cfg, "sync", "--all"}, &out, &errb)
	if code != exitInterrupted {
		t.Errorf("interrupted sync: exit %d, want %d; stderr %q", code, exitInterrupted, errb.String())
	}
	if _, err := os.Stat(filepath.Join(near, "INBOX")); err == nil {
		t.Errorf("an interrupted run still created %s", near)
	}
}

func TestVersion(t *testing.T) {
	stdout, _, code := run(t, "version")
	if code != exitOK || !regexp.MustCompile(`^quixysync \S+.* go\d`).MatchString(stdout) {
		t.Errorf("version: exit %d, stdout %q", code, stdout)
	}
}

func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		stdout, _, code := run(t, "completion", sh)
		if code != exitOK || !strings.Contains(stdout, "quixysync") || len(stdout) < 500 {
			t.Errorf("completion %s: exit %d, %d bytes", sh, code, len(stdout))
		}
	}
}

// TestHelpDocumentsExitStatus: each command's help lists the exit statuses
// it can end with, and only those.
func TestHelpDocumentsExitStatus(t *testing.T) {
	syncing := "0 1 2 3 4 130"
	for c, want := range map[string]string{
		"sync": syncing, "pull": syncing, "push": syncing, "": syncing,
		"list": "0 1 2 130", "check": "0 1 2 130", "demo": "0 1 2 130",
		"version": "0 2", "completion": "0 2",
	} {
		args := []string{"--help"}
		if c != "" {
			args = []string{c, "--help"}
		}
		stdout, _, code := run(t, args...)
		_, section, ok := strings.Cut(stdout, "EXIT STATUS\n")
		if code != exitOK || !ok {
			t.Errorf("%s --help: exit %d, no EXIT STATUS section", c, code)
			continue
		}
		var got []string
		for _, line := range strings.Split(section, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || !strings.HasPrefix(line, "  ") {
				break
			}
			got = append(got, f[0])
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s --help: exit statuses %v, want %s", c, got, want)
		}
	}
}

// Status 4 comes from more than one guard and --force passes only the
// mass-deletion one: the help and the README must not promise more, and
// must send the user of the others to their message.
func TestGuardHelpSaysWhatForceConfirms(t *testing.T) {
	stdout, _, _ := run(t, "sync", "--help")
	_, section, _ := strings.Cut(stdout, "EXIT STATUS\n")
	var four, force string
	for _, line := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--force") {
			force = line
		}
	}
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "  4 ") {
			four = line
		}
	}
	for what, text := range map[string]string{"EXIT STATUS 4": four, "--force flag": force} {
		if !strings.Contains(text, "large deletion") || !strings.Contains(text, "gone on one side") || !strings.Contains(text, "how to proceed") {
			t.Errorf("sync --help, %s: %q; want it to say --force confirms a large deletion, not a mailbox gone on one side, whose message says how to proceed", what, text)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var row string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| 4 |") {
			row = line
		}
	}
	if strings.Contains(row, "(confirm with `--force`)") || !strings.Contains(row, "large deletion") || !strings.Contains(row, "how to proceed") {
		t.Errorf("README exit status 4: %q; want it to say which guard --force confirms", row)
	}
}

func TestList(t *testing.T) {
	dir := isolate(t)
	srv, err := demo.Start(demo.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := srv.Seed(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Create("Junk"); err != nil {
		t.Fatal(err)
	}
	mail := filepath.Join(dir, "Mail")
	mkMaildir(t, filepath.Join(mail, "INBOX"))
	mkMaildir(t, filepath.Join(mail, "Sent"))
	mkMaildir(t, filepath.Join(mail, "Local"))
	cfg := writeFile(t, filepath.Join(dir, "c.toml"), fmt.Sprintf(`
[imap.demo]
host = "127.0.0.1"
port = %d
tls = "none"
user = "demo"
password = "demo"

[maildir.local]
path = %q

[channel.demo]
far = "imap.demo"
near = "maildir.local"
mailboxes = ["*", "!Junk"]

[imap.down]
host = "127.0.0.1"
port = %d
tls = "none"
user = "demo"
password = "demo"
timeout = "5s"

[channel.broken]
far = "imap.down"
near = "maildir.local"
`, srv.Port, mail, closedPort(t)))

	stdout, stderr, code := run(t, "-c", cfg, "list", "demo")
	if code != exitOK {
		t.Fatalf("list demo: exit %d", code)
	}
	want := map[string][2]string{
		"INBOX":        {"both", "matched"},
		"Sent":         {"both", "matched"},
		"Archive/2025": {"far only", "matched"},
		"Entwürfe":     {"far only", "matched"},
		"Junk":         {"far only", "excluded"},
		"Local":        {"near only", "matched"},
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != len(want)+1 {
		t.Fatalf("list printed %d lines, want %d", len(lines), len(want)+1)
	}
	if !strings.HasPrefix(strings.TrimSpace(lines[1]), "INBOX ") {
		t.Errorf("INBOX is not listed first: %q", lines[1])
	}
	for _, l := range lines[1:] {
		f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1)
		if len(f) != 3 {
			t.Errorf("line %q: want 3 columns", l)
			continue
		}
		w, ok := want[f[0]]
		if !ok {
			t.Errorf("unexpected mailbox %q", f[0])
			continue
		}
		if f[1] != w[0] || f[2] != w[1] {
			t.Errorf("%s: %s, %s; want %s, %s", f[0], f[1], f[2], w[0], w[1])
		}
	}

	// An unreachable server: a clear error naming the channel and store, exit 1;
	// the reachable channel is still listed.
	stdout, stderr, code = run(t, "-c", cfg, "list")
	if code != exitFailure {
		t.Errorf("list with an unreachable server: exit %d, want 1", code)
	}
	if !strings.Contains(stderr, "broken") || !strings.Contains(stderr, "imap.down") {
		t.Errorf("stderr does not name the channel and store: %q", stderr)
	}
	if !strings.Contains(stdout, "Archive/2025") {
		t.Errorf("the reachable channel is not listed: %q", stdout)
	}
}

// closedPort returns a loopback port nothing listens on. It is below the
// ephemeral range: a just-freed ephemeral port can make the kernel connect
// the client to itself (TCP simultaneous open), which looks like a server
// that never greets rather than an unreachable one.
func closedPort(t *testing.T) int {
	t.Helper()
	for _, p := range []int{1, 9, 47, 71} {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), time.Second)
		if err != nil {
			return p
		}
		c.Close()
	}
	t.Skip("no closed low port on 127.0.0.1 to play an unreachable server")
	return 0
}

// skipWithoutEngine skips a test while engine.SyncChannel is still a stub, so
// the test runs by itself once the engine lands.
func skipWithoutEngine(t *testing.T, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "not implemented yet") {
		t.Skip("engine.SyncChannel is not implemented yet")
	}
}

// maildirPair writes a config with a Maildir → Maildir channel and a far
// INBOX holding n messages.
func maildirPair(t *testing.T, dir string, n int) (cfg, far, near string) {
	far = filepath.Join(dir, "far")
	near = filepath.Join(dir, "near")
	mkMaildir(t, filepath.Join(far, "INBOX"))
	for i := 0; i < n; i++ {
		writeFile(t, filepath.Join(far, "INBOX", "new", fmt.Sprintf("100%d.M%dP1.test", i, i)),
			fmt.Sprintf("From: a@example.com\nSubject: test %d\nMessage-ID: <%d@test>\n\nbody %d\n", i, i, i))
	}
	cfg = writeFile(t, filepath.Join(dir, "m.toml"), fmt.Sprintf(`
[maildir.far]
path = %q

[maildir.near]
path = %q

[channel.mm]
far = "maildir.far"
near = "maildir.near"
`, far, near))
	return cfg, far, near
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, sub := range []string{"cur", "new"} {
		es, _ := os.ReadDir(filepath.Join(dir, sub))
		n += len(es)
	}
	return n
}

func TestSyncMaildirPair(t *testing.T) {
	dir := isolate(t)
	cfg, _, near := maildirPair(t, dir, 3)

	// A dry run says what it would do and changes nothing.
	stdout, stderr, code := run(t, "-c", cfg, "sync", "--dry-run", "mm")
	skipWithoutEngine(t, stderr)
	if code != exitOK {
		t.Fatalf("dry run: exit %d", code)
	}
	if !strings.Contains(stdout, "mm:INBOX:") || !strings.Contains(stdout, "copy far → near: 3 messages") {
		t.Errorf("dry run does not show the copies: %q", stdout)
	}
	if !strings.Contains(stdout, "mm (dry run): copied ←3 →0") {
		t.Errorf("dry run summary: %q", stdout)
	}
	if _, err := os.Stat(near); err == nil {
		t.Errorf("dry run created %s", near)
	}

	stdout, _, code = run(t, "-v", "-c", cfg, "sync", "mm")
	if code != exitOK {
		t.Fatalf("sync: exit %d", code)
	}
	if !regexp.MustCompile(`(?m)^mm: copied ←3 →0, flags ←0 →0, deleted ←0 →0, created \d mailbox(es)?, no errors$`).MatchString(stdout) {
		t.Errorf("summary line: %q", stdout)
	}
	if !strings.Contains(stdout, "  mm:INBOX: ") {
		t.Errorf("-v: no line per mailbox: %q", stdout)
	}
	if n := countFiles(t, filepath.Join(near, "INBOX")); n != 3 {
		t.Errorf("near INBOX holds %d messages, want 3", n)
	}

	// -q: nothing at all on success.
	stdout, stderr, code = run(t, "-q", "-c", cfg, "sync", "--all")
	if code != exitOK || stdout != "" || stderr != "" {
		t.Errorf("-q sync: exit %d, stdout %q, stderr %q; want silence", code, stdout, stderr)
	}
	for _, c := range []string{"pull", "push"} {
		if _, _, code := run(t, "-c", cfg, c, "mm:INBOX"); code != exitOK {
			t.Errorf("%s mm:INBOX: exit %d", c, code)
		}
	}
}

// pull on a channel with pull = [] (push alike) is a usage error that says
// which key to set, and changes nothing; with other channels that do pull
// (--all), it is left out and the others run.
func TestPullWithoutPullList(t *testing.T) {
	dir := isolate(t)
	cfg, _, near := maildirPair(t, dir, 1)
	noPull := writeFile(t, filepath.Join(dir, "nopull.toml"), readFile(t, cfg)+"pull = []\n")
	stdout, stderr, code := run(t, "-c", noPull, "pull", "mm")
	if code != exitUsage || !strings.Contains(stderr, "channel mm has pull = []") || !strings.Contains(stderr, `set pull = ["new", "flags", "gone"]`) {
		t.Errorf("pull mm with pull = []: exit %d, stderr %q; want 2 and the key to set", code, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if _, err := os.Stat(near); err == nil {
		t.Errorf("pull with nothing to pull created %s", near)
	}
	// push still works on that channel.
	if _, _, code := run(t, "-c", noPull, "push", "mm"); code != exitOK {
		t.Errorf("push mm: exit %d, want 0", code)
	}

	both := writeFile(t, filepath.Join(dir, "both.toml"), readFile(t, cfg)+"pull = []\n"+`
[channel.down]
far = "maildir.far"
near = "maildir.other"

[maildir.other]
path = "`+filepath.Join(dir, "other")+`"
`)
	stdout, _, code = run(t, "-c", both, "pull", "--all")
	if code != exitOK || strings.Contains(stdout, "mm:") || !strings.Contains(stdout, "down: copied ←1") {
		t.Errorf("pull --all: exit %d, stdout %q; want only channel down to run", code, stdout)
	}
}

// A warning from the engine names the channel once (cmd's logger carries
// it; a second channel= attribute is noise).
func TestEngineWarningNamesChannelOnce(t *testing.T) {
	dir := isolate(t)
	cfg, _, _ := maildirPair(t, dir, 1)
	typo := writeFile(t, filepath.Join(dir, "typo.toml"), readFile(t, cfg)+"mailboxes = [\"Inbx\"]\n")
	_, stderr, code := run(t, "-c", typo, "sync", "mm")
	if code != exitOK || !strings.Contains(stderr, "match no mailbox") || strings.Count(stderr, "channel=mm") != 1 {
		t.Errorf("exit %d, stderr %q; want 0 and the warning naming channel=mm once", code, stderr)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLockedExit3(t *testing.T) {
	dir := isolate(t)
	cfg, _, _ := maildirPair(t, dir, 1)
	// Another run holds the channel's lock (a separate open file: flock
	// conflicts even within one process).
	lock, err := engine.LockFile(channelLockOf(t, cfg, "mm"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	_, stderr, code := run(t, "-c", cfg, "sync", "mm")
	skipWithoutEngine(t, stderr)
	if code != exitLocked {
		t.Errorf("sync while locked: exit %d, want 3", code)
	}
	if !strings.Contains(stderr, "mm") || !strings.Contains(stderr, fmt.Sprint(os.Getpid())) {
		t.Errorf("stderr does not name the channel and the holder's PID: %q", stderr)
	}
}

func TestGuardExit4(t *testing.T) {
	dir := isolate(t)
	cfg, far, near := maildirPair(t, dir, 12)
	_, stderr, code := run(t, "-c", cfg, "sync", "mm")
	skipWithoutEngine(t, stderr)
	if code != exitOK {
		t.Fatalf("first sync: exit %d", code)
	}
	// 11 of 12 messages vanish on the far side: propagating that needs --force.
	files, _ := filepath.Glob(filepath.Join(far, "INBOX", "*", "*"))
	if len(files) != 12 {
		t.Fatalf("far INBOX holds %d files, want 12", len(files))
	}
	for _, f := range files[:11] {
		os.Remove(f)
	}
	stdout, stderr, code := run(t, "-c", cfg, "sync", "--dry-run", "mm")
	if code != exitGuard || !strings.Contains(stderr, "safety guard") || !strings.Contains(stdout, "flags ←0 →0") {
		t.Errorf("dry run past the guard: exit %d, want 4, the guard reported and nothing counted", code)
	}
	_, stderr, code = run(t, "-c", cfg, "sync", "mm")
	if code != exitGuard {
		t.Errorf("sync past the guard: exit %d, want 4", code)
	}
	if !strings.Contains(stderr, "mm:INBOX") || !strings.Contains(stderr, "--force") {
		t.Errorf("the guard message does not name the mailbox and --force: %q", stderr)
	}
	if _, _, code := run(t, "-c", cfg, "sync", "--force", "mm"); code != exitOK {
		t.Errorf("sync --force: exit %d, want 0", code)
	}
	if _, _, code := run(t, "-c", cfg, "sync", "mm"); code != exitOK {
		t.Errorf("sync after --force: exit %d, want 0", code)
	}
	_ = near
}

func TestDemo(t *testing.T) {
	isolate(t)
	dir := filepath.Join(t.TempDir(), "demo")
	stdout, stderr, code := run(t, "demo", dir)
	skipWithoutEngine(t, stderr)
	if code != exitOK {
		t.Fatalf("demo: exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, demo.ConfigName)); err != nil {
		t.Errorf("no config written: %v", err)
	}
	folders, err := demo.Folders(filepath.Join(dir, "Mail"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range folders {
		got[f.Name] = f.Messages
	}
	want := map[string]int{}
	for _, mb := range demo.Tree() {
		want[mb.Name] = len(mb.Messages)
	}
	want["INBOX"]++ // the message that arrived between the syncs
	want["Sent"]++  // the message filed locally
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s holds %d messages, want %d", name, got[name], n)
		}
	}
	for _, s := range []string{"First sync", "Second sync", "Downloaded 1 message", "uploaded 1 message", "sync --all"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("demo output lacks %q", s)
		}
	}
	// A second demo into the same directory refuses to mix with the old mail.
	if _, _, code := run(t, "demo", dir); code != exitUsage {
		t.Errorf("demo into a used DIR: exit %d, want 2", code)
	}
}

// The demo's closing words say to edit DIR/quixysync.toml into a real
// configuration: a re-run (after removing DIR/Mail) replaces the demo's own
// file, but refuses one that was edited, and leaves it as it was.
func TestDemoKeepsAnEditedConfig(t *testing.T) {
	isolate(t)
	dir := filepath.Join(t.TempDir(), "demo")
	if _, stderr, code := run(t, "demo", dir); code != exitOK {
		skipWithoutEngine(t, stderr)
		t.Fatalf("demo: exit %d", code)
	}
	mail := filepath.Join(dir, "Mail")
	if err := os.RemoveAll(mail); err != nil {
		t.Fatal(err)
	}
	if _, _, code := run(t, "-q", "demo", dir); code != exitOK {
		t.Fatalf("demo again over its own unchanged config: exit %d, want 0", code)
	}
	cfg := filepath.Join(dir, demo.ConfigName)
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), `host = "127.0.0.1"`, `host = "imap.example.com"`, 1)
	writeFile(t, cfg, edited)
	if err := os.RemoveAll(mail); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := run(t, "demo", dir)
	if code != exitUsage || !strings.Contains(stderr, cfg) || !strings.Contains(stderr, "move that file away") {
		t.Errorf("demo over an edited config: exit %d, stderr %q; want 2, naming the file and what to do", code, stderr)
	}
	if got, _ := os.ReadFile(cfg); string(got) != edited {
		t.Errorf("the edited config was overwritten:\n%s", got)
	}
}

// demo with a DIR that cannot be a directory is a usage error (2), not a
// failed demo (1).
func TestDemoDirIsAFile(t *testing.T) {
	dir := isolate(t)
	file := writeFile(t, filepath.Join(dir, "afile"), "x")
	_, stderr, code := run(t, "demo", file)
	if code != exitUsage || !strings.Contains(stderr, "cannot use "+file+" as DIR") {
		t.Errorf("demo FILE: exit %d, stderr %q; want 2 and what is wrong", code, stderr)
	}
}

func TestFormatting(t *testing.T) {
	if got := uidSet([]engine.UID{7, 1, 2, 3, 9, 10, 3}); got != "1:3,7,9:10" {
		t.Errorf("uidSet = %q", got)
	}
	c := engine.Counts{Copied: [2]int{3, 12}, Flagged: [2]int{0, 4}, Deleted: [2]int{1, 0}, Created: [2]int{0, 1}}
	want := "work: copied ←12 →3, flags ←4 →0, deleted ←0 →1, created 1 mailbox, no errors"
	if got := summaryLine("work", c, outcome{}); got != want {
		t.Errorf("summaryLine = %q, want %q", got, want)
	}
	if got := flagChange(engine.FlagSeen|engine.FlagFlagged, engine.FlagDeleted); got != "+seen +flagged -deleted" {
		t.Errorf("flagChange = %q", got)
	}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{fmt.Errorf("x: %w", engine.ErrLocked), 3},
		{fmt.Errorf("x: %w", engine.ErrGuard), 4},
		{&engine.GuardError{Reason: "too many"}, 4},
		{fmt.Errorf("x: %w", engine.ErrStopped), exitInterrupted},
		{context.Canceled, exitInterrupted},
		{fmt.Errorf("boom"), 1},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if worse(1, 4) != 4 || worse(3, 1) != 3 || worse(4, exitInterrupted) != exitInterrupted {
		t.Error("worse does not prefer the more serious status")
	}
}

// A store the IMAP package refuses to build (here a ca_file that stopped
// being a certificate after the config was checked) is named once.
func TestOpenIMAPNamesTheStoreOnce(t *testing.T) {
	dir := isolate(t)
	ca := writeFile(t, filepath.Join(dir, "ca.pem"), "not a certificate")
	g := &globalOptions{stdout: io.Discard, stderr: io.Discard}
	_, err := g.openIMAP(&channel.IMAPStore{Name: "w", Host: "127.0.0.1", Port: 993, TLS: channel.TLSImplicit,
		User: "me", PasswordLiteral: "x", Auth: []string{"plain"}, CAFile: ca, Connections: 1, Timeout: time.Second})
	if err == nil || !strings.HasPrefix(err.Error(), "imap.w: ") || strings.Count(err.Error(), "imap.w") != 1 {
		t.Errorf("got %v, want an error naming imap.w once", err)
	}
}

// A dry run's plan is its output: -q hides the summary and the logs, not
// the plan; with nothing pending it prints nothing.
func TestQuietDryRunPrintsThePlan(t *testing.T) {
	var out, errb bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errb, Quiet: true}
	plan := &engine.Plan{}
	plan.Copies[engine.Near] = []engine.Copy{{UID: 7, Size: 100}}
	res := []engine.ChannelResult{{Channel: "work", Mailboxes: []engine.MailboxResult{
		{Mailbox: "INBOX", Plan: plan},
		{Mailbox: "Sent", Plan: &engine.Plan{}},
	}}}
	if code := g.printResults(res, SyncOptions{DryRun: true}); code != exitOK {
		t.Errorf("exit %d, want 0", code)
	}
	want := "work:INBOX:\n  copy far → near: 1 message (far UIDs 7, 100 B)\n"
	if out.String() != want {
		t.Errorf("-q --dry-run printed:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	res[0].Mailboxes = res[0].Mailboxes[1:]
	g.printResults(res, SyncOptions{DryRun: true})
	if out.Len() != 0 {
		t.Errorf("-q --dry-run with nothing to do printed %q", out.String())
	}
}

// The summary counts mailboxes with errors, not errors: a mailbox whose
// stderr line says "3 errors, the first: ..." is one mailbox with errors.
// A run interrupted while connecting says it was interrupted, on stderr
// without the bare "context canceled", and in the summary instead of a
// reassuring count of none.
func TestSummarySaysWhatItCounts(t *testing.T) {
	var out, errb bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errb}
	res := []engine.ChannelResult{{Channel: "demo", Mailboxes: []engine.MailboxResult{
		{Mailbox: "INBOX", Err: errors.New("mailbox INBOX: 3 errors, the first: copying UID 4: boom")},
		{Mailbox: "Sent"},
	}}}
	if code := g.printResults(res, SyncOptions{}); code != exitFailure {
		t.Errorf("exit %d, want %d", code, exitFailure)
	}
	if !strings.HasSuffix(out.String(), ", 1 mailbox with errors\n") {
		t.Errorf("summary after one mailbox with 3 errors: %q", out.String())
	}

	out.Reset()
	errb.Reset()
	res = []engine.ChannelResult{{Channel: "demo",
		Err: fmt.Errorf("channel demo: listing mailboxes of the far side: imap.demo: dial tcp: %w", context.Canceled)}}
	if code := g.printResults(res, SyncOptions{}); code != exitInterrupted {
		t.Errorf("interrupted while connecting: exit %d, want %d", code, exitInterrupted)
	}
	if want := "quixysync: channel demo: interrupted; what was done is kept, and the next run goes on from there\n"; errb.String() != want {
		t.Errorf("interrupted while connecting, stderr %q, want %q", errb.String(), want)
	}
	if !strings.HasSuffix(out.String(), ", created 0 mailboxes, interrupted\n") {
		t.Errorf("interrupted while connecting, summary %q: want it to end with \"interrupted\"", out.String())
	}

	out.Reset()
	errb.Reset()
	res = []engine.ChannelResult{{Channel: "demo", Err: errors.New("channel demo: imap.demo: login refused")}}
	if code := g.printResults(res, SyncOptions{}); code != exitFailure {
		t.Errorf("failed login: exit %d, want %d", code, exitFailure)
	}
	if !strings.HasSuffix(out.String(), ", created 0 mailboxes, channel failed\n") {
		t.Errorf("failed login, summary %q", out.String())
	}
}

// An interrupted run says so once per channel, not once per mailbox it cut
// short, and does not count those as errors; a real error still shows.
func TestInterruptedSaysSoOnce(t *testing.T) {
	var out, errb bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errb}
	stop := func(box string) error { return fmt.Errorf("mailbox %s: %w", box, engine.ErrStopped) }
	res := []engine.ChannelResult{{
		Channel: "work",
		Err:     fmt.Errorf("channel work: %w", engine.ErrStopped),
		Mailboxes: []engine.MailboxResult{
			{Mailbox: "INBOX", Err: stop("INBOX")},
			{Mailbox: "Sent", Err: errors.New("mailbox Sent: copying failed: disk full")},
			{Mailbox: "Trash", Err: stop("Trash")},
			{Mailbox: "Drafts"},
		},
	}}
	code := g.printResults(res, SyncOptions{})
	if code != exitInterrupted {
		t.Errorf("exit %d, want %d", code, exitInterrupted)
	}
	want := "quixysync: work:Sent: copying failed: disk full\n" +
		"quixysync: channel work: interrupted: 2 mailboxes not finished; what was done is kept, and the next run goes on from there\n"
	if errb.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errb.String(), want)
	}
	if !strings.Contains(out.String(), ", 1 mailbox with errors, 2 mailboxes interrupted") {
		t.Errorf("summary: %q", out.String())
	}
}

// A mailbox with an error that the interruption then cut short counts among
// the mailboxes not finished as well as among those with errors: the line
// README promises says how many were cut short, and it left that one out.
// With -v its line says it was interrupted, not "failed (see above)" with
// nothing above.
func TestInterruptedCountsMailboxesCutShortAfterAnError(t *testing.T) {
	var out, errb bytes.Buffer
	g := &globalOptions{stdout: &out, stderr: &errb, Verbose: true}
	res := []engine.ChannelResult{{
		Channel: "work",
		Err:     fmt.Errorf("channel work: %w", engine.ErrStopped),
		Mailboxes: []engine.MailboxResult{
			{Mailbox: "INBOX", Err: fmt.Errorf("mailbox INBOX: %w", engine.ErrStopped)},
			{Mailbox: "Sent", Err: errors.New("mailbox Sent: copying failed: refused"), Stopped: true},
		},
	}}
	if code := g.printResults(res, SyncOptions{}); code != exitInterrupted {
		t.Errorf("exit %d, want %d", code, exitInterrupted)
	}
	want := "quixysync: work:Sent: copying failed: refused\n" +
		"quixysync: channel work: interrupted: 2 mailboxes not finished; what was done is kept, and the next run goes on from there\n"
	if errb.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errb.String(), want)
	}
	if !strings.Contains(out.String(), "  work:INBOX: interrupted\n") {
		t.Errorf("-v line of an interrupted mailbox: %q", out.String())
	}
	if !strings.Contains(out.String(), ", 1 mailbox with errors, 2 mailboxes interrupted") {
		t.Errorf("summary: %q", out.String())
	}
}

// A local folder whose cur/ is missing while new/ holds mail: the dry run
// says it would copy that mail, and the real run does (it said "create the
// mailbox" and copied nothing before, while the real run copied).
func TestDryRunSeesFolderWithNewAlone(t *testing.T) {
	dir := isolate(t)
	cfg, far, near := maildirPair(t, dir, 1)
	mkMaildir(t, filepath.Join(far, "Odd"))
	writeFile(t, filepath.Join(near, "Odd", "new", "1700000000.M1P1.test"),
		"From: a@example.com\nSubject: odd\nMessage-ID: <odd@test>\n\nbody\n")
	out, stderr, code := run(t, "-c", cfg, "sync", "--all", "--dry-run", "-v")
	if code != exitOK || !strings.Contains(out, "mm (dry run): copied ←1 →1") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code = run(t, "-c", cfg, "sync", "--all")
	if code != exitOK || !strings.Contains(out, "mm: copied ←1 →1") {
		t.Fatalf("real run: exit %d\n%s%s", code, out, stderr)
	}
	if n := countFiles(t, filepath.Join(far, "Odd")); n != 1 {
		t.Fatalf("far Odd holds %d messages, want 1", n)
	}
}

// Two channels over one Maildir folder (an INBOX-only channel beside an
// all-mailboxes one, a common mbsync split) in one run: they take turns at
// the folder, as mbsync -a runs channels, instead of one failing on the
// other's state lock as if another run held it.
func TestOverlappingChannelsInOneRun(t *testing.T) {
	dir := isolate(t)
	cfg, far, near := maildirPair(t, dir, 3)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "\n[channel.inbox]\nfar = \"maildir.far\"\nnear = \"maildir.near\"\nmailboxes = [\"INBOX\"]\n")
	f.Close()
	for i := range 4 {
		writeFile(t, filepath.Join(far, "INBOX", "new", fmt.Sprintf("200%d.M%dP2.test", i, i)),
			fmt.Sprintf("From: a@example.com\nSubject: more %d\nMessage-ID: <more%d@test>\n\nbody\n", i, i))
		_, stderr, code := run(t, "-c", cfg, "sync", "--all")
		if code != exitOK {
			t.Fatalf("run %d: exit %d, want %d:\n%s", i, code, exitOK, stderr)
		}
		if n := countFiles(t, filepath.Join(near, "INBOX")); n != 4+i {
			t.Fatalf("run %d: near INBOX holds %d messages, want %d", i, n, 4+i)
		}
	}
}

// -q prints errors only, except the warnings a user must see once: a
// message skipped for max_size (never repeated by a later run) and patterns
// that match no mailbox (a run that does nothing). A plain success stays
// silent.
func TestQuietKeepsNotices(t *testing.T) {
	for _, tc := range []struct{ extra, want string }{
		{`mailboxes = ["INBX"]`, "match no mailbox"},
		{`max_size = "10"`, "over max_size not copied"},
		{``, ""},
	} {
		dir := isolate(t)
		cfg, _, _ := maildirPair(t, dir, 2)
		f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, tc.extra)
		f.Close()
		stdout, stderr, code := run(t, "-q", "-c", cfg, "sync", "--all")
		if code != exitOK {
			t.Fatalf("%s: exit %d", tc.extra, code)
		}
		if tc.want == "" {
			if stdout != "" || stderr != "" {
				t.Errorf("a plain success printed %q %q with -q", stdout, stderr)
			}
			continue
		}
		if !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "notice=") {
			t.Errorf("%s: -q printed %q, want the warning %q (without its marker)", tc.extra, stderr, tc.want)
		}
		// Read by a person (a cron mail): worded as the command's errors
		// are, without a time stamp or slog's level and msg keys.
		if !strings.HasPrefix(stderr, "quixysync: warning: ") || strings.Contains(stderr, "time=") || strings.Contains(stderr, "msg=") {
			t.Errorf("%s: the warning reads %q, want \"quixysync: warning: ...\"", tc.extra, stderr)
		}
	}
}

// list and check --connect interrupted while connecting say so, as sync
// does, not the connection's "context canceled"; exit status 130.
func TestListAndCheckInterrupted(t *testing.T) {
	dir := isolate(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never greets
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	cfg := writeFile(t, filepath.Join(dir, "s.toml"), fmt.Sprintf("[imap.work]\nhost = %q\nport = %s\ntls = \"none\"\nuser = \"me\"\npassword = \"secret\"\n[maildir.local]\npath = %q\n[channel.work]\nfar = \"imap.work\"\nnear = \"maildir.local\"\n", host, port, filepath.Join(dir, "Mail")))
	for _, args := range [][]string{{"list"}, {"check", "--connect"}, {"sync", "--all"}} {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		var out, errb bytes.Buffer
		code := execute(ctx, append([]string{"-c", cfg}, args...), &out, &errb)
		cancel()
		if code != exitInterrupted || strings.Contains(errb.String(), "context canceled") || !strings.Contains(errb.String(), "interrupted") {
			t.Errorf("%v: exit %d, stderr %q; want %d and a line saying it was interrupted", args, code, errb.String(), exitInterrupted)
		}
	}
}

// channelLockOf is where a run of the named channel of the config file at
// cfgPath takes its channel lock (it depends on where its states live).
func channelLockOf(t *testing.T, cfgPath, name string) string {
	t.Helper()
	cfg, err := channel.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ch, ok := cfg.Channels[name]
	if !ok {
		t.Fatalf("no channel %s in %s", name, cfgPath)
	}
	g := &globalOptions{stderr: io.Discard}
	far, near, err := g.openChannel(cfg, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer g.closeStores(far, near)
	path, err := engine.ChannelLockPath(channelSpec(ch, nil, far, near))
	if err != nil {
		t.Fatal(err)
	}
	return path
}
