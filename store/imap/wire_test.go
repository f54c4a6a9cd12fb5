package imap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode"

	"github.com/emersion/go-imap/v2"

	"github.com/quixysync/quixysync/engine"
)

func TestCRLFConversions(t *testing.T) {
	for _, tc := range []struct{ crlf, lf string }{
		{"a\r\nb\r\n", "a\nb\n"},
		{"lone\rcr\r\n", "lone\rcr\n"},
		{"end\r", "end\r"},
		{"\r\r\n", "\r\n"},
		{"", ""},
	} {
		// One byte at a time exercises the CR held across reads.
		got, err := io.ReadAll(newCRLFToLF(iotest.OneByteReader(strings.NewReader(tc.crlf))))
		if err != nil || string(got) != tc.lf {
			t.Errorf("crlfToLF(%q) = %q, %v; want %q", tc.crlf, got, err, tc.lf)
		}
	}
	var out bytes.Buffer
	in, n, err := copyLFToCRLF(&out, iotest.OneByteReader(strings.NewReader("a\nb\r\nc\rd\n")))
	if err != nil || out.String() != "a\r\nb\r\nc\rd\r\n" || in != 9 || n != int64(out.Len()) {
		t.Fatalf("copyLFToCRLF: %q %d %d %v", out.String(), in, n, err)
	}
}

func TestUIDChunks(t *testing.T) {
	var uids []engine.UID
	for i := 2500; i >= 1; i-- {
		uids = append(uids, engine.UID(i*2), engine.UID(i*2)) // duplicates, reversed
	}
	uids = append(uids, 0)
	ch := uidChunks(uids)
	if len(ch) != 3 || len(ch[0]) != maxUIDsPerCommand || ch[0][0].Start != 2 {
		t.Fatalf("%d chunks, first %v", len(ch), ch[0][:2])
	}
	if got := uidChunks([]engine.UID{1, 2, 3, 7, 8, 10}); len(got) != 1 || got[0].String() != "1:3,7:8,10" {
		t.Fatalf("%v", got)
	}
	if uidChunks(nil) != nil || uidChunks([]engine.UID{0}) != nil {
		t.Fatal("empty input must give no chunk")
	}
}

func TestFilterCaps(t *testing.T) {
	for in, want := range map[string]string{
		"* CAPABILITY IMAP4rev1 IMAP4rev2 UIDPLUS\r\n":         "* CAPABILITY IMAP4rev1 UIDPLUS\r\n",
		"T1 OK [CAPABILITY IMAP4REV1 IMAP4rev2] hi\r\n":        "T1 OK [CAPABILITY IMAP4REV1] hi\r\n",
		"* CAPABILITY IMAP4rev2 UIDPLUS\r\n":                   "* CAPABILITY IMAP4rev2 UIDPLUS\r\n", // rev2 only: kept
		"* 1 FETCH (BODY[] {5}\r\n":                            "* 1 FETCH (BODY[] {5}\r\n",
		"* OK [CAPABILITY IMAP4rev1 IMAP4rev2X IMAP4rev2]\r\n": "* OK [CAPABILITY IMAP4rev1 IMAP4rev2X]\r\n",
	} {
		if got, _ := filterCaps([]byte(in)); string(got) != want {
			t.Errorf("filterCaps(%q) = %q, want %q", in, got, want)
		}
	}
}

// mayListCaps lets through every line the full test takes for a
// capability list (it only spares the others the upper-case copy).
func FuzzMayListCaps(f *testing.F) {
	for _, s := range []string{"* CAPABILITY IMAP4rev1\r\n", "T1 OK [CAPABILITY IMAP4rev1] hi\r\n",
		"* capability imap4rev1\r\n", "* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n", "A000000000000000001 OK [CAPABILITY X] y\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		up := bytes.ToUpper(line)
		i := bytes.Index(up, []byte(" [CAPABILITY "))
		full := bytes.HasPrefix(up, []byte("* CAPABILITY ")) || (i >= 0 && i <= 24)
		if full && !mayListCaps(line) {
			t.Fatalf("mayListCaps(%q) = false for a capability list", line)
		}
		if _, isCaps := filterCaps(line); isCaps != full {
			t.Fatalf("filterCaps(%q) says %v, want %v", line, isCaps, full)
		}
	})
}

