package engine

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// refMessageID is readMessageID written the plain way, for a reader of
// bufSize bytes: the header block ends at the first empty line; a line
// starting with a space or tab continues the field before it; a physical
// line longer than the buffer (its newline included) is ignored together
// with the field it belongs to — nothing of it, not even its tail, is read
// as a field of its own. The first Message-ID field with a value counts.
func refMessageID(data []byte, bufSize int) string {
	type field struct {
		text   []byte
		ignore bool
	}
	var fields []*field
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line = data[:i+1]
		}
		data = data[len(line):]
		// bufio gives up on a line that fills its buffer without a newline,
		// also when the input ends right there.
		long := len(line) > bufSize || line[len(line)-1] != '\n' && len(line) == bufSize
		t := bytes.TrimRight(line, "\r\n")
		if !long && len(t) == 0 {
			break
		}
		if len(t) > 0 && (t[0] == ' ' || t[0] == '\t') && len(fields) > 0 {
			f := fields[len(fields)-1]
			f.text = append(f.text, t...)
			f.ignore = f.ignore || long
			continue
		}
		fields = append(fields, &field{text: append([]byte(nil), t...), ignore: long})
	}
	for _, f := range fields {
		if f.ignore {
			continue
		}
		k, v, ok := bytes.Cut(f.text, []byte{':'})
		if v := strings.TrimSpace(string(v)); ok && v != "" && strings.EqualFold(string(bytes.TrimSpace(k)), "Message-ID") {
			return v
		}
	}
	return ""
}

func messageIDOf(s string, bufSize int) string {
	return readMessageID(bufio.NewReaderSize(strings.NewReader(s), bufSize))
}

// A header line longer than the reader's buffer is skipped whole: its tail
// is not a field. Before, the part after the first 4 KiB was read as a line
// of its own, so a long field could carry a forged Message-ID (and pair a
// message with another one at a first sync), and a tail of just "\r\n" ended
// the header block early, losing the real Message-ID after it.
func TestReadMessageIDLongLine(t *testing.T) {
	filler := strings.Repeat("x", 4096-len("X-Long: "))
	forged := "From: a@b\r\nX-Long: " + filler + "Message-ID: <forged@evil>\r\nSubject: hi\r\n\r\nbody"
	if got := messageIDOf(forged, 4096); got != "" {
		t.Errorf("tail of a long line read as a field: Message-ID %q, want none", got)
	}
	real := "From: a@b\r\nX-Long: " + strings.Repeat("y", 4096-len("X-Long: ")) + "\r\nMessage-ID: <real@id>\r\n\r\nbody"
	if got := messageIDOf(real, 4096); got != "<real@id>" {
		t.Errorf("Message-ID after a long line: got %q, want <real@id>", got)
	}
	folded := "Message-ID:\r\n " + strings.Repeat("z", 5000) + "\r\nSubject: s\r\n\r\n"
	if got := messageIDOf(folded, 4096); got != "" {
		t.Errorf("Message-ID with a continuation longer than the buffer: got %q, want none (not a truncated value)", got)
	}
	if got := messageIDOf("Message-ID: <a@b>\r\nX: "+strings.Repeat("w", 5000)+"\r\n\r\n", 4096); got != "<a@b>" {
		t.Errorf("Message-ID before a long line: got %q, want <a@b>", got)
	}
}

func FuzzReadMessageID(f *testing.F) {
	for _, s := range []string{
		"", "Message-ID: <a@b>\r\n\r\n", "message-id:<a@b>\n\nbody", "X: 1\r\n Message-ID: <no>\r\n\r\n",
		"Message-ID:\r\n <folded@id>\r\n\r\n", " Message-ID: <lead@ws>\r\n\r\n", "X: " + strings.Repeat("l", 40) + "Message-ID: <t@x>\r\n\r\n",
		"Message-ID: <1>\r\nMessage-ID: <2>\r\n\r\n", "Message-ID: <eof>",
	} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(20))
	}
	f.Fuzz(func(t *testing.T, s string, size uint8) {
		bufSize := 16 + int(size) // bufio's smallest buffer is 16 bytes
		got := messageIDOf(s, bufSize)
		if want := refMessageID([]byte(s), bufSize); got != want {
			t.Fatalf("buffer %d, header %q: got %q, want %q", bufSize, s, got, want)
		}
	})
}
