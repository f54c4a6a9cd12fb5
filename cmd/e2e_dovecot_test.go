package cmd

// End-to-end tests of sync, pull and push through the command line against
// the package's private Dovecot (srv, see main_test.go): every test writes a
// config, runs `quixysync -c CFG <command> ...` in-process, and checks the exit
// status, the output and what ends up on the server and in the Maildir. The
// server is inspected and changed as "another mail client" would, with
// go-imap's client; the Maildir as a local mail client would, with plain file
// operations. Tests share the Dovecot accounts and run one after the other,
// each starting from an empty account (ResetUser).

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// e2e is one test's world: an isolated HOME/XDG tree, a near Maildir root and
// a config whose channel "ch" joins alice's account to it.
type e2e struct {
	t    *testing.T
	dir  string // $HOME, with $XDG_STATE_HOME = dir/state
	mail string // the near Maildir root
	cfg  string
}

// e2eOpts shapes the config.
type e2eOpts struct {
	tls      string // "none" (default), "starttls" or "implicit"
	password string // default: alice's
	port     int    // default: the one tls calls for
	channel  string // extra TOML lines for [channel.ch]
	extra    string // extra TOML tables (more stores, channels, groups)
}

func needDovecot(t *testing.T) {
	t.Helper()
	if srv == nil {
		t.Skip("needs Dovecot (skipped with -short)")
	}
}

func newE2E(t *testing.T, o e2eOpts) *e2e {
	t.Helper()
	needDovecot(t)
	if err := srv.ResetUser("alice"); err != nil {
		t.Fatal(err)
	}
	dir := isolate(t)
	e := &e2e{t: t, dir: dir, mail: filepath.Join(dir, "Mail")}
	e.cfg = writeFile(t, filepath.Join(dir, "quixysync.toml"), e.config(o))
	return e
}

func (e *e2e) config(o e2eOpts) string {
	if o.tls == "" {
		o.tls = "none"
	}
	if o.password == "" {
		o.password = srv.Password("alice")
	}
	if o.port == 0 {
		o.port = srv.Port
		if o.tls == "implicit" {
			o.port = srv.TLSPort
		}
	}
	ca := ""
	if o.tls != "none" {
		ca = fmt.Sprintf("ca_file = %q\n", srv.CAFile)
	}
	return fmt.Sprintf(`
[imap.dove]
host = %q
port = %d
tls = %q
%suser = "alice"
password = %q
timeout = "10s"

[maildir.local]
path = %q

[channel.ch]
far = "imap.dove"
near = "maildir.local"
%s
%s`, srv.Host, o.port, o.tls, ca, o.password, e.mail, o.channel, o.extra)
}

// run runs quixysync with the test's config.
func (e *e2e) run(args ...string) (stdout, stderr string, code int) {
	e.t.Helper()
	return run(e.t, append([]string{"-c", e.cfg}, args...)...)
}

// mustRun runs quixysync and fails the test unless it exits 0.
func (e *e2e) mustRun(args ...string) (stdout, stderr string) {
	e.t.Helper()
	stdout, stderr, code := e.run(args...)
	if code != exitOK {
		e.t.Fatalf("quixysync %s: exit %d, want 0; stderr:\n%s\nstdout:\n%s", strings.Join(args, " "), code, stderr, stdout)
	}
	return stdout, stderr
}

// wantSummary checks the channel's summary line starts with want (e.g.
// "copied ←1 →0, flags ←0 →0, deleted ←0 →0").
func wantSummary(t *testing.T, stdout, channel, want string) {
	t.Helper()
	prefix := channel + ": " + want
	for _, l := range strings.Split(stdout, "\n") {
		if strings.HasPrefix(l, channel+": copied") {
			if !strings.HasPrefix(l, prefix) {
				t.Errorf("summary line %q, want it to start with %q", l, prefix)
			}
			return
		}
	}
	t.Errorf("no summary line for %s in %q (want %q)", channel, stdout, prefix)
}

// message builds a small RFC 5322 message whose Subject is id.
func message(id string, bodySize int) string {
	body := "body of " + id + "\r\n"
	if bodySize > len(body) {
		line := strings.Repeat("x", 70) + "\r\n"
		body += strings.Repeat(line, (bodySize-len(body))/len(line)+1)
	}
	return "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\n" +
		"Subject: " + id + "\r\nMessage-ID: <" + id + "@e2e.test>\r\n" +
		"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n\r\n" + body
}

// --- the server, as another client sees it ---

type client struct {
	t *testing.T
	c *imapclient.Client
}

// dial logs in as user on the plain port (the server is on loopback).
func dial(t *testing.T, user string) *client {
	t.Helper()
	c, err := imapclient.DialInsecure(srv.Addr(), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", srv.Addr(), err)
	}
	if err := c.Login(user, srv.Password(user)).Wait(); err != nil {
		c.Close()
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c}
}

func (c *client) create(names ...string) {
	c.t.Helper()
	for _, n := range names {
		if err := c.c.Create(n, nil).Wait(); err != nil {
			c.t.Fatalf("CREATE %s: %v", n, err)
		}
	}
}

// add appends message(id) to box with flags and returns its UID.
func (c *client) add(box, id string, flags ...imap.Flag) imap.UID {
	c.t.Helper()
	return c.addSized(box, id, 0, flags...)
}

func (c *client) addSized(box, id string, size int, flags ...imap.Flag) imap.UID {
	c.t.Helper()
	m := message(id, size)
	cmd := c.c.Append(box, int64(len(m)), &imap.AppendOptions{Flags: flags})
	if _, err := cmd.Write([]byte(m)); err != nil {
		c.t.Fatalf("APPEND %s: %v", box, err)
	}
	if err := cmd.Close(); err != nil {
		c.t.Fatalf("APPEND %s: %v", box, err)
	}
	data, err := cmd.Wait()
	if err != nil {
		c.t.Fatalf("APPEND %s: %v", box, err)
	}
	return data.UID
}

func (c *client) selectBox(box string, readOnly bool) *imap.SelectData {
	c.t.Helper()
	d, err := c.c.Select(box, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
	if err != nil {
		c.t.Fatalf("SELECT %s: %v", box, err)
	}
	return d
}

// uidOf finds the UID of the message with Subject id in box.
func (c *client) uidOf(box, id string) imap.UID {
	c.t.Helper()
	m, ok := c.messages(box)[id]
	if !ok {
		c.t.Fatalf("no message %s in %s on the server", id, box)
	}
	return m.uid
}

// store changes the flags of message id in box.
func (c *client) store(box, id string, op imap.StoreFlagsOp, flags ...imap.Flag) {
	c.t.Helper()
	uid := c.uidOf(box, id)
	c.selectBox(box, false)
	if err := c.c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close(); err != nil {
		c.t.Fatalf("STORE %s %s: %v", box, id, err)
	}
}

// expunge removes the messages with these ids from box.
func (c *client) expunge(box string, ids ...string) {
	c.t.Helper()
	msgs := c.messages(box)
	var uids []imap.UID
	for _, id := range ids {
		m, ok := msgs[id]
		if !ok {
			c.t.Fatalf("no message %s in %s on the server", id, box)
		}
		uids = append(uids, m.uid)
	}
	c.selectBox(box, false)
	set := imap.UIDSetNum(uids...)
	if err := c.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		c.t.Fatalf("STORE \\Deleted in %s: %v", box, err)
	}
	if err := c.c.UIDExpunge(set).Close(); err != nil {
		c.t.Fatalf("UID EXPUNGE in %s: %v", box, err)
	}
}

