package engine

// State is what the engine remembers about one mailbox pair between runs.
// It is saved as a plain-text file (see statefile.go) and is small: one line a pair.
type State struct {
	// Generation is raised at every write; a journal names the generation it extends.
	Generation uint64
	// FarValidity and NearValidity are the UIDVALIDITYs the pairs refer to
	// (0 = not known yet: first run).
	FarValidity, NearValidity uint32
	// MaxPulled is the highest far UID already considered for pulling, MaxPushed
	// the highest near UID already considered for pushing. Messages above them are
	// "new". MaxPulled advances only in runs that pull, MaxPushed only in runs that push.
	MaxPulled, MaxPushed UID
	// Far and Near are the change markers seen at the start of the last
	// successful run (see Status).
	Far, Near Markers
	// Pairs, one per message known on at least one side, sorted by Far then Near
	// (pairs with Far == 0 last, by Near).
	Pairs []Pair
}

// Markers are the change markers of one side, recorded from the Status seen
// *before* the last run looked at the messages.
type Markers struct {
	UIDNext       UID
	HighestModSeq uint64
	Messages      int64
	Stamp         string
}

// MarkersOf returns the markers recorded for a status.
func MarkersOf(s Status) Markers {
	return Markers{UIDNext: s.UIDNext, HighestModSeq: s.HighestModSeq, Messages: s.Messages, Stamp: s.Stamp}
}

// Pair links a far message and a near message that are the same message.
type Pair struct {
	Far, Near UID // 0: no message on that side (not copied yet, skipped, or in flight)
	// Flags both sides had after the last agreement (the merge base).
	Flags Flag
	// Skip says why a message is deliberately present on one side only, so it is
	// neither retried every run nor mistaken for a removal.
	Skip SkipReason
	// Ident is, per side, the store's fingerprint of the message under that
	// UID (see IdentKeeper); 0 when unknown. It survives flag changes but not
	// another message taking the UID (a Maildir file moved in from another
	// folder keeping its ",U="), so a store can tell the two apart.
	Ident [2]uint32
	// Into is, for a SkipMerged pair, the UID on the other side of the
	// message its copy was merged into (0: not recorded, as by the version
	// that introduced SkipMerged). The pair follows that message: removed
	// there by that side, it is removed here too; gone from the state
	// otherwise, it is copied again as a message of its own.
	Into UID
}

// SkipReason tells why a pair has only one side on purpose.
type SkipReason uint8

const (
	SkipNone    SkipReason = iota
	SkipTooBig             // larger than max_size: reported once, copied once flagged
	SkipDeleted            // new and already \Deleted where the other side expunges: not copied
	SkipGone               // the partner was removed; this side stays (flagged \Deleted) because expunge does not allow removing it
	SkipRefused            // the other side refused it for its size (a server's APPENDLIMIT or NO): reported once, tried again once flagged since
	SkipMerged             // the other side merged its copy into a message it holds (Pair.Into), paired already (Gmail, by Message-ID): reported once, tried again once flagged since or once that message is gone
)

// A pair with one UID 0 and SkipNone is a copy not done yet (failed or in
// flight): the planner retries it while that direction copies new messages.

// String is the letter used in the state file ("" for SkipNone).
func (r SkipReason) String() string {
	switch r {
	case SkipTooBig:
		return ">"
	case SkipDeleted:
		return "x"
	case SkipGone:
		return "-"
	case SkipRefused:
		return "!"
	case SkipMerged:
		return "="
	}
	return ""
}
