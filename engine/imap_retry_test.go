package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// TestRetriedCopyKeepsItsDate: a copy from Dovecot failed, a push-only run
// then succeeded (recording the server's CONDSTORE markers and keeping the
// copy pending), and the next sync retries the copy although nothing changed
// on the server, so the incremental listing leaves its source out. The
// engine asks for the source's details: with copy_arrival_date the Maildir
// copy gets the server's arrival date as its mtime, and a max_size lowered
// meanwhile still holds it back. When the push-only run changed nothing
// ("quiet"), both sides look unchanged next time: the waiting copy must not
// let the pair be skipped.
func TestRetriedCopyKeepsItsDate(t *testing.T) {
	needDovecot(t)
	for _, tc := range []struct {
		name         string
		push, tooBig bool
	}{{"copied", true, false}, {"max_size", true, true}, {"quiet", false, false}} {
		tooBig := tc.tooBig
		t.Run(tc.name, func(t *testing.T) {
			p := newPairing(t, imapMaildir)
			p.spec.CopyArrivalDate = true
			ctx := context.Background()
			date := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
			addManyAt(t, p.spec.Far, "INBOX", 0, date, "old-one")
			addMany(t, p.spec.Far, "INBOX", 0, "other")
			p.near.failStage.Store("old-one")
			res := engine.SyncChannel(ctx, p.spec, engine.RunOptions{})
			if res.Failed != [2]int{0, 1} || res.Copied != [2]int{0, 1} {
				t.Fatalf("first run: %+v", res.Counts)
			}
			p.near.failStage.Store("")
			want := "old-one: other:"
			pushed := [2]int{}
			if tc.push {
				addMany(t, p.spec.Near, "INBOX", 0, "pushed")
				want, pushed = want+" pushed:", [2]int{1, 0}
			}
			if res := sync1(t, p, engine.RunOptions{Mode: engine.ModePush}); res.Copied != pushed {
				t.Fatalf("push-only run: %+v", res.Counts)
			}
			if tooBig {
				p.spec.MaxSize = 10
			}
			before := p.far.calls.get("Describe")
			res = sync1(t, p, engine.RunOptions{})
			if n := p.far.calls.get("Describe") - before; n != 1 {
				t.Errorf("Describe called %d times, want 1", n)
			}
			if tooBig {
				if res.Copied != [2]int{} || engine.ViewBox(t, p.spec.Near, "INBOX") != "other: pushed:" {
					t.Fatalf("max_size not held: %+v, near %s", res.Counts, engine.ViewBox(t, p.spec.Near, "INBOX"))
				}
				return
			}
			if res.Copied != [2]int{0, 1} {
				t.Fatalf("retry: %+v", res.Counts)
			}
			p.check(t, "INBOX", want)
			mb, err := p.raw[1].OpenMailbox(ctx, "INBOX", true)
			if err != nil {
				t.Fatal(err)
			}
			defer mb.Close()
			msgs, _, err := mb.List(ctx, engine.ListQuery{All: true})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, m := range msgs {
				found = found || m.Date.Equal(date)
			}
			if !found {
				t.Errorf("no near message dated %v: %+v", date, msgs)
			}
		})
	}
}

// A full disk: the first copy that finds no room stops that mailbox's
// copies in that direction, with one error that says so (each copy was
// tried and failed before: a cron job mailed hundreds of errors), nothing
// half-written stays, and once there is room the next run copies the rest.
func TestFullDiskStopsCopies(t *testing.T) {
	needDovecot(t)
	p := newPairing(t, imapMaildir)
	addMany(t, p.spec.Far, "INBOX", 0, names("f", 20)...)
	addMany(t, p.spec.Far, "Other", 0, names("o", 5)...)
	p.near.fullAfter.Store(4) // three messages fit
	res := engine.SyncChannel(t.Context(), p.spec, engine.RunOptions{})
	var errs []string
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			errs = append(errs, m.Err.Error())
		}
	}
	if len(errs) == 0 {
		t.Fatalf("no error for a full disk: %+v", res.Counts)
	}
	for _, e := range errs {
		if !strings.Contains(e, "no space left on device; no more copies go to the near side in this run") || strings.Contains(e, " errors, the first") {
			t.Errorf("error %q, want one that says the rest waits for room", e)
		}
	}
	// Three that fit, then one failure per mailbox that met the full disk
	// before another had said so.
	if n := p.near.calls.get("Stage"); n > 3+len(errs) {
		t.Errorf("%d messages staged on a full disk with %d errors: the copies went on", n, len(errs))
	}
	p.noTmpLeft(t)
	p.near.fullAfter.Store(0)
	sync1(t, p, engine.RunOptions{})
	var want []string
	for _, s := range names("f", 20) {
		want = append(want, s+":")
	}
	p.check(t, "INBOX", strings.Join(want, " "))
	p.check(t, "Other", "o00: o01: o02: o03: o04:")
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("not idempotent: %+v", res.Counts)
	}
}