// srvMsg is a message on the server.
type srvMsg struct {
	uid   imap.UID
	flags string // Maildir letters, sorted: "FS"
}

// messages maps Subject → message for box, read-only.
func (c *client) messages(box string) map[string]srvMsg {
	c.t.Helper()
	d := c.selectBox(box, true)
	out := map[string]srvMsg{}
	if d.NumMessages == 0 {
		return out
	}
	all := imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}} // 1:*
	bufs, err := c.c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
	if err != nil {
		c.t.Fatalf("FETCH %s: %v", box, err)
	}
	for _, b := range bufs {
		id := ""
		if b.Envelope != nil {
			id = b.Envelope.Subject
		}
		if _, dup := out[id]; dup {
			c.t.Errorf("%s holds message %q twice on the server", box, id)
		}
		out[id] = srvMsg{uid: b.UID, flags: letters(b.Flags)}
	}
	return out
}

// letters spells the standard IMAP flags as sorted Maildir letters.
func letters(flags []imap.Flag) string {
	var b []byte
	for _, f := range flags {
		switch {
		case strings.EqualFold(string(f), string(imap.FlagDraft)):
			b = append(b, 'D')
		case strings.EqualFold(string(f), string(imap.FlagFlagged)):
			b = append(b, 'F')
		case strings.EqualFold(string(f), string(imap.FlagForwarded)):
			b = append(b, 'P')
		case strings.EqualFold(string(f), string(imap.FlagAnswered)):
			b = append(b, 'R')
		case strings.EqualFold(string(f), string(imap.FlagSeen)):
			b = append(b, 'S')
		case strings.EqualFold(string(f), string(imap.FlagDeleted)):
			b = append(b, 'T')
		}
	}
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}

// boxes lists the selectable mailboxes.
func (c *client) boxes() []string {
	c.t.Helper()
	list, err := c.c.List("", "*", nil).Collect()
	if err != nil {
		c.t.Fatalf("LIST: %v", err)
	}
	var out []string
	for _, l := range list {
		if hasAttr(l.Attrs, imap.MailboxAttrNoSelect) || hasAttr(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		out = append(out, l.Mailbox)
	}
	sort.Strings(out)
	return out
}

func hasAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

// snapshot describes every mailbox of the account: its STATUS (UIDVALIDITY,
// UIDNEXT, HIGHESTMODSEQ, MESSAGES) and every message's UID and flags. Two
// equal snapshots mean nobody wrote to the account in between.
func (c *client) snapshot() map[string]string {
	c.t.Helper()
	out := map[string]string{}
	for _, box := range c.boxes() {
		st, err := c.c.Status(box, &imap.StatusOptions{UIDValidity: true, UIDNext: true, HighestModSeq: true, NumMessages: true}).Wait()
		if err != nil {
			c.t.Fatalf("STATUS %s: %v", box, err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "uidvalidity=%d uidnext=%d highestmodseq=%d messages=%d;", st.UIDValidity, st.UIDNext, st.HighestModSeq, *st.NumMessages)
		msgs := c.messages(box)
		var ids []string
		for id := range msgs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			fmt.Fprintf(&b, " %d:%s:%s", msgs[id].uid, id, msgs[id].flags)
		}
		out[box] = b.String()
	}
	return out
}

// --- the Maildir, as a local mail client sees it ---

// folder is the near folder of a mailbox (verbatim layout).
func (e *e2e) folder(box string) string { return filepath.Join(e.mail, filepath.FromSlash(box)) }

type localMsg struct {
	path  string
	flags string // sorted standard letters
}

// local maps Subject → message in the near folder of box (cur/ and new/).
func (e *e2e) local(box string) map[string]localMsg {
	e.t.Helper()
	out := map[string]localMsg{}
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(e.folder(box), sub)
		ents, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			e.t.Fatal(err)
		}
		for _, de := range ents {
			p := filepath.Join(dir, de.Name())
			id := subjectOf(e.t, p)
			if _, dup := out[id]; dup {
				e.t.Errorf("%s holds message %q twice", e.folder(box), id)
			}
			out[id] = localMsg{path: p, flags: fileFlags(de.Name())}
		}
	}
	return out
}

func subjectOf(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if l == "" {
			break
		}
		if v, ok := strings.CutPrefix(l, "Subject: "); ok {
			return v
		}
	}
	t.Fatalf("%s has no Subject", path)
	return ""
}

// fileFlags returns the standard flag letters of a Maildir file name, sorted.
func fileFlags(name string) string {
	i := strings.LastIndex(name, ":2,")
	if i < 0 {
		return ""
	}
	var b []byte
	for _, c := range []byte(name[i+3:]) {
		if strings.IndexByte("DFPRST", c) >= 0 {
			b = append(b, c)
		}
	}
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}

// addLocal delivers message(id) into the near folder of box as a mail client
// would: through tmp/, into new/ without flags, else into cur/ with them.
func (e *e2e) addLocal(box, id, flags string) {
	e.t.Helper()
	name := fmt.Sprintf("%d.e2e_%s.localhost", time.Now().UnixNano(), id)
	sub := "new"
	if flags != "" {
		sub, name = "cur", name+":2,"+flags
	}
	tmp := filepath.Join(e.folder(box), "tmp", name)
	body := strings.ReplaceAll(message(id, 0), "\r\n", "\n")
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.folder(box), sub, name)); err != nil {
		e.t.Fatal(err)
	}
}

