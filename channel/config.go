// Package channel reads and validates quixysync's TOML configuration: IMAP and
// Maildir stores, the channels that pair them, and groups of channels.
package channel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// Config is a parsed and validated configuration file.
type Config struct {
	File     string
	IMAP     map[string]*IMAPStore
	Maildir  map[string]*MaildirStore
	Channels map[string]*Channel
	Groups   map[string]*Group
}

// IMAPStore is an [imap.NAME] table.
type IMAPStore struct {
	Name string // "work"; Ref() is "imap.work"
	Host string // "" with a tunnel that needs no TLS
	Port int
	TLS  string // "implicit" | "starttls" | "none"
	// Tunnel is a command (run by sh -c) whose standard input and output
	// carry the IMAP session instead of a TCP connection to Host:Port
	// (mbsync's Tunnel): "ssh -q host /usr/lib/dovecot/imap" is already
	// logged in (PREAUTH).
	Tunnel string
	User   string // "" with a tunnel whose server logs in by itself
	// Exactly one password source is set when Auth has a password mechanism.
	// (The literal is PasswordLiteral, not Password: Password is the method
	// that resolves whichever source is configured.)
	PasswordLiteral string   // password = "..."
	PasswordCmd     string   // password_cmd: run by sh -c, first line of stdout
	PasswordEnv     string   // password_env: name of an environment variable
	Auth            []string // lower-case: plain, login, xoauth2, oauthbearer; tried in order
	TokenCmd        string   // token_cmd, for xoauth2/oauthbearer
	CAFile          string   // expanded, absolute; "" = system roots only
	Connections     int      // 1..64
	Timeout         time.Duration
}

// TLS modes.
const (
	TLSImplicit = "implicit"
	TLSStartTLS = "starttls"
	TLSNone     = "none"
)

// Ref returns the store's reference as written in a channel: "imap.NAME".
func (s *IMAPStore) Ref() string { return "imap." + s.Name }

// Addr returns host:port for dialing, or says which tunnel is taken.
func (s *IMAPStore) Addr() string {
	if s.Tunnel != "" {
		return fmt.Sprintf("tunnel %q", s.Tunnel)
	}
	return net.JoinHostPort(s.Host, fmt.Sprint(s.Port))
}

// PasswordSource names the configured password key ("password",
// "password_cmd", "password_env"), or "" when the store uses tokens only.
func (s *IMAPStore) PasswordSource() string {
	switch {
	case s.PasswordCmd != "":
		return "password_cmd"
	case s.PasswordEnv != "":
		return "password_env"
	case s.PasswordLiteral != "":
		return "password"
	}
	return ""
}

// MaildirStore is a [maildir.NAME] table.
type MaildirStore struct {
	Name   string
	Path   string // expanded, absolute
	Inbox  string // expanded, absolute; default Path/INBOX
	Layout string // "verbatim" | "maildir++"
}

// Maildir layouts.
const (
	LayoutVerbatim  = "verbatim"
	LayoutMaildirPP = "maildir++"
)

// Ref returns "maildir.NAME".
func (s *MaildirStore) Ref() string { return "maildir." + s.Name }

// Sides is a set of channel sides, from none | far | near | both.
type Sides uint8

const (
	SideNone Sides = 0
	SideFar  Sides = 1 << engine.Far
	SideNear Sides = 1 << engine.Near
	SideBoth       = SideFar | SideNear
)

// Has reports whether side is in the set.
func (s Sides) Has(side engine.Side) bool { return s&(1<<side) != 0 }

// Array returns the set indexed by engine.Far / engine.Near.
func (s Sides) Array() [2]bool { return [2]bool{s.Has(engine.Far), s.Has(engine.Near)} }

func (s Sides) String() string {
	switch s {
	case SideNone:
		return "none"
	case SideFar:
		return "far"
	case SideNear:
		return "near"
	}
	return "both"
}

// Channel is a [channel.NAME] table.
type Channel struct {
	Name      string
	Far, Near string   // store references, "imap.NAME" / "maildir.NAME"; both exist
	Patterns  []string // mailboxes = [...]; default ["*"]
	Pull      engine.Ops
	Push      engine.Ops
	Create    Sides // default both
	Remove    Sides // default none
	Expunge   Sides // default none
	// CopyArrivalDate: INTERNALDATE <-> file mtime (default true).
	CopyArrivalDate bool
	MaxSize         int64 // bytes; 0 = no limit
	// StateDir is where the channel's state lives when the near store is not a
	// Maildir (a Maildir near side keeps state inside each folder). Expanded;
	// default $XDG_STATE_HOME/quixysync/NAME (~/.local/state/quixysync/NAME).
	StateDir string
}

// Group is a [group.NAME] table: a name for several channels.
type Group struct {
	Name     string
	Channels []string // existing channel names, without duplicates, in file order
}

