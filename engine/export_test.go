package engine

import "sync/atomic"

// Exported for the external test package (engine_test), which can import
// store packages that themselves import engine.
var (
	CrashScenarioSetup = crashScenarioSetup
	TestSpecFor        = testSpec
	MustSync           = mustSync
	ViewBox            = view
	AddMsg             = addMsg
	NewMemStore        = newMemStore
	ErrCrash           = errCrash
	// RetryAfterListing: a mailbox started ahead of the far listing whose
	// run did not count; a run that crashed does not run it again.
	RetryAfterListing = retryAfterListing
)

// WithJournalCounter makes a run count its journal lines into n.
func WithJournalCounter(opt RunOptions, n *atomic.Int64) RunOptions {
	opt.journalLines = n
	return opt
}

// WithJournalSyncCounter makes a run count its journal syncs into n.
func WithJournalSyncCounter(opt RunOptions, n *atomic.Int64) RunOptions {
	opt.journalSyncs = n
	return opt
}

// WithFileError fails the writing of the state and journal files that fn
// returns an error for (by path), as a full disk would.
func WithFileError(opt RunOptions, fn func(path string) error) RunOptions {
	opt.fileErr = fn
	return opt
}

// More scenario helpers for the external integration tests.
var (
	SetFlagsBySubject = setFlagsBySubject
	ExpungeBySubject  = expungeBySubject
	FindUID           = findUID
)
