package imap

import (
	"context"
	"fmt"
	"runtime"
)

// Start-up latency. A sync with nothing to do is a login and a few STATUS
// commands, so what happens before the first byte reaches the server is a
// large part of it. Two things are moved off that path: the trust anchors
// (anchors.go: read in the background, and only the few a server's chain
// can end at are parsed) and the first connection: Warm dials and logs in
// while the caller lists the local side and reads state files.

// Warm starts connecting and logging in in the background, so that the first
// command finds a connection ready (or waits for the one being made instead
// of making another). It returns at once; errors surface at that first
// command, which dials again and reports them (a refused login is not
// retried: see authErr). Calling it more than once, or after Close, does
// nothing. ctx is the run's: the warm-up ends with it (see forRun).
func (s *Store) Warm(ctx context.Context) {
	if ctx.Err() != nil {
		return // interrupted already: no login, no password_cmd
	}
	s.mu.Lock()
	if s.closed || s.warming != nil {
		s.mu.Unlock()
		return
	}
	done := make(chan struct{})
	s.warming = done
	s.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
	default:
		close(done) // every slot is in use already: nothing to warm
		return
	}
	go func() {
		defer close(done)
		if s.tlsOnce != nil {
			go s.tlsOnce() // the handshake waits for it; start it beside the TCP connect
		}
		cn, err := s.dial(s.forRun(ctx))
		if err != nil {
			s.log.Debug("warm-up connection failed; the first command will say why", "store", s.cfg.Name, "err", err)
			<-s.sem
			return
		}
		s.put(cn)
	}()
	// Let the dial reach its connect before the caller goes on: on one
	// processor (GOMAXPROCS 1, or a one-CPU machine) the caller's local
	// work would otherwise run first and the login start after it.
	runtime.Gosched()
}

// forRun is the context of work done in the background for a run (Warm,
// WarmFor): it ends with the run's, ctx, or when the store is closed. Under
// the store's own context alone, a warm-up outlived Ctrl-C until the run
// had wound down and closed the store: its password_cmd (a passphrase
// prompt) stayed up, and a connection that got through after the Ctrl-C
// started one. A fetch of the secret started by the warm-up ends with it.
func (s *Store) forRun(ctx context.Context) context.Context {
	c, cancel := context.WithCancel(ctx)
	context.AfterFunc(s.bg, cancel)
	return c
}

// waitWarm waits for a Warm in progress to finish, so that a caller takes the
// connection it makes rather than dialling a second one beside it.
func (s *Store) waitWarm(ctx context.Context) error {
	s.mu.Lock()
	w := s.warming
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: interrupted while waiting for the connection being made: %w", s.cfg.Name, context.Cause(ctx))
	}
}

// WarmFor is engine.Warmer: it dials and logs in, in the background, as many
// more connections as it takes for the pool to hold one per mailbox about to
// be opened (up to the pool's size, see size.go). Each login costs the server
// a process start and the client a round trip or three; made here they
// overlap with the work that comes before the mailboxes are opened. Failures
// are left to the commands that need the connections, as with Warm.
//
// How many the pool will use depends on whether the server is near, known
// once Warm's connection has its first answer: up to smallPool are dialled
// at once (either way the pool has them), the others, for a remote server,
// once that is known.
func (s *Store) WarmFor(ctx context.Context, mailboxes int) {
	if ctx.Err() != nil {
		return // interrupted already: no login, no password_cmd
	}
	ctx = s.forRun(ctx)
	s.mu.Lock()
	warming := s.warming != nil
	s.mu.Unlock()
	select {
	case <-s.answered:
		warming = false
	default:
	}
	if !warming {
		s.warmFor(ctx, mailboxes)
		return
	}
	s.warmFor(ctx, min(mailboxes, smallPool))
	if mailboxes <= smallPool {
		return
	}
	go func() {
		select {
		case <-s.answered:
		case <-ctx.Done(): // the run's, or Close
			return
		}
		s.warmFor(ctx, mailboxes)
	}()
}

// warmFor is WarmFor's dialling, under ctx (see forRun).
func (s *Store) warmFor(ctx context.Context, mailboxes int) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	room, have := s.poolRoom()
	for ; have < min(mailboxes, room); have++ {
		select {
		case s.sem <- struct{}{}:
		default:
			return
		}
		go func() {
			cn, err := s.dial(ctx)
			if err != nil {
				s.log.Debug("warm-up connection failed; a later command will say why", "store", s.cfg.Name, "err", err)
				<-s.sem
				return
			}
			s.put(cn)
		}()
	}
}
