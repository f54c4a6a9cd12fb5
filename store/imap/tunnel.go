package imap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// tunnelConn is a connection carried by a command's standard input and
// output instead of a socket (Config.Tunnel, mbsync's Tunnel): typically
// `ssh host /usr/lib/dovecot/imap`, already logged in, or `ssh -W
// localhost:143 host`. The pipes are os.Pipe files, which take deadlines
// like a socket, so the store's timeout and watchdog work unchanged.
type tunnelConn struct {
	cmd     *exec.Cmd
	r, w    *os.File // the command's standard output and input (our ends)
	stderr  *tailWriter
	exited  chan struct{} // closed once the command has been waited for
	waitErr error         // set before exited is closed
	close   sync.Once
	addr    tunnelAddr
}

// tunnelGrace is how long a command has to end by itself once its input
// is closed (ssh passes the end on and exits) before it is killed.
const tunnelGrace = 2 * time.Second

// dialTunnel starts the tunnel command. Its standard error is kept (the
// last few KiB) to say why a connection failed: ssh writes its reasons
// there. It stays in quixysync's process group: ssh may ask for a
// passphrase on the terminal, which a background group could not read.
func (s *Store) dialTunnel() (*tunnelConn, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: tunnel: %w", s.cfg.Name, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("%s: tunnel: %w", s.cfg.Name, err)
	}
	t := &tunnelConn{r: outR, w: inW, stderr: &tailWriter{max: 4096}, exited: make(chan struct{}), addr: tunnelAddr(s.cfg.Tunnel)}
	t.cmd = exec.Command("sh", "-c", s.cfg.Tunnel)
	t.cmd.Stdin, t.cmd.Stdout, t.cmd.Stderr = inR, outW, t.stderr
	// A command that leaves a child holding its standard error (ssh's
	// ControlPersist master) must not hold Wait for good.
	t.cmd.WaitDelay = tunnelGrace
	err = t.cmd.Start()
	inR.Close() // the command's ends: ours to close once it has them
	outW.Close()
	if err != nil {
		outR.Close()
		inW.Close()
		return nil, fmt.Errorf("%s: starting tunnel %q: %w", s.cfg.Name, s.cfg.Tunnel, err)
	}
	s.tunnels.Add(1)
	go func() {
		defer s.tunnels.Done()
		t.waitErr = t.cmd.Wait()
		close(t.exited)
	}()
	return t, nil
}

func (t *tunnelConn) Read(b []byte) (int, error)  { return t.r.Read(b) }
func (t *tunnelConn) Write(b []byte) (int, error) { return t.w.Write(b) }

// Close ends the session: the command's input is closed (its end of
// file), and a command still running after tunnelGrace is killed.
func (t *tunnelConn) Close() error {
	t.close.Do(func() {
		t.w.Close()
		t.r.Close()
		go func() {
			select {
			case <-t.exited:
			case <-time.After(tunnelGrace):
				t.cmd.Process.Kill()
			}
		}()
	})
	return nil
}

// ended waits up to d for the command to end after Close.
func (t *tunnelConn) ended(d time.Duration) bool {
	select {
	case <-t.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// said is what the command reported when a connection through it failed:
// its exit status, if it has ended (waiting a little: its end of file
// comes before its exit), and the last lines of its standard error.
func (t *tunnelConn) said() string {
	var parts []string
	if t.ended(500 * time.Millisecond) {
		var ee *exec.ExitError
		switch {
		case errors.As(t.waitErr, &ee):
			parts = append(parts, "ended with "+ee.ProcessState.String())
		case t.waitErr == nil:
			parts = append(parts, "ended with exit status 0")
		}
	}
	if e := t.stderr.String(); e != "" {
		parts = append(parts, "said: "+e)
	}
	return strings.Join(parts, "; ")
}

func (t *tunnelConn) LocalAddr() net.Addr  { return t.addr }
func (t *tunnelConn) RemoteAddr() net.Addr { return t.addr }

func (t *tunnelConn) SetDeadline(d time.Time) error {
	return errors.Join(t.r.SetReadDeadline(d), t.w.SetWriteDeadline(d))
}
func (t *tunnelConn) SetReadDeadline(d time.Time) error  { return t.r.SetReadDeadline(d) }
func (t *tunnelConn) SetWriteDeadline(d time.Time) error { return t.w.SetWriteDeadline(d) }

// tunnelAddr is a tunnel's command, as a connection's address.
type tunnelAddr string

func (a tunnelAddr) Network() string { return "tunnel" }
func (a tunnelAddr) String() string  { return string(a) }

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if over := len(w.b) - w.max; over > 0 {
		w.b = append(w.b[:0], w.b[over:]...)
	}
	return len(p), nil
}

// String is the kept text on one line: its lines trimmed, joined by " | ".
func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for l := range strings.Lines(strings.ToValidUTF8(string(w.b), "?")) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, " | ")
}

// waitTunnels waits, up to a bound, for the tunnel commands of connections
// closed to end, so that none outlives the store (an ssh whose input was
// closed ends by itself; one that does not is killed after tunnelGrace).
func (s *Store) waitTunnels() {
	done := make(chan struct{})
	go func() {
		s.tunnels.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(tunnelGrace + time.Second):
		s.log.Debug("tunnel commands still running after the store closed", "store", s.cfg.Name)
	}
}