func TestNames(t *testing.T) {
	if w, err := toServer("inbox/Sub", '.'); err != nil || w != "INBOX.Sub" {
		t.Fatalf("%q %v", w, err)
	}
	for _, bad := range []string{"", "/a", "a/", "a//b", "a/../b", ".", "a\x00b", "a\nb"} {
		if _, err := toServer(bad, '/'); err == nil {
			t.Errorf("toServer(%q) accepted", bad)
		}
	}
	if _, err := toServer("a.b/c", '.'); err == nil {
		t.Error("delimiter inside a component accepted")
	}
	if n, err := fromServer("INBOX.a/b", '.'); err == nil {
		t.Errorf("server name with / inside a component mapped to %q", n)
	}
	if n, err := fromServer("Inbox.Sent", '.'); err != nil || n != "INBOX/Sent" {
		t.Fatalf("%q %v", n, err)
	}
}

// FuzzNames: a server name that maps to a canonical one maps back to
// itself, and a canonical name sent to the server comes back as itself (INBOX
// spelled "INBOX" either way): two names never share a local folder, and a
// folder made on one side is found again on the other.
func FuzzNames(f *testing.F) {
	for _, n := range []string{"INBOX", "inbox.Sub", "a/b", "a.b", "Entw&APw-rfe", "x..y", "a\\b", "INBOX/", "Müller GmbH", "a\x00b"} {
		for _, d := range []byte{0, '/', '.', '\\', ':'} {
			f.Add(n, d)
		}
	}
	inboxFirst := func(name string, delim rune) string {
		if delim == 0 {
			if isInbox(name) {
				return "INBOX"
			}
			return name
		}
		first, rest, found := strings.Cut(name, string(delim))
		if !isInbox(first) {
			return name
		}
		if !found {
			return "INBOX"
		}
		return "INBOX" + string(delim) + rest
	}
	f.Fuzz(func(t *testing.T, name string, d byte) {
		// A delimiter is a punctuation character on real servers ("/" or
		// "."); a letter would be one of "INBOX" itself.
		delim := rune(d)
		if d != 0 && (d < 0x20 || d >= 0x7f || unicode.IsLetter(delim) || unicode.IsDigit(delim)) {
			delim = '/'
		}
		if canon, err := fromServer(name, delim); err == nil {
			if err := checkCanonical(canon); err != nil {
				t.Fatalf("fromServer(%q, %q) = %q, not canonical: %v", name, delim, canon, err)
			}
			back, err := toServer(canon, delim)
			if err != nil || back != inboxFirst(name, delim) {
				t.Fatalf("server %q → %q → server %q, %v", name, canon, back, err)
			}
		}
		if srv, err := toServer(name, delim); err == nil {
			back, err := fromServer(srv, delim)
			if err != nil || back != inboxFirst(name, '/') {
				t.Fatalf("canonical %q → server %q → %q, %v", name, srv, back, err)
			}
		}
	})
}

// FuzzCopyLFToCRLF: the line-by-line copy, read in pieces of any size and
// with its buffers reused, writes what converting byte by byte does.
func FuzzCopyLFToCRLF(f *testing.F) {
	for _, s := range []string{"", "a\nb\r\nc\rd\n", "\n\n\r\n\r\r\n", "x\r", "\rx\n"} {
		f.Add(s, uint8(1))
	}
	var c crlfCopier // shared: reuse must not leak one message into the next
	f.Fuzz(func(t *testing.T, s string, piece uint8) {
		var want bytes.Buffer
		var prev byte
		for i := 0; i < len(s); i++ {
			if s[i] == '\n' && prev != '\r' {
				want.WriteByte('\r')
			}
			want.WriteByte(s[i])
			prev = s[i]
		}
		var r io.Reader = strings.NewReader(s)
		if piece > 0 {
			r = &pieceReader{r: r, n: int(piece)}
		}
		var got bytes.Buffer
		in, out, err := c.copy(&got, r)
		if err != nil || got.String() != want.String() || in != int64(len(s)) || out != int64(got.Len()) {
			t.Fatalf("copy(%q) = %q (in %d, out %d, %v); want %q", s, got.String(), in, out, err, want.String())
		}
	})
}

// pieceReader returns at most n bytes per Read.
type pieceReader struct {
	r io.Reader
	n int
}

func (p *pieceReader) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), p.n)]) }

type closedChan chan struct{}

func (c closedChan) Closed() <-chan struct{} { return c }

