package engine

import "time"

// Side names one side of a channel.
type Side int

const (
	Far Side = iota
	Near
)

func (s Side) String() string {
	if s == Far {
		return "far"
	}
	return "near"
}

// Other returns the opposite side.
func (s Side) Other() Side { return 1 - s }

// Ops is a set of kinds of change propagated in one direction.
type Ops uint8

const (
	OpNew   Ops = 1 << iota // copy messages that appeared since the last run
	OpFlags                 // propagate flag changes
	OpGone                  // propagate removals (as \Deleted, then expunge where allowed)
	OpAll   = OpNew | OpFlags | OpGone
)

// Options are the channel's rules for one mailbox pair in one run.
type Options struct {
	// Pull is what goes far -> near, Push what goes near -> far. A `pull`
	// command passes Push = 0, a `push` command Pull = 0.
	Pull, Push Ops
	// Expunge[Far], Expunge[Near]: really remove \Deleted messages on that side.
	Expunge [2]bool
	// MaxSize: larger messages are not copied (0 = no limit).
	MaxSize int64
	// Force lets a run delete more than the safety guard allows.
	Force bool
}

// Report is what one side looked like at the start of this run.
type Report struct {
	Status Status
	// Unchanged: the side's stamp equals the recorded one, nothing was listed,
	// every known message is as recorded.
	Unchanged bool
	// Messages listed (new ones and, incrementally, changed ones; or all).
	Messages []Message
	// Complete: Messages holds every message of the mailbox; a known UID missing
	// from it is gone.
	Complete bool
	// Existing, when ExistingKnown and not Complete: the UIDs below the recorded
	// UIDNext that still exist, and above it up to the highest known UID the
	// listing left out. When !Complete && !ExistingKnown, the caller has
	// established (by the message count) that no known message was removed.
	Existing      []UID
	ExistingKnown bool
}

// Copy is one message to copy to the target side.
type Copy struct {
	UID   UID  // source UID
	Flags Flag // flags to give the copy
	Date  time.Time
	Size  int64
}

// FlagUpdate is one flag change applied to many messages of one side.
type FlagUpdate struct {
	UIDs        []UID // ascending
	Add, Remove Flag
}

// Plan is everything one run does to one mailbox pair. Arrays indexed by Side
// are the actions performed ON that side (Copies[Near] = far -> near).
type Plan struct {
	Copies   [2][]Copy
	Flags    [2][]FlagUpdate
	Expunges [2][]UID
	// ExpungeLast lists the far UIDs of Expunges[Far] removed because their
	// near partner, flagged \Deleted by the user, is expunged in this plan:
	// they go only after the near side's changes. A crash in between then
	// leaves the user's own message, which an undelete can still save, and
	// never a partner already removed on the strength of a \Deleted taken
	// back since. (Far goes first otherwise, so the mirror case holds as is.)
	ExpungeLast []UID
	// TooBig lists source messages skipped for max_size this run (each reported once).
	TooBig [2][]UID
	// Removals counts messages this plan removes or marks \Deleted per side
	// because their partner is gone; the guard compares it with Sizes.
	Removals [2]int
	// Sizes is the number of messages each side holds (as far as known).
	Sizes [2]int
	// Guard is set when the safety guard stops this mailbox: then the plan must
	// not be executed (unless Options.Force, in which case Guard is nil).
	Guard *GuardError
	// Exact[s] says State records side s with the markers seen at open and
	// describes it exactly as it will be once every action succeeded: the
	// engine may then record the side's markers as they are after the run
	// instead (Restamper), when the store vouches that only the run changed it.
	Exact [2]bool
	// State is the state after every action succeeded. Copies appear as pairs
	// whose target UID is 0; the executor fills it in (or leaves 0 on failure,
	// and the next run retries the copy).
	State State
}

// Empty reports whether the plan changes nothing on either side.
func (p *Plan) Empty() bool {
	for s := 0; s < 2; s++ {
		if len(p.Copies[s]) > 0 || len(p.Flags[s]) > 0 || len(p.Expunges[s]) > 0 {
			return false
		}
	}
	return true
}

// GuardError says a run was stopped before deleting too much.
type GuardError struct {
	Side    Side
	Removes int // messages that would be removed or flagged deleted
	Of      int // messages on that side
	Reason  string
}

func (e *GuardError) Error() string {
	return e.Reason
}
