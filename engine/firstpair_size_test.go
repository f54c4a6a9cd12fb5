package engine

import (
	"context"
	"io"
	"strings"
	"testing"
)

// tuidOverSize answers, for every UID, a header without Message-ID whose
// X-TUID fields take more bytes than the size the server reports (a server
// whose RFC822.SIZE is wrong: Gmail's is known to be).
type tuidOverSize struct{ Mailbox }

func (tuidOverSize) Identify(ctx context.Context, uids []UID, fn func(UID, io.Reader, int64) error) error {
	for _, u := range uids {
		if err := fn(u, strings.NewReader("X-TUID: ZYJQgcJ/uOgF\r\n\r\n"), 5); err != nil {
			return err
		}
	}
	return nil
}

// identify marks the messages keyed by their Message-ID with a negative
// size; a message without one whose size less its X-TUID goes below zero
// took that mark, and came back as keyed with the zero key: two such
// messages, one on each side, then pair without their content compared.
func TestIdentifyNegativeSizeIsNotAKey(t *testing.T) {
	keyed, _, err := identify(context.Background(), tuidOverSize{}, []UID{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(keyed) != 0 {
		t.Fatalf("messages without a Message-ID came back keyed: %v", keyed)
	}
}
