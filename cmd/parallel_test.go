package cmd

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quixysync/quixysync/channel"
)

// A pair holds a connection of every IMAP store it uses while it works on
// that side. With one IMAP side, twice its limit of pairs run (those over it
// wait while opening, their Maildir side is scanned meanwhile); with two,
// never more than the smaller limit, or pairs could wait on each other.
func TestMaxParallelFollowsConnections(t *testing.T) {
	cfg := &channel.Config{IMAP: map[string]*channel.IMAPStore{
		"a": {Name: "a", Connections: 6},
		"b": {Name: "b", Connections: 2},
	}}
	for _, c := range []struct {
		far, near string
		want      int
	}{
		{"imap.a", "maildir.m", 12},
		{"maildir.m", "imap.b", 4},
		{"imap.a", "imap.b", 2},
		{"maildir.x", "maildir.y", 0}, // the engine's default
	} {
		ch := &channel.Channel{Name: "c", Far: c.far, Near: c.near}
		if got := maxParallel(cfg, ch, 1); got != c.want {
			t.Errorf("%s <-> %s: %d mailboxes at once, want %d", c.far, c.near, got, c.want)
		}
	}
}

// silentServer accepts connections and never says a word. hangUp closes
// them all and stops listening.
func silentServer(t *testing.T) (port int, accepted <-chan struct{}, hangUp func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	first := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			once.Do(func() { close(first) })
		}
	}()
	hangUp = func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
		held = nil
	}
	t.Cleanup(hangUp)
	return ln.Addr().(*net.TCPAddr).Port, first, hangUp
}

// Channels sync at once: two whose servers accepted the connection and then
// went silent are both waiting at the same time, and a third channel syncs
// meanwhile. (Run one after the other, each would wait out the one before
// it: its timeout, a minute here.)
func TestStuckChannelsDoNotHoldUpTheOthers(t *testing.T) {
	dir := isolate(t)
	port1, accepted1, hangUp1 := silentServer(t)
	port2, accepted2, hangUp2 := silentServer(t)
	_, far, near := maildirPair(t, dir, 3)
	silent := func(name string, port int) string {
		return fmt.Sprintf("[imap.%s]\nhost = \"127.0.0.1\"\nport = %d\ntls = \"none\"\nuser = \"me\"\npassword = \"secret\"\ntimeout = \"60s\"\n", name, port)
	}
	cfg := writeFile(t, filepath.Join(dir, "q.toml"), silent("silent1", port1)+silent("silent2", port2)+fmt.Sprintf(`
[maildir.near1]
path = %q

[maildir.near2]
path = %q

[maildir.far]
path = %q

[maildir.near]
path = %q

[channel.stuck1]
far = "imap.silent1"
near = "maildir.near1"

[channel.stuck2]
far = "imap.silent2"
near = "maildir.near2"

[channel.mm]
far = "maildir.far"
near = "maildir.near"
`, filepath.Join(dir, "n1"), filepath.Join(dir, "n2"), far, near))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := make(chan int, 1)
	go func() { code <- execute(ctx, []string{"-c", cfg, "sync", "--all"}, &out, &errb) }()

	for i, acc := range []<-chan struct{}{accepted1, accepted2} {
		select {
		case <-acc:
		case <-time.After(20 * time.Second):
			t.Fatalf("stuck%d never connected while the other stuck channel waited: channels run one at a time", i+1)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for countFiles(t, filepath.Join(near, "INBOX")) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("channel mm did not sync while two others waited for their servers (%d of 3 messages)",
				countFiles(t, filepath.Join(near, "INBOX")))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The silent servers hang up: both stuck channels fail, mm has synced.
	hangUp1()
	hangUp2()
	var got int
	select {
	case got = <-code:
	case <-time.After(30 * time.Second):
		t.Fatal("sync did not end after the silent servers hung up")
	}
	t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	if got != exitFailure {
		t.Errorf("exit %d, want %d (channels failed)", got, exitFailure)
	}
	if !strings.Contains(out.String(), "mm: copied ←3 →0") {
		t.Errorf("no summary of mm's copies: %q", out.String())
	}
	for _, ch := range []string{"stuck1", "stuck2"} {
		if !strings.Contains(errb.String(), "channel "+ch) {
			t.Errorf("the failed channel %s is not named: %q", ch, errb.String())
		}
	}
}

// Under a low limit of open files (ulimit -n 256) a channel with many
// connections syncs fewer mailboxes at once, so that every channel running
// at once fits: 128 pairs held 558 files, and 908 of 1 001 mailboxes failed
// with "too many open files".
func TestMaxParallelFitsOpenFiles(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip(err)
	}
	low := rl
	low.Cur = 256
	if rl.Cur < low.Cur {
		t.Skip("limit already below 256")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Skip(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	cfg := &channel.Config{IMAP: map[string]*channel.IMAPStore{"a": {Name: "a", Connections: 64}}}
	ch := &channel.Channel{Name: "c", Far: "imap.a", Near: "maildir.m"}
	got := maxParallel(cfg, ch, 1)
	if used := got*filesPerPair + 64 + filesReserved; got < 8 || used > 256 {
		t.Errorf("64 connections, 256 open files: %d mailboxes at once, for %d files", got, used)
	}
	for _, c := range []struct {
		pairs, conns, channels int
		limit                  uint64
	}{
		{128, 64, 1, 1024}, {128, 64, 4, 1024}, {8, 4, 4, 256}, {8, 4, 1, 1024}, {128, 64, 2, 4096},
	} {
		got := fitOpenFiles(c.pairs, c.conns, c.channels, c.limit)
		if used := c.channels*(got*filesPerPair+c.conns) + filesReserved; got < 1 || got > c.pairs || got > 1 && used > int(c.limit) {
			t.Errorf("%d pairs of %d connections, %d channels, limit %d: %d at once, %d files", c.pairs, c.conns, c.channels, c.limit, got, used)
		}
	}
	if got := fitOpenFiles(8, 4, 4, 1<<20); got != 8 {
		t.Errorf("a high limit cut 8 pairs to %d", got)
	}
}
