// Package imap is the IMAP store: engine.Store and engine.Mailbox on top of
// github.com/emersion/go-imap/v2 (beta.8), with the library's known traps
// worked around (see /work/shared/research/golibs.md §1 and §5):
//
//   - deadlines come from our own net.Conn wrapper (progress based, cfg.Timeout)
//     and a context watchdog closes the client, because go-imap has neither
//     contexts nor a per-command timeout;
//   - every Fetch/List/Store/Expunge command is consumed and closed, and every
//     command is waited for;
//   - UID sets are validated non-empty and chunked;
//   - the mailbox is checked to exist before APPEND (an APPEND refused before
//     the continuation kills a go-imap connection);
//   - Client.Move, ENABLE UTF8=ACCEPT/IMAP4rev2 and CLOSE are never used;
//   - a server advertising IMAP4rev1 and IMAP4rev2 is shown to go-imap as
//     IMAP4rev1 only, so mailbox names go out as modified UTF-7 (go-imap would
//     otherwise send raw UTF-8 to a server still in IMAP4rev1 mode). A server
//     advertising only IMAP4rev2 gets UTF-8 names, as RFC 9051 wants.
//
// Connections are pooled (Config.Connections). ListMailboxes, CreateMailbox,
// DeleteMailbox borrow one briefly; an open Mailbox owns one until Close.
// A broken connection is dropped, never reused.
package imap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/quixysync/quixysync/engine"
)

// Config configures an IMAP store.
type Config struct {
	Name string // "imap.work", for messages
	Host string
	Port int
	TLS  string // "implicit" | "starttls" | "none"
	User string
	// Auth lists the allowed mechanisms ("plain", "login", "xoauth2",
	// "oauthbearer"); the first one the server offers is used. Empty means
	// AUTHENTICATE PLAIN when offered, else LOGIN.
	Auth []string
	// Password and Token produce the secret; each is called at most once per
	// store (the result is cached). Either may be nil when not needed.
	Password func(ctx context.Context) (string, error)
	Token    func(ctx context.Context) (string, error)
	CAFile   string // extra trust anchor (PEM)
	// Connections is the most connections open at once (default 4).
	Connections int
	// CommitConnections is the most connections one Mailbox.Commit APPENDs
	// over at once: its own plus extra ones taken from the pool only if free
	// (at most Connections). Default 1: on Dovecot with Maildir, parallel
	// APPENDs into one mailbox collide on its dovecot-uidlist dot-lock (a
	// collision sleeps 50-150 ms) and were 1.5-2.5x slower than one
	// connection in our measurements; servers without such a lock, or a
	// long round trip, gain from more.
	CommitConnections int
	// ListStatus makes ListMailboxes ask for every mailbox's status in the
	// same LIST (RFC 5819) when the server offers it. Off by default: on
	// Dovecot 2.3 (maildir_very_dirty_syncs) LIST-STATUS costs 120-170 ms on
	// a 100 000-message mailbox where a STATUS costs 8-13 ms, and on 10
	// small mailboxes 4-9 ms against 1.2 ms for ten pipelined STATUS
	// (measured 2026-11-26); the engine then asks StatusAll, which pipelines.
	ListStatus bool
	// Timeout: no progress for this long while waiting for the server means
	// the connection is dead (default 60s).
	Timeout time.Duration
	// Debug receives a protocol trace (credentials redacted, literals cut).
	Debug io.Writer
	// SpoolDir is where Stage spools messages ("" = os.TempDir()).
	SpoolDir string
	// Tunnel, when set, is a command (run by sh -c) whose standard input
	// and output carry each connection instead of TCP to Host:Port. Host
	// then only names the certificate TLS expects (it may be empty with
	// TLS "none"), and credentials cross unencrypted only if the command
	// lets them (ssh does not).
	Tunnel string
}

// Store is an IMAP account.
type Store struct {
	cfg     Config
	log     *slog.Logger
	tlsOnce func() (*tls.Config, error) // nil with tls = "none"; see warm.go
	sem     chan struct{}
	// bg is the context of work the store does on its own (Warm); Close ends it.
	bg       context.Context
	bgCancel context.CancelFunc
	warming  chan struct{}  // closed when Warm's dial is over; nil when never warmed
	dbgs     atomic.Int64   // connection counter for trace names
	tunnels  sync.WaitGroup // tunnel commands not yet waited for (see dialTunnel)
	// rawTags numbers the commands written past go-imap (multiappend.go).
	rawTags atomic.Int64
	// appendBufs keeps MULTIAPPEND's 64 KiB writers between batches.
	appendBufs sync.Pool
	dials      atomic.Int64 // connections dialled (tests)

	// Pool sizing for a near server (size.go).
	answerNanos atomic.Int64  // the first connection's dial-to-first-answer time (see answered)
	answered    chan struct{} // closed once that is known (or the dial failed)
	answerOnce  sync.Once
	nearBelow   time.Duration // nearAnswer; tests change it
	held        int           // slots of sem held back while the pool is small (under mu)
	// limited counts slots of sem held for good because the server refused
	// a connection while others of ours were in use (see refused);
	// dialing counts dials in progress, each holding a slot (both under mu).
	limited int
	dialing int
	// loggedIn: a connection of this store has logged in, so a refusal
	// now is no verdict on the credentials.
	loggedIn     atomic.Bool
	planned      int64 // messages of the plans reported (under mu)
	plannedBytes int64 // and their bytes (under mu)

	mu   sync.Mutex
	idle []*conn
	// urgent counts store-wide commands waiting for a connection (see
	// getFirst); urgentGone is closed when that drops to 0 (nil while 0).
	urgent     int
	urgentGone chan struct{}
	closed     bool
	delim      rune
	hasDel     bool
	// delimReady is closed when askDelim's answer is in (nil before it is
	// asked, and again after it failed, with delimErr saying why).
	delimReady chan struct{}
	delimErr   error

	// testAppend, set only by tests, is called on the committing goroutine
	// just before an APPEND's literal is sent (afterLiteral false) and right
	// after it (true); own tells whether cn is the mailbox's own connection.
	testAppend func(cn *conn, idx int, afterLiteral, own bool)

	// password and token are the fetch of each secret, running or done (nil
	// before the first). A password_cmd can take long (a passphrase
	// prompt), so those who need it wait on the fetch's done channel
	// beside their context, never on a lock held while it runs: Ctrl-C
	// must end the wait. credMu guards these and authErr and mute, which
	// dial reads first thing.
	prefetchOnce sync.Once
	password     *fetch
	token        *fetch
	credMu       sync.Mutex
	authErr      error
	// mute is set when a server accepted a connection and then sent nothing
	// for the whole timeout: the next dial would only wait as long again
	// (a sync's warm-up and its first command each waited out the timeout).
	mute error
}

var _ engine.Store = (*Store)(nil)
var _ engine.Scaler = (*Store)(nil)
var _ engine.Warmer = (*Store)(nil)

