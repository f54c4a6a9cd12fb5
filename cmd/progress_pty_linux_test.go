package cmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/engine"
)

// openPTY returns a pseudo-terminal: the program writes to tty, the test
// reads what a terminal would show from everything the returned function
// gives after tty is closed.
func openPTY(t *testing.T) (tty *os.File, output func() string) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 40, Col: 120}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(&buf, ptm) // ends with EIO once tty is closed
	}()
	return tty, func() string {
		tty.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the terminal's output did not end")
		}
		return strings.ReplaceAll(buf.String(), "\r\n", "\n")
	}
}

// On a real terminal the display draws, logs go above it, and it is erased
// before what follows; -q shows nothing.
func TestProgressOnTerminal(t *testing.T) {
	tty, output := openPTY(t)
	if !isTerminal(tty) {
		t.Fatal("isTerminal(pty) = false")
	}
	g := &globalOptions{stdout: tty, stderr: &lockedWriter{w: tty}, Quiet: true}
	if d := g.startProgress(1); d != nil {
		d.stop()
		t.Error("-q: a progress display")
	}
	g.Quiet = false
	g.setup()
	d := g.startProgress(1)
	if d == nil {
		t.Fatal("no progress display on a terminal")
	}
	d.event(engine.ProgressEvent{Kind: engine.ProgressListed, Channel: "a", MailboxesTotal: 20})
	d.event(engine.ProgressEvent{Kind: engine.ProgressPlanned, Channel: "a", Mailbox: "INBOX", PlannedMessages: 20000})
	d.event(engine.ProgressEvent{Kind: engine.ProgressCopied, Channel: "a", Mailbox: "INBOX", Messages: 1234, Bytes: 56 << 20})
	time.Sleep(300 * time.Millisecond)
	g.logger().Warn("something odd", "mailbox", "INBOX")
	time.Sleep(300 * time.Millisecond)
	d.stop()
	fmt.Fprintln(tty, "summary")
	out := output()

	if !strings.Contains(out, "[0/20 mailboxes] 1 234/20 000+ msgs  56.0 MiB") {
		t.Errorf("no progress line drawn:\n%q", out)
	}
	// The log line is printed where the line was (right after an erase),
	// and the line is drawn again below it. Written straight to the
	// terminal it would land below the line and be erased with the next frame.
	const erase = "\x1b[1A\x1b[J"
	logAt := regexp.MustCompile(`\x1b\[1A\x1b\[Jquixysync: warning: something odd: mailbox=INBOX\n\[0/20 mailboxes\]`).FindStringIndex(out)
	if logAt == nil {
		t.Fatalf("the log line is missing or not printed above the progress line:\n%q", out)
	}
	// After the last erase only the summary is left: the line is gone.
	last := strings.LastIndex(out, erase)
	if last < logAt[1] || out[last+len(erase):] != "summary\n" {
		t.Errorf("the display was not erased before the summary:\n%q", out)
	}
}
