package imap

import "time"

// Pool size. Each connection costs the server a process and a login (Dovecot:
// 13-20 ms and about 30 ms of CPU each), and a connection only pays that back
// where a mailbox would otherwise wait for one. For a remote server that is
// most of the time: a mailbox's work there is round trips, and several
// connections overlap them. For a near one (same machine or LAN) the round
// trips cost nothing, and a run with little to copy — the usual cron run —
// is bound by the CPU and the disks: measured at 2 000 messages / 10
// folders with 100 server changes (the engine releasing each mailbox as
// soon as its plan is done with it), 1 or 2 connections synced in 190 ms
// where 4 took 234 ms and twice the server's CPU. So for a near server the
// pool holds back all but smallPool of its slots until the plans reported
// so far (PlannedCopies) copy more than growMessages messages or growBytes
// bytes, as an initial sync does; then it grows to Config.Connections.
//
// Near means that the first connection's first answer (the greeting, or
// the TLS server hello) came within nearAnswer of the dial: two round trips
// (connect, then the answer) of a few ms at most, with room for a busy
// machine (on loopback the answer took 1.5-3.3 ms, and more from a server
// just started). The connect time alone would not do: through a local proxy
// or tunnel (ssh -L, stunnel) the connect is answered at once, however far
// the server is.
const (
	nearAnswer   = 8 * time.Millisecond
	smallPool    = 2
	growMessages = 256
	growBytes    = 16 << 20
)

// firstAnswer records, once, how long the first connection took from its
// dial to the first bytes from the server (ok false: the dial failed before
// any). When that makes the server near, it holds back the slots of the pool
// beyond smallPool.
func (s *Store) firstAnswer(d time.Duration, ok bool) {
	s.answerOnce.Do(func() {
		if ok {
			s.answerNanos.Store(int64(d))
		}
		if s.near() {
			s.mu.Lock()
			if s.planned <= growMessages && s.plannedBytes <= growBytes {
				for s.held < cap(s.sem)-smallPool {
					select {
					case s.sem <- struct{}{}:
						s.held++
						continue
					default:
					}
					break
				}
			}
			held := s.held
			s.mu.Unlock()
			if held > 0 {
				s.log.Debug("server is near: few connections until there is much to copy",
					"store", s.cfg.Name, "first answer", d, "connections", cap(s.sem)-held)
			}
		}
		close(s.answered)
	})
}

// near reports whether the server's first answer came within nearAnswer.
func (s *Store) near() bool {
	ns := s.answerNanos.Load()
	return ns > 0 && time.Duration(ns) < s.nearBelow
}

// PlannedCopies is engine.Scaler: the engine reports each mailbox plan's
// copies as it makes them. Once they add up to an initial sync's worth, the
// pool gives back the slots it held back.
func (s *Store) PlannedCopies(messages int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.planned += int64(messages)
	s.plannedBytes += bytes
	if s.held == 0 || (s.planned <= growMessages && s.plannedBytes <= growBytes) {
		return
	}
	s.log.Debug("much to copy: the pool grows", "store", s.cfg.Name, "messages", s.planned, "bytes", s.plannedBytes)
	for ; s.held > 0; s.held-- {
		select {
		case <-s.sem:
		default:
			s.held = 0 // cannot happen: the held slots are in sem
			return
		}
	}
}

// poolRoom returns how many connections the pool may hold now, and how many
// it holds (idle, in use or being dialled).
func (s *Store) poolRoom() (room, have int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cap(s.sem) - s.held - s.limited, len(s.idle) + len(s.sem) - s.held - s.limited
}