// settle: after a body that failed (not at its end), wait for the decoder to
// stop before the command is closed; after a body read to its end, do not
// wait; a body the callback left unread is read to its end or error first.
func TestLiteralLatchSettle(t *testing.T) {
	broken := errors.New("use of closed network connection")
	failing := &literalLatch{r: io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(broken))}
	if _, err := io.ReadAll(failing); !errors.Is(err, broken) {
		t.Fatalf("ReadAll: %v", err)
	}
	if n, err := failing.Read(make([]byte, 8)); n != 0 || !errors.Is(err, broken) {
		t.Fatalf("read after the error: %d, %v; want 0 and the same error", n, err)
	}
	dec := make(closedChan)
	done := make(chan struct{})
	go func() { failing.settle(dec); close(done) }()
	select {
	case <-done:
		t.Fatal("settle returned while the decoder still runs")
	case <-time.After(100 * time.Millisecond):
	}
	close(dec)
	select {
	case <-done:
	case <-time.After(settleWait / 2):
		t.Fatal("settle did not return once the decoder stopped")
	}

	start := time.Now()
	unread := &literalLatch{r: strings.NewReader("the rest of a body")}
	unread.settle(make(closedChan)) // never closed: must not wait
	if unread.err != io.EOF {
		t.Fatalf("an unread body was not read to its end: %v", unread.err)
	}
	if d := time.Since(start); d > settleWait/2 {
		t.Fatalf("settle waited %v after a body read to its end", d)
	}

	start = time.Now()
	stuck := &literalLatch{r: iotest.ErrReader(broken)}
	stuck.settle(make(closedChan)) // a decoder parked elsewhere: bounded
	if d := time.Since(start); d < settleWait || d > 3*settleWait {
		t.Fatalf("settle with a decoder that never stops took %v, want about %v", d, settleWait)
	}
}

// TestKeptFlags: without PERMANENTFLAGS, or with \* (new keywords
// allowed), every flag is kept; else the flags it names, in any case.
func TestKeptFlags(t *testing.T) {
	sys := []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}
	for _, c := range []struct {
		perm []imap.Flag
		want engine.Flag
	}{
		{nil, engine.AllFlags},
		{append(slices.Clone(sys), imap.FlagWildcard), engine.AllFlags},
		{append(slices.Clone(sys), "$forwarded"), engine.AllFlags},
		{sys, engine.AllFlags &^ engine.FlagPassed},
		{[]imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDraft, imap.FlagDeleted, "$Junk"}, engine.AllFlags &^ engine.FlagPassed},
		{[]imap.Flag{imap.FlagSeen}, engine.FlagSeen},
		{[]imap.Flag{"\\SEEN", imap.FlagDeleted}, engine.FlagSeen | engine.FlagDeleted},
		{[]imap.Flag{imap.FlagSeen, imap.FlagWildcard}, engine.AllFlags},
		{[]imap.Flag{imap.FlagWildcard}, engine.AllFlags},
		{[]imap.Flag{}, 0}, // PERMANENTFLAGS (): none kept
	} {
		m := &Mailbox{}
		if c.perm != nil {
			m.permFlags.Store(&c.perm)
		}
		if got := m.KeptFlags(); got != c.want {
			t.Errorf("PERMANENTFLAGS %v: kept %v, want %v", c.perm, got, c.want)
		}
		if got := m.appendFlags(engine.AllFlags); len(got) != bits.OnesCount8(uint8(c.want)) {
			t.Errorf("PERMANENTFLAGS %v: APPEND flags %v", c.perm, got)
		}
	}
}

func TestEmptyPermanentFlags(t *testing.T) {
	for _, c := range []struct {
		line        string
		empty, isPF bool
	}{
		{"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n", true, true},
		{"* ok [permanentflags ( )] x\r\n", true, true},
		{"* OK [PERMANENTFLAGS (\\Seen)] Flags permitted.\r\n", false, true},
		{"* OK [PERMANENTFLAGS (\\Answered \\*)] x\r\n", false, true},
		{"* OK [UIDNEXT 4] Predicted next UID\r\n", false, false},
		{"* FLAGS ()\r\n", false, false},
		{"* OK [PERMANENTFLAGS", false, false},
	} {
		empty, ok := emptyPermanentFlags([]byte(c.line))
		if empty != c.empty || ok != c.isPF {
			t.Errorf("%q: empty %v ok %v, want %v %v", c.line, empty, ok, c.empty, c.isPF)
		}
	}
}

