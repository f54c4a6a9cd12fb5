// Package engine decides and performs what a sync does. It talks to mail stores only
// through the interfaces in this file, so any two stores (IMAP, Maildir) can be paired.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"
)

// UID identifies a message inside one mailbox for as long as the mailbox's
// UIDVALIDITY stays the same. 0 means "none" or "not known yet".
type UID uint32

// Store is one side of a channel: an IMAP account or a Maildir tree.
//
// Mailbox names are canonical: hierarchy separated by "/", the inbox is "INBOX",
// everything else as UTF-8. Each store maps them to its own representation.
type Store interface {
	// Name is the store's config name, e.g. "imap.work", for messages.
	Name() string
	// ListMailboxes returns every selectable mailbox. Where the store can report a
	// mailbox's Status cheaply (IMAP LIST-STATUS, Maildir stat), it fills Status.
	ListMailboxes(ctx context.Context) ([]MailboxInfo, error)
	// CreateMailbox creates a mailbox (and missing parents). Creating one that
	// already exists is not an error.
	CreateMailbox(ctx context.Context, name string) error
	// DeleteMailbox removes an empty mailbox. It fails with ErrNotEmpty when the
	// mailbox still holds messages; it never deletes messages.
	DeleteMailbox(ctx context.Context, name string) error
	// OpenMailbox opens a mailbox for reading and writing. A mailbox that does not
	// exist yields an error wrapping ErrNoMailbox. readOnly opens it without any
	// write access (IMAP EXAMINE; Maildir: no renames, no UID assignment on disk).
	OpenMailbox(ctx context.Context, name string, readOnly bool) (Mailbox, error)
	// Close releases connections. Safe to call more than once.
	Close() error
}

// MailboxInfo is one entry of ListMailboxes.
type MailboxInfo struct {
	Name   string
	Status *Status // nil when the store cannot report it cheaply
}

// Status is what a store tells about a mailbox without listing its messages.
type Status struct {
	UIDValidity uint32
	// UIDNext is the UID the next added message will get (at least); every
	// existing message has a smaller UID.
	UIDNext UID
	// UIDNextGuessed says the store worked UIDNext out itself (the server
	// named none: its last message's UID + 1), so it goes down when the
	// last message is removed; a server's own UIDNEXT never does.
	UIDNextGuessed bool
	// Messages is the number of messages; -1 when unknown without a scan.
	Messages int64
	// HighestModSeq is the CONDSTORE change counter; 0 when the store has none.
	HighestModSeq uint64
	// Stamp summarises everything that changes when anything in the mailbox
	// changes (new messages, flags, removals). Equal non-empty stamps from two runs
	// mean "nothing changed in between". Empty means "cannot tell": the engine must
	// look at the messages. A store returns "" when it cannot vouch for the stamp,
	// e.g. an IMAP server without CONDSTORE, or a Maildir directory modified within
	// the file system's clock granularity of the moment it was read.
	Stamp string
}

// Message is one message as listed by a mailbox.
//
// The fields are ordered so that the struct has no padding holes (40 bytes,
// not 48): a listing holds one per message.
type Message struct {
	UID   UID
	Flags Flag
	// SizeIsCRLF says Size is in the wire (CRLF) form, not the LF form.
	SizeIsCRLF bool
	// Size in bytes of the message in canonical (LF) form when the store knows it
	// cheaply; -1 when unknown. IMAP reports RFC822.SIZE (CRLF form): stores that
	// cannot know the LF size report what they have and set SizeIsCRLF.
	Size int64
	// Date is the arrival date (IMAP INTERNALDATE, Maildir file mtime).
	Date time.Time
}

// ListQuery selects which messages List reports.
type ListQuery struct {
	// All reports every message of the mailbox; From and ChangedSince are ignored.
	All bool
	// From reports every message with UID >= From (new messages).
	From UID
	// ChangedSince, when > 0 and the store has a change counter, also reports
	// messages with UID < From whose flags changed after that HIGHESTMODSEQ.
	// Stores without a change counter ignore it and report all messages
	// (and say so by returning complete = true).
	ChangedSince uint64
	// NeedDetails, when set, says for which messages the caller will use Size
	// and Date (those it may copy). A store that pays a system call per message
	// for them (Maildir: stat) may report Size -1 and a zero Date for messages
	// where it returns false. nil: all messages.
	NeedDetails func(UID) bool
}

