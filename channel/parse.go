package channel

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"

	"github.com/quixysync/quixysync/engine"
)

// Valid keys per table, in the order the error messages list them.
var (
	imapKeys = []string{"host", "port", "tunnel", "tls", "user", "password", "password_cmd", "password_env",
		"auth", "token_cmd", "ca_file", "connections", "timeout"}
	maildirKeys = []string{"path", "inbox", "layout"}
	channelKeys = []string{"far", "near", "mailboxes", "pull", "push", "create", "remove", "expunge",
		"copy_arrival_date", "max_size", "state_dir"}
	groupKeys = []string{"channels"}
	topTables = []string{"imap", "maildir", "channel", "group"}
)

// kindNoun and kindKeys describe a [kind.NAME] table for a bare [kind]
// left empty: what it defines, and the keys it needs.
var (
	kindNoun = map[string]string{"imap": "an IMAP store", "maildir": "a Maildir store", "channel": "a channel", "group": "a group"}
	kindKeys = map[string]string{
		"imap":    examples["host"] + ", " + examples["user"] + " and " + examples["password_cmd"],
		"maildir": examples["path"],
		"channel": examples["far"] + " and " + examples["near"],
		"group":   examples["channels"],
	}
)

// examples are shown when a key has the wrong type, so the fix is a copy away.
var examples = map[string]string{
	"host":              `host = "imap.example.com"`,
	"port":              `port = 993`,
	"tunnel":            `tunnel = "ssh -q mail.example.com /usr/lib/dovecot/imap"`,
	"tls":               `tls = "implicit"`,
	"user":              `user = "me@example.com"`,
	"password":          `password = "secret"`,
	"password_cmd":      `password_cmd = "pass show mail/work"`,
	"password_env":      `password_env = "WORK_IMAP_PASSWORD"`,
	"auth":              `auth = ["plain", "login"]`,
	"token_cmd":         `token_cmd = "oama access me@example.com"`,
	"ca_file":           `ca_file = "~/.config/quixysync/work-ca.pem"`,
	"connections":       `connections = 4`,
	"timeout":           `timeout = "60s"`,
	"path":              `path = "~/Mail/work"`,
	"inbox":             `inbox = "~/Mail/work/INBOX"`,
	"layout":            `layout = "verbatim"`,
	"far":               `far = "imap.work"`,
	"near":              `near = "maildir.work"`,
	"mailboxes":         `mailboxes = ["*", "!Junk"]`,
	"pull":              `pull = ["new", "flags", "gone"]`,
	"push":              `push = ["new", "flags", "gone"]`,
	"create":            `create = "both"`,
	"remove":            `remove = "none"`,
	"expunge":           `expunge = "none"`,
	"copy_arrival_date": `copy_arrival_date = true`,
	"max_size":          `max_size = "25MB"`,
	"state_dir":         `state_dir = "~/.local/state/quixysync/work"`,
	"channels":          `channels = ["work", "home"]`,
}

// Parse parses and validates a configuration; path is used in messages and
// as the base for relative paths in the file.
func Parse(path string, data []byte) (*Config, error) {
	d := &decoder{file: path, reported: map[string]bool{}}
	base := filepath.Dir(path)
	if abs, err := filepath.Abs(base); err == nil {
		base = abs
	}
	d.baseDir = base

	var top map[string]toml.Primitive
	md, err := toml.Decode(string(data), &top)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if strings.Contains(pe.Message, "table name") && strings.Contains(pe.Message, `'\n'`) && line > 1 {
				// toml v1.6.0 reports a table header that ends too early
				// on the line after it.
				line--
			}
			msg := syntaxMessage(pe.Message)
			if k := secretKeyOn(data, pe.Position.Line); k != "" && !aboutKey(pe.Message) {
				// The parser quotes what it found there: the secret itself
				// (an mbsync user's unquoted Pass, say).
				msg = fmt.Sprintf("TOML syntax error in the value of %s (not shown here: it may be a secret); write it in double quotes, like %s", k, examples[k])
			}
			return nil, &ConfigError{File: path, Line: line, Msg: msg}
		}
		return nil, &ConfigError{File: path, Msg: "cannot parse: " + err.Error()}
	}
	d.md = &md
	cfg := &Config{
		File:     path,
		IMAP:     map[string]*IMAPStore{},
		Maildir:  map[string]*MaildirStore{},
		Channels: map[string]*Channel{},
		Groups:   map[string]*Group{},
	}

	// Decode each kind of table first; channels refer to stores and groups to
	// channels, so those cross-checks run once everything is known.
	tables := map[string]map[string]*table{}
	for _, kind := range sortedKeys(top) {
		if !contains(topTables, kind) {
			d.errorf(d.line([]string{kind}, top[kind]), []string{kind},
				"unknown table [%s]; quixysync knows [imap.NAME], [maildir.NAME], [channel.NAME] and [group.NAME]%s",
				kind, didYouMean(kind, topTables))
			continue
		}
		tables[kind] = d.namedTables(kind, top[kind])
	}
	for name, t := range tables["imap"] {
		if s := d.imapStore(name, t); s != nil {
			cfg.IMAP[name] = s
		}
	}
	for name, t := range tables["maildir"] {
		if s := d.maildirStore(name, t); s != nil {
			cfg.Maildir[name] = s
		}
	}
	for name, t := range tables["channel"] {
		if c := d.channel(cfg, name, t); c != nil {
			cfg.Channels[name] = c
		}
	}
	for name, t := range tables["group"] {
		if g := d.group(cfg, name, t, tables["channel"]); g != nil {
			cfg.Groups[name] = g
		}
	}

	// Anything the typed pass did not consume, and that is not below a key
	// already reported, is unknown.
	for _, k := range md.Undecoded() {
		if d.coveredByReport(k) {
			continue
		}
		d.errorf(0, k, "unknown key; remove it (see quixysync.toml.example for every key)")
	}
	if err := joinErrors(d.errs); err != nil {
		return nil, err
	}
	return cfg, nil
}