// FuzzCRLFToLF: the converter, fed in pieces of any size and read into
// buffers of any size, gives what converting byte by byte does.
func FuzzCRLFToLF(f *testing.F) {
	for _, s := range []string{"", "a\r\nb\r\n", "lone\rcr\r\n", "end\r", "\r\r\n", "\r\n\r\n\r", "x\ry\r\r"} {
		f.Add(s, uint8(1), uint8(1))
	}
	c := newCRLFToLF(nil) // shared: reuse must not leak one message into the next
	f.Fuzz(func(t *testing.T, s string, piece, into uint8) {
		var want bytes.Buffer
		for i := 0; i < len(s); i++ {
			if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				continue
			}
			want.WriteByte(s[i])
		}
		var r io.Reader = strings.NewReader(s)
		if piece > 0 {
			r = &pieceReader{r: r, n: int(piece)}
		}
		c.reset(r)
		var got []byte
		buf := make([]byte, max(1, int(into)))
		for {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
		}
		if string(got) != want.String() {
			t.Fatalf("crlfToLF(%q) in pieces of %d into %d = %q; want %q", s, piece, into, got, want.String())
		}
	})
}

// BenchmarkCRLFToLF converts a body of mail-like lines read as the Maildir
// store's staging reads it.
func BenchmarkCRLFToLF(b *testing.B) {
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\r\n"
	body := []byte(strings.Repeat(line, (1<<20)/len(line)))
	c := newCRLFToLF(nil)
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		c.reset(bytes.NewReader(body))
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
	}
}

// BenchmarkLFToCRLF converts a body of mail-like lines as an upload does.
func BenchmarkLFToCRLF(b *testing.B) {
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n"
	body := []byte(strings.Repeat(line, (1<<20)/len(line)))
	var c crlfCopier
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, _, err := c.copy(io.Discard, bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// readerConn is a net.Conn that only reads, from a fixed stream.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// errNoProgress: readThrough made more reads than the stream has bytes.
var errNoProgress = errors.New("no progress")

// readThrough reads a server's stream through the wire filter in reads of
// the given sizes (cycled), as go-imap's reader would.
func readThrough(stream []byte, sizes []byte) ([]byte, error) {
	wc := newWireConn(readerConn{r: bytes.NewReader(stream)}, nil, "")
	var out []byte
	for i := 0; ; i++ {
		n := 4096
		if len(sizes) > 0 {
			n = int(sizes[i%len(sizes)])%97 + 1
		}
		p := make([]byte, n)
		k, err := wc.Read(p)
		out = append(out, p[:k]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if i > 4*len(stream)+16 {
			return out, errNoProgress
		}
	}
}

// A message body passes the wire filter byte for byte, whatever it holds:
// lines that look like a capability list, a LIST response with a control
// character (which the filter drops or rewrites outside literals), a
// literal announcement, bare CRs and LFs. Read in pieces of any size.
func FuzzWireKeepsLiterals(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\n* CAPABILITY IMAP4rev1 IMAP4rev2\r\n"), []byte{3, 200})
	f.Add([]byte("* LIST (\\Noselect) \"/\" \"a\x01b\"\r\n"), []byte{1})
	f.Add([]byte("x {5}\r\nhello\r\nA1 OK [CAPABILITY IMAP4rev1 IMAP4rev2] x\r\n"), []byte{7, 13})
	f.Add([]byte("\n\r\r\n* BYE now\r\n"), []byte{})
	f.Fuzz(func(t *testing.T, body, sizes []byte) {
		stream := fmt.Appendf(nil, "* 1 FETCH (UID 7 BODY[] {%d}\r\n%s)\r\nA1 OK done\r\n", len(body), body)
		out, err := readThrough(stream, sizes)
		if err != nil {
			t.Fatalf("%v after %q", err, out)
		}
		if !bytes.Equal(out, stream) {
			t.Fatalf("stream changed:\nin  %q\nout %q", stream, out)
		}
	})
}

// Any stream at all: the filter never panics or stalls, and it only ever
// removes bytes (a dropped LIST response, IMAP4rev2 from a capability list).
func FuzzWireAnyStream(f *testing.F) {
	f.Add([]byte("* OK hi\r\n* CAPABILITY IMAP4rev1 IMAP4rev2\r\n* LIST () \"/\" {3}\r\na\x01b\r\nA1 OK x\r\n"), []byte{5})
	f.Add([]byte("* LIST () \"/\" {99999}\r\n"), []byte{})
	f.Add([]byte("* LIST () \"/\" {3}\r\nabc"), []byte{2})
	f.Fuzz(func(t *testing.T, stream, sizes []byte) {
		out, err := readThrough(stream, sizes)
		if errors.Is(err, errNoProgress) {
			t.Fatalf("no progress on %q", stream)
		}
		if len(out) > len(stream) {
			t.Fatalf("%d bytes out of %d in:\nin  %q\nout %q", len(out), len(stream), stream, out)
		}
	})
}