// TestFullDiskStopsTheChannel: once one mailbox finds the target out of
// room, the channel's other mailboxes copy nothing more to it in this run:
// one error for the channel, not one per mailbox (ten for ten mailboxes
// before); the next run, with room again, copies the rest.
func TestFullDiskStopsTheChannel(t *testing.T) {
	p := newPairing(t, imapMaildir) // the server's exact stamps: a mailbox left pending must not look unchanged
	p.spec.MaxParallel = 1          // mailboxes one after the other: only the first meets the full disk
	boxes := []string{"INBOX", "A", "B", "C", "D"}
	var want []string
	for _, box := range boxes {
		ns := names(strings.ToLower(box), 4)
		addMany(t, p.spec.Far, box, 0, ns...)
		want = append(want, strings.Join(ns, ": ")+":")
	}
	// The near mailboxes exist before the run and are older than the file
	// system's timestamp granularity: one this run leaves untouched gets a
	// stamp the next run can take for "unchanged".
	for _, box := range boxes {
		if err := p.spec.Near.CreateMailbox(t.Context(), box); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	p.near.fullAfter.Store(3) // two messages fit
	res := engine.SyncChannel(t.Context(), p.spec, engine.RunOptions{})
	var errs []error
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			errs = append(errs, m.Err)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "no more copies go to the near side in this run") {
		t.Fatalf("errors %v: want one, saying no more copies go to the near side", errs)
	}
	if n := p.near.calls.get("Stage"); n != 3 {
		t.Errorf("%d messages staged: want the two that fit and the one refused", n)
	}
	if res.Failed[engine.Near] < 4*4 {
		t.Errorf("failed copies %v: the four other mailboxes' copies should count as not made", res.Failed)
	}
	p.noTmpLeft(t)
	p.near.fullAfter.Store(0)
	sync1(t, p, engine.RunOptions{})
	for i, box := range boxes {
		p.check(t, box, want[i])
	}
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("not idempotent: %+v", res.Counts)
	}
}

// TestFirstErrorNotLoggedTwice: the command prints a mailbox's first error
// from its result, so the log (warnings by default) holds only the later
// ones; with -v (info) all of them.
func TestFirstErrorNotLoggedTwice(t *testing.T) {
	p := newPairing(t, maildirMaildir)
	addMany(t, p.spec.Far, "INBOX", 0, "bad-1", "good", "bad-2")
	p.near.failStage.Store("bad-")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	res := engine.SyncChannel(t.Context(), p.spec, engine.RunOptions{Log: log})
	err := mailboxErr(res)
	if err == nil || !strings.Contains(err.Error(), "2 errors, the first") {
		t.Fatalf("result: %v", err)
	}
	var warns, infos int
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, `msg="sync error"`) {
			continue
		}
		switch {
		case strings.Contains(line, "level=WARN"):
			warns++
		case strings.Contains(line, "level=INFO"):
			infos++
		}
	}
	if warns != 1 || infos != 1 {
		t.Fatalf("sync errors logged: %d warnings, %d infos; want the first at info, the second a warning:\n%s", warns, infos, logs.String())
	}
}