// New validates cfg and returns a store; it connects lazily.
func New(cfg Config, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = "imap"
	}
	if cfg.Host == "" && (cfg.Tunnel == "" || cfg.TLS != "none") {
		return nil, fmt.Errorf("%s: host is empty", cfg.Name)
	}
	switch cfg.TLS {
	case "":
		cfg.TLS = "implicit"
	case "implicit", "starttls", "none":
	default:
		return nil, fmt.Errorf("%s: tls = %q: want \"implicit\", \"starttls\" or \"none\"", cfg.Name, cfg.TLS)
	}
	if cfg.Port == 0 {
		cfg.Port = 143
		if cfg.TLS == "implicit" {
			cfg.Port = 993
		}
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("%s: port %d out of range", cfg.Name, cfg.Port)
	}
	if cfg.Connections <= 0 {
		cfg.Connections = 4
	}
	if cfg.CommitConnections <= 0 {
		cfg.CommitConnections = 1
	}
	cfg.CommitConnections = min(cfg.CommitConnections, cfg.Connections)
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.User == "" && cfg.Tunnel == "" {
		return nil, fmt.Errorf("%s: user is empty", cfg.Name)
	}
	// Normalised in a copy: the caller's slice may be shared (channels of
	// one account open their stores at the same time).
	cfg.Auth = slices.Clone(cfg.Auth)
	for i, a := range cfg.Auth {
		a = strings.ToLower(a)
		switch a {
		case "plain", "login":
			if cfg.Password == nil {
				return nil, fmt.Errorf("%s: auth %q needs a password", cfg.Name, a)
			}
		case "xoauth2", "oauthbearer":
			if cfg.Token == nil {
				return nil, fmt.Errorf("%s: auth %q needs token_cmd", cfg.Name, a)
			}
		default:
			return nil, fmt.Errorf("%s: unknown auth mechanism %q (want plain, login, xoauth2 or oauthbearer)", cfg.Name, a)
		}
		cfg.Auth[i] = a
	}
	if len(cfg.Auth) == 0 && cfg.Password == nil {
		return nil, fmt.Errorf("%s: no password configured", cfg.Name)
	}
	s := &Store{cfg: cfg, log: log, sem: make(chan struct{}, cfg.Connections), answered: make(chan struct{}), nearBelow: nearAnswer}
	if cfg.TLS != "none" {
		once, err := newTLSOnce(cfg)
		if err != nil {
			return nil, err
		}
		s.tlsOnce = once
	}
	s.bg, s.bgCancel = context.WithCancel(context.Background())
	return s, nil
}

// Name returns the store's config name.
func (s *Store) Name() string { return s.cfg.Name }

// Close logs out of idle connections. Connections held by open mailboxes are
// closed when those are closed. Safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.closed = true
	s.mu.Unlock()
	if s.bgCancel != nil {
		s.bgCancel() // a Warm still dialling gives up; put logs it out if it got through
		// A password_cmd still running is killed (channel.runSecretCmd)
		// and has WaitDelay to end; wait a little longer than that.
		s.stopFetches(2 * time.Second)
	}
	for _, cn := range idle {
		cn.quit()
	}
	if s.cfg.Tunnel != "" {
		s.waitTunnels()
	}
	return nil
}

// conn is one pooled connection.
type conn struct {
	s      *Store
	id     int64
	c      *imapclient.Client
	dc     *deadlineConn
	wc     *wireConn
	caps   imap.CapSet
	broken bool
	used   time.Time
	// unselect is an UNSELECT sent by Mailbox.Close whose answer has not
	// been read: the connection's next user sends its commands right behind
	// it (a SELECT of the next mailbox, a LOGOUT), and run collects it.
	unselect *imapclient.Command
	// doubt: the server refused that UNSELECT; the connection is not reused.
	doubt bool
	// selected is the message count the last SELECT on this connection
	// answered. go-imap records the selected mailbox (Client.Mailbox) only
	// after it has woken the SELECT's caller: right after, it can still be
	// missing.
	selected uint32
}

// markBroken closes the network connection (not the client: Client.Close
// waits for the reader goroutine, which may itself be waiting for us to
// consume a literal). The caller keeps draining any open command, which now
// fails fast; the client is closed when the connection goes back to the pool.
func (cn *conn) markBroken() {
	cn.broken = true
	cn.dc.Conn.Close()
}

func (cn *conn) isClosed() bool {
	select {
	case <-cn.c.Closed():
		return true
	default:
		return cn.broken
	}
}

func (cn *conn) logout() {
	if cn.isClosed() {
		cn.dc.Conn.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(cn.s.cfg.Timeout, 5*time.Second))
	defer cancel()
	cn.unselect = nil // LOGOUT goes out behind it; its answer comes first
	_ = cn.run(ctx, "LOGOUT", func() error { return cn.c.Logout().Wait() })
	cn.c.Close()
}

// quit ends a connection for good at the end of a run: LOGOUT is written,
// and the connection closed without waiting for the answer. Every command
// before it has been answered (an UNSELECT not waited for is answered first
// anyway), so nothing depends on the answer; waiting for it was a round trip
// at the end of every run (23 ms of a 130 ms no-op over a 20 ms link).
func (cn *conn) quit() {
	if !cn.isClosed() {
		cn.unselect = nil
		// Written and flushed before it returns, unless the server has
		// stopped reading: then the close below ends the write.
		t := time.AfterFunc(time.Second, func() { cn.dc.Conn.Close() })
		cn.c.Logout()
		t.Stop()
	}
	cn.dc.Conn.Close()
	cn.c.Close()
}

// callbackErr carries an error of a caller's function through run unchanged.
type callbackErr struct{ err error }

func (e callbackErr) Error() string { return e.err.Error() }

// run performs one operation on the connection with our timeout armed and a
// watchdog that closes the connection when ctx ends. Errors that are not a
// server's NO/BAD leave the connection unusable: it is marked broken.
func (cn *conn) run(ctx context.Context, what string, fn func() error) error {
	s := cn.s
	if cn.broken {
		return fmt.Errorf("%s: %s: connection already broken", s.cfg.Name, what)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %s: %w", s.cfg.Name, what, err)
	}
	cn.dc.arm()
	var cancelled atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		cancelled.Store(true)
		cn.dc.Conn.Close() // unblocks every read and write; see markBroken
	})
	err := fn()
	if u := cn.unselect; u != nil && !cn.broken {
		// fn's commands went out behind it, so its answer is in already
		// (unless fn sent none).
		cn.unselect = nil
		var uie *imap.Error
		if uerr := u.Wait(); errors.As(uerr, &uie) {
			// The connection's state is in doubt; what fn did went through.
			s.log.Debug("UNSELECT refused; the connection goes after this use", "store", s.cfg.Name, "err", uerr)
			cn.doubt = true
		} else if uerr != nil && err == nil {
			err = uerr
		}
	}
	stop()
	cn.dc.disarm()
	cn.used = time.Now()
	if err == nil {
		if cancelled.Load() {
			cn.broken = true
		}
		return nil
	}
	var ie *imap.Error
	if !errors.As(err, &ie) || cancelled.Load() {
		cn.markBroken()
	}
	var cb callbackErr
	switch {
	case errors.As(err, &cb):
		return cb.err
	case cancelled.Load():
		return fmt.Errorf("%s: %s: %w", s.cfg.Name, what, ctx.Err())
	case cn.dc.timedOut.Load():
		return &plainError{err: errTimedOut, msg: fmt.Sprintf("%s: %s: no answer from %s for %v (timeout); connection dropped",
			s.cfg.Name, what, s.cfg.Host, s.cfg.Timeout)}
	case ie != nil:
		return fmt.Errorf("%s: %s: %w", s.cfg.Name, what, err)
	}
	if bye := cn.wc.bye.Load(); bye != nil {
		return fmt.Errorf("%s: %s: server closed the connection: %s", s.cfg.Name, what, *bye)
	}
	if t, ok := cn.dc.Conn.(*tunnelConn); ok {
		// (Often the tunnel's own end: ssh lost its link, and says why.)
		msg := fmt.Sprintf("%s: %s: connection through the tunnel failed: %v", s.cfg.Name, what, err)
		if said := t.said(); said != "" {
			msg += " (the tunnel command: " + said + ")"
		}
		return &plainError{err: err, msg: msg}
	}
	return fmt.Errorf("%s: %s: connection to %s failed: %w", s.cfg.Name, what, s.cfg.Host, err)
}

// get takes a connection from the pool, dialling a new one if none is idle.
// It waits for a free slot when Config.Connections are in use, and lets the
// store-wide commands waiting for one go first (getFirst).
func (s *Store) get(ctx context.Context) (*conn, error) { return s.acquire(ctx, false) }

