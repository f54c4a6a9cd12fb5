package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

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
