// Package demo runs quixysync's demonstration: an in-memory IMAP server on
// loopback, seeded with a small realistic mailbox tree, and the helpers that
// write the demo's configuration and change the local Maildir. Tests use the
// server as a throwaway IMAP account too.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// ServerOptions configure Start.
type ServerOptions struct {
	// User and Password of the only account (default "demo"/"demo").
	User, Password string
	// ErrorLog receives the server's own error messages (default: discarded,
	// so a client hanging up does not clutter the demo's output).
	ErrorLog io.Writer
	// Trace, when non-nil, receives the raw protocol (both directions).
	Trace io.Writer
}

// Server is an in-memory IMAP server listening on 127.0.0.1:<random port>.
// It offers what the IMAP store uses where it can (UIDPLUS, MOVE, ESEARCH,
// LIST-STATUS) and allows LOGIN without TLS, which is acceptable only
// because it listens on loopback.
type Server struct {
	Host     string
	Port     int
	User     string
	Password string

	user *imapmemserver.User
	srv  *imapserver.Server
	ln   net.Listener
	done chan struct{}

	// mu guards boxes, the names created so far (imapmemserver has no
	// exported way to list them without a session).
	mu    sync.Mutex
	boxes map[string]bool
}

// Start starts a server. Close stops it.
func Start(opt ServerOptions) (*Server, error) {
	if opt.User == "" {
		opt.User = "demo"
	}
	if opt.Password == "" {
		opt.Password = "demo"
	}
	errLog := opt.ErrorLog
	if errLog == nil {
		errLog = io.Discard
	}
	mem := imapmemserver.New()
	user := imapmemserver.NewUser(opt.User, opt.Password)
	mem.AddUser(user)

	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:  {},
			imap.CapUIDPlus:    {},
			imap.CapMove:       {},
			imap.CapESearch:    {},
			imap.CapListStatus: {},
			imap.CapNamespace:  {},
		},
		// Plain-text login is tolerable only because the listener is loopback.
		InsecureAuth: true,
		Logger:       writerLogger{w: errLog},
		DebugWriter:  opt.Trace,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo IMAP server: listen on 127.0.0.1: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	s := &Server{
		Host:     "127.0.0.1",
		Port:     addr.Port,
		User:     opt.User,
		Password: opt.Password,
		user:     user,
		srv:      srv,
		ln:       ln,
		done:     make(chan struct{}),
		boxes:    map[string]bool{},
	}
	go func() {
		defer close(s.done)
		_ = srv.Serve(ln) // returns when Close closes the listener
	}()
	if err := s.Create("INBOX"); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Addr is "host:port".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Close stops the server and drops every connection.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// Create creates a mailbox (canonical name, "/" separated). An existing one is fine.
func (s *Server) Create(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.boxes[name] {
		return nil
	}
	if err := s.user.Create(name, nil); err != nil {
		var ierr *imap.Error
		if !errors.As(err, &ierr) || ierr.Code != imap.ResponseCodeAlreadyExists {
			return fmt.Errorf("demo IMAP server: create %q: %w", name, err)
		}
	}
	s.boxes[name] = true
	return nil
}

// Mailboxes returns the names created through Create, sorted.
func (s *Server) Mailboxes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.boxes))
	for n := range s.boxes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Append delivers a raw message (CRLF line endings) to a mailbox, creating the
// mailbox when needed, and returns its UID.
func (s *Server) Append(mailbox string, raw []byte, flags []imap.Flag, date time.Time) (imap.UID, error) {
	if err := s.Create(mailbox); err != nil {
		return 0, err
	}
	// imapmemserver dereferences the options: they must never be nil.
	opts := &imap.AppendOptions{Flags: flags, Time: date}
	data, err := s.user.Append(mailbox, literal{bytes.NewReader(raw)}, opts)
	if err != nil {
		return 0, fmt.Errorf("demo IMAP server: append to %q: %w", mailbox, err)
	}
	return data.UID, nil
}

// AddFlags sets flags on one message the way another mail client would: over
// IMAP (imapmemserver has no direct accessor for stored messages).
func (s *Server) AddFlags(ctx context.Context, mailbox string, uid imap.UID, flags ...imap.Flag) error {
	c, err := s.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		return fmt.Errorf("demo IMAP server: select %q: %w", mailbox, err)
	}
	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}
	if err := c.Store(imap.UIDSetNum(uid), store, nil).Close(); err != nil {
		return fmt.Errorf("demo IMAP server: store flags in %q: %w", mailbox, err)
	}
	return c.Logout().Wait()
}

// Count returns the number of messages in a mailbox (over IMAP).
func (s *Server) Count(ctx context.Context, mailbox string) (int, error) {
	c, err := s.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	data, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil {
		return 0, fmt.Errorf("demo IMAP server: status %q: %w", mailbox, err)
	}
	if data.NumMessages == nil {
		return 0, fmt.Errorf("demo IMAP server: status %q: no message count", mailbox)
	}
	return int(*data.NumMessages), c.Logout().Wait()
}

func (s *Server) dial(ctx context.Context) (*imapclient.Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return nil, fmt.Errorf("demo IMAP server: %w", err)
	}
	c := imapclient.New(conn, nil)
	if err := c.Login(s.User, s.Password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("demo IMAP server: login: %w", err)
	}
	return c, nil
}

// literal adapts a bytes.Reader to imap.LiteralReader.
type literal struct{ *bytes.Reader }

func (l literal) Size() int64 { return l.Reader.Size() }

type writerLogger struct{ w io.Writer }

func (l writerLogger) Printf(format string, args ...any) {
	fmt.Fprintf(l.w, "demo IMAP server: "+format+"\n", args...)
}