// getFirst is get for the store-wide commands (LIST, STATUS, CREATE,
// DELETE): mailboxes wait to open until those have their connection. The
// engine lists the far side while it already syncs the mailboxes it opens
// in any case; a LIST queued behind those would hold up every other one.
func (s *Store) getFirst(ctx context.Context) (*conn, error) { return s.acquire(ctx, true) }

func (s *Store) acquire(ctx context.Context, urgent bool) (*conn, error) {
	if urgent {
		s.mu.Lock()
		s.urgent++
		s.mu.Unlock()
		defer s.urgentDone()
	}
	if err := s.waitWarm(ctx); err != nil {
		return nil, err
	}
	if !urgent {
		if err := s.waitUrgent(ctx); err != nil {
			return nil, err
		}
	}
	return s.take(ctx)
}

// take waits for a free slot and fills it.
func (s *Store) take(ctx context.Context) (*conn, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: waiting for a free connection: %w", s.cfg.Name, ctx.Err())
	}
	return s.fill(ctx, true)
}

// urgentDone ends a store-wide command's wait for a connection.
func (s *Store) urgentDone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.urgent--; s.urgent == 0 && s.urgentGone != nil {
		close(s.urgentGone)
		s.urgentGone = nil
	}
}

// waitUrgent waits until no store-wide command waits for a connection.
func (s *Store) waitUrgent(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.urgent == 0 {
			s.mu.Unlock()
			return nil
		}
		if s.urgentGone == nil {
			s.urgentGone = make(chan struct{})
		}
		gone := s.urgentGone
		s.mu.Unlock()
		select {
		case <-gone:
		case <-ctx.Done():
			return fmt.Errorf("%s: waiting for a free connection: %w", s.cfg.Name, ctx.Err())
		}
	}
}

// tryGet is get without waiting: it returns (nil, nil) when every slot is
// taken. Work that can do without an extra connection uses it, so that it
// never waits for connections other work holds (or for itself).
func (s *Store) tryGet(ctx context.Context) (*conn, error) {
	select {
	case s.sem <- struct{}{}:
	default:
		return nil, nil
	}
	return s.fill(ctx, false)
}

// fill returns an idle connection or a new one for a slot already taken; on
// failure it gives the slot back. When the server refuses a new connection
// while others are in use (see refused), it waits for one of those if wait
// is set, else it returns (nil, nil) as tryGet does when every slot is
// taken.
func (s *Store) fill(ctx context.Context, wait bool) (*conn, error) {
	for {
		cn, err := s.takeIdle(ctx)
		if cn != nil || err != nil {
			return cn, err
		}
		cn, err = s.dial(ctx)
		if err == nil {
			return cn, nil
		}
		switch s.refused(ctx, err) {
		case useIdle:
			continue
		case waitForOthers:
			if !wait {
				return nil, nil
			}
			return s.take(ctx)
		}
		<-s.sem
		return nil, err
	}
}

// takeIdle returns an idle connection fit for use, or nil when there is
// none; it gives the slot back when the store is closed.
func (s *Store) takeIdle(ctx context.Context) (*conn, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			<-s.sem
			return nil, fmt.Errorf("%s: store is closed", s.cfg.Name)
		}
		var cn *conn
		if n := len(s.idle); n > 0 {
			cn = s.idle[n-1]
			s.idle = s.idle[:n-1]
		}
		s.mu.Unlock()
		if cn == nil {
			return nil, nil
		}
		if cn.isClosed() {
			cn.dc.Conn.Close()
			go cn.c.Close()
			continue
		}
		// A connection idle for a while may have been dropped by the server or
		// a NAT box without us noticing; check before trusting it.
		if time.Since(cn.used) > 30*time.Second {
			if err := cn.run(ctx, "NOOP", func() error { return cn.c.Noop().Wait() }); err != nil {
				cn.markBroken()
				continue
			}
		}
		return cn, nil
	}
}

// What fill does after a failed dial (see refused).
const (
	giveUp        = iota // the error stands
	useIdle              // a connection came back meanwhile: take it
	waitForOthers        // the slot is held for good; wait for a connection in use
)

// refused decides what a failed dial means. Servers limit the connections
// per user (Dovecot's mail_max_userip_connections, 10 by default, counts
// every mail client of the user; providers allow as few as 2-5) and refuse
// one more, most with NO [LIMIT] at login, some with BYE or by never
// greeting. mbsync, with one connection, never meets the limit; we must not
// fail a mailbox over it. So when other connections of ours are in use, the
// failed dial's slot is held for the rest of the store's life (the pool is
// one smaller) and the caller waits for one of them. With none in use the
// error stands: the server is unreachable or refuses us altogether.
func (s *Store) refused(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		return giveUp
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return giveUp
	}
	if len(s.idle) > 0 {
		s.mu.Unlock()
		return useIdle
	}
	// One connection in use at least stays usable, so the wait ends when
	// it is put back.
	if s.othersInUse() == 0 {
		s.mu.Unlock()
		return giveUp
	}
	s.limited++
	room := cap(s.sem) - s.held - s.limited
	s.mu.Unlock()
	s.log.Debug("the server refused another connection; going on with fewer",
		"store", s.cfg.Name, "connections", room, "err", err)
	return waitForOthers
}

// othersInUse counts the slots taken by connections in use besides the
// caller's: not the caller's own slot, not the held ones, not those of
// dials in progress (they may fail as well). Called with mu held.
func (s *Store) othersInUse() int {
	return max(len(s.sem)-s.held-s.limited-s.dialing-1, 0)
}

// put returns a connection to the pool (or drops it when broken).
func (s *Store) put(cn *conn) {
	if cn == nil {
		return
	}
	s.mu.Lock()
	closed := s.closed
	if !closed && !cn.isClosed() && !cn.doubt {
		s.idle = append(s.idle, cn)
	}
	s.mu.Unlock()
	if closed {
		cn.logout()
	} else if cn.doubt && !cn.isClosed() {
		go cn.quit()
	} else if cn.isClosed() {
		cn.dc.Conn.Close()
		go cn.c.Close() // returns once the reader goroutine has seen the close
	}
	<-s.sem
}

func (s *Store) addr() string {
	if s.cfg.Tunnel != "" {
		return fmt.Sprintf("tunnel %q", s.cfg.Tunnel)
	}
	return net.JoinHostPort(s.cfg.Host, strconv.Itoa(s.cfg.Port))
}

func (s *Store) newTracer() *tracer {
	if s.cfg.Debug == nil {
		return nil
	}
	return &tracer{w: s.cfg.Debug, name: fmt.Sprintf("%s#%d", s.cfg.Name, s.dbgs.Add(1))}
}

// dial opens, secures and authenticates a new connection. A login that
// found the connection gone after a long wait for the secret (a passphrase
// typed slowly: servers drop a client that says nothing for a while,
// Dovecot after a minute) is tried once more on a new connection, the
// secret now at hand, rather than fail the run.
func (s *Store) dial(ctx context.Context) (*conn, error) {
	cn, err := s.dialOnce(ctx)
	var sl *droppedWhileWaiting
	if errors.As(err, &sl) && ctx.Err() == nil {
		s.log.Debug("the server dropped the connection while the secret was fetched; connecting again", "store", s.cfg.Name, "waited", sl.waited)
		cn, err = s.dialOnce(ctx)
	}
	return cn, err
}

// droppedWhileWaiting is a login's error when the connection broke (or the
// server said BYE) after authenticate had waited long for the secret.
type droppedWhileWaiting struct {
	error
	waited time.Duration
}

func (e *droppedWhileWaiting) Unwrap() error { return e.error }

