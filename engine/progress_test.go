package engine

import (
	"fmt"
	"sync"
	"testing"
)

func TestProgressEvents(t *testing.T) {
	far, near := newMemStore("far"), newMemStore("near")
	far.reserve, near.reserve = true, true
	spec := testSpec(t.TempDir(), far, near)
	spec.MaxParallel = 3
	var wantMsgs, wantBytes int64
	for _, box := range []string{"INBOX", "A", "B", "C"} {
		for i := 0; i < 7; i++ {
			subj := fmt.Sprintf("%s-%d", box, i)
			addMsg(t, far, box, subj, 0)
			wantMsgs++
			wantBytes += int64(len(msgBody(subj)))
		}
	}
	addMsg(t, near, "INBOX", "local", 0)
	wantMsgs++
	wantBytes += int64(len(msgBody("local")))

	var mu sync.Mutex
	var evs []ProgressEvent
	opt := RunOptions{Progress: func(ev ProgressEvent) {
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
	}}
	mustSync(t, spec, opt)

	var planned, plannedBytes, copied, copiedBytes int64
	done := map[string]bool{}
	lastDone := 0
	plannedBoxes := map[string]bool{}
	for i, ev := range evs {
		if ev.Channel != "test" {
			t.Fatalf("event %d: channel %q", i, ev.Channel)
		}
		switch ev.Kind {
		case ProgressListed:
			if i != 0 || ev.MailboxesTotal != 4 || ev.Mailbox != "" {
				t.Fatalf("listed event %d: %+v", i, ev)
			}
		case ProgressPlanned:
			if done[ev.Mailbox] || plannedBoxes[ev.Mailbox] {
				t.Fatalf("planned after done or twice: %+v", ev)
			}
			plannedBoxes[ev.Mailbox] = true
			planned += ev.PlannedMessages
			plannedBytes += ev.PlannedBytes
		case ProgressCopied:
			if !plannedBoxes[ev.Mailbox] || done[ev.Mailbox] {
				t.Fatalf("copied outside plan..done: %+v", ev)
			}
			copied += ev.Messages
			copiedBytes += ev.Bytes
		case ProgressMailboxDone:
			if done[ev.Mailbox] || ev.MailboxesTotal != 4 || ev.MailboxesDone != lastDone+1 {
				t.Fatalf("done event %+v (previous done count %d)", ev, lastDone)
			}
			done[ev.Mailbox] = true
			lastDone = ev.MailboxesDone
		default:
			t.Fatalf("event without kind: %+v", ev)
		}
	}
	if len(done) != 4 || len(plannedBoxes) != 4 {
		t.Fatalf("done %v planned %v", done, plannedBoxes)
	}
	if planned != wantMsgs || copied != wantMsgs || plannedBytes != wantBytes || copiedBytes != wantBytes {
		t.Fatalf("planned %d msgs/%d bytes, copied %d/%d, want %d/%d", planned, plannedBytes, copied, copiedBytes, wantMsgs, wantBytes)
	}

	// An unchanged run: listed, then every mailbox done, nothing planned.
	evs = nil
	mustSync(t, spec, opt)
	kinds := map[ProgressKind]int{}
	for _, ev := range evs {
		kinds[ev.Kind]++
	}
	if kinds[ProgressListed] != 1 || kinds[ProgressMailboxDone] != 4 || kinds[ProgressCopied] != 0 {
		t.Fatalf("unchanged run events: %v", kinds)
	}
}
