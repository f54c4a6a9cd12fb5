package imap

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// blockingSecret is a password_cmd that waits for a passphrase nobody types:
// it returns only when its context ends, and says so in ended.
// asked, when not nil, is closed at the first call.
func blockingSecret(calls, ended *atomic.Int32, asked chan struct{}) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		if calls.Add(1) == 1 && asked != nil {
			close(asked)
		}
		<-ctx.Done()
		ended.Add(1)
		return "", ctx.Err()
	}
}

// A run stopped (Ctrl-C, SIGTERM) while password_cmd runs ends at once with
// an error that says it was interrupted, whether the secret is being fetched
// for this command's connection or for a warm-up's whose context does not
// end (its fetch is then the store's to end). Close stops a fetch still running and waits for
// it, so that no password_cmd outlives the run. (The server greets only
// once the password is asked for: the login then always finds the
// prefetch running.)
func TestPasswordFetchStopsAtCancel(t *testing.T) {
	host, port, _ := memServer(t)
	for _, warm := range []bool{false, true} {
		asked := make(chan struct{})
		gated := gatedGreeting(t, host, port, asked)
		var calls, ended atomic.Int32
		s := newMemStore(t, host, gated, func(c *Config) {
			c.Timeout = 10 * time.Second
			c.Password = blockingSecret(&calls, &ended, asked)
		})
		if warm {
			s.Warm(context.Background())
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		done := make(chan error, 1)
		go func() { _, err := s.ListMailboxes(ctx); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "imap.test: interrupted while ") || !errors.Is(err, context.Canceled) {
				t.Fatalf("warm %v: got %v, want an error saying the run was interrupted", warm, err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("warm %v: still waiting for the password 3s after the cancel", warm)
		}
		s.Close()
		if c, e := calls.Load(), ended.Load(); c != 1 || e != 1 {
			t.Fatalf("warm %v: %d fetches, %d ended by the time Close returned; want 1 and 1", warm, c, e)
		}
	}
}

// Close ends the wait of a command still waiting for the secret.
func TestPasswordFetchStopsAtClose(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string { return "" }))
	var calls, ended atomic.Int32
	s := fakeStore(t, host, port, func(c *Config) {
		c.Timeout = 10 * time.Second
		c.Password = blockingSecret(&calls, &ended, nil)
	})
	done := make(chan error, 1)
	go func() { _, err := s.ListMailboxes(ctxT(t)); done <- err }()
	time.Sleep(300 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("no error")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("still waiting for the password 3s after Close")
	}
}

// A fetch stopped because the command that started it was cancelled is no
// verdict on the secret: the next command fetches it again, and logs in.
func TestPasswordFetchedAgainAfterACancelledFetch(t *testing.T) {
	host, port, _ := memServer(t)
	var calls atomic.Int32
	s := newMemStore(t, host, port, func(c *Config) {
		c.Password = func(ctx context.Context) (string, error) {
			if calls.Add(1) == 1 {
				<-ctx.Done()
				return "", ctx.Err()
			}
			return "secret", nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := s.ListMailboxes(ctx); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("cancelled command: got %v, want its context's error", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("still waiting for the password 3s after the command's deadline")
	}
	if _, err := s.ListMailboxes(ctxT(t)); err != nil {
		t.Fatalf("after a cancelled fetch: %v", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("password fetched %d times, want 2", n)
	}
}

// Waiting for the password is not waiting for the server: a passphrase
// typed more slowly than the timeout still logs in, where it was reported
// as the server's silence.
func TestPasswordSlowerThanTheTimeout(t *testing.T) {
	host, port := fakeServer(t, scripted(okGreeting, func(tag, cmd string) string { return "" }))
	s := fakeStore(t, host, port, func(c *Config) {
		c.Timeout = 300 * time.Millisecond
		c.Password = func(ctx context.Context) (string, error) {
			select {
			case <-time.After(time.Second):
				return "typed slowly", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
	})
	if _, err := s.ListMailboxes(ctxT(t)); err != nil {
		t.Fatalf("a password slower than the timeout: %v", err)
	}
}

// Ctrl-C (the run's context ending) ends a password_cmd that Warm or WarmFor
// started at once, not only when the store is closed: a passphrase prompt
// of the warm-up's stayed up while the run wound down, and a warm-up
// connection that got through after the Ctrl-C started one. (A prompt put
// up after Ctrl-C is one the user cannot answer with the run stopping.)
func TestWarmAsksNoPasswordAfterCancel(t *testing.T) {
	host, port, _ := memServer(t)

	// The warm-up's fetch, running when Ctrl-C comes, ends with it.
	var calls, ended atomic.Int32
	asked := make(chan struct{})
	s := newMemStore(t, host, port, func(c *Config) { c.Password = blockingSecret(&calls, &ended, asked) })
	ctx, cancel := context.WithCancel(context.Background())
	s.Warm(ctx)
	<-asked
	cancel()
	deadline := time.Now().Add(2 * time.Second)
	for ended.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ended.Load() == 0 {
		t.Errorf("the warm-up's password_cmd still runs 2s after the cancel (the store is not closed yet)")
	}
	s.Close()

	// Ctrl-C before the warm-up (or before its connection got through):
	// no password_cmd at all, Warm's or WarmFor's.
	for _, name := range []string{"Warm", "WarmFor"} {
		var calls atomic.Int32
		s := newMemStore(t, host, port, func(c *Config) {
			c.Password = func(context.Context) (string, error) { calls.Add(1); return "secret", nil }
		})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if name == "Warm" {
			s.Warm(ctx)
			s.waitWarm(context.Background())
		} else {
			s.WarmFor(ctx, 2)
			time.Sleep(300 * time.Millisecond) // a loopback login takes milliseconds
		}
		if _, err := s.ListMailboxes(ctx); err == nil {
			t.Errorf("%s: a command after the cancel succeeded", name)
		}
		s.Close()
		if n := calls.Load(); n != 0 {
			t.Errorf("%s: the password was asked for %d times after the cancel", name, n)
		}
	}
}