// slowSecret is how long a wait for the secret counts as long enough for a
// server to have dropped the connection meanwhile (see dial): more than a
// password_cmd with a cached key or a token refresh takes.
func (s *Store) slowSecret() time.Duration { return min(2*time.Second, s.cfg.Timeout) }

// dialOnce is one attempt of dial.
func (s *Store) dialOnce(ctx context.Context) (*conn, error) {
	s.credMu.Lock()
	authErr, mute := s.authErr, s.mute
	s.credMu.Unlock()
	if authErr != nil {
		return nil, authErr // don't hammer the server with a known-bad secret
	}
	if mute != nil {
		return nil, mute
	}
	s.dials.Add(1)
	s.mu.Lock()
	others := s.othersInUse() > 0 || len(s.idle) > 0
	s.dialing++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.dialing--
		s.mu.Unlock()
	}()
	d := net.Dialer{Timeout: s.cfg.Timeout, KeepAlive: 30 * time.Second}
	start := time.Now()
	var raw net.Conn
	var tunnel *tunnelConn
	var err error
	if s.cfg.Tunnel != "" {
		tunnel, err = s.dialTunnel()
		raw = tunnel
	} else {
		raw, err = d.DialContext(ctx, "tcp", s.addr())
	}
	if err != nil {
		s.firstAnswer(0, false)
		if s.cfg.Tunnel != "" {
			return nil, err // dialTunnel's names the store and the command
		}
		return nil, fmt.Errorf("%s: connecting to %s: %w%s", s.cfg.Name, s.addr(), err, s.dialHint(err))
	}
	// The server is there: fetch the secret while it greets and the TLS
	// handshake runs (not before: a passphrase prompt for a server that is
	// down would be for nothing). Not through a tunnel: its server is
	// often logged in already (PREAUTH), and the secret never needed.
	if tunnel == nil {
		s.prefetchOnce.Do(func() { s.prefetchCredential(ctx) })
	}
	dc := newDeadlineConn(raw, s.cfg.Timeout)
	if others && s.loggedIn.Load() {
		// One more connection to a server that answered before: one that
		// is full may take it and never greet (Cyrus at maxchild). Rather
		// than hold the mailbox for the whole timeout, give up soon and
		// wait for a connection in use (see refused).
		dc.firstWait = s.extraGreetWait()
	}
	dc.onFirstRead = func() { s.firstAnswer(time.Since(start), true) }
	dc.quickAck = quickAcker(raw)
	dc.arm()
	var cancelled atomic.Bool
	stop := context.AfterFunc(ctx, func() { cancelled.Store(true); raw.Close() })
	cn, err := s.setup(ctx, raw, dc)
	stop()
	if err != nil {
		s.firstAnswer(0, false)
		raw.Close()
		err = s.setupFailed(ctx, err, dc, cancelled.Load())
		if tunnel != nil && !cancelled.Load() {
			if said := tunnel.said(); said != "" {
				err = &plainError{err: err, msg: fmt.Sprintf("%v (the tunnel command: %s)", err, said)}
			}
		}
		return nil, err
	}
	dc.disarm()
	return cn, nil
}

// setupFailed is the error of a connection whose set-up (greeting, TLS,
// login) failed with err.
func (s *Store) setupFailed(ctx context.Context, err error, dc *deadlineConn, cancelled bool) error {
	switch {
	case cancelled && errors.As(err, new(*fetchInterrupted)):
		return err
	case cancelled:
		return fmt.Errorf("%s: connecting to %s: %w", s.cfg.Name, s.addr(), ctx.Err())
	case dc.timedOut.Load() && !dc.readSome.Load():
		waited := s.cfg.Timeout
		if dc.firstWait > 0 {
			waited = dc.firstWait
		}
		merr := &plainError{err: err, msg: fmt.Sprintf("%s: connecting to %s: no answer for %v (timeout): %s",
			s.cfg.Name, s.addr(), waited, s.silentHint())}
		if !s.loggedIn.Load() {
			// (A server that greeted us before and is silent now is
			// more likely full than misconfigured: no verdict.)
			s.credMu.Lock()
			s.mute = merr
			s.credMu.Unlock()
		}
		return merr
	case dc.timedOut.Load() && errors.Is(err, errTimedOut):
		// A command of the set-up (the login, the NOOP after it) said
		// which one waited in vain.
		return &plainError{err: err, msg: fmt.Sprintf("%s: connecting to %s: %s",
			s.cfg.Name, s.addr(), strings.TrimPrefix(err.Error(), s.cfg.Name+": "))}
	case dc.timedOut.Load():
		return &plainError{err: err, msg: fmt.Sprintf("%s: connecting to %s: no answer for %v (timeout): %s",
			s.cfg.Name, s.addr(), s.cfg.Timeout, strings.TrimPrefix(err.Error(), s.cfg.Name+": "))}
	}
	return err
}

// extraGreetWait is how long an extra connection waits for its first
// answer: twenty times the first connection's (two round trips and the
// server's start of a session), at least 2 s, at most the timeout.
func (s *Store) extraGreetWait() time.Duration {
	return min(max(20*time.Duration(s.answerNanos.Load()), 2*time.Second), s.cfg.Timeout)
}

// dialHint says what to check when the TCP connection cannot be made.
func (s *Store) dialHint(err error) string {
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns) && dns.IsNotFound:
		return fmt.Sprintf("; check host: %q is not a name this machine can resolve", s.cfg.Host)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("; nothing accepts connections on port %d there: check host and port (usually 993 for tls = \"implicit\", 143 otherwise) and that the server is running", s.cfg.Port)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "; check the network connection and host"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("; no answer within %v: check host and port, and whether a firewall drops the connection", s.cfg.Timeout)
	}
	return ""
}

// silentHint says what to check when a server accepted the connection and
// never sent a byte: usually a port and TLS mode that do not go together.
func (s *Store) silentHint() string {
	if s.cfg.Tunnel != "" {
		return "the tunnel command runs but sent no IMAP greeting; check that it starts the server's IMAP program (like /usr/lib/dovecot/imap) or connects to its IMAP port, and that it asks for nothing on its standard input"
	}
	if s.cfg.TLS == "implicit" {
		return fmt.Sprintf("the server accepted the connection but did not answer the TLS handshake; check that port %d takes TLS from the start (usually 993) and that host is right", s.cfg.Port)
	}
	return fmt.Sprintf("the server accepted the connection but sent no IMAP greeting; check port and tls: port %d with tls = %q must be a plain IMAP port (usually 143); an implicit-TLS port such as 993 needs tls = \"implicit\"", s.cfg.Port, s.cfg.TLS)
}

// plainError reads as msg, which already says all the wrapped error does
// (and names the store once), and still unwraps to it.
type plainError struct {
	msg string
	err error
}

func (e *plainError) Error() string { return e.msg }
func (e *plainError) Unwrap() error { return e.err }

const syntheticGreeting = "* OK [quixysync] TLS established after STARTTLS\r\n"