// syntaxMessage adds a fix to the TOML library's description.
// secretKeyOn returns the key on line n (1-based) of data when it is one
// whose value may be a secret (password, or a password pasted into
// password_env), else "".
func secretKeyOn(data []byte, n int) string {
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	key, _, ok := strings.Cut(lines[n-1], "=")
	if !ok {
		return ""
	}
	switch k := strings.Trim(strings.TrimSpace(key), `"'`); k {
	case "password", "password_env":
		return k
	}
	return ""
}

// aboutKey says whether the TOML library's message is about the key or
// table itself (given twice), not what follows the "=": it quotes only the
// key's name then, so it can be shown even on a secret's line.
func aboutKey(m string) bool {
	return strings.Contains(m, "already been defined")
}

func syntaxMessage(m string) string {
	hint := "fix the TOML syntax on this line: strings need double quotes, tables are written [imap.NAME], one key = value per line"
	if strings.Contains(m, "already been defined") {
		hint = "each key and table may appear only once; remove or rename the repeated one"
	}
	return "TOML syntax error: " + strings.TrimSuffix(m, ".") + " (" + hint + ")"
}

type decoder struct {
	file     string
	baseDir  string
	md       *toml.MetaData
	errs     []*ConfigError
	reported map[string]bool // dotted keys with an error, to not repeat their children
}

