package engine

import (
	"context"
	"testing"
)

// aheadStore is a far store that can list ahead (ListAheadOpener): it
// records the listings asked for and the queries List gets afterwards.
type aheadStore struct {
	*memStore
	hints   map[string]ListAhead
	queries map[string][]ListQuery
}

func (a *aheadStore) OpenMailboxListing(ctx context.Context, name string, readOnly bool, ahead ListAhead) (Mailbox, error) {
	a.hints[name] = ahead
	mb, err := a.memStore.OpenMailbox(ctx, name, readOnly)
	if err != nil {
		return nil, err
	}
	return &queryRecorder{Mailbox: mb, a: a, name: name}, nil
}

type queryRecorder struct {
	Mailbox
	a    *aheadStore
	name string
}

func (q *queryRecorder) List(ctx context.Context, lq ListQuery) ([]Message, bool, error) {
	q.a.queries[q.name] = append(q.a.queries[q.name], lq)
	return q.Mailbox.List(ctx, lq)
}

// The listing asked for when a far mailbox is opened is the one report then
// asks for: the recorded markers as From and ChangedSince, under the recorded
// UIDVALIDITY, with the UIDs below when the status seen before opening shows
// removals. A mailbox whose far status is the recorded one gets none.
func TestListAheadIsWhatReportAsks(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	far.listStatus = true // statuses seen before opening, as LIST-STATUS
	near.reserve, near.modseq, near.listStatus = true, false, true
	as := &aheadStore{memStore: far}
	spec := testSpec(t.TempDir(), as, near)
	for _, box := range []string{"INBOX", "Other"} {
		for _, s := range []string{"1", "2", "3"} {
			addMsg(t, far, box, box+s, 0)
		}
	}
	mustSync(t, spec, RunOptions{})
	mustSync(t, spec, RunOptions{})
	far.mu.Lock()
	rec := far.statusLocked(far.boxes["INBOX"])
	far.mu.Unlock()

	setFlagsBySubject(t, far, "INBOX", "INBOX1", FlagSeen, 0)
	expungeBySubject(t, far, "INBOX", "INBOX2")
	addMsg(t, far, "INBOX", "INBOX4", 0)
	addMsg(t, near, "Other", "Other4", 0) // opens Other, whose far side did not change
	as.hints, as.queries = map[string]ListAhead{}, map[string][]ListQuery{}
	mustSync(t, spec, RunOptions{})

	want := ListAhead{UIDValidity: rec.UIDValidity, From: rec.UIDNext, ChangedSince: rec.HighestModSeq, UIDsBelow: rec.UIDNext}
	if got, ok := as.hints["INBOX"]; !ok || got != want {
		t.Errorf("INBOX: listing ahead %+v (asked: %v), want %+v", got, ok, want)
	}
	if qs := as.queries["INBOX"]; len(qs) != 1 || qs[0].All || qs[0].From != want.From || qs[0].ChangedSince != want.ChangedSince {
		t.Errorf("INBOX: List got %+v; want one query with From %d, ChangedSince %d", qs, want.From, want.ChangedSince)
	}
	if h, ok := as.hints["Other"]; ok {
		t.Errorf("Other (far side unchanged): listing ahead %+v asked", h)
	}
	if n := len(near.boxes["INBOX"].msgs); n != 3 {
		t.Errorf("near INBOX holds %d messages, want 3 (one removed, one new)", n)
	}
}
