package demo

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ConfigName is the file the demo writes into its directory.
const ConfigName = "quixysync.toml"

// Channel is the name of the demo's channel.
const Channel = "demo"

// WriteConfig writes DIR/quixysync.toml: an IMAP store for the server, a
// Maildir store at mailDir, and channel "demo" syncing everything both ways.
// It returns the file's path. The demo's closing words tell the user to edit
// that file into a real configuration, so a file there is replaced only when
// it is one an earlier demo wrote and nobody changed (a re-run after removing
// DIR/Mail); any other is left alone and a *ConfigExistsError returned.
func WriteConfig(dir, mailDir string, s *Server) (string, error) {
	path := filepath.Join(dir, ConfigName)
	text := configText(path, mailDir, s.Host, s.Port, s.User, s.Password)
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// O_EXCL: a file that appeared since is someone's, not ours to replace.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return "", &ConfigExistsError{Path: path}
		}
		if err != nil {
			return "", fmt.Errorf("demo: write config: %w", err)
		}
		_, err = f.WriteString(text)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("demo: write config: %w", err)
		}
		return path, nil
	case err != nil:
		return "", fmt.Errorf("demo: read %s before writing it: %w", path, err)
	case !ownConfig(old, path, mailDir, s):
		return "", &ConfigExistsError{Path: path}
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("demo: write config: %w", err)
	}
	return path, nil
}

// ConfigExistsError is WriteConfig refusing to replace a file the demo did
// not write, or that was changed since.
type ConfigExistsError struct{ Path string }

func (e *ConfigExistsError) Error() string {
	return fmt.Sprintf("%s exists and is not the file an earlier demo wrote (or was changed since), so it was left alone; "+
		"give the demo another DIR, or move that file away first", e.Path)
}

// ownConfig says whether old is byte for byte what a demo run with server
// s's account would have written to path. Each run's server listens on a new
// random port, the one thing that differs between two runs' files, so the
// port is taken from old.
func ownConfig(old []byte, path, mailDir string, s *Server) bool {
	for _, line := range strings.Split(string(old), "\n") {
		v, ok := strings.CutPrefix(line, "port = ")
		if !ok {
			continue
		}
		port, err := strconv.Atoi(v)
		return err == nil && string(old) == configText(path, mailDir, s.Host, port, s.User, s.Password)
	}
	return false
}

func configText(path, mailDir, host string, port int, user, password string) string {
	return fmt.Sprintf(`# Written by "quixysync demo". Use it with: quixysync -c %[1]s COMMAND
#
# To sync a real account instead of the demo server, change the [imap.demo]
# store: host, port and tls (implicit on port 993, or starttls on 143), user,
# and replace password with password_cmd (e.g. "pass show mail/work") so no
# password sits in this file. Then run
#   quixysync -c %[1]s list
# to see the account's mailboxes, and
#   quixysync -c %[1]s sync --all
# to sync them into the Maildir below.

[imap.demo]
host = %[2]s
port = %[3]d
tls = "none"        # plain TCP: only acceptable because the demo server is on loopback
user = %[4]s
password = %[5]s

[maildir.demo]
path = %[6]s

[channel.demo]
far = "imap.demo"
near = "maildir.demo"
mailboxes = ["*"]
create = "both"
expunge = "both"
`, path, tomlString(host), port, tomlString(user), tomlString(password), tomlString(mailDir))
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// MarkSeen marks one unseen message of the Maildir folder dir as seen, the
// way a mail client does: by renaming its file into cur/ with S added to its
// flags (":2,S" when it had none). It returns the new path.
func MarkSeen(dir string) (string, error) {
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return "", fmt.Errorf("demo: mark seen in %s: %w", dir, err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || strings.HasPrefix(name, ".") {
				continue
			}
			base, flags, _ := strings.Cut(name, ":2,")
			if strings.Contains(flags, "S") {
				continue
			}
			newName := base + ":2," + addFlag(flags, 'S')
			from := filepath.Join(dir, sub, name)
			to := filepath.Join(dir, "cur", newName)
			if err := os.Rename(from, to); err != nil {
				return "", fmt.Errorf("demo: mark seen: %w", err)
			}
			return to, nil
		}
	}
	return "", fmt.Errorf("demo: mark seen: no unseen message in %s", dir)
}

// addFlag inserts a flag letter keeping the letters in ASCII order, as the
// Maildir convention requires.
func addFlag(flags string, c byte) string {
	b := []byte(flags + string(c))
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}

// Deliver writes a message into the Maildir folder dir the way a mail client
// files a sent message: to tmp/, then renamed into new/. It returns the path.
func Deliver(dir string, raw []byte) (string, error) {
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	if host == "" {
		host = "localhost"
	}
	name := strconv.FormatInt(time.Now().Unix(), 10) + ".P" + strconv.Itoa(os.Getpid()) + "Qdemo." + host
	tmp := filepath.Join(dir, "tmp", name)
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return "", fmt.Errorf("demo: deliver to %s: %w", dir, err)
	}
	dst := filepath.Join(dir, "new", name)
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("demo: deliver to %s: %w", dir, err)
	}
	return dst, nil
}

// Folder is one Maildir folder found under a root.
type Folder struct {
	Name     string // relative to the root, "/" separated
	Messages int
}

// Folders lists the Maildir folders (directories with cur/ and new/) under
// root, with their message counts, sorted by name. Dot-directories (the
// engine's state, .notmuch, ...) are not folders.
func Folders(root string) ([]Folder, error) {
	var out []Folder
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && strings.HasPrefix(name, ".") {
			return fs.SkipDir
		}
		if name == "cur" || name == "new" || name == "tmp" {
			if isMaildir(filepath.Dir(path)) {
				return fs.SkipDir
			}
		}
		if !isMaildir(path) {
			return nil
		}
		n := 0
		for _, sub := range []string{"cur", "new"} {
			entries, err := os.ReadDir(filepath.Join(path, sub))
			if err != nil {
				return err
			}
			for _, e := range entries {
				if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					n++
				}
			}
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		out = append(out, Folder{Name: filepath.ToSlash(rel), Messages: n})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("demo: list folders of %s: %w", root, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// PrintTree prints the folders under root as an indented tree with message
// counts; intermediate directories that are not folders appear without one.
func PrintTree(w io.Writer, root string) error {
	folders, err := Folders(root)
	if err != nil {
		return err
	}
	if len(folders) == 0 {
		fmt.Fprintf(w, "%s: no folders\n", root)
		return nil
	}
	fmt.Fprintf(w, "%s/\n", root)
	printed := map[string]bool{}
	width := 0
	for _, f := range folders {
		parts := strings.Split(f.Name, "/")
		if n := 2*len(parts) + utf8.RuneCountInString(parts[len(parts)-1]); n > width {
			width = n
		}
	}
	for _, f := range folders {
		parts := strings.Split(f.Name, "/")
		for i := 0; i < len(parts)-1; i++ {
			dir := strings.Join(parts[:i+1], "/")
			if !printed[dir] {
				printed[dir] = true
				fmt.Fprintf(w, "%s%s/\n", strings.Repeat("  ", i+1), parts[i])
			}
		}
		printed[f.Name] = true
		label := strings.Repeat("  ", len(parts)) + parts[len(parts)-1]
		pad := width - utf8.RuneCountInString(label)
		if pad < 0 {
			pad = 0
		}
		fmt.Fprintf(w, "%s%s  %s\n", label, strings.Repeat(" ", pad), plural(f.Messages, "message"))
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

// EmptyOrMissing reports whether dir does not exist or holds nothing.
func EmptyOrMissing(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return len(entries) == 0, nil
}