// Mailbox is an open mailbox. It is used by one goroutine at a time.
type Mailbox interface {
	// Status as seen when the mailbox was opened (IMAP: the SELECT response;
	// Maildir: stat of new/ and cur/ taken before anything was read).
	Status() Status
	// List reports messages per q. complete is true when the result holds every
	// message of the mailbox (so a message missing from it is gone).
	List(ctx context.Context, q ListQuery) (msgs []Message, complete bool, err error)
	// UIDs returns the UIDs of all messages with UID < below that still exist,
	// ascending. It is how removals are found without listing every message.
	UIDs(ctx context.Context, below UID) ([]UID, error)
	// Fetch streams the bytes of each message in canonical form (LF line endings)
	// to fn, one message at a time, in any order; fn must consume r before
	// returning. UIDs that no longer
	// exist are skipped (fn is not called for them). An error from fn stops the
	// fetch and is returned.
	Fetch(ctx context.Context, uids []UID, fn func(uid UID, r io.Reader) error) error
	// Stage writes a message (canonical LF form) to a place where it is not yet
	// visible (Maildir tmp/, a spool file for IMAP). Staging is reversible.
	Stage(ctx context.Context, m NewMessage) (Staged, error)
	// Commit makes staged messages visible, durably, and reports each one's UID
	// (0 if the store could not learn it, e.g. IMAP without UIDPLUS). This is the
	// irreversible step. results[i] belongs to staged[i].
	Commit(ctx context.Context, staged []Staged) ([]CommitResult, error)
	// Discard removes staged messages that will not be committed.
	Discard(staged []Staged)
	// SetFlags adds and removes flags on many messages in as few commands as
	// possible. Unknown Maildir flag letters and IMAP keywords are left alone.
	// Messages that vanished meanwhile are skipped silently.
	SetFlags(ctx context.Context, uids []UID, add, remove Flag) error
	// Expunge removes the given messages for good (IMAP: \Deleted + UID EXPUNGE
	// where UIDPLUS exists, else EXPUNGE with \Deleted taken off the other
	// messages around it and put back; Maildir: unlink). Messages already gone
	// are not an error. A store that can tell a message changed since it was
	// listed (above all, one whose \Deleted was taken back) keeps it and says
	// so with a *KeptError (alone: everything else was removed).
	Expunge(ctx context.Context, uids []UID) error
	// Close releases the mailbox (IMAP: UNSELECT/CLOSE without expunging).
	Close() error
}

// Identifier is an optional Mailbox interface used to pair the messages
// both sides already hold when a mailbox pair is synced for the first time:
// it streams, for each of uids, the message's header (at least its
// Message-ID, Date, Subject and X-TUID fields) and its size with CRLF line
// ends, without the body where the store can avoid reading it (IMAP:
// RFC822.SIZE and BODY.PEEK[HEADER.FIELDS (MESSAGE-ID DATE SUBJECT X-TUID)]). fn is called for one message at a
// time and must consume header. UIDs that no longer exist are skipped. Mailboxes without it are read with Fetch.
type Identifier interface {
	Identify(ctx context.Context, uids []UID, fn func(uid UID, header io.Reader, crlfSize int64) error) error
}

// NewMessage is a message to add to a mailbox.
type NewMessage struct {
	Flags Flag
	Date  time.Time // zero: let the store choose (now)
	Body  io.Reader // canonical form (LF line endings)
}

// Staged is a message written but not yet visible in the target mailbox.
type Staged interface {
	// UID is the UID the message will get when committed if the store chose it
	// in advance (Maildir reserves it in .uidvalidity), else 0.
	UID() UID
	// Size is the number of bytes staged (canonical form).
	Size() int64
}

// CommitResult is the outcome of committing one staged message.
type CommitResult struct {
	UID UID // 0 when the store could not report it
	Err error
}