// TestFullDiskSaidOnce: once a mailbox reported the full disk, the others'
// failures of the same kind (their state files, their journals cannot be
// written either) are that fact again, not errors of their own: one error
// for the channel, the others not finished; the next run does the rest.
func TestFullDiskSaidOnce(t *testing.T) {
	p := newPairing(t, maildirMaildir)
	p.spec.MaxParallel = 1 // INBOX first meets the full disk
	boxes := []string{"INBOX", "A", "B", "C"}
	for _, box := range boxes {
		addMany(t, p.spec.Far, box, 0, names(strings.ToLower(box), 3)...)
	}
	p.near.fullAfter.Store(2) // one message fits
	// Every state file and journal fails to be written, as on a full disk:
	// INBOX's journal for the message it staged before the refusal, every
	// mailbox's state.
	opt := engine.WithFileError(engine.RunOptions{}, func(path string) error {
		return fmt.Errorf("write %s: %w", path, syscall.ENOSPC)
	})
	errs, unfinished := fullDiskOutcome(engine.SyncChannel(t.Context(), p.spec, opt))
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "mailbox INBOX: copying far UID") ||
		!strings.Contains(errs[0].Error(), "no more copies go to the near side") || unfinished != 4 {
		t.Fatalf("errors %v, %d mailboxes not finished: want INBOX's copy error alone, and every mailbox's state not saved", errs, unfinished)
	}
	p.near.fullAfter.Store(0)
	sync1(t, p, engine.RunOptions{})
	for _, box := range boxes {
		ns := names(strings.ToLower(box), 3)
		p.check(t, box, strings.Join(ns, ": ")+":")
	}
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("not idempotent: %+v", res.Counts)
	}
}

// TestFullDiskAtTheStateSaidOnce: when the first write a full disk refuses
// is a state file (no copy met it: a run that copies into a Maildir whose
// state files cannot be saved), it is the one error of the channel too.
func TestFullDiskAtTheStateSaidOnce(t *testing.T) {
	p := newPairing(t, maildirMaildir)
	p.spec.MaxParallel = 1
	boxes := []string{"INBOX", "A", "B"}
	for _, box := range boxes {
		addMany(t, p.spec.Far, box, 0, names(strings.ToLower(box), 2)...)
	}
	opt := engine.WithFileError(engine.RunOptions{}, func(path string) error {
		// The journal is written, and its directory fsynced (the hook
		// sees that too): only the state files meet the full disk.
		if fi, err := os.Stat(path); strings.HasSuffix(path, ".journal") || err == nil && fi.IsDir() {
			return nil
		}
		return fmt.Errorf("write %s: %w", path, syscall.ENOSPC)
	})
	errs, unfinished := fullDiskOutcome(engine.SyncChannel(t.Context(), p.spec, opt))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "no space left on device") || unfinished != 2 {
		t.Fatalf("errors %v, %d mailboxes not finished: want the first state save's error alone, the two others not finished", errs, unfinished)
	}
	sync1(t, p, engine.RunOptions{})
	for _, box := range boxes {
		p.check(t, box, strings.Join(names(strings.ToLower(box), 2), ": ")+":")
	}
	if res := sync1(t, p, engine.RunOptions{}); !zeroCounts(res.Counts) {
		t.Fatalf("not idempotent: %+v", res.Counts)
	}
}

// fullDiskOutcome returns the mailbox errors of a run on a full disk and how
// many mailboxes it left not finished for it.
func fullDiskOutcome(res engine.ChannelResult) (errs []error, unfinished int) {
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			errs = append(errs, m.Err)
		}
		if m.Skipped == "not finished: the disk is full" {
			unfinished++
		}
	}
	return errs, unfinished
}

// TestFullDiskCopyAfterStateSaidOnce: a full disk reported by one mailbox's
// state save is not reported again by the next mailbox's copy; that
// mailbox's copies still stop, and are made at the next run.
func TestFullDiskCopyAfterStateSaidOnce(t *testing.T) {
	p := newPairing(t, maildirMaildir)
	p.spec.MaxParallel = 1 // INBOX, then A
	for _, box := range []string{"INBOX", "A"} {
		addMany(t, p.spec.Far, box, 0, names(strings.ToLower(box), 2)...)
	}
	p.near.fullAfter.Store(3) // INBOX's two fit, A's first does not
	opt := engine.WithFileError(engine.RunOptions{}, func(path string) error {
		if strings.Contains(path, "/INBOX/") && !strings.HasSuffix(path, ".journal") {
			return fmt.Errorf("write %s: %w", path, syscall.ENOSPC)
		}
		return nil
	})
	errs, _ := fullDiskOutcome(engine.SyncChannel(t.Context(), p.spec, opt))
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "mailbox INBOX: state ") {
		t.Fatalf("errors %v: want INBOX's state save alone", errs)
	}
	if n := p.near.calls.get("Stage"); n != 3 {
		t.Errorf("%d messages staged: want INBOX's two and A's refused one", n)
	}
	p.near.fullAfter.Store(0)
	sync1(t, p, engine.RunOptions{})
	p.check(t, "INBOX", "inbox00: inbox01:")
	p.check(t, "A", "a00: a01:")
}