func (d *decoder) errorf(line int, key []string, format string, args ...any) {
	k := dotted(key)
	d.reported[k] = true
	d.errs = append(d.errs, &ConfigError{File: d.file, Line: line, Key: k, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) coveredByReport(k toml.Key) bool {
	for i := 1; i <= len(k); i++ {
		if d.reported[dotted(k[:i])] {
			return true
		}
	}
	return false
}

// lineProbe learns the line of a key from the TOML library itself: an
// Unmarshaler that fails makes the decoder return a ParseError positioned at
// the key being decoded (toml v1.6.0 keeps key positions but does not export
// them otherwise). For a multi-line string value the library reports the
// line where the value ends.
type lineProbe struct{}

var errProbe = errors.New("line probe")

func (*lineProbe) UnmarshalTOML(any) error { return errProbe }

// line returns the line of the key at path, whose value is prim. Tables that
// only exist implicitly (the "imap" of [imap.work], "a" of a.b = 1) have no
// position; they get the first line of anything inside them.
func (d *decoder) line(path []string, prim toml.Primitive) int {
	var p lineProbe
	err := d.md.PrimitiveDecode(prim, &p)
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.Position.Line > 0 {
		return pe.Position.Line
	}
	var sub map[string]toml.Primitive
	if d.md.Type(path...) == "" || d.md.Type(path...) == "Hash" {
		if d.md.PrimitiveDecode(prim, &sub) == nil {
			best := 0
			for k, v := range sub {
				if l := d.line(append(append([]string(nil), path...), k), v); l > 0 && (best == 0 || l < best) {
					best = l
				}
			}
			return best
		}
	}
	return 0
}

// table is one [kind.NAME] table being decoded.
type table struct {
	d    *decoder
	path []string
	line int
	keys map[string]toml.Primitive
}

// namedTables splits [kind.NAME] tables out of the value of kind.
func (d *decoder) namedTables(kind string, prim toml.Primitive) map[string]*table {
	out := map[string]*table{}
	kindPath := []string{kind}
	if typ := d.md.Type(kind); typ != "" && typ != "Hash" {
		d.errorf(d.line(kindPath, prim), kindPath,
			"must be tables written [%s.NAME], found %s", kind, typeName(typ))
		return out
	}
	var named map[string]toml.Primitive
	if err := d.md.PrimitiveDecode(prim, &named); err != nil {
		d.errorf(d.line(kindPath, prim), kindPath, "must be tables written [%s.NAME]", kind)
		return out
	}
	if len(named) == 0 {
		// Only a table written bare and left empty ([imap], imap = {})
		// gets here: [imap.work] makes imap hold work. It defines nothing,
		// and passed check as "OK, 0 IMAP stores" when its keys were
		// meant to follow, or to be under [imap.NAME].
		d.errorf(d.line(kindPath, prim), kindPath,
			"[%s] is empty and defines nothing; %s is a table [%s.NAME] with its keys under it, like [%s.work] with %s; write that, or remove [%s]",
			kind, kindNoun[kind], kind, kind, kindKeys[kind], kind)
		return out
	}
	for _, name := range sortedKeys(named) {
		path := []string{kind, name}
		v := named[name]
		line := d.line(path, v)
		switch typ := d.md.Type(path...); typ {
		case "Hash", "":
		case "ArrayHash":
			d.errorf(line, path, "write a single table [%s.%s], not [[%s.%s]]", kind, name, kind, name)
			continue
		default:
			d.errorf(line, path, "[%s] needs a name: write the keys under a table [%s.NAME], e.g. [%s.work] (found %s = %s)",
				kind, kind, kind, name, typeName(typ))
			continue
		}
		if err := validName(name); err != nil {
			d.errorf(line, path, "%s name %q %v", kind, name, err)
			continue
		}
		var keys map[string]toml.Primitive
		if err := d.md.PrimitiveDecode(v, &keys); err != nil {
			d.errorf(line, path, "must be a table [%s.%s]", kind, name)
			continue
		}
		out[name] = &table{d: d, path: path, line: line, keys: keys}
	}
	return out
}

// validName keeps names usable on the command line (CHANNEL:BOX,BOX) and
// unambiguous in store references.
func validName(name string) error {
	if name == "" {
		return errors.New("is empty; give the table a name")
	}
	for i, r := range name {
		ok := unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' ||
			(i > 0 && (r == '-' || r == '.' || r == '@' || r == '+'))
		if !ok {
			return errors.New(`is not allowed: use letters, digits and "_", "-", ".", "@", "+" (not first)`)
		}
	}
	return nil
}

func (t *table) keyPath(key string) []string {
	return append(append([]string(nil), t.path...), key)
}

func (t *table) has(key string) bool { _, ok := t.keys[key]; return ok }

// keyLine is the line of key, or of the table when the key is absent.
func (t *table) keyLine(key string) int {
	if v, ok := t.keys[key]; ok {
		if l := t.d.line(t.keyPath(key), v); l > 0 {
			return l
		}
	}
	return t.line
}

func (t *table) errorf(key string, format string, args ...any) {
	t.d.errorf(t.keyLine(key), t.keyPath(key), format, args...)
}

func (t *table) typeOf(key string) string { return t.d.md.Type(t.keyPath(key)...) }

func (t *table) wrongType(key, want string) {
	t.errorf(key, "must be %s, like %s; found %s", want, examples[key], typeName(t.typeOf(key)))
}

// str returns a string key; ok is false when absent or not a string (reported).
func (t *table) str(key string) (string, bool) {
	v, present := t.keys[key]
	if !present {
		return "", false
	}
	if t.typeOf(key) != "String" {
		t.wrongType(key, "a string in double quotes")
		return "", false
	}
	var s string
	if err := t.d.md.PrimitiveDecode(v, &s); err != nil {
		t.wrongType(key, "a string in double quotes")
		return "", false
	}
	return s, true
}

func (t *table) integer(key string) (int64, bool) {
	v, present := t.keys[key]
	if !present {
		return 0, false
	}
	var n int64
	if t.typeOf(key) != "Integer" || t.d.md.PrimitiveDecode(v, &n) != nil {
		t.wrongType(key, "a whole number without quotes")
		return 0, false
	}
	return n, true
}

func (t *table) boolean(key string) (bool, bool) {
	v, present := t.keys[key]
	if !present {
		return false, false
	}
	var b bool
	if t.typeOf(key) != "Bool" || t.d.md.PrimitiveDecode(v, &b) != nil {
		t.wrongType(key, "true or false (without quotes)")
		return false, false
	}
	return b, true
}

// strs returns an array of strings; an empty array gives a non-nil empty slice.
func (t *table) strs(key string) ([]string, bool) {
	v, present := t.keys[key]
	if !present {
		return nil, false
	}
	var raw []any
	if t.typeOf(key) != "Array" || t.d.md.PrimitiveDecode(v, &raw) != nil {
		t.wrongType(key, "an array of strings")
		return nil, false
	}
	out := make([]string, 0, len(raw))
	for i, e := range raw {
		s, ok := e.(string)
		if !ok {
			t.errorf(key, "element %d is %s; every element must be a string in double quotes, like %s",
				i+1, goTypeName(e), examples[key])
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// misspelt reports whether the table has an unknown key that suggest takes
// for one of keys.
func (t *table) misspelt(known []string, keys ...string) bool {
	for k := range t.keys {
		if !contains(known, k) && contains(keys, suggest(k, known)) {
			return true
		}
	}
	return false
}

// finish reports keys that this kind of table does not have.
func (t *table) finish(known []string) {
	for _, k := range sortedKeys(t.keys) {
		if contains(known, k) {
			continue
		}
		t.errorf(k, "unknown key in [%s.NAME]%s; valid keys: %s",
			t.path[0], didYouMean(k, known), strings.Join(known, ", "))
	}
}

func (d *decoder) imapStore(name string, t *table) *IMAPStore {
	defer t.finish(imapKeys)
	s := &IMAPStore{Name: name, TLS: TLSImplicit, Connections: 4, Timeout: 60 * time.Second}
	nerr := len(d.errs)

	if v, ok := t.str("tunnel"); ok {
		if strings.TrimSpace(v) == "" {
			t.errorf("tunnel", "is empty; write a command whose input and output are an IMAP session, like %s, or remove it to connect to host", examples["tunnel"])
		}
		s.Tunnel = v
		// The command is its own server to reach, often one already logged
		// in (PREAUTH), and the session is only as private as the command
		// makes it (ssh): no TLS unless asked for, one connection (one
		// login of ssh, one passphrase) unless more are asked for.
		s.TLS, s.Connections = TLSNone, 1
	}
	tunnel := t.has("tunnel")
	if h, ok := t.str("host"); ok {
		if err := checkHost(h); err != nil {
			t.errorf("host", "%v", err)
		}
		s.Host = h
	} else if !t.has("host") && !tunnel {
		t.errorf("host", "missing; add %s to [%s] (or a tunnel command: %s)", examples["host"], dotted(t.path), examples["tunnel"])
	}
	if v, ok := t.str("tls"); ok {
		switch strings.ToLower(v) {
		case TLSImplicit, TLSStartTLS, TLSNone:
			s.TLS = strings.ToLower(v)
		default:
			t.errorf("tls", `%q is not a TLS mode; write "implicit" (TLS from the start, port 993), "starttls" (port 143, upgraded) or "none" (only towards this machine)`, v)
		}
	}
	s.Port = 993
	if s.TLS != TLSImplicit {
		s.Port = 143
	}
	switch {
	case tunnel && t.has("port"):
		t.errorf("port", "has no effect with tunnel (the command makes the connection); remove it")
	case tunnel && s.TLS != TLSNone && s.Host == "" && !t.has("host"):
		t.errorf("tls", "%q over a tunnel checks the server's certificate against host: add %s (the name the certificate is for), or remove tls", s.TLS, examples["host"])
	}
	if n, ok := t.integer("port"); ok && !tunnel {
		if n < 1 || n > 65535 {
			t.errorf("port", "%d is not a TCP port; use 1..65535 (993 for tls = \"implicit\", 143 otherwise), or remove it for the default", n)
		} else {
			s.Port = int(n)
		}
	}
	if u, ok := t.str("user"); ok {
		if strings.TrimSpace(u) == "" {
			t.errorf("user", "is empty; write the login name, like %s", examples["user"])
		}
		s.User = u
	} else if !t.has("user") && !tunnel {
		t.errorf("user", "missing; add %s to [%s]", examples["user"], dotted(t.path))
	}

	s.Auth = []string{"plain", "login"}
	authErrs := len(d.errs)
	if list, ok := t.strs("auth"); ok {
		s.Auth = nil
		if len(list) == 0 {
			t.errorf("auth", `is empty; list mechanisms to try, like auth = ["plain", "login"] or auth = ["xoauth2"], or remove it for the default (plain, then login)`)
		}
		for _, m := range list {
			lm := strings.ToLower(strings.TrimSpace(m))
			switch lm {
			case "plain", "login", "xoauth2", "oauthbearer":
				if !contains(s.Auth, lm) {
					s.Auth = append(s.Auth, lm)
				}
			default:
				t.errorf("auth", "unknown mechanism %q; use plain, login, xoauth2 or oauthbearer", m)
			}
		}
	}
	needPassword, needToken := false, false
	for _, m := range s.Auth {
		if m == "plain" || m == "login" {
			needPassword = true
		} else {
			needToken = true
		}
	}

	var sources []string
	if v, ok := t.str("password"); ok {
		if v == "" {
			t.errorf("password", `is empty; write the password, or better use password_cmd = "pass show ..." so it is not stored in this file`)
		} else if strings.ContainsAny(v, "\r\n\x00") {
			t.errorf("password", "contains a line break or NUL character, which cannot be sent to the server; remove it")
		}
		s.PasswordLiteral = v
		sources = append(sources, "password")
	}
	if v, ok := t.str("password_cmd"); ok {
		if strings.TrimSpace(v) == "" {
			t.errorf("password_cmd", "is empty; write a command that prints the password, like %s", examples["password_cmd"])
		}
		s.PasswordCmd = v
		sources = append(sources, "password_cmd")
	}
	if v, ok := t.str("password_env"); ok {
		switch {
		case validEnvName(v):
		case strings.HasPrefix(v, "$") && validEnvName(strings.Trim(v[1:], "{}")):
			t.errorf("password_env", "%q is not an environment variable name; write just the name, like %s (no $)", v, examples["password_env"])
		default:
			// Not quoted back: it may be the password itself, pasted here.
			t.errorf("password_env", "is not an environment variable name (letters, digits and _; not shown here, in case it is a password); write just the name, like %s (no $)", examples["password_env"])
		}
		s.PasswordEnv = v
		sources = append(sources, "password_env")
	}
	if v, ok := t.str("token_cmd"); ok {
		if strings.TrimSpace(v) == "" {
			t.errorf("token_cmd", "is empty; write a command that prints an OAuth2 access token, like %s", examples["token_cmd"])
		}
		s.TokenCmd = v
	}
	if len(sources) > 1 {
		// Point at the later key: that is usually the one added by mistake.
		sort.Slice(sources, func(i, j int) bool { return t.keyLine(sources[i]) < t.keyLine(sources[j]) })
		t.errorf(sources[len(sources)-1], "%s are all set; keep exactly one of password, password_cmd, password_env",
			strings.Join(sources, " and "))
	}
	authOK := len(d.errs) == authErrs && !(t.has("auth") && len(s.Auth) == 0)
	switch {
	case !authOK:
		// Which password or token is needed depends on a valid auth list.
	case needPassword && len(sources) == 0 && !t.has("password") && !t.has("password_cmd") && !t.has("password_env") && !tunnel &&
		!t.misspelt(imapKeys, "password", "password_cmd", "password_env"):
		// (A misspelt password key is reported as an unknown key with the
		// right spelling; "no password source" beside it would only confuse.)
		t.d.errorf(t.line, t.keyPath("password"),
			`no password source; add exactly one of %s, %s or %s (or use auth = ["xoauth2"] with token_cmd)`,
			examples["password_cmd"], examples["password_env"], examples["password"])
	case !needPassword && len(sources) > 0:
		t.errorf(sources[0], "is not used: auth = [%s] takes token_cmd, not a password; remove %s, or add \"plain\" to auth",
			strings.Join(s.Auth, ", "), sources[0])
	}
	if authOK && needToken && !t.has("token_cmd") {
		t.errorf("auth", "xoauth2/oauthbearer need a token: add %s (a command that prints an OAuth2 access token)", examples["token_cmd"])
	}
	if authOK && !needToken && t.has("token_cmd") {
		t.errorf("token_cmd", `is only used by auth = ["xoauth2"] or ["oauthbearer"]; add one of them to auth, or remove token_cmd`)
	}
	if tunnel && s.User == "" && len(sources) > 0 {
		t.errorf(sources[0], "has no user to log in as: add %s, or remove %s if the tunnel's server logs in by itself (PREAUTH)", examples["user"], sources[0])
	}
	if s.TLS == TLSNone && s.Host != "" && !isLoopback(s.Host) && !tunnel {
		t.errorf("tls", `"none" would send the password or token unencrypted to %s; use tls = "implicit" (port 993) or "starttls" (port 143). Plain TCP is allowed only towards 127.0.0.1, ::1 or localhost`, s.Host)
	}

	if v, ok := t.str("ca_file"); ok {
		p, err := expandPath(v, d.baseDir)
		if err != nil {
			t.errorf("ca_file", "%v", err)
		} else if fi, err := os.Stat(p); err != nil {
			t.errorf("ca_file", "cannot read %s: %v; point ca_file at a PEM file with the server's CA or certificate", p, errUnwrapPath(err))
		} else if fi.IsDir() {
			t.errorf("ca_file", "%s is a directory; point ca_file at a PEM file", p)
		} else if err := checkPEM(p); err != nil {
			t.errorf("ca_file", "%v", err)
		}
		s.CAFile = p
	}
	if n, ok := t.integer("connections"); ok {
		if n < 1 || n > 64 {
			t.errorf("connections", "%d is out of range; use 1..64 (default 4)", n)
		} else {
			s.Connections = int(n)
		}
	}
	if t.has("timeout") {
		if v, ok := t.str("timeout"); ok {
			dur, err := time.ParseDuration(strings.TrimSpace(v))
			switch {
			case err != nil:
				t.errorf("timeout", `%q is not a duration; write a number with a unit, like timeout = "60s" or "2m"`, v)
			case dur < time.Second:
				t.errorf("timeout", `%q is too short; use at least "1s" (default "60s")`, v)
			default:
				s.Timeout = dur
			}
		}
	}
	if len(d.errs) > nerr {
		return nil
	}
	return s
}

// defaultInbox is where the INBOX lives when inbox is not set: path/INBOX,
// but the root itself for the maildir++ layout (as Courier, Dovecot and
// mbsync's SubFolders Maildir++ have it: path/cur holds the INBOX), unless
// an earlier quixysync already keeps it in path/INBOX (the default before
// 2026-11-27), which then stays where it is.
func defaultInbox(path, layout string) string {
	old := filepath.Join(path, "INBOX")
	if layout != LayoutMaildirPP {
		return old
	}
	if fi, err := os.Stat(filepath.Join(old, "cur")); err == nil && fi.IsDir() {
		return old
	}
	return path
}

func (d *decoder) maildirStore(name string, t *table) *MaildirStore {
	defer t.finish(maildirKeys)
	s := &MaildirStore{Name: name, Layout: LayoutVerbatim}
	nerr := len(d.errs)
	if v, ok := t.str("path"); ok {
		p, err := expandPath(v, d.baseDir)
		if err != nil {
			t.errorf("path", "%v", err)
		}
		s.Path = p
	} else if !t.has("path") {
		t.errorf("path", "missing; add %s to [%s] (the root of the folder tree)", examples["path"], dotted(t.path))
	}
	if v, ok := t.str("inbox"); ok {
		p, err := expandPath(v, d.baseDir)
		if err != nil {
			t.errorf("inbox", "%v", err)
		}
		s.Inbox = p
	}
	if v, ok := t.str("layout"); ok {
		switch strings.ToLower(v) {
		case LayoutVerbatim, LayoutMaildirPP:
			s.Layout = strings.ToLower(v)
		default:
			t.errorf("layout", `%q is not a layout; write "verbatim" (a/b is path/a/b) or "maildir++" (a/b is path/.a.b)`, v)
		}
	}
	if !t.has("inbox") && s.Path != "" {
		s.Inbox = defaultInbox(s.Path, s.Layout)
	}
	if len(d.errs) > nerr {
		return nil
	}
	return s
}

func (d *decoder) channel(cfg *Config, name string, t *table) *Channel {
	defer t.finish(channelKeys)
	c := &Channel{Name: name, Patterns: []string{"*"}, Pull: engine.OpAll, Push: engine.OpAll,
		Create: SideBoth, Remove: SideNone, Expunge: SideNone, CopyArrivalDate: true}
	nerr := len(d.errs)

	c.Far = d.storeRef(cfg, t, "far")
	c.Near = d.storeRef(cfg, t, "near")
	if c.Far != "" && c.Far == c.Near {
		t.errorf("near", "is the same store as far (%s); a channel pairs two different stores", c.Far)
	} else if msg := nestedMaildirs(cfg, c.Far, c.Near); msg != "" {
		t.errorf("near", "%s", msg)
	}
	if list, ok := t.strs("mailboxes"); ok {
		if len(list) == 0 {
			t.errorf("mailboxes", `is empty and would select nothing; list patterns like mailboxes = ["*", "!Junk"], or remove it to select every mailbox`)
		}
		allExclude, bad := len(list) > 0, false
		for _, p := range list {
			if err := checkPattern(p); err != nil {
				t.errorf("mailboxes", "%v", err)
				bad = true
			}
			allExclude = allExclude && strings.HasPrefix(p, "!")
		}
		if allExclude && !bad {
			// A name no pattern matches is not synced: only exclusions select nothing.
			t.errorf("mailboxes", `every pattern excludes (starts with "!"), so no mailbox would be synced; put "*" first to sync everything else, like mailboxes = ["*", %q]`, list[0])
		}
		c.Patterns = list
	}
	c.Pull = opsKey(t, "pull", c.Pull)
	c.Push = opsKey(t, "push", c.Push)
	c.Create = sidesKey(t, "create", c.Create)
	c.Remove = sidesKey(t, "remove", c.Remove)
	c.Expunge = sidesKey(t, "expunge", c.Expunge)
	if b, ok := t.boolean("copy_arrival_date"); ok {
		c.CopyArrivalDate = b
	}
	if t.has("max_size") {
		switch t.typeOf("max_size") {
		case "Integer":
			if n, ok := t.integer("max_size"); ok {
				if n < 0 {
					t.errorf("max_size", "%d is negative; %s", n, sizeForms)
				}
				c.MaxSize = n
			}
		case "String":
			if v, ok := t.str("max_size"); ok {
				n, err := ParseSize(v)
				if err != nil {
					t.errorf("max_size", "%v", err)
				}
				c.MaxSize = n
			}
		default:
			t.errorf("max_size", "must be a size like max_size = \"25MB\" or a number of bytes; found %s; %s",
				typeName(t.typeOf("max_size")), sizeForms)
		}
	}
	c.StateDir = defaultStateDir(name)
	if v, ok := t.str("state_dir"); ok && strings.HasPrefix(c.Near, "maildir.") {
		// Accepting it would let the user believe the state moved there.
		t.errorf("state_dir", "has no effect: near is %s, a Maildir, and each of its folders keeps its own state (.quixysync-state); "+
			"state_dir is only for a channel whose near side is IMAP, so remove it", c.Near)
	} else if ok {
		p, err := expandPath(v, d.baseDir)
		if err != nil {
			t.errorf("state_dir", "%v", err)
		}
		c.StateDir = p
	}
	if len(d.errs) > nerr {
		return nil
	}
	return c
}

// nestedMaildirs says what is wrong when far and near are Maildir stores one
// of which lies inside the other (near path = "~/Mail", far path =
// "~/Mail/backup"): each would list the other's folders as its own, and every
// run would copy the whole tree one level deeper (backup/backup/INBOX, ...).
func nestedMaildirs(cfg *Config, farRef, nearRef string) string {
	_, far, _ := cfg.Store(farRef)
	_, near, _ := cfg.Store(nearRef)
	if far == nil || near == nil {
		return ""
	}
	for _, a := range []*MaildirStore{far, near} {
		b := near
		if a == near {
			b = far
		}
		// b's folder tree: its path, and an inbox outside it (verbatim:
		// its subfolders are b's INBOX/... folders).
		trees := []string{b.Path}
		if b.Layout == LayoutVerbatim && b.Inbox != "" && !within(b.Path, b.Inbox) {
			trees = append(trees, b.Inbox)
		}
		for _, p := range []string{a.Path, a.Inbox} {
			for _, tree := range trees {
				if p != "" && within(tree, p) {
					return fmt.Sprintf("%s (path %s) and %s (path %s) overlap: %s is inside %s's folder tree (%s), so each would sync the other's folders as its own; give the two stores separate directories",
						nearRef, near.Path, farRef, far.Path, p, b.Ref(), tree)
				}
			}
		}
	}
	if far.Inbox != "" && far.Inbox == near.Inbox {
		return fmt.Sprintf("%s and %s have the same inbox %s; give the two stores separate directories", nearRef, farRef, far.Inbox)
	}
	return ""
}

// within reports whether path p is root or lies below it (both clean and
// absolute).
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// storeRef validates "imap.NAME" / "maildir.NAME" and that the store exists.
func (d *decoder) storeRef(cfg *Config, t *table, key string) string {
	v, ok := t.str(key)
	if !ok {
		if !t.has(key) {
			t.errorf(key, `missing; add %s (a store: "imap.NAME" or "maildir.NAME")`, examples[key])
		}
		return ""
	}
	kind, name, found := strings.Cut(v, ".")
	if !found || name == "" || (kind != "imap" && kind != "maildir") {
		t.errorf(key, `%q is not a store reference; write "imap.NAME" or "maildir.NAME", like %s%s`,
			v, examples[key], storeList(cfg))
		return ""
	}
	exists := false
	if kind == "imap" {
		_, exists = cfg.IMAP[name]
	} else {
		_, exists = cfg.Maildir[name]
	}
	if !exists {
		if d.tableDefined(kind, name) {
			// The store has its own errors; do not add a confusing second one.
			return ""
		}
		t.errorf(key, "store %q is not defined; add a [%s] table or fix the name%s", v, v, storeList(cfg))
		return ""
	}
	return v
}

func (d *decoder) tableDefined(kind, name string) bool {
	return d.md.IsDefined(kind, name)
}

func storeList(cfg *Config) string {
	var refs []string
	for _, n := range sortedKeys(cfg.IMAP) {
		refs = append(refs, "imap."+n)
	}
	for _, n := range sortedKeys(cfg.Maildir) {
		refs = append(refs, "maildir."+n)
	}
	if len(refs) == 0 {
		return " (no store is defined without errors)"
	}
	return " (defined stores: " + strings.Join(refs, ", ") + ")"
}

func opsKey(t *table, key string, def engine.Ops) engine.Ops {
	list, ok := t.strs(key)
	if !ok {
		return def
	}
	var ops engine.Ops
	for _, w := range list {
		switch strings.ToLower(strings.TrimSpace(w)) {
		case "new":
			ops |= engine.OpNew
		case "flags":
			ops |= engine.OpFlags
		case "gone":
			ops |= engine.OpGone
		default:
			t.errorf(key, `unknown operation %q; use any of "new", "flags", "gone" (e.g. %s), or [] for nothing`, w, examples[key])
		}
	}
	return ops
}

func sidesKey(t *table, key string, def Sides) Sides {
	v, ok := t.str(key)
	if !ok {
		return def
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "none":
		return SideNone
	case "far":
		return SideFar
	case "near":
		return SideNear
	case "both":
		return SideBoth
	}
	t.errorf(key, `%q is not a side; write "none", "far", "near" or "both"`, v)
	return def
}

func (d *decoder) group(cfg *Config, name string, t *table, channels map[string]*table) *Group {
	defer t.finish(groupKeys)
	g := &Group{Name: name}
	nerr := len(d.errs)
	if _, clash := channels[name]; clash {
		d.errorf(t.line, t.path, "has the same name as [channel.%s], which makes %q ambiguous on the command line; rename the group or the channel", name, name)
	}
	list, ok := t.strs("channels")
	if !ok {
		if !t.has("channels") {
			t.errorf("channels", "missing; add %s", examples["channels"])
		}
		return nil
	}
	if len(list) == 0 {
		t.errorf("channels", "is empty; list the channels of the group, like %s", examples["channels"])
	}
	for _, ch := range list {
		if _, ok := channels[ch]; !ok {
			known := sortedKeys(channels)
			hint := "no channels are defined"
			if len(known) > 0 {
				hint = "defined channels: " + strings.Join(known, ", ")
			}
			t.errorf("channels", "channel %q is not defined; add a [channel.%s] table or fix the name (%s)", ch, ch, hint)
			continue
		}
		if !contains(g.Channels, ch) {
			g.Channels = append(g.Channels, ch)
		}
	}
	if len(d.errs) > nerr {
		return nil
	}
	return g
}

// checkPEM reads a ca_file as the IMAP store will, so that a file it cannot
// use is a configuration error here (exit 2, `check` finds it) rather than a
// failed login at the first sync.
func checkPEM(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %v; make it readable, or point ca_file at a PEM file with the server's CA or certificate", path, errUnwrapPath(err))
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return fmt.Errorf("%s holds no PEM certificate (a block starting with -----BEGIN CERTIFICATE-----); point ca_file at the server's CA or certificate in PEM form (a DER file converts with: openssl x509 -inform der -in FILE -out FILE.pem)", path)
	}
	return nil
}

func checkHost(h string) error {
	switch {
	case strings.TrimSpace(h) == "":
		return fmt.Errorf("is empty; write the server name, like %s", examples["host"])
	case strings.Contains(h, "://"):
		return fmt.Errorf("%q: write the host name only, without a scheme, like %s (the port goes in port)", h, examples["host"])
	case strings.HasPrefix(h, "["):
		return fmt.Errorf("%q: write an IPv6 address without brackets, like host = \"::1\"", h)
	case strings.ContainsAny(h, " \t\r\n/"):
		return fmt.Errorf("%q is not a host name; write it like %s", h, examples["host"])
	case strings.Contains(h, ":") && net.ParseIP(h) == nil:
		return fmt.Errorf("%q: put the port in port = 993, not in host", h)
	}
	return nil
}

// isLoopback: 127.0.0.0/8, ::1 and "localhost" never leave the machine.
func isLoopback(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func typeName(typ string) string {
	switch typ {
	case "String":
		return "a string"
	case "Integer":
		return "an integer"
	case "Float":
		return "a decimal number"
	case "Bool":
		return "a boolean"
	case "Array":
		return "an array"
	case "Hash":
		return "a table"
	case "ArrayHash":
		return "an array of tables"
	case "Datetime":
		return "a date/time"
	}
	return "a value of another type"
}

func goTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a decimal number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return "not a string"
}

func dotted(k []string) string { return toml.Key(k).String() }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func errUnwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// didYouMean suggests a known key within a small edit distance, or one
// that abbreviates it.
func didYouMean(s string, known []string) string {
	for _, k := range known {
		if strings.EqualFold(k, s) {
			return fmt.Sprintf(" (did you mean %q? keys are lower-case)", k)
		}
	}
	if best := suggest(s, known); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// suggest returns the known key s is most likely a misspelling of, or "":
// one within edit distance 2, else one whose last word abbreviates s's
// (password_command, state_directory: password_cmd, state_dir).
func suggest(s string, known []string) string {
	ls := strings.ToLower(s)
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(ls, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return best
	}
	for _, k := range known {
		kh, kt, ok := cutLast(k, "_")
		sh, st, ok2 := cutLast(ls, "_")
		if ok && ok2 && kh == sh && len(kt) < len(st) && kt[0] == st[0] && subsequence(kt, st) {
			return k
		}
	}
	return ""
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 || i+len(sep) == len(s) {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// subsequence reports whether the letters of a appear in b in order.
func subsequence(a, b string) bool {
	for i := 0; i < len(b) && len(a) > 0; i++ {
		if b[i] == a[0] {
			a = a[1:]
		}
	}
	return a == ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