func (s *Store) setup(ctx context.Context, raw net.Conn, dc *deadlineConn) (*conn, error) {
	tr := s.newTracer()
	var under net.Conn = dc
	greeting := ""
	encrypted := false
	switch s.cfg.TLS {
	case "implicit":
		tcfg, err := s.tlsOnce()
		if err != nil {
			return nil, err
		}
		tc := tls.Client(dc, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, s.explainTLS(err)
		}
		under, encrypted = tc, true
	case "starttls":
		if err := s.startTLSPrephase(dc, tr); err != nil {
			return nil, err
		}
		tcfg, err := s.tlsOnce()
		if err != nil {
			return nil, err
		}
		tc := tls.Client(dc, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, s.explainTLS(err)
		}
		under, encrypted, greeting = tc, true, syntheticGreeting
	}
	wc := newWireConn(under, tr, greeting)
	c := imapclient.New(wc, &imapclient.Options{})
	cn := &conn{s: s, id: s.dbgs.Load(), c: c, dc: dc, wc: wc, used: time.Now()}
	fail := func(format string, args ...any) (*conn, error) {
		c.Close()
		return nil, fmt.Errorf("%s: %s: %s", s.cfg.Name, s.addr(), fmt.Sprintf(format, args...))
	}
	if err := waitGreeting(c); err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			return fail("server refused the connection: %s %s", ie.Type, ie.Text)
		}
		if s.cfg.Tunnel != "" {
			return fail("no IMAP greeting came through the tunnel: %v", err)
		}
		return fail("bad greeting (is this an IMAP server? is tls = %q right?): %v", s.cfg.TLS, err)
	}
	caps := c.Caps()
	if caps == nil {
		return fail("could not read the server's capabilities")
	}
	switch c.State() {
	case imap.ConnStateNotAuthenticated:
		seen := wc.capsSeen.Load()
		if err := s.authenticate(ctx, cn, caps, encrypted, raw.RemoteAddr()); err != nil {
			c.Close()
			return nil, err
		}
		// Under run: its timeout and watchdog (the login's run has ended),
		// or a server that goes silent after the login holds the run for
		// good.
		err := cn.run(ctx, "reading the capabilities after login", func() error {
			if wc.capsSeen.Load() == seen {
				// A login answer without capabilities makes go-imap forget
				// the old ones and ask again from another goroutine, but only
				// after it has woken the login's caller: Caps() could still
				// return the list from before the login (which may lack
				// UIDPLUS or CONDSTORE), and that CAPABILITY could go out
				// after our next command, to fail there if the connection
				// breaks (its write error then replaced the reason on our
				// command). Once a NOOP is answered, go-imap has done its
				// forgetting, and Caps() waits for its CAPABILITY's answer.
				if err := c.Noop().Wait(); err != nil {
					return err
				}
			}
			caps = c.Caps()
			return nil
		})
		if err != nil {
			c.Close()
			return nil, err
		}
		if caps == nil {
			return fail("could not read the server's capabilities after login")
		}
	case imap.ConnStateAuthenticated:
		// PREAUTH: only reachable with implicit TLS or tls = "none"; the
		// STARTTLS path refuses it before the upgrade.
	default:
		return fail("unexpected connection state %v", c.State())
	}
	cn.caps = caps
	s.loggedIn.Store(true)
	s.askDelim(cn)
	return cn, nil
}

// waitGreeting is Client.WaitGreeting without its coin toss: once a greeting
// has been read and the connection closed after it, both of the channels it
// waits on are ready and it picks one at random, so a server that said BYE
// and hung up looked, every other time, like one that said nothing. A BYE
// greeting leaves the client in the logout state; then asking again finds
// the greeting soon enough.
func waitGreeting(c *imapclient.Client) error {
	err := c.WaitGreeting()
	for i := 0; i < 64 && err != nil && c.State() == imap.ConnStateLogout; i++ {
		var ie *imap.Error
		if errors.As(err, &ie) {
			break
		}
		err = c.WaitGreeting()
	}
	return err
}

func (s *Store) explainTLS(err error) error {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var rh tls.RecordHeaderError
	switch {
	case errors.As(err, &ua):
		return fmt.Errorf("%s: TLS with %s: certificate signed by unknown authority: set ca_file = \"/path/to/ca-or-server-cert.pem\" for this store (%w)", s.cfg.Name, s.addr(), err)
	case errors.As(err, &he):
		return fmt.Errorf("%s: TLS with %s: the certificate is not valid for host %q: set host to a name the certificate covers (%w)", s.cfg.Name, s.addr(), s.cfg.Host, err)
	case errors.As(err, &ci):
		return fmt.Errorf("%s: TLS with %s: the server's certificate is invalid (expired or not yet valid?): %w", s.cfg.Name, s.addr(), err)
	case errors.As(err, &rh):
		return fmt.Errorf("%s: TLS with %s: the server did not answer with TLS: is port %d a plain-text port? try tls = \"starttls\" (%w)", s.cfg.Name, s.addr(), s.cfg.Port, err)
	}
	return fmt.Errorf("%s: TLS with %s: %w", s.cfg.Name, s.addr(), err)
}

func isLoopback(a net.Addr) bool {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}

