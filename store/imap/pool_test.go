package imap

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// poolWithOneBusy returns a store whose one connection is in use (returned),
// with the cost of a login set to login.
func poolWithOneBusy(t *testing.T, login time.Duration) (*Store, *conn) {
	t.Helper()
	host, port, _ := memServer(t)
	s := newMemStore(t, host, port, func(c *Config) { c.Connections = 4 })
	cn, err := s.get(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	s.loginNanos.Store(int64(login))
	return s, cn
}

// A connection that comes back before a login's worth of waiting is reused:
// no second login for work that one connection does in time.
func TestPoolWaitsForABusyConnection(t *testing.T) {
	s, busy := poolWithOneBusy(t, time.Minute)
	time.AfterFunc(50*time.Millisecond, func() { s.put(busy) })
	start := time.Now()
	cn, err := s.get(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.put(cn)
	if cn != busy {
		t.Error("got another connection than the one put back")
	}
	if n := s.dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
	if d := time.Since(start); d < 45*time.Millisecond {
		t.Errorf("returned after %v, before the connection came back", d)
	}
}

// When none comes back within a login's time, a new connection is made.
func TestPoolDialsAfterALoginsWorth(t *testing.T) {
	s, busy := poolWithOneBusy(t, 80*time.Millisecond)
	defer s.put(busy)
	start := time.Now()
	cn, err := s.get(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.put(cn)
	if cn == busy {
		t.Fatal("got the connection still in use")
	}
	if n := s.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("dialled after %v, before a login's worth of waiting", d)
	}
}

// Waiters queue: the second waits twice as long as the first before it dials,
// so that a pool grows one connection per login's worth of waiting rather
// than all at once.
func TestPoolWaitersGrowThePoolOneByOne(t *testing.T) {
	s, busy := poolWithOneBusy(t, 100*time.Millisecond)
	defer s.put(busy)
	start := time.Now()
	var mu sync.Mutex
	var at []time.Duration
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			cn, err := s.get(ctxT(t))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			at = append(at, time.Since(start))
			mu.Unlock()
			// Held until both have one: neither is handed the other's.
			time.Sleep(300 * time.Millisecond)
			s.put(cn)
		})
	}
	wg.Wait()
	if n := s.dials.Load(); n != 3 {
		t.Errorf("%d dials, want 3", n)
	}
	if len(at) != 2 || at[0] < 100*time.Millisecond || at[1] < 200*time.Millisecond {
		t.Errorf("connections had after %v; want the first after ≥ 100ms, the second after ≥ 200ms", at)
	}
}

// A waiter whose context ends stops waiting at once, and its slot is free.
func TestPoolWaiterCancelled(t *testing.T) {
	s, busy := poolWithOneBusy(t, time.Hour)
	defer s.put(busy)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	_, err := s.get(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n := len(s.sem); n != 1 {
		t.Errorf("%d slots taken, want 1 (the busy connection's)", n)
	}
}

// Close wakes waiters: they fail at once instead of waiting out a login.
func TestPoolCloseWakesWaiter(t *testing.T) {
	s, busy := poolWithOneBusy(t, time.Hour)
	defer s.put(busy)
	time.AfterFunc(30*time.Millisecond, func() { s.Close() })
	done := make(chan error, 1)
	go func() {
		_, err := s.get(ctxT(t))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "store is closed") {
			t.Fatalf("got %v, want store is closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiter was not woken by Close")
	}
}

// tryGet, for connections that are only nice to have, never waits.
func TestPoolTryGetDoesNotWait(t *testing.T) {
	s, busy := poolWithOneBusy(t, time.Hour)
	defer s.put(busy)
	cn, err := s.tryGet(ctxT(t))
	if err != nil || cn == nil {
		t.Fatalf("got %v, %v", cn, err)
	}
	s.put(cn)
	if n := s.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}
