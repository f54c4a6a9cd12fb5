package imap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineConn sits directly on the TCP connection (below TLS) and enforces
// our own "no progress for this long = dead" rule.
//
// go-imap sets its own absolute deadlines (30 s per response, 5 min per
// literal, none between responses). They are wrong for us both ways: a large
// body on a slow link can legitimately take longer than 5 minutes, and a
// server that never answers a command is waited for forever. So the library's
// deadline calls are only recorded; each Read/Write gets now+timeout instead
// whenever an operation is in flight (armed) or the library expects data
// (non-zero deadline). A deadline in the past is passed through unchanged:
// that is how a caller aborts a blocked read.
type deadlineConn struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	armed    bool
	libRead  time.Time
	libWrite time.Time
	timedOut atomic.Bool
	// onFirstRead, when set, is called once, when the first bytes arrive.
	onFirstRead func()
	readSome    atomic.Bool
	// firstWait, when set, replaces timeout until the first bytes arrive
	// (see Store.dial: an extra connection to a server that may be full).
	firstWait time.Duration
	// quickAck, when set, has what was read acknowledged at once (see
	// quickAcker); called after a read that did not fill p, that is, one
	// that drained what had arrived.
	quickAck func()
}

func newDeadlineConn(c net.Conn, timeout time.Duration) *deadlineConn {
	return &deadlineConn{Conn: c, timeout: timeout}
}

func (c *deadlineConn) effective(lib time.Time, now time.Time) time.Time {
	if !lib.IsZero() && !lib.After(now) {
		return lib
	}
	if c.armed || !lib.IsZero() {
		if c.firstWait > 0 && !c.readSome.Load() {
			return now.Add(c.firstWait)
		}
		return now.Add(c.timeout)
	}
	return time.Time{}
}

// errTimedOut makes a timeout sticky: go-imap's buffered readers retry after
// an error, and each retry would wait a whole timeout again.
var errTimedOut = fmt.Errorf("no progress within the timeout: %w", os.ErrDeadlineExceeded)

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, errTimedOut
	}
	c.mu.Lock()
	_ = c.Conn.SetReadDeadline(c.effective(c.libRead, time.Now()))
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
	if n > 0 && c.onFirstRead != nil && !c.readSome.Load() && c.readSome.CompareAndSwap(false, true) {
		c.onFirstRead()
	}
	if n > 0 && n < len(p) && c.quickAck != nil {
		c.quickAck()
	}
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.timedOut.Load() {
		return 0, errTimedOut
	}
	c.mu.Lock()
	_ = c.Conn.SetWriteDeadline(c.effective(c.libWrite, time.Now()))
	c.mu.Unlock()
	n, err := c.Conn.Write(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
	return n, err
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.libRead, c.libWrite = t, t
	c.mu.Unlock()
	return nil
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.libRead = t
	if !t.IsZero() && !t.After(time.Now()) {
		_ = c.Conn.SetReadDeadline(t) // abort a blocked read now
	}
	c.mu.Unlock()
	return nil
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.libWrite = t
	c.mu.Unlock()
	return nil
}

// arm marks an operation in flight: a read already blocked waiting for the
// answer gets a deadline too.
func (c *deadlineConn) arm() {
	c.mu.Lock()
	c.armed = true
	_ = c.Conn.SetReadDeadline(c.effective(c.libRead, time.Now()))
	c.mu.Unlock()
}

// disarm ends an operation: an idle pooled connection must not time out.
func (c *deadlineConn) disarm() {
	c.mu.Lock()
	c.armed = false
	_ = c.Conn.SetReadDeadline(c.effective(c.libRead, time.Now()))
	c.mu.Unlock()
}

// tracer writes the protocol trace. Client lines are muted during
// authentication and literals are cut after a short prefix, so neither
// credentials nor whole messages end up in a debug log.
type tracer struct {
	mu    sync.Mutex
	w     io.Writer
	name  string
	muted atomic.Bool
}

const traceLiteralCap = 128

func (t *tracer) line(dir string, b []byte) {
	if t == nil {
		return
	}
	b = bytes.TrimRight(b, "\r\n")
	t.mu.Lock()
	fmt.Fprintf(t.w, "%s %s: %s\n", t.name, dir, b)
	t.mu.Unlock()
}

// scanner follows the line/literal structure of one direction of the
// protocol so the trace (and the capability filter) know whether bytes are a
// protocol line or literal data.
type scanner struct {
	lit     int64 // literal bytes still to come
	litSeen int64 // literal bytes already traced
	line    []byte
}

