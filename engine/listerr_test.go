package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// failingLister is a store whose listing fails with an error that, as the
// real stores' do, starts with the store's name.
type failingLister struct{ *memStore }

func (f failingLister) ListMailboxes(ctx context.Context) ([]MailboxInfo, error) {
	return nil, errors.New(f.name + ": connecting to 127.0.0.1:1: connection refused")
}

// A channel that cannot list a side names that store once, not twice.
func TestListErrorNamesTheStoreOnce(t *testing.T) {
	far, near := failingLister{newMemStore("imap.w")}, newMemStore("maildir.l")
	res := SyncChannel(context.Background(), testSpec(t.TempDir(), far, near), RunOptions{})
	if res.Err == nil {
		t.Fatal("no error from a side that cannot be listed")
	}
	msg := res.Err.Error()
	if !strings.HasPrefix(msg, "channel test: listing mailboxes") || strings.Count(msg, "imap.w") != 1 {
		t.Errorf("got %q, want the channel, then the store named once", msg)
	}
}
