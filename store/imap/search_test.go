package imap

import (
	"bufio"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/quixysync/quixysync/engine"
)

func TestSearchUIDs(t *testing.T) {
	r := func(lo, hi imap.UID) imap.UIDRange { return imap.UIDRange{Start: lo, Stop: hi} }
	for _, c := range []struct {
		name  string
		set   imap.NumSet
		below engine.UID
		want  []engine.UID
	}{
		{"no answer", nil, 0, nil},
		{"empty", imap.UIDSet{}, 0, []engine.UID{}},
		{"ranges", imap.UIDSet{r(1, 3), r(7, 7), r(10, 12)}, 0, []engine.UID{1, 2, 3, 7, 10, 11, 12}},
		{"below cuts a range", imap.UIDSet{r(1, 3), r(7, 7), r(10, 12)}, 11, []engine.UID{1, 2, 3, 7, 10}},
		{"below cuts everything", imap.UIDSet{r(5, 9)}, 5, []engine.UID{}},
		{"reversed range", imap.UIDSet{r(4, 2)}, 0, []engine.UID{2, 3, 4}},
		{"unordered and overlapping", imap.UIDSet{r(8, 9), r(1, 2), r(2, 3), r(9, 9)}, 0, []engine.UID{1, 2, 3, 8, 9}},
		{"largest UID", imap.UIDSet{r(4294967294, 4294967295)}, 0, []engine.UID{4294967294, 4294967295}},
	} {
		got, err := searchUIDs(c.set, c.below)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !slices.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
		if cap(got) > 0 && cap(got) != len(c.want) && !strings.Contains(c.name, "overlapping") {
			t.Errorf("%s: capacity %d for %d UIDs: not counted before allocating", c.name, cap(got), len(got))
		}
	}
}

// A broken or hostile server's answer is an error, not a panic (go-imap's
// AllUIDs panics on "*") and not gigabytes of UIDs.
func TestSearchUIDsRefusesWhatIsNoUIDList(t *testing.T) {
	for _, c := range []struct {
		name string
		set  imap.NumSet
		want string
	}{
		{"star", imap.UIDSet{{Start: 5, Stop: 0}}, `"*"`},
		{"sequence numbers", imap.SeqSetNum(1, 2), "sequence numbers"},
		{"huge", imap.UIDSet{{Start: 1, Stop: 4294967295}}, "more than"},
	} {
		got, err := searchUIDs(c.set, 0)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %d UIDs, error %v; want an error about %s", c.name, len(got), err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
}

// Over the wire: a server that answers UID SEARCH with "1:*" fails the
// listing with an error (go-imap refuses the set while parsing), and one that
// answers with UIDs beyond what was asked is held to the range asked for,
// without expanding 4 billion UIDs.
func TestFakeSearchAnswerNotUIDs(t *testing.T) {
	for _, c := range []struct {
		answer string
		want   []engine.UID // nil: an error
	}{
		{"1:*", nil},
		{"1:4294967295", []engine.UID{1, 2, 3}},
	} {
		host, port := selectedServer(t, "IMAP4rev1 CONDSTORE UIDPLUS ESEARCH",
			"* 3 EXISTS\r\n* OK [UIDVALIDITY 42] v\r\n* OK [UIDNEXT 4] n\r\n",
			func(tag, cmd string, _ *bufio.Reader, say func(string)) bool {
				if !strings.HasPrefix(strings.ToUpper(cmd), "UID SEARCH") {
					return false
				}
				say(`* ESEARCH (TAG "` + tag + `") UID ALL ` + c.answer + "\r\n" + tag + " OK done\r\n")
				return true
			})
		mb := fakeInbox(t, host, port)
		uids, err := mb.UIDs(ctxT(t), 4)
		switch {
		case c.want == nil && err == nil:
			t.Errorf("answer %s: got %v, want an error", c.answer, uids)
		case c.want != nil && (err != nil || !slices.Equal(uids, c.want)):
			t.Errorf("answer %s: got %v, %v; want %v", c.answer, uids, err, c.want)
		}
	}
}
