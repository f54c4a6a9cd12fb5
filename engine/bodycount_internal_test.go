package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
)

// FuzzBodyCounter: fed in pieces of any size, the counter gives the sizes and
// hash that reading the message byte by byte does: the size as read, the
// size with every bare LF made CRLF, the hash of the message with every CRLF
// made LF.
func FuzzBodyCounter(f *testing.F) {
	for _, s := range []string{"", "a\nb\r\n", "\r", "\n", "\r\r\n\n", "Message-ID: <x@y>\r\n\r\nbody\r", "x\r\ny"} {
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, s string, piece uint8) {
		var crlf int64
		var lf bytes.Buffer
		for i := 0; i < len(s); i++ {
			if s[i] == '\n' && (i == 0 || s[i-1] != '\r') {
				crlf++
			}
			crlf++
			if !(s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n') {
				lf.WriteByte(s[i])
			}
		}
		sum := sha256.Sum256(lf.Bytes())
		var r io.Reader = strings.NewReader(s)
		if piece > 0 {
			r = &pieces{r: r, n: int(piece)}
		}
		bc := newBodyCounter(r)
		if err := bc.drain(); err != nil {
			t.Fatal(err)
		}
		if bc.n != int64(len(s)) || bc.crlf != crlf || bc.sum() != hex.EncodeToString(sum[:]) {
			t.Fatalf("%q in pieces of %d: size %d, CRLF size %d; want %d, %d (or the hash differs)", s, piece, bc.n, bc.crlf, len(s), crlf)
		}
	})
}

// pieces returns at most n bytes per Read.
type pieces struct {
	r io.Reader
	n int
}

func (p *pieces) Read(b []byte) (int, error) { return p.r.Read(b[:min(len(b), p.n)]) }

// BenchmarkBodyCounter: what every copied message goes through on its way to
// the target (LF line ends, as a Maildir file or a converted fetch has).
func BenchmarkBodyCounter(b *testing.B) {
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod\n"
	body := "Message-ID: <bench@example.org>\nSubject: x\n\n" + strings.Repeat(line, (1<<20)/len(line))
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		bc := newBodyCounter(strings.NewReader(body))
		if err := bc.drain(); err != nil {
			b.Fatal(err)
		}
		_ = bc.sum()
	}
}