// literalSize returns n when line ends with a literal announcement {n},
// {n+} or ~{n}.
func literalSize(line []byte) (int64, bool) {
	l := bytes.TrimRight(line, "\r\n")
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false
	}
	num := l[i+1 : len(l)-1]
	num = bytes.TrimSuffix(num, []byte("+"))
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// traceWrite follows client output (bufio-flushed chunks of any size).
func (s *scanner) traceWrite(t *tracer, p []byte) {
	for len(p) > 0 {
		if s.lit > 0 {
			n := min(int64(len(p)), s.lit)
			if !t.muted.Load() && s.litSeen < traceLiteralCap {
				k := min(n, traceLiteralCap-s.litSeen)
				t.line("C", []byte(fmt.Sprintf("[literal] %q", p[:k])))
			}
			s.litSeen += n
			s.lit -= n
			p = p[n:]
			if s.lit == 0 && s.litSeen > traceLiteralCap && !t.muted.Load() {
				t.line("C", []byte(fmt.Sprintf("[literal: %d bytes in all]", s.litSeen)))
			}
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.line = append(s.line, p...)
			if len(s.line) > 64<<10 { // a runaway line: show it in pieces
				t.line("C", s.line)
				s.line = s.line[:0]
			}
			return
		}
		s.line = append(s.line, p[:i+1]...)
		p = p[i+1:]
		if t.muted.Load() {
			t.line("C", []byte("[authentication data redacted]"))
		} else {
			t.line("C", s.line)
		}
		if n, ok := literalSize(s.line); ok {
			s.lit, s.litSeen = n, 0
		}
		s.line = s.line[:0]
	}
}

// wireConn is the top of the connection stack, directly below go-imap. It
// traces both directions and rewrites the server's capability lists so that
// a server advertising both IMAP4rev1 and IMAP4rev2 is seen as IMAP4rev1
// only: go-imap would otherwise send raw UTF-8 mailbox names to a server that
// stays in IMAP4rev1 (modified UTF-7) mode until ENABLE IMAP4rev2
// (go-imap issue #610). Server-to-client bytes are processed line by line,
// with literals passed through untouched.
type wireConn struct {
	net.Conn
	br      *bufio.Reader
	t       *tracer
	pending []byte // processed bytes not yet handed to the reader
	rd      scanner
	wr      scanner
	wmu     sync.Mutex
	// bye is the text of the last untagged BYE: go-imap drops it, but it
	// is the best explanation when the server hangs up.
	bye atomic.Pointer[string]
	// dropped holds LIST responses removed from the stream because their
	// name holds a control character (see dropBadList).
	dropMu  sync.Mutex
	dropped []string
	// claim is the command written past go-imap, if any (multiappend.go).
	claim atomic.Pointer[rawClaim]
	// capsSeen counts the capability lists the server sent (see setup).
	capsSeen atomic.Int64
	// permEmpty: the last PERMANENTFLAGS the server sent was an empty list,
	// which go-imap reads as none sent at all (see selectOn).
	permEmpty atomic.Bool
}

// takeDropped returns and forgets the names dropped so far.
func (c *wireConn) takeDropped() []string {
	c.dropMu.Lock()
	defer c.dropMu.Unlock()
	d := c.dropped
	c.dropped = nil
	return d
}

// dropBadList decides whether a LIST/LSUB response must be hidden from
// go-imap: a mailbox name with NUL or another control character makes its
// modified UTF-7 decoder fail, which closes the connection and loses the
// whole listing. Hiding that one response keeps the honest mailboxes.
// line is a complete line; when it announces a small literal (the name),
// the literal and the rest of the response are read here too. It returns
// the bytes to pass on (nil to drop).
func (c *wireConn) dropBadList(line []byte) ([]byte, error) {
	up := bytes.ToUpper(line[:min(len(line), 7)])
	if !bytes.HasPrefix(up, []byte("* LIST ")) && !bytes.HasPrefix(up, []byte("* LSUB ")) {
		return line, nil
	}
	full := append([]byte(nil), line...)
	if n, ok := literalSize(line); ok && n <= 4096 {
		lit := make([]byte, n)
		if _, err := io.ReadFull(c.br, lit); err != nil {
			return nil, err
		}
		rest, err := c.br.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		full = append(append(full, lit...), rest...)
	}
	body := bytes.TrimRight(full, "\r\n")
	for _, b := range body {
		if b < 0x20 || b == 0x7f {
			c.dropMu.Lock()
			c.dropped = append(c.dropped, fmt.Sprintf("%q", body))
			c.dropMu.Unlock()
			return nil, nil
		}
	}
	return full, nil
}

func newWireConn(c net.Conn, t *tracer, greeting string) *wireConn {
	return &wireConn{Conn: c, br: bufio.NewReaderSize(c, 64<<10), t: t, pending: []byte(greeting)}
}

