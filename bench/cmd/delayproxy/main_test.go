package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"
)

// Bytes arrive intact, in order, and a question answered at once costs the
// round trip.
func TestDelayProxy(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const delay = 25 * time.Millisecond
	go serve(ln, echo.Addr().String(), delay)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping\n" {
		t.Fatalf("got %q, %v", got, err)
	}
	if rtt := time.Since(start); rtt < 2*delay {
		t.Errorf("round trip %v, want at least %v", rtt, 2*delay)
	}

	// A megabyte both ways, in many writes: same bytes back, in order.
	want := make([]byte, 1<<20)
	rand.Read(want)
	go func() {
		for off := 0; off < len(want); off += 7000 {
			c.Write(want[off:min(off+7000, len(want))])
		}
		c.(*net.TCPConn).CloseWrite()
	}()
	back, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, want) {
		t.Fatalf("%d bytes back, differ from the %d sent", len(back), len(want))
	}
}
