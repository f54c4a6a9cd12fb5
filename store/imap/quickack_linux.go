package imap

import (
	"net"
	"syscall"
)

// quickAcker returns a function that makes the kernel acknowledge what the
// connection has received at once instead of up to 40 ms later, or nil
// where that cannot be done.
//
// Why: a server that flushes its output per command and leaves Nagle's
// algorithm on (Cyrus imapd does both) holds the answer to our second
// pipelined command until the first answer is acknowledged, and Linux
// delays that acknowledgement (delayed ACK, 40 ms) once the connection
// looks interactive. Every UNSELECT+SELECT, every pipelined STATUS round
// then stalls 40 ms: a no-op sync of ten Cyrus mailboxes took 181 ms, 45
// ms with quick ACKs. TCP_QUICKACK is not sticky (the kernel goes back to
// delaying once we send again), so deadlineConn.Read sets it after every
// read that drained the socket, when we are about to wait for more.
// (Setting it only at line ends with nothing left buffered, which would
// spare calls while a body streams in, left stalls: 0.27 against 0.16 s
// for a sync of server changes; bench/README.md, eighteenth session.)
func quickAcker(c net.Conn) func() {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	set := func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1) }
	return func() { _ = rc.Control(set) }
}
