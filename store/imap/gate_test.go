package imap

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// answerGate relays plain IMAP connections to a server. Armed, it holds back
// the server's answers on the connection that sent a line containing hold,
// until that connection sends a line containing release, or until wait has
// passed. A client that pipelines sends release while its earlier commands
// are unanswered; one that waits for them sends it only after the wait. This
// tells the two apart whatever the machine's load, where reading the order
// of a debug trace depends on how fast the server answers.
type answerGate struct {
	wait time.Duration

	mu       sync.Mutex
	hold     string
	release  string
	conn     int           // the connection held, 0 for none
	open     chan struct{} // closed when the answers flow again
	byClient bool          // opened by the release line, not the wait
	conns    int
}

func newAnswerGate(t *testing.T, addr string, wait time.Duration) (g *answerGate, host string, port int) {
	t.Helper()
	g = &answerGate{wait: wait}
	host, port = fakeServer(t, func(c net.Conn, r *bufio.Reader) {
		up, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer up.Close()
		g.mu.Lock()
		g.conns++
		id := g.conns
		g.mu.Unlock()
		go g.fromClient(id, r, up)
		relayToClient(up, c, func() { g.waitOpen(id) })
	})
	return g, host, port
}

// relayToClient copies what the server sends to the client, calling before
// ahead of each write.
func relayToClient(up, c net.Conn, before func()) {
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			before()
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// arm starts holding answers at the next line containing hold.
func (g *answerGate) arm(hold, release string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hold, g.release, g.conn, g.byClient = hold, release, 0, false
	g.open = make(chan struct{})
}

// result says whether answers were held, and whether the client's release
// line, not the wait, let them go.
func (g *answerGate) result() (held, byClient bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conn != 0, g.byClient
}

func (g *answerGate) fromClient(id int, r *bufio.Reader, up net.Conn) {
	defer up.Close()
	for {
		line, err := r.ReadString('\n')
		if len(line) > 0 {
			g.mu.Lock()
			if g.hold != "" && g.conn == 0 && strings.Contains(line, g.hold) {
				g.conn = id
			}
			if g.conn == id && g.release != "" && strings.Contains(line, g.release) {
				g.byClient = true
				g.release = ""
				close(g.open)
			}
			g.mu.Unlock()
			// The line goes on after the hold is set: its answer cannot
			// slip through before.
			if _, werr := io.WriteString(up, line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (g *answerGate) waitOpen(id int) {
	g.mu.Lock()
	if g.conn != id || g.release == "" {
		g.mu.Unlock()
		return
	}
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-time.After(g.wait):
		g.mu.Lock()
		if g.release != "" {
			g.release = ""
			close(g.open)
		}
		g.mu.Unlock()
	}
}