// setLocalFlags renames message id's file to carry exactly flags (moving it
// to cur/), keeping the rest of its name, as a mail client does.
func (e *e2e) setLocalFlags(box, id, flags string) {
	e.t.Helper()
	m, ok := e.local(box)[id]
	if !ok {
		e.t.Fatalf("no message %s in %s", id, e.folder(box))
	}
	base := filepath.Base(m.path)
	if i := strings.LastIndex(base, ":"); i >= 0 {
		base = base[:i]
	}
	if err := os.Rename(m.path, filepath.Join(e.folder(box), "cur", base+":2,"+flags)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *e2e) removeLocal(box, id string) {
	e.t.Helper()
	m, ok := e.local(box)[id]
	if !ok {
		e.t.Fatalf("no message %s in %s", id, e.folder(box))
	}
	if err := os.Remove(m.path); err != nil {
		e.t.Fatal(err)
	}
}

// wantLocal checks the near folder of box holds exactly these messages
// (Subject → flag letters).
func (e *e2e) wantLocal(box string, want map[string]string) {
	e.t.Helper()
	got := map[string]string{}
	for id, m := range e.local(box) {
		got[id] = m.flags
	}
	if !equalMaps(got, want) {
		e.t.Errorf("near %s: %v, want %v", box, got, want)
	}
}

// wantServer checks box on the server holds exactly these messages.
func (c *client) wantServer(box string, want map[string]string) {
	c.t.Helper()
	got := map[string]string{}
	for id, m := range c.messages(box) {
		got[id] = m.flags
	}
	if !equalMaps(got, want) {
		c.t.Errorf("server %s: %v, want %v", box, got, want)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// tree lists everything under the roots: path, type, size and modification
// time in nanoseconds (directories too: adding or removing a file changes
// its directory's time). A missing root is listed as such.
func tree(t *testing.T, roots ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if os.IsNotExist(err) && p == root {
				out[p] = "absent"
				return nil
			}
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			out[p] = fmt.Sprintf("%v size=%d mtime=%d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// diffMaps describes how two listings differ ("" if they do not).
func diffMaps(before, after map[string]string) string {
	var b strings.Builder
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		x, inX := before[k]
		y, inY := after[k]
		switch {
		case !inY:
			fmt.Fprintf(&b, "  gone: %s (%s)\n", k, x)
		case !inX:
			fmt.Fprintf(&b, "  new: %s (%s)\n", k, y)
		case x != y:
			fmt.Fprintf(&b, "  changed: %s\n    before: %s\n    after:  %s\n", k, x, y)
		}
	}
	return b.String()
}

// --- the tests ---

// seedTree puts a small realistic tree on the server: INBOX, Archive/2025 and
// a non-ASCII Entwürfe, with flags.
func seedTree(c *client) {
	c.t.Helper()
	c.create("Archive/2025", "Entwürfe")
	c.add("INBOX", "welcome", imap.FlagSeen)
	c.add("INBOX", "invoice", imap.FlagFlagged, imap.FlagAnswered)
	c.add("INBOX", "unread")
	c.add("Archive/2025", "old-1", imap.FlagSeen)
	c.add("Archive/2025", "old-2", imap.FlagSeen, imap.FlagForwarded)
	c.add("Entwürfe", "draft", imap.FlagDraft)
}

var seededNear = map[string]map[string]string{
	"INBOX":        {"welcome": "S", "invoice": "FR", "unread": ""},
	"Archive/2025": {"old-1": "S", "old-2": "PS"},
	"Entwürfe":     {"draft": "D"},
}

func TestE2EInitialSyncThenNothingToDo(t *testing.T) {
	e := newE2E(t, e2eOpts{tls: "starttls"})
	c := dial(t, "alice")
	seedTree(c)

	stdout, _ := e.mustRun("-v", "sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←6 →0, flags ←0 →0, deleted ←0 →0")
	for box, want := range seededNear {
		e.wantLocal(box, want)
		if !strings.Contains(stdout, "  ch:"+box+": copied") {
			t.Errorf("-v printed no line for %s", box)
		}
	}
	// The folder is named in UTF-8 on disk, not in IMAP's modified UTF-7.
	if _, err := os.Stat(filepath.Join(e.mail, "Entwürfe", "cur")); err != nil {
		t.Errorf("no UTF-8 named Maildir folder: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(e.mail, "Entw&*")); len(m) > 0 {
		t.Errorf("a folder is named in modified UTF-7: %v", m)
	}

	// The second run has nothing to do: no message moves, no mail file or
	// server mailbox changes. (It may rewrite the state: the first run
	// recorded the markers seen when it opened the mailboxes, before it
	// filled them.)
	before, server := mailFiles(t, e.mail), c.snapshot()
	stdout, stderr := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0, created 0 mailboxes, no errors")
	if stderr != "" {
		t.Errorf("a sync with nothing to do wrote to stderr: %q", stderr)
	}
	for box, want := range seededNear {
		e.wantLocal(box, want)
	}
	if d := diffMaps(server, c.snapshot()); d != "" {
		t.Errorf("a sync with nothing to do changed the server:\n%s", d)
	}
	if d := diffMaps(before, mailFiles(t, e.mail)); d != "" {
		t.Errorf("a sync with nothing to do changed mail files:\n%s", d)
	}

	// Once the folders have been quiet for a while (a change within the
	// current second may not show in a directory's time, so until then the
	// Maildir is read again), a run that finds nothing changed writes nothing
	// at all but its locks.
	backdate(t, e.mail, time.Minute)
	e.mustRun("sync", "ch") // records the quiet folders' times
	before = withoutLocks(tree(t, e.dir))
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0, created 0 mailboxes, no errors")
	if d := diffMaps(before, withoutLocks(tree(t, e.dir))); d != "" {
		t.Errorf("a third sync with nothing to do changed local files:\n%s", d)
	}
	if d := diffMaps(server, c.snapshot()); d != "" {
		t.Errorf("a third sync with nothing to do changed the server:\n%s", d)
	}
}

// backdate sets the times of every cur/ and new/ directory under root to d
// ago, as if nothing had touched them since.
func backdate(t *testing.T, root string, d time.Duration) {
	t.Helper()
	then := time.Now().Add(-d)
	for p, v := range tree(t, root) {
		if b := filepath.Base(p); (b == "cur" || b == "new") && strings.HasPrefix(v, "d") {
			if err := os.Chtimes(p, then, then); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// mailFiles lists the mail of a Maildir tree: the cur/, new/ and tmp/
// directories and their files (not the state kept beside them).
func mailFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for p, v := range tree(t, root) {
		switch filepath.Base(filepath.Dir(p)) {
		case "cur", "new", "tmp":
			out[p] = v
			continue
		}
		switch filepath.Base(p) {
		case "cur", "new", "tmp":
			out[p] = v
		}
	}
	return out
}

// withoutLocks drops lock files, which every run rewrites with its PID, and
// the times of the directories that hold them.
func withoutLocks(m map[string]string) map[string]string {
	out := map[string]string{}
	for p, v := range m {
		if strings.HasSuffix(p, ".lock") {
			continue
		}
		if strings.HasPrefix(v, "d") {
			v = "dir"
		}
		out[p] = v
	}
	return out
}

// synced sets up INBOX with these messages on the server (id → flags) and
// syncs once, so both sides hold them.
func synced(t *testing.T, e *e2e, c *client, box string, msgs map[string][]imap.Flag) {
	t.Helper()
	if box != "INBOX" {
		c.create(box)
	}
	var ids []string
	for id := range msgs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c.add(box, id, msgs[id]...)
	}
	e.mustRun("sync", "ch")
	if n := len(e.local(box)); n != len(msgs) {
		t.Fatalf("after the first sync the near %s holds %d messages, want %d", box, n, len(msgs))
	}
}

func TestE2ENewBothWays(t *testing.T) {
	e := newE2E(t, e2eOpts{tls: "implicit"})
	c := dial(t, "alice")
	synced(t, e, c, "INBOX", map[string][]imap.Flag{"m1": {imap.FlagSeen}})

	c.add("INBOX", "from-server", imap.FlagFlagged)
	e.addLocal("INBOX", "from-mutt", "")
	e.addLocal("INBOX", "filed-read", "RS")
	stdout, stderr := e.mustRun("-q", "sync", "ch")
	if stdout != "" || stderr != "" {
		t.Errorf("-q sync printed stdout %q, stderr %q; want nothing", stdout, stderr)
	}
	want := map[string]string{"m1": "S", "from-server": "F", "from-mutt": "", "filed-read": "RS"}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)

	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
}

func TestE2EFlagsBothWays(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	c := dial(t, "alice")
	synced(t, e, c, "INBOX", map[string][]imap.Flag{
		"srv-flags": nil, "srv-unseen": {imap.FlagSeen}, "loc-reads": nil, "loc-unflags": {imap.FlagFlagged}, "both": nil, "same": nil,
	})

	c.store("INBOX", "srv-flags", imap.StoreFlagsAdd, imap.FlagFlagged)
	c.store("INBOX", "srv-unseen", imap.StoreFlagsDel, imap.FlagSeen)
	e.setLocalFlags("INBOX", "loc-reads", "S")
	e.setLocalFlags("INBOX", "loc-unflags", "")
	// The same message edited on both sides: both changes are kept.
	c.store("INBOX", "both", imap.StoreFlagsAdd, imap.FlagFlagged)
	e.setLocalFlags("INBOX", "both", "RS")
	// The same change on both sides: nothing to do for it.
	c.store("INBOX", "same", imap.StoreFlagsAdd, imap.FlagSeen)
	e.setLocalFlags("INBOX", "same", "S")

	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←3 →3, deleted ←0 →0")
	want := map[string]string{"srv-flags": "F", "srv-unseen": "", "loc-reads": "S", "loc-unflags": "", "both": "FRS", "same": "S"}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)

	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
}

func TestE2EDeletionsExpungeBoth(t *testing.T) {
	e := newE2E(t, e2eOpts{channel: `expunge = "both"`})
	c := dial(t, "alice")
	synced(t, e, c, "INBOX", map[string][]imap.Flag{
		"keep": {imap.FlagSeen}, "srv-del": nil, "loc-del": nil, "srv-del-loc-flag": nil, "loc-del-srv-flag": nil, "srv-trash": nil,
	})
	c.expunge("INBOX", "srv-del")
	e.removeLocal("INBOX", "loc-del")
	// A deletion on one side beats a flag change on the other.
	c.expunge("INBOX", "srv-del-loc-flag")
	e.setLocalFlags("INBOX", "srv-del-loc-flag", "F")
	e.removeLocal("INBOX", "loc-del-srv-flag")
	c.store("INBOX", "loc-del-srv-flag", imap.StoreFlagsAdd, imap.FlagFlagged)
	// Flagged \Deleted but not expunged: expunge = "both" removes it everywhere.
	c.store("INBOX", "srv-trash", imap.StoreFlagsAdd, imap.FlagDeleted)

	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←3 →3")
	want := map[string]string{"keep": "S"}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
}

func TestE2EDeletionsExpungeNone(t *testing.T) {
	e := newE2E(t, e2eOpts{channel: `expunge = "none"`})
	c := dial(t, "alice")
	synced(t, e, c, "INBOX", map[string][]imap.Flag{"keep": nil, "srv-del": {imap.FlagSeen}, "loc-del": nil})
	c.expunge("INBOX", "srv-del")
	e.removeLocal("INBOX", "loc-del")

	stdout, _ := e.mustRun("sync", "ch")
	// Nothing is removed: the partner of a removed message is only marked.
	e.wantLocal("INBOX", map[string]string{"keep": "", "srv-del": "ST"})
	c.wantServer("INBOX", map[string]string{"keep": "", "loc-del": "T"})
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←1 →1, deleted ←0 →0")
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
	e.wantLocal("INBOX", map[string]string{"keep": "", "srv-del": "ST"})
	c.wantServer("INBOX", map[string]string{"keep": "", "loc-del": "T"})
}

// A pull moves nothing near → far, and what it left behind still goes with
// the next sync (the pull must not have marked the local news as seen).
func TestE2EPullThenSync(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	c := dial(t, "alice")
	synced(t, e, c, "INBOX", map[string][]imap.Flag{"old": nil, "old2": nil})
	c.add("INBOX", "far-new")
	c.store("INBOX", "old", imap.StoreFlagsAdd, imap.FlagSeen)
	e.addLocal("INBOX", "near-new", "")
	e.setLocalFlags("INBOX", "old2", "F")

	stdout, _ := e.mustRun("pull", "ch")
	wantSummary(t, stdout, "ch", "copied ←1 →0, flags ←1 →0, deleted ←0 →0")
	e.wantLocal("INBOX", map[string]string{"old": "S", "old2": "F", "far-new": "", "near-new": ""})
	c.wantServer("INBOX", map[string]string{"old": "S", "old2": "", "far-new": ""})

	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →1, flags ←0 →1, deleted ←0 →0")
	want := map[string]string{"old": "S", "old2": "F", "far-new": "", "near-new": ""}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
}

func TestE2EPushThenSync(t *testing.T) {
	e := newE2E(t, e2eOpts{tls: "starttls"})
	c := dial(t, "alice")
	synced(t, e, c, "INBOX", map[string][]imap.Flag{"old": nil, "old2": nil})
	c.add("INBOX", "far-new")
	c.store("INBOX", "old", imap.StoreFlagsAdd, imap.FlagSeen)
	e.addLocal("INBOX", "near-new", "")
	e.setLocalFlags("INBOX", "old2", "F")

	stdout, _ := e.mustRun("push", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →1, flags ←0 →1, deleted ←0 →0")
	e.wantLocal("INBOX", map[string]string{"old": "", "old2": "F", "near-new": ""})
	c.wantServer("INBOX", map[string]string{"old": "S", "old2": "F", "far-new": "", "near-new": ""})

	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←1 →0, flags ←1 →0, deleted ←0 →0")
	want := map[string]string{"old": "S", "old2": "F", "far-new": "", "near-new": ""}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
}

// CHANNEL:BOX syncs only that mailbox, a GROUP its channels, --all every
// channel.
func TestE2ETargets(t *testing.T) {
	needDovecot(t)
	bobMail := filepath.Join(t.TempDir(), "BobMail")
	e := newE2E(t, e2eOpts{channel: `mailboxes = ["INBOX"]`, extra: fmt.Sprintf(`
[channel.arch]
far = "imap.dove"
near = "maildir.local"
mailboxes = ["Archive/*"]

[group.mine]
channels = ["ch", "arch"]

[imap.bob]
host = %q
port = %d
tls = "none"
user = "bob"
password = %q

[maildir.bob]
path = %q

[channel.bobch]
far = "imap.bob"
near = "maildir.bob"
`, srv.Host, srv.Port, srv.Password("bob"), bobMail)})
	if err := srv.ResetUser("bob"); err != nil {
		t.Fatal(err)
	}
	c := dial(t, "alice")
	c.create("Archive/2024", "Archive/2025")
	c.add("INBOX", "in")
	c.add("Archive/2024", "a24")
	c.add("Archive/2025", "a25")
	dial(t, "bob").add("INBOX", "bobs")

	stdout, _ := e.mustRun("sync", "arch:Archive/2025")
	wantSummary(t, stdout, "arch", "copied ←1 →0")
	if regexp.MustCompile(`(?m)^(ch|bobch):`).MatchString(stdout) {
		t.Errorf("other channels ran: %q", stdout)
	}
	e.wantLocal("Archive/2025", map[string]string{"a25": ""})
	for _, box := range []string{"INBOX", "Archive/2024"} {
		if _, err := os.Stat(e.folder(box)); err == nil {
			t.Errorf("sync arch:Archive/2025 also made %s", e.folder(box))
		}
	}

	stdout, _ = e.mustRun("sync", "mine")
	wantSummary(t, stdout, "ch", "copied ←1 →0")
	wantSummary(t, stdout, "arch", "copied ←1 →0")
	e.wantLocal("INBOX", map[string]string{"in": ""})
	e.wantLocal("Archive/2024", map[string]string{"a24": ""})
	e.wantLocal("Archive/2025", map[string]string{"a25": ""})
	if _, err := os.Stat(bobMail); err == nil {
		t.Errorf("sync mine also ran bobch")
	}

	stdout, _ = e.mustRun("sync", "--all")
	wantSummary(t, stdout, "ch", "copied ←0 →0")
	wantSummary(t, stdout, "arch", "copied ←0 →0")
	wantSummary(t, stdout, "bobch", "copied ←1 →0")
	bob := &e2e{t: t, mail: bobMail}
	bob.wantLocal("INBOX", map[string]string{"bobs": ""})
}

// create = "none": a mailbox on one side only is left alone, and -v says so;
// create = "near" makes far-only mailboxes locally but not the reverse.
func TestE2ECreate(t *testing.T) {
	for _, tc := range []struct {
		create               string
		nearMade, farMade    bool
		summaryCreated       string
		skippedNear, skipFar bool
	}{
		{create: "none", summaryCreated: "created 0 mailboxes", skippedNear: true, skipFar: true},
		{create: "near", nearMade: true, summaryCreated: "created 1 mailbox,", skipFar: true},
		{create: "far", farMade: true, summaryCreated: "created 1 mailbox,", skippedNear: true},
	} {
		t.Run(tc.create, func(t *testing.T) {
			e := newE2E(t, e2eOpts{channel: fmt.Sprintf("create = %q", tc.create)})
			c := dial(t, "alice")
			c.create("Projekte")
			c.add("Projekte", "p1")
			mkMaildir(t, e.folder("INBOX"))
			mkMaildir(t, e.folder("Lokal"))
			e.addLocal("Lokal", "l1", "S")

			stdout, _ := e.mustRun("-v", "sync", "ch")
			if !strings.Contains(stdout, tc.summaryCreated) {
				t.Errorf("summary does not say %q: %q", tc.summaryCreated, stdout)
			}
			_, err := os.Stat(e.folder("Projekte"))
			if made := err == nil; made != tc.nearMade {
				t.Errorf("far-only Projekte made locally: %v, want %v", made, tc.nearMade)
			}
			if tc.nearMade {
				e.wantLocal("Projekte", map[string]string{"p1": ""})
			}
			if made := contains(c.boxes(), "Lokal"); made != tc.farMade {
				t.Errorf("near-only Lokal made on the server: %v, want %v", made, tc.farMade)
			}
			if tc.farMade {
				c.wantServer("Lokal", map[string]string{"l1": "S"})
			}
			if tc.skippedNear && !regexp.MustCompile(`ch:Projekte: .*not created`).MatchString(stdout) {
				t.Errorf("-v does not report Projekte as not created: %q", stdout)
			}
			if tc.skipFar && !regexp.MustCompile(`ch:Lokal: .*not created`).MatchString(stdout) {
				t.Errorf("-v does not report Lokal as not created: %q", stdout)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// dryRun runs quixysync --dry-run and fails the test if anything changed:
// any file under the test's HOME (Maildir, state, locks, config; names,
// sizes, times) or anything on the server (every mailbox's UIDVALIDITY,
// UIDNEXT, HIGHESTMODSEQ, message count, UIDs and flags).
func (e *e2e) dryRun(c *client, wantCode int, args ...string) (stdout, stderr string) {
	e.t.Helper()
	files, server := tree(e.t, e.dir), c.snapshot()
	stdout, stderr, code := e.run(append(args[:len(args):len(args)], "--dry-run")...)
	if code != wantCode {
		e.t.Errorf("%s --dry-run: exit %d, want %d", strings.Join(args, " "), code, wantCode)
	}
	if d := diffMaps(files, tree(e.t, e.dir)); d != "" {
		e.t.Errorf("%s --dry-run changed local files:\n%s", strings.Join(args, " "), d)
	}
	if d := diffMaps(server, c.snapshot()); d != "" {
		e.t.Errorf("%s --dry-run changed the server:\n%s", strings.Join(args, " "), d)
	}
	return stdout, stderr
}

// wantLines checks that text holds these lines, in this order (others may
// come between them).
func wantLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	rest := text
	for _, l := range lines {
		re := regexp.MustCompile(`(?m)^` + l + `$`)
		loc := re.FindStringIndex(rest)
		if loc == nil {
			t.Errorf("output lacks a line matching %q (after the ones before it):\n%s", l, text)
			return
		}
		rest = rest[loc[1]:]
	}
}

func TestE2EDryRunChangesNothing(t *testing.T) {
	e := newE2E(t, e2eOpts{channel: `expunge = "both"`})
	c := dial(t, "alice")
	seedTree(c)

	// Before the first run: it would make the tree, and makes nothing, not
	// even the Maildir root, a state or a lock file.
	stdout, _ := e.dryRun(c, exitOK, "sync", "ch")
	wantLines(t, stdout,
		`ch:INBOX:`, `  create the mailbox on the near side`, `  copy far → near: 3 messages \(far UIDs 1:3, .*\)`,
		`ch:Archive/2025:`, `  create the mailbox on the near side`, `  copy far → near: 2 messages .*`,
		`ch:Entwürfe:`, `  create the mailbox on the near side`, `  copy far → near: 1 message .*`,
		`ch \(dry run\): copied ←6 →0, flags ←0 →0, deleted ←0 →0, created 3 mailboxes, no errors`)
	if _, err := os.Stat(e.mail); err == nil {
		t.Errorf("the dry run made %s", e.mail)
	}
	e.dryRun(c, exitOK, "pull", "ch")
	e.dryRun(c, exitOK, "push", "ch")

	e.mustRun("sync", "ch")
	// Changes on both sides: new messages, flags, deletions, new mailboxes.
	c.add("INBOX", "far-new")
	c.store("INBOX", "welcome", imap.StoreFlagsAdd, imap.FlagFlagged)
	c.expunge("INBOX", "unread")
	c.create("Neu")
	c.add("Neu", "neu-1")
	e.addLocal("INBOX", "near-new", "")
	e.setLocalFlags("INBOX", "invoice", "FRS")
	e.removeLocal("Archive/2025", "old-1")
	mkMaildir(t, e.folder("Privé"))
	e.addLocal("Privé", "lokal-1", "S")

	stdout, _ = e.dryRun(c, exitOK, "sync", "ch")
	wantLines(t, stdout,
		`ch:INBOX:`,
		`  copy far → near: 1 message \(far UIDs 4, .*\)`,
		`  copy near → far: 1 message \(near UIDs \d+, .*\)`, // a new file's UID is provisional until a real run
		`  flags on the near side: \+flagged on 1 message \(UIDs 1\)`,
		`  flags on the far side: \+seen on 1 message \(UIDs 2\)`,
		`  delete on the near side: 1 message \(UIDs 3\)`,
		`ch:Archive/2025:`, `  delete on the far side: 1 message \(UIDs 1\)`,
		`ch:Neu:`, `  create the mailbox on the near side`, `  copy far → near: 1 message .*`,
		`ch:Privé:`, `  create the mailbox on the far side`, `  copy near → far: 1 message .*`,
		`ch \(dry run\): copied ←2 →2, flags ←1 →1, deleted ←1 →1, created 2 mailboxes, no errors`)
	if strings.Contains(stdout, "Entwürfe") {
		t.Errorf("without -v a mailbox with nothing to do is listed: %q", stdout)
	}
	stdout, _ = e.dryRun(c, exitOK, "-v", "sync", "ch")
	wantLines(t, stdout, `ch:Entwürfe: nothing to do.*`)
	stdout, _ = e.dryRun(c, exitOK, "pull", "ch")
	wantLines(t, stdout, `ch \(dry run\): copied ←2 →0, flags ←1 →0, deleted ←1 →0, created 1 mailbox, no errors`)
	stdout, _ = e.dryRun(c, exitOK, "push", "ch")
	wantLines(t, stdout, `ch \(dry run\): copied ←0 →2, flags ←0 →1, deleted ←0 →1, created 1 mailbox, no errors`)
	stdout, _ = e.dryRun(c, exitOK, "sync", "ch:Neu")
	wantLines(t, stdout, `ch \(dry run\): copied ←1 →0, flags ←0 →0, deleted ←0 →0, created 1 mailbox, no errors`)
	// -q leaves the plan (what a dry run is for), not the summary.
	if stdout, _ := e.dryRun(c, exitOK, "-q", "sync", "ch"); !strings.HasPrefix(stdout, "ch:INBOX:\n") || !strings.Contains(stdout, "ch:Archive/2025:\n") || strings.Contains(stdout, "(dry run)") {
		t.Errorf("-q --dry-run printed %q, want the plan without the summary", stdout)
	}

	// The real run does what the dry run said.
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←2 →2, flags ←1 →1, deleted ←1 →1, created 2 mailboxes, no errors")
	want := map[string]string{"welcome": "FS", "invoice": "FRS", "far-new": "", "near-new": ""}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
	c.wantServer("Archive/2025", map[string]string{"old-2": "PS"})
	c.wantServer("Privé", map[string]string{"lokal-1": "S"})
	e.wantLocal("Neu", map[string]string{"neu-1": ""})
}

// Deleting 15 of 20 messages on the server trips the safety guard: exit 4,
// nothing deleted locally, until --force.
func TestE2EGuard(t *testing.T) {
	e := newE2E(t, e2eOpts{channel: `expunge = "both"`})
	c := dial(t, "alice")
	msgs := map[string][]imap.Flag{}
	var gone []string
	for i := 1; i <= 20; i++ {
		id := fmt.Sprintf("m%02d", i)
		msgs[id] = nil
		if i <= 15 {
			gone = append(gone, id)
		}
	}
	synced(t, e, c, "INBOX", msgs)
	c.expunge("INBOX", gone...)

	stdout, stderr := e.dryRun(c, exitGuard, "sync", "ch")
	if !strings.Contains(stdout+stderr, "safety guard") {
		t.Errorf("the dry run does not mention the safety guard: %q %q", stdout, stderr)
	}
	_, stderr, code := e.run("sync", "ch")
	if code != exitGuard {
		t.Errorf("sync: exit %d, want %d", code, exitGuard)
	}
	if !strings.Contains(stderr, "ch:INBOX") || !strings.Contains(stderr, "--force") {
		t.Errorf("the guard message does not name ch:INBOX and --force: %q", stderr)
	}
	if n := strings.Count(stderr, "--force"); n != 1 {
		t.Errorf("the guard message says --force %d times, want once: %q", n, stderr)
	}
	if n := strings.Count(stderr, "safety guard"); n != 1 {
		t.Errorf("the guard message says \"safety guard\" %d times, want once: %q", n, stderr)
	}
	if n := len(e.local("INBOX")); n != 20 {
		t.Errorf("after the guard stopped the run the near INBOX holds %d messages, want 20", n)
	}
	// Stopped again, not forgotten, on the next run.
	if _, _, code := e.run("sync", "ch"); code != exitGuard {
		t.Errorf("second sync: exit %d, want %d", code, exitGuard)
	}

	stdout, _ = e.mustRun("sync", "--force", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←15 →0")
	e.wantLocal("INBOX", map[string]string{"m16": "", "m17": "", "m18": "", "m19": "", "m20": ""})
	e.mustRun("sync", "ch")
}

// A run while another process holds the channel's lock exits 3 and names
// that process; once it is gone the run goes through.
func TestE2ELockedByAnotherProcess(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	c := dial(t, "alice")
	c.add("INBOX", "m1")

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), holdLockEnv+"="+channelLockOf(t, e.cfg, "ch"))
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		child.Process.Kill()
		child.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("the lock holder said %q, %v", line, err)
	}

	for _, args := range [][]string{{"sync", "ch"}, {"pull", "ch"}, {"push", "ch:INBOX"}, {"sync", "--dry-run", "ch"}} {
		_, stderr, code := e.run(args...)
		if code != exitLocked {
			t.Errorf("%v while locked: exit %d, want %d", args, code, exitLocked)
		}
		if !strings.Contains(stderr, "ch") || !strings.Contains(stderr, fmt.Sprintf("process %d", child.Process.Pid)) {
			t.Errorf("%v: stderr does not name the channel and the holder's PID %d: %q", args, child.Process.Pid, stderr)
		}
	}
	if _, err := os.Stat(e.mail); err == nil {
		t.Errorf("a locked-out run touched the Maildir")
	}

	stdin.Close() // the holder lets go and exits
	if err := child.Wait(); err != nil {
		t.Fatalf("lock holder: %v", err)
	}
	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←1 →0")
}

// A message over max_size is not copied, reported once, and not looked at
// again.
func TestE2EMaxSize(t *testing.T) {
	e := newE2E(t, e2eOpts{channel: `max_size = "4k"`})
	c := dial(t, "alice")
	c.add("INBOX", "small")
	c.addSized("INBOX", "huge", 20000)
	mkMaildir(t, e.folder("INBOX"))
	e.addLocal("INBOX", "local-small", "")

	stdout, stderr := e.dryRun(c, exitOK, "sync", "ch")
	wantLines(t, stdout, `  not copied far → near, larger than max_size: 1 message \(far UIDs 2\)`)

	stdout, stderr = e.mustRun("-v", "sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←1 →1")
	if !strings.Contains(stdout+stderr, "max_size") {
		t.Errorf("the skipped message is not reported: stdout %q, stderr %q", stdout, stderr)
	}
	e.wantLocal("INBOX", map[string]string{"small": "", "local-small": ""})

	c.add("INBOX", "later")
	stdout, stderr = e.mustRun("-v", "sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←1 →0")
	if strings.Contains(stdout+stderr, "max_size") {
		t.Errorf("the skipped message is reported again: stdout %q, stderr %q", stdout, stderr)
	}
	e.wantLocal("INBOX", map[string]string{"small": "", "local-small": "", "later": ""})
}

// Wrong credentials and an unreachable server fail the channel (exit 1)
// with a message naming the store and not the password.
func TestE2EConnectionFailures(t *testing.T) {
	needDovecot(t)
	const badPass = "not-alices-Passw0rd"
	for _, tc := range []struct {
		name string
		o    e2eOpts
		want string
	}{
		{"bad password", e2eOpts{password: badPass}, "imap.dove"},
		{"bad password over TLS", e2eOpts{tls: "implicit", password: badPass}, "imap.dove"},
		{"unreachable", e2eOpts{port: closedPort(t)}, "imap.dove"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newE2E(t, tc.o)
			dial(t, "alice").add("INBOX", "m1")
			stdout, stderr, code := e.run("sync", "ch")
			if code != exitFailure {
				t.Errorf("exit %d, want %d", code, exitFailure)
			}
			if !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "ch") {
				t.Errorf("stderr does not name the channel and store %s: %q", tc.want, stderr)
			}
			if strings.Contains(stdout+stderr, badPass) {
				t.Errorf("the password appears in the output")
			}
			if !strings.Contains(stdout, "channel failed") {
				t.Errorf("the summary does not count the error: %q", stdout)
			}
			if _, err := os.Stat(e.folder("INBOX")); err == nil {
				t.Errorf("a failed run made %s", e.folder("INBOX"))
			}
			// -q still reports errors, and only them.
			stdout, stderr, code = e.run("-q", "sync", "ch")
			if code != exitFailure || stdout != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("-q: exit %d, stdout %q, stderr %q; want 1, nothing, the error", code, stdout, stderr)
			}
		})
	}
}

// Without -v a message skipped for max_size must still be reported (once):
// it is never copied, so a user who is not told never learns it is missing.
func TestE2EMaxSizeReportedByDefault(t *testing.T) {
	e := newE2E(t, e2eOpts{channel: `max_size = "4k"`})
	c := dial(t, "alice")
	c.addSized("INBOX", "huge", 20000)
	stdout, stderr := e.mustRun("sync", "ch")
	if !strings.Contains(stdout+stderr, "max_size") {
		t.Errorf("without -v the message skipped for max_size is not reported (the engine logs it at Info level, "+
			"shown only with -v): stdout %q, stderr %q", stdout, stderr)
	}
	e.wantLocal("INBOX", map[string]string{})
	if stdout, stderr, _ := e.run("-q", "sync", "ch"); stdout != "" || stderr != "" {
		t.Errorf("-q: stdout %q, stderr %q; want nothing", stdout, stderr)
	}
}

// moveSetup syncs INBOX (in-1..3) and Archive/2025 (ar-1..3, seen) once, so
// that in-2 and ar-2 both carry U=2 in their folders.
func moveSetup(t *testing.T) (*e2e, *client) {
	t.Helper()
	e := newE2E(t, e2eOpts{channel: `expunge = "both"`})
	c := dial(t, "alice")
	c.create("Archive/2025")
	for _, id := range []string{"in-1", "in-2", "in-3"} {
		c.add("INBOX", id)
	}
	for _, id := range []string{"ar-1", "ar-2", "ar-3"} {
		c.add("Archive/2025", id, imap.FlagSeen)
	}
	e.mustRun("sync", "ch")
	return e, c
}

// A mail client moves a message between folders by renaming its file, which
// keeps the ",U=" of the old folder: the message must leave the first
// mailbox and arrive in the second on the server, without clobbering the
// message that holds that UID there and without duplicates.
func TestE2EMoveBetweenFolders(t *testing.T) {
	e, c := moveSetup(t)
	m := e.local("INBOX")["in-2"]
	if !strings.Contains(m.path, ",U=2") {
		t.Fatalf("in-2 is %s, expected it to carry U=2 like ar-2 in Archive/2025", m.path)
	}
	moved := filepath.Join(e.folder("Archive/2025"), "cur", strings.TrimSuffix(filepath.Base(m.path), ":2,")+":2,S")
	// Not in the clock tick of the state save: a tie is resolved the safe
	// way, by copying both files again (see the next test), which this one
	// does not expect.
	time.Sleep(50 * time.Millisecond)
	if err := os.Rename(m.path, moved); err != nil {
		t.Fatal(err)
	}

	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →1, flags ←0 →0, deleted ←0 →1")
	in := map[string]string{"in-1": "", "in-3": ""}
	ar := map[string]string{"ar-1": "S", "ar-2": "S", "ar-3": "S", "in-2": "S"}
	e.wantLocal("INBOX", in)
	c.wantServer("INBOX", in)
	e.wantLocal("Archive/2025", ar)
	c.wantServer("Archive/2025", ar)
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
	e.wantLocal("Archive/2025", ar)
	c.wantServer("Archive/2025", ar)
}

// As above, but the message already holding that UID in the target folder is
// changed too (flagged) after the move: its file is then the newer one, and
// the older-file-keeps-the-UID rule alone would pair the moved message with
// the other's server copy — the moved message would never reach the server
// and the other would be uploaded twice. Neither file is unchanged since the
// last sync, so both get new UIDs: the server copy of the old one is replaced
// by an upload, and every message ends up exactly once on both sides.
func TestE2EMoveBetweenFoldersThenFlagTheOther(t *testing.T) {
	e, c := moveSetup(t)
	m := e.local("INBOX")["in-2"]
	other := e.local("Archive/2025")["ar-2"]
	if !strings.Contains(m.path, ",U=2") || !strings.Contains(other.path, ",U=2") {
		t.Fatalf("in-2 is %s and ar-2 %s, expected both to carry U=2", m.path, other.path)
	}
	time.Sleep(50 * time.Millisecond)
	moved := filepath.Join(e.folder("Archive/2025"), "cur", strings.TrimSuffix(filepath.Base(m.path), ":2,")+":2,S")
	if err := os.Rename(m.path, moved); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // ar-2's file now newer than the moved one
	if err := os.Rename(other.path, strings.TrimSuffix(other.path, ":2,S")+":2,FS"); err != nil {
		t.Fatal(err)
	}

	e.mustRun("sync", "ch")
	in := map[string]string{"in-1": "", "in-3": ""}
	ar := map[string]string{"ar-1": "S", "ar-2": "FS", "ar-3": "S", "in-2": "S"}
	e.wantLocal("INBOX", in)
	c.wantServer("INBOX", in)
	e.wantLocal("Archive/2025", ar)
	c.wantServer("Archive/2025", ar)
	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
	e.wantLocal("Archive/2025", ar)
	c.wantServer("Archive/2025", ar)
}

// A mailbox deleted on the server: with remove = "near" its empty local
// folder goes too; a non-empty one is left alone and the run exits 4.
func TestE2EVanishedMailbox(t *testing.T) {
	e := newE2E(t, e2eOpts{channel: `remove = "near"` + "\n" + `expunge = "both"`})
	c := dial(t, "alice")
	c.create("Full", "Empty")
	c.add("Full", "keep-me")
	e.mustRun("sync", "ch")
	for _, box := range []string{"Full", "Empty"} {
		if err := c.c.Delete(box).Wait(); err != nil {
			t.Fatalf("DELETE %s: %v", box, err)
		}
	}

	// The dry run must say that the real run removes the local Empty (it
	// lists it only with -v, as "nothing to do").
	files, server := tree(t, e.dir), c.snapshot()
	stdout, _, _ := e.run("sync", "--dry-run", "ch")
	if !strings.Contains(stdout, "ch:Empty") {
		t.Errorf("the dry run does not say it would remove the near folder Empty: %q", stdout)
	}
	if d := diffMaps(files, tree(t, e.dir)) + diffMaps(server, c.snapshot()); d != "" {
		t.Errorf("the dry run changed something:\n%s", d)
	}

	_, stderr, code := e.run("sync", "ch")
	if code != exitGuard {
		t.Errorf("exit %d, want %d (a non-empty folder whose mailbox vanished)", code, exitGuard)
	}
	// The non-empty folder's state is left exactly as it was: not removed and
	// written again (a crash in between would lose the pairing).
	statePath := filepath.Join(e.folder("Full"), ".quixysync-state")
	stateBefore, err := os.Stat(statePath)
	if err != nil {
		t.Fatalf("state of Full: %v", err)
	}
	defer func() {
		after, err := os.Stat(statePath)
		if err != nil || !os.SameFile(stateBefore, after) || !after.ModTime().Equal(stateBefore.ModTime()) {
			t.Errorf("the state of the non-empty vanished folder was rewritten or removed (%v)", err)
		}
	}()
	if !strings.Contains(stderr, "ch:Full") {
		t.Errorf("stderr does not name ch:Full: %q", stderr)
	}
	// --force does not make a non-empty folder go (remove acts only on empty
	// ones), so the message must not suggest it.
	if _, _, code := e.run("sync", "--force", "ch"); code != exitGuard {
		t.Errorf("sync --force: exit %d, want %d (still not empty)", code, exitGuard)
	}
	if strings.Contains(stderr, "--force") {
		t.Errorf("the message for a non-empty vanished mailbox suggests --force, which changes nothing: %q", stderr)
	}
	e.wantLocal("Full", map[string]string{"keep-me": ""})
	if _, err := os.Stat(e.folder("Empty")); err == nil {
		t.Errorf("the empty folder whose mailbox vanished is still there")
	}
	if contains(c.boxes(), "Full") || contains(c.boxes(), "Empty") {
		t.Errorf("a vanished mailbox was created again on the server: %v", c.boxes())
	}
}

// Deleting a local folder downloads it again; it never deletes anything on
// the server, even with expunge = "both".
func TestE2ELocalFolderDeleted(t *testing.T) {
	e := newE2E(t, e2eOpts{channel: `expunge = "both"`})
	c := dial(t, "alice")
	seedTree(c)
	e.mustRun("sync", "ch")
	server := c.snapshot()
	if err := os.RemoveAll(e.folder("INBOX")); err != nil {
		t.Fatal(err)
	}
	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←3 →0, flags ←0 →0, deleted ←0 →0")
	e.wantLocal("INBOX", seededNear["INBOX"])
	if d := diffMaps(server, c.snapshot()); d != "" {
		t.Errorf("deleting a local folder changed the server:\n%s", d)
	}
}

// What mail clients do all day must not look like deletions or new mail:
// moving files from new/ to cur/ (":2," without flags), and a delivery still
// in tmp/ is not mail yet.
func TestE2EMailClientHabits(t *testing.T) {
	e := newE2E(t, e2eOpts{channel: `expunge = "both"`})
	c := dial(t, "alice")
	synced(t, e, c, "INBOX", map[string][]imap.Flag{"a": nil, "b": nil, "c": {imap.FlagSeen}})
	moved := 0
	for _, m := range e.local("INBOX") {
		if filepath.Base(filepath.Dir(m.path)) == "new" {
			// As mutt does: the name without its info part, then ":2,".
			base, _, _ := strings.Cut(filepath.Base(m.path), ":")
			dst := filepath.Join(e.folder("INBOX"), "cur", base+":2,")
			if err := os.Rename(m.path, dst); err != nil {
				t.Fatal(err)
			}
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no unflagged message was delivered into new/; the test needs one there")
	}
	writeFile(t, filepath.Join(e.folder("INBOX"), "tmp", "123.P1.localhost"), strings.ReplaceAll(message("in-tmp", 0), "\r\n", "\n"))

	stdout, _ := e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0")
	want := map[string]string{"a": "", "b": "", "c": "S"}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
}

// copy_arrival_date (on by default): a pulled message's file time is the
// server's INTERNALDATE, and a pushed message's INTERNALDATE its file time.
func TestE2EArrivalDate(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	c := dial(t, "alice")
	arrived := time.Date(2024, 3, 5, 6, 7, 8, 0, time.UTC)
	m := message("dated", 0)
	cmd := c.c.Append("INBOX", int64(len(m)), &imap.AppendOptions{Time: arrived})
	cmd.Write([]byte(m))
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	mkMaildir(t, e.folder("INBOX"))
	e.addLocal("INBOX", "filed", "S")
	filed := time.Date(2023, 11, 12, 13, 14, 15, 0, time.UTC)
	if err := os.Chtimes(e.local("INBOX")["filed"].path, filed, filed); err != nil {
		t.Fatal(err)
	}

	e.mustRun("sync", "ch")
	fi, err := os.Stat(e.local("INBOX")["dated"].path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(arrived) {
		t.Errorf("pulled message's file time %v, want the INTERNALDATE %v", fi.ModTime().UTC(), arrived)
	}
	c.selectBox("INBOX", true)
	bufs, err := c.c.Fetch(imap.UIDSetNum(c.uidOf("INBOX", "filed")), &imap.FetchOptions{InternalDate: true}).Collect()
	if err != nil || len(bufs) != 1 {
		t.Fatalf("FETCH INTERNALDATE: %v (%d messages)", err, len(bufs))
	}
	if got := bufs[0].InternalDate; !got.Equal(filed) {
		t.Errorf("pushed message's INTERNALDATE %v, want its file time %v", got.UTC(), filed)
	}
}

// A first sync of a Maildir that already mirrors the account (made by
// mbsync, or a state file lost) pairs the messages both sides hold instead
// of copying each side's to the other: no message ends up twice, the
// one-sided ones are copied, and flags set on either side are kept.
func TestE2EFirstSyncOfAnExistingMaildir(t *testing.T) {
	e := newE2E(t, e2eOpts{})
	c := dial(t, "alice")
	c.create("Lists")
	c.add("INBOX", "m1", imap.FlagSeen)
	c.add("INBOX", "m2")
	c.add("INBOX", "m3", imap.FlagFlagged)
	c.add("INBOX", "only-server")
	c.add("Lists", "l1", imap.FlagSeen)
	for _, box := range []string{"INBOX", "Lists"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(e.folder(box), sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	// As mbsync leaves them: its UIDs in the names, its .uidvalidity, and
	// its own state files (left alone).
	mbsyncFiles := map[string]string{
		".uidvalidity":         "1700000000\n3\n",
		".mbsyncstate":         "FarUidValidity 1\nNearUidValidity 1700000000\nMaxPulledUid 3\n\n1 1 S\n",
		".mbsyncstate.journal": "3\n",
	}
	for name, text := range mbsyncFiles {
		if err := os.WriteFile(filepath.Join(e.folder("INBOX"), name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range []struct{ id, flags string }{{"m1", "S"}, {"m2", ""}, {"m3", "S"}} {
		name := fmt.Sprintf("1700000000.%d_1.host,U=%d:2,%s", i, i+1, m.flags)
		body := strings.ReplaceAll(message(m.id, 0), "\r\n", "\n")
		if err := os.WriteFile(filepath.Join(e.folder("INBOX"), "cur", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.addLocal("INBOX", "only-local", "R")
	e.addLocal("Lists", "l1", "")

	stdout, _ := e.mustRun("sync", "--dry-run", "ch")
	for _, want := range []string{
		"ch:INBOX:\n  pair 3 messages both sides already hold (same Message-ID, date, subject and size, or same content): not copied\n",
		"ch:Lists:\n  pair 1 message both sides already hold",
		"ch (dry run): copied ←1 →1, flags ←2 →1, deleted ←0 →0, created 0 mailboxes, no errors, 4 messages already on both sides\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dry run output %q lacks %q", stdout, want)
		}
	}
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←1 →1, flags ←2 →1, deleted ←0 →0, created 0 mailboxes, no errors, 4 messages already on both sides")
	want := map[string]string{"m1": "S", "m2": "", "m3": "FS", "only-server": "", "only-local": "R"}
	e.wantLocal("INBOX", want)
	c.wantServer("INBOX", want)
	e.wantLocal("Lists", map[string]string{"l1": "S"})
	c.wantServer("Lists", map[string]string{"l1": "S"})
	for box, n := range map[string]uint32{"INBOX": 5, "Lists": 1} {
		if got := c.selectBox(box, true).NumMessages; got != n {
			t.Errorf("server %s holds %d messages, want %d: a message was copied twice", box, got, n)
		}
	}
	for _, name := range []string{".mbsyncstate", ".mbsyncstate.journal"} {
		if got, err := os.ReadFile(filepath.Join(e.folder("INBOX"), name)); err != nil || string(got) != mbsyncFiles[name] {
			t.Errorf("mbsync's %s: %q %v, want it untouched", name, got, err)
		}
	}
	// mbsync's names and UIDs stay: a file is renamed for its flags only.
	for i, m := range []string{"m1", "m2", "m3"} {
		base := fmt.Sprintf("1700000000.%d_1.host,U=%d:2,", i, i+1)
		if p := e.local("INBOX")[m].path; !strings.HasPrefix(filepath.Base(p), base) {
			t.Errorf("%s is now %s, want the name %s<flags>", m, filepath.Base(p), base)
		}
	}
	stdout, _ = e.mustRun("sync", "ch")
	wantSummary(t, stdout, "ch", "copied ←0 →0, flags ←0 →0, deleted ←0 →0, created 0 mailboxes, no errors")
	if strings.Contains(stdout, "already on both sides") {
		t.Errorf("a later run still reports paired messages: %q", stdout)
	}
}