// Errors stores return (wrapped) so the engine can tell cases apart.
var (
	ErrNoMailbox = errors.New("mailbox does not exist")
	ErrNotEmpty  = errors.New("mailbox is not empty")
	// ErrTaken: a rename's new name is taken (MailboxRenamer).
	ErrTaken      = errors.New("the new name is taken")
	ErrBadName    = errors.New("invalid mailbox name")
	ErrNoMessage  = errors.New("message does not exist")
	ErrReadOnly   = errors.New("mailbox is open read-only")
	ErrValidity   = errors.New("UIDVALIDITY changed while the mailbox was open")
	ErrTooBig     = errors.New("message too big")
	ErrNotSupport = errors.New("not supported by this store")
	// ErrNoSpace: the target has no room for the message (a server's
	// quota). A full disk or a disk quota (ENOSPC, EDQUOT) counts as this
	// without being wrapped.
	ErrNoSpace = errors.New("no room left")
	// ErrStagingFull: a store's staging area on this machine (an IMAP
	// store's spool directory), not its target, is out of room. Wrapped
	// with ENOSPC or EDQUOT: the copies wait for the next run as for a
	// full disk, and the room to make is here.
	ErrStagingFull = errors.New("no room to stage the message on this machine")
	// ErrRefused: the target answered the copy with a refusal (an IMAP
	// server's tagged NO), so it certainly did not happen, as against a
	// copy whose answer never came.
	ErrRefused = errors.New("refused")
)

// Notice is a log attribute (slog.Bool(Notice, true)) on the warnings a user
// must see even when asking for errors only: a thing the run reports once
// and never again (a message skipped for max_size), or a configuration that
// makes runs do nothing. The command's quiet mode shows those.
const Notice = "notice"

// KeptError is what Expunge returns when it left some of the messages it
// was asked to remove because they changed since they were listed (a mail
// client undeleting a Maildir file while the run went on; on IMAP with
// CONDSTORE any change by another client): those stay, the others are gone.
type KeptError struct{ UIDs []UID }

func (e *KeptError) Error() string {
	return fmt.Sprintf("%d message(s) kept: changed since they were listed (a \\Deleted taken back?)", len(e.UIDs))
}

// noSpace says err is a target out of room: every further copy to it would
// fail the same way.
func noSpace(err error) bool {
	return errors.Is(err, ErrNoSpace) || diskFull(err)
}

// diskFull says err is a file system out of room (full, or the user's disk
// quota reached): it holds for every mailbox of the tree, not one.
func diskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// UIDKeeper is implemented by mailboxes whose UIDs live in file names that
// other programs can copy between folders (Maildir ",U=N"). Before List, the
// engine tells which UIDs its state (and any journal) holds for this mailbox:
// known(uid) is true for every UID the engine has seen here, and for every UID
// above the highest one it ever considered. A file carrying a UID for which
// known returns false came from elsewhere (moved by a mail client keeping its
// ",U="); the store gives it a fresh UID so it is treated as new here. Of
// several files with the same UID, one keeps it and the others get fresh ones.
//
// SetLastSync tells when this mailbox's state was last saved (zero: never).
// Of several files sharing a UID the state knows, the one the state pairs is
// the one unchanged since then: a file moved or copied in later, keeping its
// ",U=", was changed after. When that is not exactly one file, the store
// cannot tell and gives every one of them a fresh UID: the pair's message
// then looks removed here and each file new, so nothing is lost or doubled,
// at the cost of copying them again.
type UIDKeeper interface {
	SetKnownUIDs(known func(UID) bool)
	SetLastSync(t time.Time)
}

// IdentKeeper is implemented by mailboxes that can fingerprint where a
// message lives, so that a message arriving under a UID the state knows can
// be told from the one the state paired (Maildir: a file moved in from
// another folder keeping its ",U=N", in the interval in which this folder's
// own message N was removed or changed). An ident survives flag changes;
// 0 means unknown.
//
// Before List, the engine passes the idents its state recorded here
// (SetKnownIdents; ident returns 0 where none was recorded): a file whose
// UID is known but whose ident is recorded and differs is foreign and gets
// a fresh UID, as one with an unknown UID does. Where no ident is recorded
// the UID is trusted, as without this interface. A UID with a recorded
// ident therefore keeps it while it exists. Before it saves the state, the
// engine asks IdentOf for each UID it pairs here without a recorded ident
// (new messages; all of them in a state written before idents); ok is false
// when the mailbox has not seen the message in this session (the ident stays
// unknown).
type IdentKeeper interface {
	SetKnownIdents(ident func(UID) uint32)
	IdentOf(uid UID) (ident uint32, ok bool)
}

// Describer is an optional Mailbox interface for stores whose incremental
// List leaves out unchanged messages (IMAP with CONDSTORE): Describe reports
// the given messages as List would, with size and arrival date, skipping
// those that no longer exist. The engine asks it for the sources of copies a
// previous run did not finish, so a retried copy keeps its date and is held
// to max_size like a first one.
type Describer interface {
	Describe(ctx context.Context, uids []UID) ([]Message, error)
}

