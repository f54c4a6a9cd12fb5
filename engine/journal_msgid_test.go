package engine

import (
	"bufio"
	"path/filepath"
	"strings"
	"testing"
)

// The Message-ID written into a copy intent survives the journal verbatim,
// whatever bytes it holds, and journals without it (older runs) still parse.
func TestJournalMessageIDRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j := newJournal(path, journalHeader{Generation: 3, FarValidity: 7, NearValidity: 9}, nil)
	ids := []string{"<a@b>", "<with space and %25 é\t@x>", ""}
	for i, id := range ids {
		if err := j.addCopy(&copyIntent{To: Far, Src: UID(i + 1), UIDNext: 5, Size: 10, CRLFSize: 12, SHA256: "ab", MessageID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.sync(); err != nil {
		t.Fatal(err)
	}
	j.close()
	jd, err := readJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range jd.Copies {
		if c.MessageID != ids[i] {
			t.Errorf("copy %d: Message-ID %q, want %q", i, c.MessageID, ids[i])
		}
	}
	if _, err := parseJournal(strings.NewReader("quixysync-journal 1\ngeneration 1\nfar-validity 1\nnear-validity 1\n\ncopy 1 far 1 - 0 1 1 1 ab %zz\n"), "x"); err == nil {
		t.Error("bad escape accepted")
	}
}

// The header collected while a message streams through yields its
// Message-ID, also when the header is split across reads.
func TestBodyCounterMessageID(t *testing.T) {
	msg := "From: x\nMessage-ID:\n <folded@id>\nSubject: s\n\nMessage-ID: <body@id>\n"
	for _, size := range []int{1, 2, 7, 4096} {
		bc := newBodyCounter(bufio.NewReaderSize(strings.NewReader(msg), 16))
		buf := make([]byte, size)
		for {
			if _, err := bc.Read(buf); err != nil {
				break
			}
		}
		if got := bc.messageID(); got != "<folded@id>" {
			t.Errorf("read size %d: Message-ID %q", size, got)
		}
		if bc.n != int64(len(msg)) {
			t.Errorf("read size %d: counted %d bytes", size, bc.n)
		}
		// Only the header is kept, not the rest of the read it came in.
		if want := msg[:strings.Index(msg, "\n\n")+1]; string(bc.hdr) != want {
			t.Errorf("read size %d: kept %q, want the header %q", size, bc.hdr, want)
		}
	}
	// A header without end is kept up to maxHeader bytes, however it is read.
	huge := strings.Repeat("X-Filler: 0123456789abcdef\n", maxHeader/27+100) + "\nbody\n"
	for _, size := range []int{1000, 32 << 10, 1 << 20} {
		bc := newBodyCounter(strings.NewReader(huge))
		buf := make([]byte, size)
		for {
			if _, err := bc.Read(buf); err != nil {
				break
			}
		}
		if len(bc.hdr) != maxHeader || string(bc.hdr) != huge[:maxHeader] {
			t.Errorf("read size %d: kept %d bytes of an endless header, want the first %d", size, len(bc.hdr), maxHeader)
		}
	}
}