func (c *wireConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.rd.lit > 0 {
		if int64(len(p)) > c.rd.lit {
			p = p[:c.rd.lit]
		}
		n, err := c.br.Read(p)
		c.rd.lit -= int64(n)
		if c.t != nil {
			if c.rd.litSeen < traceLiteralCap && n > 0 {
				k := min(int64(n), traceLiteralCap-c.rd.litSeen)
				c.t.line("S", []byte(fmt.Sprintf("[literal] %q", p[:k])))
			}
			c.rd.litSeen += int64(n)
			if c.rd.lit == 0 && c.rd.litSeen > traceLiteralCap {
				c.t.line("S", []byte(fmt.Sprintf("[literal: %d bytes in all]", c.rd.litSeen)))
			}
		}
		return n, err
	}
	var line []byte
	var err error
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil || !c.hideLine(&line, &err) {
			break
		}
	}
	if len(line) == 0 {
		return 0, err
	}
	if err == nil { // a whole line
		if len(line) > 6 && bytes.EqualFold(line[:6], []byte("* BYE ")) {
			txt := string(bytes.TrimRight(line[6:], "\r\n"))
			c.bye.Store(&txt)
		}
		if c.t != nil {
			c.t.line("S", line)
		}
		if n, ok := literalSize(line); ok {
			c.rd.lit, c.rd.litSeen = n, 0
		}
	} else if c.t != nil {
		c.t.line("S", line) // partial line (buffer full or error)
	}
	n := copy(p, line)
	if n < len(line) {
		c.pending = append(c.pending[:0], line[n:]...)
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		err = nil
	}
	return n, err
}

// hideLine rewrites a complete line in place (capability filter, hostile
// LIST names) and reports whether it was dropped entirely.
func (c *wireConn) hideLine(line *[]byte, err *error) bool {
	if c.claimLine(*line) {
		if c.t != nil {
			c.t.line("S", *line)
		}
		return true
	}
	if e, ok := emptyPermanentFlags(*line); ok {
		c.permEmpty.Store(e)
	}
	l, isCaps := filterCaps(*line)
	if isCaps {
		c.capsSeen.Add(1)
	}
	l, e := c.dropBadList(l)
	if e != nil {
		*line, *err = nil, e
		return false
	}
	if l == nil {
		if c.t != nil {
			c.t.line("S", []byte("[LIST response with a control character in the name dropped]"))
		}
		return true
	}
	*line = l
	return false
}

// emptyPermanentFlags reports, for a "* OK [PERMANENTFLAGS (...)]" line
// (ok), whether its list is empty: the server keeps no flag changes at all
// (RFC 3501 7.1: a read-only mailbox).
func emptyPermanentFlags(line []byte) (empty, ok bool) {
	const pre = "* OK [PERMANENTFLAGS "
	if len(line) < len(pre) || !bytes.EqualFold(line[:len(pre)], []byte(pre)) {
		return false, false
	}
	rest := bytes.TrimLeft(line[len(pre):], " ")
	if len(rest) == 0 || rest[0] != '(' {
		return false, false
	}
	end := bytes.IndexByte(rest, ')')
	if end < 0 {
		return false, false
	}
	return len(bytes.TrimSpace(rest[1:end])) == 0, true
}

func (c *wireConn) Write(p []byte) (int, error) {
	if c.t != nil {
		c.wmu.Lock()
		c.wr.traceWrite(c.t, p)
		c.wmu.Unlock()
	}
	return c.Conn.Write(p)
}

var (
	capRev1 = []byte(" IMAP4REV1")
	capRev2 = []byte(" IMAP4REV2")
)

// filterCaps drops IMAP4rev2 from a capability list that also names
// IMAP4rev1 (see wireConn), and says whether line is a capability list.
// Only lines that are capability responses are touched: "* CAPABILITY ..."
// or a status response with [CAPABILITY ...].
func filterCaps(line []byte) ([]byte, bool) {
	if !mayListCaps(line) {
		return line, false
	}
	up := bytes.ToUpper(line)
	var start int
	switch {
	case bytes.HasPrefix(up, []byte("* CAPABILITY ")):
		start = len("* CAPABILITY") - 1
	default:
		i := bytes.Index(up, []byte(" [CAPABILITY "))
		if i < 0 || i > 24 { // the code follows the tag and status word
			return line, false
		}
		start = i + len(" [CAPABILITY") - 1
	}
	end := len(up)
	if j := bytes.IndexByte(up[start:], ']'); j >= 0 {
		end = start + j
	}
	list := up[start:end]
	if !hasToken(list, capRev1) || !hasToken(list, capRev2) {
		return line, true
	}
	// Remove " IMAP4rev2" (any case) from the original bytes.
	k := tokenIndex(list, capRev2)
	at := start + k
	out := make([]byte, 0, len(line))
	out = append(out, line[:at]...)
	out = append(out, line[at+len(capRev2):]...)
	return out, true
}

// mayListCaps is a filter without false negatives for filterCaps: an
// untagged response starting with C, or a '[' where a status response's
// code would start. It spares the copy in upper case of every other line
// (a listing of 100 000 messages is as many FETCH lines).
func mayListCaps(line []byte) bool {
	if len(line) > 2 && line[0] == '*' && line[1] == ' ' && (line[2] == 'C' || line[2] == 'c') {
		return true
	}
	return bytes.IndexByte(line[:min(len(line), 26)], '[') >= 0
}

func tokenIndex(list, tok []byte) int {
	for off := 0; ; {
		i := bytes.Index(list[off:], tok)
		if i < 0 {
			return -1
		}
		e := off + i + len(tok)
		if e == len(list) || list[e] == ' ' || list[e] == ']' || list[e] == '\r' || list[e] == '\n' {
			return off + i
		}
		off = e
	}
}

func hasToken(list, tok []byte) bool { return tokenIndex(list, tok) >= 0 }