// FlagKeeper is an optional Mailbox interface for a mailbox that cannot
// keep some of the standard flags from one session to the next (IMAP: those
// PERMANENTFLAGS leaves out, such as $Forwarded where keywords are not
// allowed, or all but \Seen in a mailbox shared read-mostly). KeptFlags, asked after
// the mailbox is opened, names the flags it keeps. The engine takes what the
// state recorded as this side's value of the others, so a flag the other
// side set is not taken back at the next run because this side dropped it;
// the store leaves those flags out of what it sends. Without the interface,
// every flag is kept.
type FlagKeeper interface {
	KeptFlags() Flag
}

// UIDPrefetcher is implemented by mailboxes that can answer UIDs in the same
// round trip as an incremental List (IMAP: UID SEARCH pipelined with the
// FETCHes). The engine calls PrefetchUIDs(below) just before List when the
// opening status says messages below were removed (so UIDs will very likely
// be asked for); UIDs(below) then answers from what List received. After a
// List that failed, or for another bound, UIDs asks the server as usual.
type UIDPrefetcher interface {
	PrefetchUIDs(below UID)
}

// ListAhead is the incremental listing a ListAheadOpener sends right
// behind a mailbox's SELECT.
type ListAhead struct {
	// UIDValidity the listing is for: opened with another, it is dropped.
	UIDValidity uint32
	// From and ChangedSince as in ListQuery.
	From         UID
	ChangedSince uint64
	// UIDsBelow > 1 also asks for the UIDs below it (see UIDPrefetcher).
	UIDsBelow UID
}

// ListAheadOpener is a Store that can ask for a mailbox's incremental
// listing in the round trip that opens it (IMAP: the FETCHes pipelined behind
// the SELECT) instead of the next one. The next List with the same From and
// ChangedSince (and PrefetchUIDs, if called, with the same bound) answers
// from it; any other call drops it first.
type ListAheadOpener interface {
	OpenMailboxListing(ctx context.Context, name string, readOnly bool, ahead ListAhead) (Mailbox, error)
}

// FlagChange is one SetFlags call.
type FlagChange struct {
	UIDs        []UID
	Add, Remove Flag
}

// FlagBatcher is implemented by mailboxes for which several flag changes cost
// less together than one by one (IMAP: every STORE of the batch pipelined, one
// round trip instead of one per change). SetFlagsBatch returns one error per
// change, nil for a change made; each change must be complete or reported.
type FlagBatcher interface {
	SetFlagsBatch(ctx context.Context, changes []FlagChange) []error
}

// ChangeBatcher is a FlagBatcher that can also remove messages in the same
// go (IMAP: the STOREs, the STORE \Deleted and the UID EXPUNGE pipelined in
// one round trip instead of two). The outcomes are SetFlagsBatch's and
// Expunge's: a change or the removal that failed did not happen.
type ChangeBatcher interface {
	FlagBatcher
	SetFlagsAndExpunge(ctx context.Context, changes []FlagChange, expunge []UID) (flagErrs []error, expungeErr error)
}

// Flusher is implemented by mailboxes that can postpone making flag changes
// and removals durable (Maildir: the fsync of new/ and cur/ after renames and
// unlinks) and do it once for all of them. After DeferSync, SetFlags and
// Expunge may return before their effect is durable; Flush makes everything
// done so far durable. The engine calls Flush before it saves a state that
// records those changes: lost on a crash before that, they are only redone
// (the old state still expects the old files). New messages (Commit) are
// always durable when Commit reports them without an error: the journal
// records them as done. A message Commit put in place without being sure it
// is durable gets an error of its own, and the engine finds out (see Settler).
type Flusher interface {
	DeferSync()
	Flush() error
}

// Settler is implemented by mailboxes whose listing can show a message that
// a power loss would still take away (Maildir: a file renamed into new/ or
// cur/ whose directory was not fsynced, by a run killed in between or one
// whose fsync failed). Settle makes everything the listing shows durable.
// The engine settles a mailbox before it records a copy it found there only
// by looking: a state naming a message that then vanishes would propagate
// the loss to the other side as a deletion.
type Settler interface {
	Settle() error
}

// CopyHinter is implemented by mailboxes that prepare better for new
// messages when told how many are coming (Maildir: UIDs are reserved in
// .uidvalidity with one durable write instead of several).
type CopyHinter interface {
	ExpectCopies(n int)
}

