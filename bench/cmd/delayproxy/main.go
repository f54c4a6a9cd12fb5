// Command delayproxy forwards TCP connections to another address, delaying
// every byte by a fixed time in each direction: a link with a round-trip
// time of twice -delay and no bandwidth limit. The benchmark puts it between
// the tools and the private Dovecot (compare.sh --rtt) to measure what a
// remote server costs each tool: a tool that waits for one answer before it
// asks the next question pays the round trip each time.
//
//	delayproxy -listen 127.0.0.1:PORT -to 127.0.0.1:PORT -delay 10ms
//
// It prints "ready" on stdout once it listens and runs until killed. Exit
// status 2 on usage or listen errors.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	to := flag.String("to", "", "address to forward to")
	delay := flag.Duration("delay", 10*time.Millisecond, "one-way delay (the round trip is twice this)")
	flag.Parse()
	if *to == "" || *delay < 0 {
		fmt.Fprintln(os.Stderr, "delayproxy: -to is required and -delay must be >= 0")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delayproxy:", err)
		os.Exit(2)
	}
	fmt.Println("ready", ln.Addr())
	serve(ln, *to, *delay)
}

// serve accepts connections until ln is closed.
func serve(ln net.Listener, to string, delay time.Duration) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				return
			}
			done := make(chan struct{}, 2)
			go func() { pipe(s, c, delay); done <- struct{}{} }()
			go func() { pipe(c, s, delay); done <- struct{}{} }()
			<-done
			<-done
			c.Close()
			s.Close()
		}()
	}
}

type chunk struct {
	b  []byte
	at time.Time // when it may be written
}

// pipe copies src to dst, each chunk written delay after it was read, in
// order; when src ends, dst's write side is closed after the last chunk.
func pipe(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for ch := range q {
		if failed {
			continue // drain so the reader never blocks
		}
		time.Sleep(time.Until(ch.at))
		if _, err := dst.Write(ch.b); err != nil {
			failed = true
			src.Close()
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
}
