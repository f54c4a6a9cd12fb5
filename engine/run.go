package engine

import (
	"context"
	"errors"
	"log/slog"
)

// Mode says which directions a run propagates.
type Mode int

const (
	ModeSync Mode = iota // both directions, as the channel's pull/push lists say
	ModePull             // far -> near only
	ModePush             // near -> far only
)

// ChannelSpec is everything the engine needs to sync one channel. The cmd
// layer builds it from the configuration (package channel) and the stores.
type ChannelSpec struct {
	Name      string
	Far, Near Store
	// Match reports whether a mailbox name is selected by the channel's patterns.
	Match func(name string) bool
	// Mailboxes, when non-nil, restricts the run to these names (CHANNEL:BOX,...).
	Mailboxes []string
	// Pull/Push, Expunge, MaxSize as in Options (the Mode further restricts them).
	Pull, Push Ops
	Expunge    [2]bool
	MaxSize    int64
	// Create[side]: create a mailbox missing on that side. Remove[side]: remove an
	// empty mailbox on that side when it vanished from the other side.
	Create, Remove [2]bool
	// CopyArrivalDate: give copies the source's arrival date.
	CopyArrivalDate bool
	// StateDir is where state files go when the near store is not local
	// ($XDG_STATE_HOME/quixysync/<channel>).
	StateDir string
}

// RunOptions apply to a whole run.
type RunOptions struct {
	Mode   Mode
	DryRun bool
	Force  bool // let the safety guard pass
	Log    *slog.Logger
	// Progress, when non-nil, receives progress events (may be nil).
	Progress func(ProgressEvent)
}

// ProgressEvent reports progress of long runs.
type ProgressEvent struct {
	Channel, Mailbox string
	MailboxesDone    int
	MailboxesTotal   int
	Messages, Bytes  int64
}

// Counts are per-direction counters; index [Near] means "done on the near side"
// (i.e. pulled), [Far] "done on the far side" (pushed).
type Counts struct {
	Copied, Flagged, Deleted [2]int
	Created                  [2]int
}

// MailboxResult is the outcome for one mailbox pair.
type MailboxResult struct {
	Mailbox string
	Counts
	Plan    *Plan  // in dry-run, what would be done
	Skipped string // why nothing was done, if so (e.g. "unchanged")
	Err     error
}

// ChannelResult is the outcome for one channel.
type ChannelResult struct {
	Channel   string
	Mailboxes []MailboxResult
	Counts
	Err error // channel-level failure (connect, list)
}

// Errors a run reports so the cmd layer can pick an exit status.
var (
	ErrLocked  = errors.New("locked by another run")
	ErrGuard   = errors.New("stopped by a safety guard")
	ErrStopped = errors.New("interrupted")
)

// SyncChannel syncs every selected mailbox pair of a channel.
func SyncChannel(ctx context.Context, spec ChannelSpec, opt RunOptions) ChannelResult {
	return ChannelResult{Channel: spec.Name, Err: errors.New("not implemented yet")}
}