func (s *Store) chooseMech(caps imap.CapSet) (string, error) {
	offered := func(m string) bool { return caps.Has(imap.Cap("AUTH=" + strings.ToUpper(m))) }
	if len(s.cfg.Auth) == 0 {
		if offered("plain") {
			return "plain", nil
		}
		if caps.Has(imap.CapLoginDisabled) {
			return "", fmt.Errorf("%s: %s offers neither AUTHENTICATE PLAIN nor LOGIN (offers: %s); set auth", s.cfg.Name, s.cfg.Host, strings.Join(caps.AuthMechanisms(), " "))
		}
		return "login", nil
	}
	for _, m := range s.cfg.Auth {
		if m == "login" && !caps.Has(imap.CapLoginDisabled) || m != "login" && offered(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("%s: %s offers none of the allowed auth mechanisms %v (it offers: %s)",
		s.cfg.Name, s.cfg.Host, s.cfg.Auth, strings.Join(caps.AuthMechanisms(), " "))
}

// fetch is one run of the password or token function. v and err are
// written once, before done is closed; read them only after that.
type fetch struct {
	done chan struct{}
	v    string
	err  error
	// stopped: the fetch's context ended before the function did (the
	// command that started it was cancelled, or the store closed). That is
	// no verdict on the secret: the next one to need it fetches it again.
	stopped bool
}

// credential returns the password or token, fetching it once. A failed fetch
// is remembered too: a password_cmd that asks for a passphrase is not run
// again for every connection, and a prefetch's failure is reported where
// the secret is needed. The wait ends with ctx: a run interrupted while
// password_cmd runs stops at once, and the fetch itself is stopped by the
// context of whoever started it, or at the latest by Close.
func (s *Store) credential(ctx context.Context, token bool) (string, error) {
	fn, what := s.cfg.Password, "password"
	if token {
		fn, what = s.cfg.Token, "token"
	}
	if fn == nil {
		return "", fmt.Errorf("%s: no %s configured", s.cfg.Name, what)
	}
	for {
		f, err := s.startFetch(ctx, token)
		if err != nil {
			return "", err
		}
		select {
		case <-f.done:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			return "", &fetchInterrupted{fmt.Errorf("%s: interrupted while getting the %s: %w", s.cfg.Name, what, context.Cause(ctx))}
		}
		if !f.stopped {
			return f.v, f.err
		}
		// Stopped by another's context, not ours: fetch it again.
	}
}

// fetchInterrupted is credential's error when the wait for the secret
// ended with the caller's context. dial passes it on as it is: it says more
// than that connecting was cancelled.
type fetchInterrupted struct{ error }

func (e *fetchInterrupted) Unwrap() error { return e.error }

// startFetch returns the fetch of the password or token that is running or
// has a result, or else starts one under ctx. The fetch runs on its own
// goroutine so that those waiting for it can give up; it ends with ctx or
// when the store is closed.
func (s *Store) startFetch(ctx context.Context, token bool) (*fetch, error) {
	slot, fn, what := &s.password, s.cfg.Password, "password"
	if token {
		slot, fn, what = &s.token, s.cfg.Token, "token"
	}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	if f := *slot; f != nil {
		select {
		case <-f.done:
			if !f.stopped {
				return f, nil
			}
		default:
			return f, nil // running
		}
	}
	// Checked under credMu, which Close takes after ending s.bg: a fetch
	// either starts before Close collects the running ones or not at all.
	if s.bg.Err() != nil {
		return nil, fmt.Errorf("%s: getting the %s: the store is closed", s.cfg.Name, what)
	}
	if ctx.Err() != nil {
		// Interrupted: a password_cmd started now would put up a
		// passphrase prompt after Ctrl-C, for a run that is ending.
		return nil, &fetchInterrupted{fmt.Errorf("%s: interrupted while getting the %s: %w", s.cfg.Name, what, context.Cause(ctx))}
	}
	f := &fetch{done: make(chan struct{})}
	*slot = f
	fctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.bg, cancel)
	go func() {
		defer close(f.done)
		defer stop()
		defer cancel()
		v, err := fn(fctx)
		if err != nil {
			v = ""
			if fctx.Err() != nil {
				f.stopped = true
			} else if !strings.HasPrefix(err.Error(), s.cfg.Name+": ") { // else it names the store and the key already ("imap.w: password_cmd failed: ...")
				err = fmt.Errorf("%s: getting the %s: %w", s.cfg.Name, what, err)
			}
		}
		f.v, f.err = v, err
	}()
	return f, nil
}

// stopFetches waits, after s.bg has ended, for the fetches still running
// to return, so that no password_cmd outlives the store (the program may
// exit right after Close, before a kill sent on cancellation is carried
// out). A secret function that ignores its context is not waited for
// longer than wait.
func (s *Store) stopFetches(wait time.Duration) {
	s.credMu.Lock()
	fetches := []*fetch{s.password, s.token}
	s.credMu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for _, f := range fetches {
		if f == nil {
			continue
		}
		select {
		case <-f.done:
		case <-timer.C:
			s.log.Warn("a password or token command did not stop when asked", "store", s.cfg.Name)
			return
		}
	}
}

// prefetchCredential fetches the secret the login will need beside the
// greeting and the TLS handshake instead of after them (a
// password_cmd running pass and gpg takes tens of milliseconds). Only when
// the configured mechanisms leave one kind to choose: with both password
// and token mechanisms the server's capabilities decide, and the secret not
// used is never fetched.
func (s *Store) prefetchCredential(ctx context.Context) {
	kinds := map[bool]bool{} // token or not
	if len(s.cfg.Auth) == 0 {
		kinds[false] = true // plain or login
	}
	for _, m := range s.cfg.Auth {
		kinds[m == "xoauth2" || m == "oauthbearer"] = true
	}
	if len(kinds) != 1 {
		return
	}
	for token := range kinds {
		// Under the dial's context (the run's, see forRun, for Warm's):
		// cancelling the command that dials stops the fetch, and its
		// login waits for it.
		// An error is the login's to report.
		s.startFetch(ctx, token)
	}
}

func (s *Store) authenticate(ctx context.Context, cn *conn, caps imap.CapSet, encrypted bool, remote net.Addr) error {
	if s.cfg.User == "" {
		return fmt.Errorf("%s: the server at the end of the tunnel asks for a login (it did not greet with PREAUTH): add user and a password source (password_cmd, password_env or password) to the store, or make the tunnel run the server's IMAP program for you (like ssh HOST /usr/lib/dovecot/imap)", s.cfg.Name)
	}
	mech, err := s.chooseMech(caps)
	if err != nil {
		return err
	}
	if !encrypted && !isLoopback(remote) && s.cfg.Tunnel == "" {
		return fmt.Errorf("%s: refusing to send credentials unencrypted to %s (tls = \"none\" is only allowed towards a loopback address); use tls = \"implicit\" or \"starttls\"", s.cfg.Name, remote)
	}
	isToken := mech == "xoauth2" || mech == "oauthbearer"
	// Waiting for the secret is not waiting for the server: a passphrase
	// prompt may take longer than the timeout (mbsync's Timeout does not
	// run during PassCmd either), and its end would be reported as the
	// server's silence. The server may still drop a connection left that
	// long before login; that error then says so.
	cn.dc.disarm()
	asked := time.Now()
	secret, err := s.credential(ctx, isToken)
	waited := time.Since(asked)
	cn.dc.arm()
	if err != nil {
		return err
	}
	tr := cn.wc.t
	if tr != nil {
		tr.muted.Store(true)
	}
	err = cn.run(ctx, "logging in", func() error {
		switch mech {
		case "plain":
			return cn.c.Authenticate(newPlain(s.cfg.User, secret))
		case "login":
			return cn.c.Login(s.cfg.User, secret).Wait()
		case "xoauth2":
			return cn.c.Authenticate(&xoauth2Client{user: s.cfg.User, token: secret})
		default:
			return cn.c.Authenticate(newOAuthBearer(s.cfg.User, secret, s.cfg.Host, s.cfg.Port))
		}
	})
	if tr != nil {
		tr.muted.Store(false)
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && !errors.As(err, new(*imap.Error)) {
		// Stopped while logging in (Ctrl-C): not a refused login.
		return fmt.Errorf("%s: logging in: %w", s.cfg.Name, context.Cause(ctx))
	}
	var ie *imap.Error
	var rejected *tokenRejected
	isIE, isRejected := errors.As(err, &ie), errors.As(err, &rejected)
	bye := cn.wc.bye.Load()
	if !isIE && !isRejected && waited > s.slowSecret() {
		// Dropped while we waited for the secret (Dovecot says "BYE
		// Disconnected for inactivity" first): no verdict either.
		what := "password"
		if isToken {
			what = "token"
		}
		return &droppedWhileWaiting{fmt.Errorf("%w (the connection had waited %v for the %s)", err, waited.Round(time.Second), what), waited}
	}
	if !isIE && !isRejected && bye == nil {
		// The connection broke or went silent: no verdict on the
		// credentials, and run's error says what happened.
		return err
	}
	said := ""
	switch {
	case isRejected:
		said = rejected.Error()
	case isIE:
		said = strings.TrimSpace(string(ie.Type) + " " + ie.Text)
		if ie.Code != "" {
			said = fmt.Sprintf("%s [%s] %s", ie.Type, ie.Code, ie.Text)
		}
	default:
		said = *bye
	}
	said = strings.ReplaceAll(said, secret, "<redacted>")
	hint := ""
	busy := ie != nil && isBusyCode(ie.Code)
	if ie != nil || isRejected {
		said = strings.TrimSuffix(said, ".")
		hint = "; check user (" + strconv.Quote(s.cfg.User) + ") and the password"
		if isToken {
			hint = "; check user (" + strconv.Quote(s.cfg.User) + ") and the token token_cmd prints (is it expired?)"
		}
		if busy {
			hint = "; the server takes no more connections for this user just now (other mail clients may hold them all): close some, or try again later"
		}
	}
	what := "authentication failed"
	if busy {
		what = "login refused" // not for the credentials: no "failed" to send the user to them
	}
	aerr := fmt.Errorf("%s: %s for %s at %s (mechanism %s): server said: %s%s",
		s.cfg.Name, what, s.cfg.User, s.cfg.Host, strings.ToUpper(mech), said, hint)
	if (ie != nil && !busy || isRejected) && !s.loggedIn.Load() {
		// A definite refusal of credentials never accepted: remember it so
		// other connections don't retry. (Refused for the load, or after
		// another login with the same secret, it says nothing about them.)
		s.credMu.Lock()
		s.authErr = aerr
		s.credMu.Unlock()
	}
	return aerr
}

// isBusyCode reports whether a login refusal's response code (RFC 5530)
// says the server is busy or at a limit rather than that the credentials
// are wrong: Dovecot answers a user over mail_max_userip_connections with
// NO [LIMIT].
func isBusyCode(code imap.ResponseCode) bool {
	switch strings.ToUpper(string(code)) {
	case "LIMIT", "UNAVAILABLE", "INUSE":
		return true
	}
	return false
}

// askDelim sends LIST "" "" for the hierarchy delimiter, once per store,
// without waiting for the answer: a connection's first use follows it on the
// wire (so its answer comes first) and only waits for it when it needs a
// hierarchical name (see delimiter). Over a network that is a round trip
// less before the first command; statusAll does not wait at all.
func (s *Store) askDelim(cn *conn) {
	s.mu.Lock()
	if s.hasDel || s.delimReady != nil {
		s.mu.Unlock()
		return
	}
	ready := make(chan struct{})
	s.delimReady = ready
	s.mu.Unlock()
	cmd := cn.c.List("", "", nil)
	go func() {
		var delim rune
		found := false
		for d := cmd.Next(); d != nil; d = cmd.Next() {
			delim, found = d.Delim, true
		}
		err := cmd.Close()
		s.mu.Lock()
		switch {
		case err != nil:
			// The connection failed (its user sees why); the next one asks.
			s.delimReady = nil
			s.delimErr = err
		case !found:
			s.delim, s.hasDel = '/', true
		default:
			s.delim, s.hasDel = delim, true
		}
		s.mu.Unlock()
		close(ready)
	}()
}

// knownDelim returns the hierarchy delimiter if it is known already.
func (s *Store) knownDelim() (rune, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delim, s.hasDel
}

// delimiter returns the hierarchy delimiter, waiting for askDelim's answer.
func (s *Store) delimiter(ctx context.Context) (rune, error) {
	s.mu.Lock()
	known, delim, ready, lastErr := s.hasDel, s.delim, s.delimReady, s.delimErr
	s.mu.Unlock()
	if known {
		return delim, nil
	}
	if ready == nil {
		// Asked on a connection that broke, and no other has logged in since.
		return 0, fmt.Errorf("%s: hierarchy delimiter unknown (LIST \"\" \"\" failed: %v)", s.cfg.Name, lastErr)
	}
	select {
	case <-ready:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(s.cfg.Timeout):
		return 0, fmt.Errorf("%s: no answer to LIST \"\" \"\" (the hierarchy delimiter) for %v (timeout)", s.cfg.Name, s.cfg.Timeout)
	}
	return s.delimiter(ctx)
}

func (s *Store) wireName(ctx context.Context, name string) (string, error) {
	delim, err := s.delimiter(ctx)
	if err != nil {
		return "", err
	}
	return s.wireWith(name, delim)
}

func (s *Store) wireWith(name string, delim rune) (string, error) {
	w, err := toServer(name, delim)
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.cfg.Name, err)
	}
	return w, nil
}