// ChannelNames returns the channel names, sorted.
func (c *Config) ChannelNames() []string { return sortedKeys(c.Channels) }

// GroupNames returns the group names, sorted.
func (c *Config) GroupNames() []string { return sortedKeys(c.Groups) }

// Store finds a store by reference ("imap.NAME" or "maildir.NAME"); exactly
// one of the results is non-nil when err is nil.
func (c *Config) Store(ref string) (*IMAPStore, *MaildirStore, error) {
	kind, name, _ := strings.Cut(ref, ".")
	switch kind {
	case "imap":
		if s := c.IMAP[name]; s != nil {
			return s, nil, nil
		}
	case "maildir":
		if s := c.Maildir[name]; s != nil {
			return nil, s, nil
		}
	}
	return nil, nil, fmt.Errorf("no store %q in %s", ref, c.File)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// DefaultPath is $QUIXYSYNC_CONFIG if set, else
// $XDG_CONFIG_HOME/quixysync/config.toml, else ~/.config/quixysync/config.toml.
func DefaultPath() string {
	if p := os.Getenv("QUIXYSYNC_CONFIG"); p != "" {
		return p
	}
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "quixysync", "config.toml")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		// Load reports the relative path as missing, which says what to set.
		return filepath.Join(".config", "quixysync", "config.toml")
	}
	return filepath.Join(home, ".config", "quixysync", "config.toml")
}

// defaultStateDir is $XDG_STATE_HOME/quixysync/NAME, else
// ~/.local/state/quixysync/NAME.
// SplitState is two channels that sync the same two stores, the near one
// not a Maildir (so state_dir holds the state), with different state
// directories (the default is one per channel): a mailbox both select has
// two states that know nothing of each other's copies, and each channel
// copies the other's as new mail, every run. (Over a Maildir the state
// lives in the folder, which both share.) Msg says so and what to do.
type SplitState struct {
	A, B string // channel names, A < B
	Msg  string
}

// SplitStates returns every two channels that keep their states apart over
// the same stores (see SplitState).
func (c *Config) SplitStates() []SplitState {
	var out []SplitState
	names := c.ChannelNames()
	for i, a := range names {
		ca := c.Channels[a]
		if _, md, err := c.Store(ca.Near); err != nil || md != nil {
			continue
		}
		for _, b := range names[i+1:] {
			cb := c.Channels[b]
			if cb.Far == ca.Far && cb.Near == ca.Near && filepath.Clean(cb.StateDir) != filepath.Clean(ca.StateDir) {
				out = append(out, SplitState{A: a, B: b, Msg: fmt.Sprintf("channels %s and %s sync the same stores (%s to %s) but keep their states apart (%s, %s): "+
					"a mailbox both select would be copied again by each, as new mail, every run; give both the same state_dir, "+
					"or make sure their mailboxes do not overlap", a, b, ca.Far, ca.Near, ca.StateDir, cb.StateDir)})
			}
		}
	}
	return out
}

func defaultStateDir(name string) string {
	if x := os.Getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "quixysync", name)
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, ".local", "state", "quixysync", name)
}

// maxConfigSize bounds what Load reads: a configuration is a few KiB, and
// -c /dev/zero, a log or a mailbox given by mistake must not be read into
// memory for ever.
const maxConfigSize = 1 << 20

var errTooLarge = errors.New("file too large")

// readAtMost reads the file at path, or fails with errTooLarge past max
// bytes.
func readAtMost(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, errTooLarge
	}
	return data, nil
}

// Load reads, parses and validates the file. Every error is a *ConfigError,
// or an errors.Join of several sorted by line.
func Load(path string) (*Config, error) {
	if path == "" {
		return nil, &ConfigError{Msg: "no configuration file: pass -c FILE or set QUIXYSYNC_CONFIG"}
	}
	data, err := readAtMost(path, maxConfigSize)
	if errors.Is(err, errTooLarge) {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("is larger than %d KiB, so not a quixysync configuration; check -c and QUIXYSYNC_CONFIG", maxConfigSize>>10)}
	}
	if err != nil {
		msg := err.Error()
		var pe *os.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		switch {
		case errors.Is(err, os.ErrNotExist):
			msg += "; create it (quixysync.toml.example documents every key), or pass -c FILE / set QUIXYSYNC_CONFIG"
		case errors.Is(err, syscall.EISDIR):
			msg = "is a directory; give the configuration file itself, e.g. -c " + filepath.Join(path, "config.toml")
		case errors.Is(err, os.ErrPermission):
			msg = "cannot read: " + msg + "; make it readable by the user running quixysync (chmod u+r " + path + ")"
		default:
			msg = "cannot read: " + msg
		}
		return nil, &ConfigError{File: path, Msg: msg}
	}
	return Parse(path, data)
}
