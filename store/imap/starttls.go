package imap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
)

// startTLSPrephase runs the clear-text part of a STARTTLS connection itself
// (greeting, CAPABILITY, STARTTLS) so that it can refuse clearly: a server
// that does not offer STARTTLS, a PREAUTH greeting (authenticated before
// encryption: RFC 9051 §7.1.4 says to drop it), garbage, or bytes sent after
// the STARTTLS OK (a response-injection attack). go-imap only sees the
// encrypted session, starting from a synthetic greeting.
func (s *Store) startTLSPrephase(c net.Conn, tr *tracer) error {
	br := bufio.NewReaderSize(c, 4096)
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s (tls = \"starttls\"): %s", s.cfg.Name, s.addr(), fmt.Sprintf(format, args...))
	}
	readLine := func() (string, error) {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", fail("server sent an over-long line before STARTTLS")
		}
		if err != nil {
			return "", fail("reading from the server: %v", err)
		}
		tr.line("S", line)
		return strings.TrimRight(string(line), "\r\n"), nil
	}
	write := func(cmd string) error {
		tr.line("C", []byte(cmd))
		if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
			return fail("writing to the server: %v", err)
		}
		return nil
	}
	g, err := readLine()
	if err != nil {
		return err
	}
	up := strings.ToUpper(g)
	var caps []string
	switch {
	case strings.HasPrefix(up, "* OK"):
		if i := strings.Index(up, "[CAPABILITY "); i >= 0 {
			if j := strings.IndexByte(up[i:], ']'); j > 0 {
				caps = strings.Fields(up[i+len("[CAPABILITY ") : i+j])
			}
		}
	case strings.HasPrefix(up, "* PREAUTH"):
		return fail("server sent PREAUTH on an unencrypted connection; refusing to continue")
	case strings.HasPrefix(up, "* BYE"):
		return fail("server refused the connection: %s", g)
	default:
		return fail("not an IMAP greeting: %q", truncate(g, 80))
	}
	if caps == nil {
		if err := write("Q1 CAPABILITY"); err != nil {
			return err
		}
		for {
			l, err := readLine()
			if err != nil {
				return err
			}
			u := strings.ToUpper(l)
			if strings.HasPrefix(u, "* CAPABILITY ") {
				caps = append(caps, strings.Fields(u[len("* CAPABILITY "):])...)
			}
			if strings.HasPrefix(u, "Q1 ") {
				if !strings.HasPrefix(u, "Q1 OK") {
					return fail("CAPABILITY failed: %s", l)
				}
				break
			}
		}
	}
	if !containsStr(caps, "STARTTLS") {
		return fail("the server does not offer STARTTLS; refusing to continue unencrypted (use tls = \"implicit\" on port 993 if the server supports it)")
	}
	if err := write("Q2 STARTTLS"); err != nil {
		return err
	}
	for {
		l, err := readLine()
		if err != nil {
			return err
		}
		u := strings.ToUpper(l)
		if strings.HasPrefix(u, "Q2 ") {
			if !strings.HasPrefix(u, "Q2 OK") {
				return fail("STARTTLS refused: %s", l)
			}
			break
		}
	}
	if br.Buffered() > 0 {
		b, _ := br.Peek(br.Buffered())
		return fail("server sent %d unexpected bytes after STARTTLS OK (%q): possible injection attack; refusing", len(b), truncate(string(bytes.TrimSpace(b)), 40))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