// Capabilities logs in and returns the server's capabilities after login.
func (s *Store) Capabilities(ctx context.Context) ([]string, error) {
	cn, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	defer s.put(cn)
	var out []string
	for c := range cn.caps {
		out = append(out, string(c))
	}
	slices.Sort(out)
	return out, nil
}

func (s *Store) statusOptions(caps imap.CapSet) *imap.StatusOptions {
	return &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true,
		HighestModSeq: caps.Has(imap.CapCondStore)}
}

func toStatus(d *imap.StatusData, condstore bool) *engine.Status {
	st := &engine.Status{UIDValidity: d.UIDValidity, UIDNext: engine.UID(d.UIDNext), Messages: -1,
		HighestModSeq: d.HighestModSeq}
	if d.NumMessages != nil {
		st.Messages = int64(*d.NumMessages)
	}
	if condstore && st.HighestModSeq > 0 && st.UIDNext > 0 && st.Messages >= 0 {
		st.Stamp = stamp(*st)
	}
	return st
}

func stamp(st engine.Status) string {
	return fmt.Sprintf("%d/%d/%d/%d", st.UIDValidity, st.UIDNext, st.Messages, st.HighestModSeq)
}

// ListMailboxes lists every selectable mailbox. With Config.ListStatus and a
// server offering LIST-STATUS the status of each comes in the same round trip. A name the server reports that cannot
// be mapped safely (".." component, NUL, "/" inside a component ...) is
// skipped with a warning; the others are returned.
func (s *Store) ListMailboxes(ctx context.Context) ([]engine.MailboxInfo, error) {
	cn, err := s.getFirst(ctx)
	if err != nil {
		return nil, err
	}
	defer s.put(cn)
	var out []engine.MailboxInfo
	err = cn.run(ctx, "LIST", func() error {
		var err error
		out, err = s.readList(cn, s.sendList(cn))
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// sendList sends LIST "" "*" (asking for the statuses where ListMailboxes
// would) without waiting for the answer.
func (s *Store) sendList(cn *conn) *imapclient.ListCommand {
	var opts *imap.ListOptions
	if s.cfg.ListStatus && cn.caps.Has(imap.CapListStatus) {
		opts = &imap.ListOptions{ReturnStatus: s.statusOptions(cn.caps)}
	}
	return cn.c.List("", "*", opts)
}

// readList reads the answer to sendList's LIST.
func (s *Store) readList(cn *conn, cmd *imapclient.ListCommand) ([]engine.MailboxInfo, error) {
	var list []*imap.ListData
	for d := cmd.Next(); d != nil; d = cmd.Next() {
		list = append(list, d)
	}
	if err := cmd.Close(); err != nil {
		return nil, err
	}
	for _, d := range cn.wc.takeDropped() {
		s.log.Warn("skipping mailbox with an unsafe name", "store", s.cfg.Name,
			"err", fmt.Errorf("server sent %s: control character in name: %w", d, engine.ErrBadName))
	}
	condstore := cn.caps.Has(imap.CapCondStore)
	out := []engine.MailboxInfo{}
	seen := map[string]bool{}
	for _, d := range list {
		if slices.ContainsFunc(d.Attrs, func(a imap.MailboxAttr) bool {
			return equalFold(string(a), string(imap.MailboxAttrNoSelect)) || equalFold(string(a), string(imap.MailboxAttrNonExistent))
		}) {
			continue
		}
		name, err := fromServer(d.Mailbox, d.Delim)
		if err != nil {
			s.log.Warn("skipping mailbox with an unsafe name", "store", s.cfg.Name, "err", err)
			continue
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		mi := engine.MailboxInfo{Name: name}
		if d.Status != nil {
			mi.Status = toStatus(d.Status, condstore)
		}
		out = append(out, mi)
	}
	return out, nil
}

// StatusAll asks for the status of many mailboxes with pipelined STATUS
// commands (for servers without LIST-STATUS). Mailboxes the server refuses
// (e.g. gone meanwhile) are left out of the map.
func (s *Store) StatusAll(ctx context.Context, names []string) (map[string]engine.Status, error) {
	out, _, err := s.statusAll(ctx, names, false)
	return out, err
}

// StatusThenList is engine.StatusThenLister: StatusAll, with the LIST of
// ListMailboxes sent right behind the last STATUS instead of a round trip
// later. The server answers in order, so every STATUS is still answered
// before the LIST (which Dovecot needs, see engine's statusFirst). A list
// that failed while the statuses did not comes back nil, for the caller to
// ask again.
func (s *Store) StatusThenList(ctx context.Context, names []string) (map[string]engine.Status, []engine.MailboxInfo, error) {
	return s.statusAll(ctx, names, true)
}

func (s *Store) statusAll(ctx context.Context, names []string, thenList bool) (map[string]engine.Status, []engine.MailboxInfo, error) {
	out, list, redo, err := s.statusRound(ctx, names, thenList)
	if err != nil || len(redo) == 0 {
		return out, list, err
	}
	more, _, _, err := s.statusRound(ctx, redo, false)
	if err != nil {
		return nil, nil, err
	}
	maps.Copy(out, more)
	return out, list, nil
}

// statusRound is statusAll on one connection. Before the hierarchy delimiter
// is known (a run's first command) it does not wait for it: it writes the
// names with "/", the most common delimiter, and once the answer is in (it
// comes before the statuses) returns as redo the names whose wire form that
// got wrong, with their statuses dropped.
func (s *Store) statusRound(ctx context.Context, names []string, thenList bool) (out map[string]engine.Status, list []engine.MailboxInfo, redo []string, err error) {
	out = make(map[string]engine.Status, len(names))
	if len(names) == 0 && !thenList {
		return out, nil, nil, nil
	}
	cn, err := s.getFirst(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	defer s.put(cn)
	delim, known := s.knownDelim()
	if !known {
		delim = '/'
	}
	all := names
	guessed := make(map[string]string, len(names))
	condstore := cn.caps.Has(imap.CapCondStore)
	opts := s.statusOptions(cn.caps)
	const batch = 64
	for len(names) > 0 || thenList {
		n := min(len(names), batch)
		part := names[:n]
		names = names[n:]
		wires := make([]string, len(part))
		for i, name := range part {
			if wires[i], err = s.wireWith(name, delim); err != nil {
				if known {
					return nil, nil, nil, err
				}
				wires[i] = "" // a name "/" cannot write: asked again below
			}
			guessed[name] = wires[i]
		}
		last := len(names) == 0
		err := cn.run(ctx, "STATUS", func() error {
			cmds := make([]*imapclient.StatusCommand, len(part))
			for i := range part {
				if wires[i] != "" {
					cmds[i] = cn.c.Status(wires[i], opts)
				}
			}
			var listCmd *imapclient.ListCommand
			if last && thenList {
				listCmd = s.sendList(cn)
			}
			var connErr error
			for i, cmd := range cmds {
				if cmd == nil {
					continue
				}
				d, err := cmd.Wait()
				var ie *imap.Error
				switch {
				case err == nil:
					out[part[i]] = *toStatus(d, condstore)
				case errors.As(err, &ie):
					s.log.Debug("STATUS refused", "store", s.cfg.Name, "mailbox", part[i], "err", err)
				default:
					connErr = err
				}
			}
			if listCmd != nil {
				var lerr error
				list, lerr = s.readList(cn, listCmd)
				var ie *imap.Error
				switch {
				case lerr == nil:
				case errors.As(lerr, &ie):
					s.log.Debug("LIST refused", "store", s.cfg.Name, "err", lerr)
				case connErr == nil:
					connErr = lerr
				}
			}
			return connErr
		})
		if err != nil {
			return nil, nil, nil, err
		}
		if last {
			break
		}
	}
	if known {
		return out, list, nil, nil
	}
	real, err := s.delimiter(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, name := range all {
		w, err := s.wireWith(name, real)
		if err != nil {
			return nil, nil, nil, err
		}
		if w != guessed[name] {
			// Asked under another name: what came back may be another
			// mailbox's status.
			delete(out, name)
			redo = append(redo, name)
		}
	}
	return out, list, redo, nil
}

// exists reports whether the server lists the mailbox (and whether it is
// selectable).
func (s *Store) exists(ctx context.Context, cn *conn, wire string) (found, selectable bool, err error) {
	err = cn.run(ctx, "LIST", func() error {
		cmd := cn.c.List("", wire, nil)
		for d := cmd.Next(); d != nil; d = cmd.Next() {
			if d.Mailbox == wire || isInbox(wire) && isInbox(d.Mailbox) {
				found = true
				selectable = !slices.ContainsFunc(d.Attrs, func(a imap.MailboxAttr) bool {
					return equalFold(string(a), string(imap.MailboxAttrNoSelect)) || equalFold(string(a), string(imap.MailboxAttrNonExistent))
				})
			}
		}
		return cmd.Close()
	})
	return found, selectable, err
}

// CreateMailbox creates a mailbox and, if the server needs it, its parents.
func (s *Store) CreateMailbox(ctx context.Context, name string) error {
	cn, err := s.getFirst(ctx)
	if err != nil {
		return err
	}
	defer s.put(cn)
	return s.create(ctx, cn, name)
}

func (s *Store) create(ctx context.Context, cn *conn, name string) error {
	wire, err := s.wireName(ctx, name)
	if err != nil {
		return err
	}
	if isInbox(wire) {
		return nil
	}
	cerr := cn.run(ctx, "CREATE "+name, func() error { return cn.c.Create(wire, nil).Wait() })
	if cerr == nil {
		return nil
	}
	var ie *imap.Error
	if !errors.As(cerr, &ie) {
		return cerr
	}
	if ie.Code == imap.ResponseCodeAlreadyExists {
		return nil
	}
	found, selectable, err := s.exists(ctx, cn, wire)
	if err != nil {
		return err
	}
	if found && selectable {
		return nil
	}
	// Some servers want the parents first.
	if i := strings.LastIndexByte(name, '/'); i > 0 && !found {
		if err := s.create(ctx, cn, name[:i]); err != nil {
			return cerr
		}
		return cn.run(ctx, "CREATE "+name, func() error { return cn.c.Create(wire, nil).Wait() })
	}
	return cerr
}

// RenameMailbox renames mailbox from to to (RENAME): the server takes
// from's children along and keeps the UIDVALIDITY, as RFC 3501 asks (the
// engine checks what it relies on). A to that exists is the server's to
// refuse; INBOX, whose RENAME moves its messages instead, is refused here.
func (s *Store) RenameMailbox(ctx context.Context, from, to string) error {
	cn, err := s.getFirst(ctx)
	if err != nil {
		return err
	}
	defer s.put(cn)
	wf, err := s.wireName(ctx, from)
	if err != nil {
		return err
	}
	wt, err := s.wireName(ctx, to)
	if err != nil {
		return err
	}
	if isInbox(wf) || isInbox(wt) {
		return fmt.Errorf("%s: refusing to rename %q to %q: INBOX is not renamed", s.cfg.Name, from, to)
	}
	err = cn.run(ctx, "RENAME "+from, func() error { return cn.c.Rename(wf, wt, nil).Wait() })
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Code == imap.ResponseCodeAlreadyExists {
		return fmt.Errorf("%s: renaming %q to %q: %w (%v)", s.cfg.Name, from, to, engine.ErrTaken, err)
	}
	return err
}

// DeleteMailbox removes an empty mailbox. The emptiness check (STATUS) and
// the DELETE are two commands: a message delivered in between would be lost
// with the mailbox on servers that delete non-empty mailboxes.
func (s *Store) DeleteMailbox(ctx context.Context, name string) error {
	// The connection first: the wire name needs the hierarchy delimiter,
	// which a connection learns at login.
	cn, err := s.getFirst(ctx)
	if err != nil {
		return err
	}
	defer s.put(cn)
	wire, err := s.wireName(ctx, name)
	if err != nil {
		return err
	}
	if isInbox(wire) {
		return fmt.Errorf("%s: refusing to delete INBOX", s.cfg.Name)
	}
	var d *imap.StatusData
	err = cn.run(ctx, "STATUS "+name, func() error {
		var err error
		d, err = cn.c.Status(wire, &imap.StatusOptions{NumMessages: true}).Wait()
		return err
	})
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			if found, _, lerr := s.exists(ctx, cn, wire); lerr == nil && !found {
				return fmt.Errorf("%s: mailbox %q: %w", s.cfg.Name, name, engine.ErrNoMailbox)
			}
		}
		return err
	}
	if d == nil || d.NumMessages == nil {
		// Not told empty: many servers DELETE a mailbox with its mail.
		return fmt.Errorf("%s: mailbox %q: the server's STATUS answer has no message count, so it is not removed", s.cfg.Name, name)
	}
	if *d.NumMessages > 0 {
		return fmt.Errorf("%s: mailbox %q holds %d messages: %w", s.cfg.Name, name, *d.NumMessages, engine.ErrNotEmpty)
	}
	return cn.run(ctx, "DELETE "+name, func() error { return cn.c.Delete(wire).Wait() })
}
