package imap

import (
	"bufio"
	"net"
	"syscall"
	"testing"
	"time"
)

// quickAckMode reports whether the kernel acknowledges c's incoming data at
// once (TCP_QUICKACK reads back as "not in delayed-ACK mode").
func quickAckMode(t *testing.T, c *net.TCPConn) bool {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v != 0
}

// exchange plays request/response rounds over a fresh loopback connection,
// as a client waiting on a server does, reading through a deadlineConn
// (with quick ACKs or not), and reports the ACK mode after the last read.
func exchange(t *testing.T, quick bool) bool {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := c.Write([]byte("T OK " + line)); err != nil {
				return
			}
		}
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	dc := newDeadlineConn(raw, 5*time.Second)
	if quick {
		dc.quickAck = quickAcker(raw)
		if dc.quickAck == nil {
			t.Fatal("quickAcker: nil on a TCP connection")
		}
	}
	buf := make([]byte, 4096)
	for range 20 {
		if _, err := dc.Write([]byte("T NOOP\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	return quickAckMode(t, raw.(*net.TCPConn))
}

// TestQuickAckAfterRead: after a read that drained the socket, what came in
// is acknowledged at once, so that a server holding its next answer for
// that acknowledgement (Nagle; Cyrus) does not wait out our delayed ACK.
func TestQuickAckAfterRead(t *testing.T) {
	if exchange(t, false) {
		// The control: without quick ACKs the kernel must have gone into
		// delayed-ACK mode, or this test could not tell the difference.
		t.Skip("this kernel did not switch a request/response connection to delayed ACKs")
	}
	if !exchange(t, true) {
		t.Fatal("after a read through deadlineConn, the connection still delays its ACKs")
	}
}

// TestQuickAckNotOnFullRead: a read that filled its buffer (a body
// streaming in) leaves more to come; acknowledging it at once would only
// add a system call per read.
func TestQuickAckNotOnFullRead(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	calls := 0
	dc := newDeadlineConn(a, 5*time.Second)
	dc.quickAck = func() { calls++ }
	go b.Write([]byte("0123456789"))
	buf := make([]byte, 4)
	if n, err := dc.Read(buf); err != nil || n != 4 {
		t.Fatalf("read %d, %v", n, err)
	}
	if calls != 0 {
		t.Errorf("full read: quickAck called %d times, want 0", calls)
	}
	buf = make([]byte, 64)
	if n, err := dc.Read(buf); err != nil || n != 6 {
		t.Fatalf("read %d, %v", n, err)
	}
	if calls != 1 {
		t.Errorf("short read: quickAck called %d times, want 1", calls)
	}
}

// TestStoreConnsAckQuickly: the store's connections are dialled with quick
// ACKs: after a few commands, an idle connection is not delaying its ACKs
// (it would be without them: TestQuickAckAfterRead's control).
func TestStoreConnsAckQuickly(t *testing.T) {
	host, port, u := memServer(t)
	seed(t, u, "INBOX", "Subject: a\r\n\r\nx\r\n")
	s := newMemStore(t, host, port, nil)
	ctx := ctxT(t)
	for range 5 {
		if _, err := s.ListMailboxes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	idle := append([]*conn(nil), s.idle...)
	s.mu.Unlock()
	if len(idle) == 0 {
		t.Fatal("no idle connection after ListMailboxes")
	}
	for _, cn := range idle {
		if tc, ok := cn.dc.Conn.(*net.TCPConn); !ok {
			t.Fatalf("connection %d: %T under deadlineConn, want *net.TCPConn", cn.id, cn.dc.Conn)
		} else if !quickAckMode(t, tc) {
			t.Errorf("connection %d delays its ACKs", cn.id)
		}
	}
}