// TouchHinter is implemented by mailboxes that find existing messages faster
// when told in advance which ones a plan will read, change or remove
// (Maildir, when the engine did not list it because nothing changed there:
// one pass over new/ and cur/ that looks for just those files instead of
// indexing every one). The engine calls WillTouch once per side, before it
// executes a plan; an operation on a UID outside it still works, at the cost
// it would have had without the hint.
type TouchHinter interface {
	WillTouch(uids []UID)
}

// Barrierer is implemented by mailboxes that can make other files of their
// file system durable in the same step as their own changes (Maildir: one
// syncfs(2) covers every file and directory of the file system, where an
// fsync covers one). Covers(path) says whether that works for path. When it
// does, the engine leaves the durability of its journal and state file to
// the mailbox:
//   - CommitWith(paths): the next Commit makes paths durable before it makes
//     any message visible (with the messages' data, in one step where it
//     can); the engine calls it instead of syncing the journal's intents.
//   - Barrier(paths): makes paths durable together with what Flush would;
//     the engine calls it instead of Flush plus an fsync of the state.
type Barrierer interface {
	Covers(path string) bool
	CommitWith(paths ...string)
	Barrier(paths ...string) error
}

// Restamper is implemented by mailboxes whose Status stamp changes with the
// engine's own writes (a Maildir's directory mtimes). Without it, a run that
// wrote to such a mailbox records the stamp seen at open, so the next run
// lists the whole mailbox just because of this run's own changes.
//
// StatusAfter, called once, after the run's last change to the mailbox, returns
// the status as it is now and true only when the mailbox can vouch that
// nothing but its own operations changed it since it was opened, and that
// any later change will show in a different stamp. Otherwise it returns
// false and the engine keeps the stamp seen at open.
type Restamper interface {
	StatusAfter() (Status, bool)
}

// Warmer is implemented by stores that can prepare in the background for
// several mailboxes about to be opened at once (IMAP: dial and log in more
// connections of the pool, up to its size), so that those logins overlap
// with the work before the mailboxes are opened instead of delaying each.
type Warmer interface {
	WarmFor(ctx context.Context, mailboxes int)
}

// Scaler is implemented by stores that size themselves to a run's work (IMAP
// to a near server: a few connections for a run that copies little, the
// whole pool for one that copies much). The engine reports each mailbox
// plan's copies, both directions together (each reads one store and writes
// the other), as soon as the plan is made.
type Scaler interface {
	PlannedCopies(messages int, bytes int64)
}

// Prefetcher is implemented by mailboxes that can start, in the background,
// the reading the next List needs (Maildir: listing new/ and cur/), so that it
// overlaps with work on the other side. The engine calls Prefetch only right
// after opening, when it will list the mailbox and has nothing to replay. A
// store uses what was prefetched only for a List that follows with nothing
// changed through the Mailbox in between; what it read was read after the
// Status was taken, so it is as valid a listing as one made later.
type Prefetcher interface {
	Prefetch(ctx context.Context)
}

// NamePrefetcher is implemented by mailboxes that can, while unchanged since
// the last run, be left unlisted even when the other side changed: the
// engine then plans with the state as this side's report, and the store
// finds the few files the plan touches (TouchHinter) from names it reads in
// the background meanwhile. PrefetchNames starts that reading and says
// whether the mailbox can do without a listing (Maildir: only where it
// watches the folder, so that a change by anybody else is noticed and the
// names are read again).
type NamePrefetcher interface {
	PrefetchNames(ctx context.Context) bool
}

// LocalStore is implemented by stores that live on the local file system; the
// engine keeps a mailbox pair's state inside the near mailbox's directory when
// the near store is one.
type LocalStore interface {
	// MailboxDir returns the directory of a mailbox (it may not exist yet).
	// The engine keeps a mailbox pair's state files there (StateFileName and
	// names that begin with it); DeleteMailbox removes them with the folder.
	MailboxDir(name string) (string, error)
}

// MailboxRenamer is implemented by near stores that can give a mailbox
// another name keeping its messages, their UIDs and the engine's state
// (a Maildir folder's mv): how the engine follows a far mailbox renamed on
// the server (see followRenames).
type MailboxRenamer interface {
	// RenameMailbox moves mailbox from to the name to, which must not
	// exist (ErrTaken); subfolders move along where the store nests them.
	RenameMailbox(ctx context.Context, from, to string) error
}
