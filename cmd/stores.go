package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/quixysync/quixysync/channel"
	"github.com/quixysync/quixysync/engine"
	"github.com/quixysync/quixysync/store/imap"
	"github.com/quixysync/quixysync/store/maildir"
)

// openStore builds the store a channel refers to ("imap.NAME" or
// "maildir.NAME"). Building does not connect: IMAP stores connect on first use.
func (g *globalOptions) openStore(cfg *channel.Config, ref string) (engine.Store, error) {
	is, ms, err := cfg.Store(ref)
	if err != nil {
		return nil, err
	}
	if is != nil {
		return g.openIMAP(is)
	}
	layout := ms.Layout
	if layout == "" {
		layout = channel.LayoutVerbatim
	}
	l, err := maildir.ParseLayout(layout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	s, err := maildir.New(ms.Ref(), ms.Path, ms.Inbox, l, maildir.Options{Fsync: true, Log: g.logger()})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return s, nil
}

func (g *globalOptions) openIMAP(is *channel.IMAPStore) (*imap.Store, error) {
	var trace io.Writer
	if g.Debug {
		trace = g.stderr // the store redacts credentials
	}
	s, err := imap.New(imap.Config{
		Name:        is.Ref(),
		Host:        is.Host,
		Port:        is.Port,
		Tunnel:      is.Tunnel,
		TLS:         is.TLS,
		User:        is.User,
		Auth:        is.Auth,
		Password:    is.Password,
		Token:       is.Token,
		CAFile:      is.CAFile,
		Connections: is.Connections,
		Timeout:     is.Timeout,
		Debug:       trace,
	}, g.logger())
	if err != nil {
		return nil, prefixOnce(is.Ref(), err)
	}
	return s, nil
}

// openChannel builds both stores of a channel. The caller closes them with closeStores.
func (g *globalOptions) openChannel(cfg *channel.Config, ch *channel.Channel) (far, near engine.Store, err error) {
	far, err = g.openStore(cfg, ch.Far)
	if err != nil {
		return nil, nil, err
	}
	near, err = g.openStore(cfg, ch.Near)
	if err != nil {
		far.Close()
		return nil, nil, err
	}
	return far, near, nil
}

// sharedAccounts lets the channels of one run that use the same IMAP
// account share one store: one pool of at most `connections` connections to
// it, as the key promises, and one password_cmd or token_cmd. Servers limit
// the connections of a user (other mail clients count too); channels with
// a pool each could reach that limit together and the last one to log in
// would fail outright. Only channels whose other side is local share: a
// channel between two IMAP accounts takes a connection of each per mailbox
// pair, far first, and two such channels in opposite directions sharing
// both pools could each hold what the other waits for.
type sharedAccounts struct {
	g    *globalOptions
	mu   sync.Mutex
	refs map[string]*sharedAccount
}

type sharedAccount struct {
	users int // channels still to release it
	st    *imap.Store
	err   error
}

// shareAccounts counts, per IMAP store, the targets that may share it; a
// store only one of them uses is not shared.
func (g *globalOptions) shareAccounts(targets []channel.Target) *sharedAccounts {
	sh := &sharedAccounts{g: g, refs: map[string]*sharedAccount{}}
	for _, t := range targets {
		if ref, ok := lonelyIMAP(t.Channel); ok {
			if sh.refs[ref] == nil {
				sh.refs[ref] = &sharedAccount{}
			}
			sh.refs[ref].users++
		}
	}
	for ref, a := range sh.refs {
		if a.users < 2 {
			delete(sh.refs, ref)
		}
	}
	return sh
}

// lonelyIMAP returns the channel's IMAP store when it is its only one.
func lonelyIMAP(ch *channel.Channel) (string, bool) {
	far, near := strings.HasPrefix(ch.Far, "imap."), strings.HasPrefix(ch.Near, "imap.")
	switch {
	case far && !near:
		return ch.Far, true
	case near && !far:
		return ch.Near, true
	}
	return "", false
}

// openChannel is globalOptions.openChannel with the shared stores. release
// closes what the channel alone used and lets go of its shared store; it
// must be called whatever happened, error or not.
func (sh *sharedAccounts) openChannel(cfg *channel.Config, ch *channel.Channel) (far, near engine.Store, release func(), err error) {
	mine := sh.mine(ch)
	var stores [2]engine.Store
	var own []engine.Store
	release = func() {
		sh.g.closeStores(own...)
		if mine != "" {
			sh.release(mine)
		}
	}
	for i, ref := range []string{ch.Far, ch.Near} {
		var st engine.Store
		if ref == mine {
			st, err = sh.borrow(cfg, ref)
		} else if st, err = sh.g.openStore(cfg, ref); err == nil {
			own = append(own, st)
		}
		if err != nil {
			return nil, nil, release, err
		}
		stores[i] = st
	}
	return stores[0], stores[1], release, nil
}

// mine returns the shared store ch uses, if any.
func (sh *sharedAccounts) mine(ch *channel.Channel) string {
	if ref, ok := lonelyIMAP(ch); ok && sh.refs[ref] != nil {
		return ref
	}
	return ""
}

// skip lets go of the shared store of a channel that does not run.
func (sh *sharedAccounts) skip(ch *channel.Channel) {
	if ref := sh.mine(ch); ref != "" {
		sh.release(ref)
	}
}

// borrow returns the shared store, made by the first channel to ask.
func (sh *sharedAccounts) borrow(cfg *channel.Config, ref string) (engine.Store, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a := sh.refs[ref]
	if a.st == nil && a.err == nil {
		is, _, err := cfg.Store(ref)
		if err == nil {
			a.st, err = sh.g.openIMAP(is)
		}
		a.err = err
	}
	if a.err != nil {
		return nil, a.err
	}
	return a.st, nil
}

// release lets go of a shared store; the last channel to do so closes it.
func (sh *sharedAccounts) release(ref string) {
	sh.mu.Lock()
	a := sh.refs[ref]
	a.users--
	last := a.users == 0 && a.st != nil
	sh.mu.Unlock()
	if last {
		sh.g.closeStores(a.st)
	}
}

// closeStores closes stores, logging (not failing on) errors: by then the
// work is done or has failed for a better reason.
func (g *globalOptions) closeStores(stores ...engine.Store) {
	for _, s := range stores {
		if s == nil {
			continue
		}
		if err := s.Close(); err != nil {
			g.logger().Warn("closing store", "store", s.Name(), "err", err)
		}
	}
}

// listBoth lists the mailboxes of both stores at once.
func listBoth(ctx context.Context, far, near engine.Store) (farBoxes, nearBoxes []engine.MailboxInfo, err error) {
	var ferr, nerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		farBoxes, ferr = far.ListMailboxes(ctx)
	}()
	nearBoxes, nerr = near.ListMailboxes(ctx)
	<-done
	return farBoxes, nearBoxes, errors.Join(nameStore(far, ferr), nameStore(near, nerr))
}

// nameStore makes sure an error names the store it came from.
func nameStore(s engine.Store, err error) error { return prefixOnce(s.Name(), err) }

// prefixOnce prefixes err with "name: " unless its message starts with name.
func prefixOnce(name string, err error) error {
	if err == nil || strings.HasPrefix(err.Error(), name+":") || strings.HasPrefix(err.Error(), name+" ") {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}
