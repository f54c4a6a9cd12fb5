package imap

import (
	"bufio"
	"bytes"
	"io"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/quixysync/quixysync/engine"
)

// maxUIDsPerCommand bounds the UIDs in one command; together with range
// compression it keeps command lines far below server limits (Dovecot 64 KiB).
const maxUIDsPerCommand = 1000

// uidChunks sorts and deduplicates uids and splits them into UID sets of at
// most maxUIDsPerCommand UIDs each (consecutive UIDs become ranges). UID 0 is
// dropped: it never names a message.
func uidChunks(uids []engine.UID) []imap.UIDSet {
	s := slices.Clone(uids)
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) > 0 && s[0] == 0 {
		s = s[1:]
	}
	var out []imap.UIDSet
	for len(s) > 0 {
		n := min(len(s), maxUIDsPerCommand)
		var set imap.UIDSet
		for i := 0; i < n; {
			j := i
			for j+1 < n && s[j+1] == s[j]+1 {
				j++
			}
			set = append(set, imap.UIDRange{Start: imap.UID(s[i]), Stop: imap.UID(s[j])})
			i = j + 1
		}
		out = append(out, set)
		s = s[n:]
	}
	return out
}

var flagMap = []struct {
	f engine.Flag
	i imap.Flag
}{
	{engine.FlagDraft, imap.FlagDraft},
	{engine.FlagFlagged, imap.FlagFlagged},
	{engine.FlagPassed, imap.FlagForwarded},
	{engine.FlagReplied, imap.FlagAnswered},
	{engine.FlagSeen, imap.FlagSeen},
	{engine.FlagDeleted, imap.FlagDeleted},
}

func toIMAPFlags(f engine.Flag) []imap.Flag {
	var out []imap.Flag
	for _, m := range flagMap {
		if f&m.f != 0 {
			out = append(out, m.i)
		}
	}
	return out
}

// fromIMAPFlags maps the standard flags; keywords are ignored. System flags
// are compared case-insensitively (go-imap canonicalises them, keywords not).
func fromIMAPFlags(fl []imap.Flag) engine.Flag {
	var f engine.Flag
	for _, x := range fl {
		for _, m := range flagMap {
			if equalFold(string(x), string(m.i)) {
				f |= m.f
			}
		}
	}
	return f
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// crlfToLF converts a CRLF stream to LF: only CR LF pairs become LF, a lone
// CR stays. It reads straight into the caller's buffer and drops the CRs
// there, a run of bytes at a time: converting byte by byte through a buffer
// of its own took 5% of a pull's CPU (660 MB/s; now several GB/s).
type crlfToLF struct {
	r       io.Reader
	heldCR  bool // the last byte read was a CR: whether it stays depends on the next
	pending byte // a byte read after a held CR into a one-byte buffer, not yet returned
	hasPend bool
	err     error
}

func newCRLFToLF(r io.Reader) *crlfToLF { return &crlfToLF{r: r} }

// reset makes c convert r: one converter serves every message of a Fetch.
func (c *crlfToLF) reset(r io.Reader) *crlfToLF {
	*c = crlfToLF{r: r}
	return c
}

func (c *crlfToLF) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.hasPend {
		c.hasPend = false
		p[0] = c.pending
		return 1, nil
	}
	for {
		if c.err != nil {
			if c.heldCR { // a CR at the very end is a lone one
				c.heldCR = false
				p[0] = '\r'
				return 1, nil
			}
			return 0, c.err
		}
		if c.heldCR && len(p) == 1 {
			var one [1]byte
			n, err := c.r.Read(one[:])
			c.err = err
			if n == 0 {
				continue
			}
			switch one[0] {
			case '\n':
				c.heldCR = false
				p[0] = '\n'
			case '\r': // the held CR was lone; this one is held in its place
				p[0] = '\r'
			default:
				c.heldCR = false
				p[0], c.pending, c.hasPend = '\r', one[0], true
			}
			return 1, nil
		}
		// A held CR goes in front of what is read, and the pair, if it is
		// one, is dropped with the others.
		start := 0
		if c.heldCR {
			p[0], start = '\r', 1
		}
		n, err := c.r.Read(p[start:])
		c.err = err
		c.heldCR = false
		m := dropCRBeforeLF(p[:start+n])
		if m > 0 && p[m-1] == '\r' && err == nil {
			m-- // it may begin a pair with the next read's first byte
			c.heldCR = true
		}
		if m > 0 {
			return m, nil
		}
	}
}

// dropCRBeforeLF removes, in place, every CR of b that an LF follows, and
// returns the length left.
func dropCRBeforeLF(b []byte) int {
	w, r := 0, 0
	for {
		i := bytes.Index(b[r:], crlf)
		if i < 0 {
			return w + copy(b[w:], b[r:])
		}
		w += copy(b[w:], b[r:r+i])
		r += i + 1 // past the CR; the LF starts the next run
	}
}

var crlf = []byte("\r\n")

// copyLFToCRLF copies r to w turning every LF not preceded by CR into CR LF.
// It returns the number of bytes read (canonical size) and written.
func copyLFToCRLF(w io.Writer, r io.Reader) (in, out int64, err error) {
	var c crlfCopier
	return c.copy(w, r)
}

// crlfCopier is copyLFToCRLF keeping its buffers from one message to the
// next: a push of 100 small messages allocated (and the runtime zeroed) 9.6
// MB of buffers, a quarter of the run's CPU. It copies line by line, not
// byte by byte.
type crlfCopier struct {
	bw  *bufio.Writer
	buf []byte
}

func (c *crlfCopier) copy(w io.Writer, r io.Reader) (in, out int64, err error) {
	if c.bw == nil {
		c.bw, c.buf = bufio.NewWriterSize(w, 64<<10), make([]byte, 32<<10)
	} else {
		c.bw.Reset(w)
	}
	defer c.bw.Reset(nil) // keep no reference to w
	var prev byte
	for {
		n, rerr := r.Read(c.buf)
		for chunk := c.buf[:n]; len(chunk) > 0; {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				c.bw.Write(chunk)
				out += int64(len(chunk))
				prev = chunk[len(chunk)-1]
				break
			}
			c.bw.Write(chunk[:i])
			out += int64(i)
			if i > 0 {
				prev = chunk[i-1]
			}
			if prev != '\r' {
				c.bw.WriteByte('\r')
				out++
			}
			c.bw.WriteByte('\n')
			out++
			prev = '\n'
			chunk = chunk[i+1:]
		}
		in += int64(n)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return in, out, rerr
		}
	}
	return in, out, c.bw.Flush()
}
