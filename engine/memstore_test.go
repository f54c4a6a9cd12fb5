package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// memStore is a small in-memory Store for engine tests. It can behave like a
// Maildir (UIDs reserved at Stage) or like an IMAP server with or without
// UIDPLUS and CONDSTORE.
type memStore struct {
	name    string
	reserve bool // Stage reserves the UID (Maildir-like)
	uidplus bool // Commit reports UIDs (when !reserve)
	modseq  bool // CONDSTORE-like change counter: incremental List
	crlf    bool // sizes reported in CRLF form
	noStamp bool
	// listStatus: ListMailboxes reports each mailbox's Status (LIST-STATUS).
	listStatus bool
	// guessNext: Status reports the last message's UID + 1 as UIDNext,
	// marked UIDNextGuessed.
	guessNext bool

	mu    sync.Mutex
	boxes map[string]*memBox
	// made counts the mailboxes ever created: a mailbox made anew gets a
	// new UIDVALIDITY, as on a real server.
	made   int
	calls  map[string]int
	staged int // staged, neither committed nor discarded
	// failStage makes Stage fail for bodies containing this string.
	failStage string
	// lostCommit makes Commit store the messages but report a lost
	// connection, after which List and UIDs fail until it is cleared.
	lostCommit bool
	lookupDown bool
	// rewrite, when set, changes each message as Commit stores it, as a
	// server that rewrites messages on APPEND (adds a header) does.
	rewrite func([]byte) []byte
	// emptyFetch makes Fetch hand over every message with no bytes, as a
	// server answering with an empty literal for a message it has.
	emptyFetch bool
	// touched: every WillTouch, its UIDs sorted.
	touched [][]UID
	// events, when set, records every mailbox operation as "store op",
	// in order (it may be shared by both stores of a channel).
	events *eventLog
	// gates hold Fetch of the named mailboxes until released.
	gates map[string]*gate
	// pool, when set, is a connection pool: an open mailbox holds a slot
	// until Close, and OpenMailbox waits for one (after openDelay[name]).
	pool      chan struct{}
	openDelay map[string]time.Duration
}

// gate holds an operation: started is closed when the first one arrives,
// which then waits for release (or its context).
type gate struct {
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{started: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) wait(ctx context.Context) error {
	g.once.Do(func() { close(g.started) })
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// eventLog is an ordered record of mailbox operations.
type eventLog struct {
	mu  sync.Mutex
	evs []string
}

func (l *eventLog) add(ev string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, ev)
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.evs)
}

type memBox struct {
	validity uint32
	next     UID
	modseq   uint64
	version  int
	msgs     map[UID]*memMsg
}

type memMsg struct {
	body   []byte
	flags  Flag
	date   time.Time
	modseq uint64
}

func newMemStore(name string) *memStore {
	return &memStore{name: name, boxes: map[string]*memBox{}, calls: map[string]int{}, uidplus: true, modseq: true}
}

func (s *memStore) count(op string) {
	s.calls[op]++
}

func (s *memStore) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

func (s *memStore) Name() string { return s.name }

func (s *memStore) ListMailboxes(ctx context.Context) ([]MailboxInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []MailboxInfo
	for n, b := range s.boxes {
		mi := MailboxInfo{Name: n}
		if s.listStatus {
			st := s.statusLocked(b)
			mi.Status = &st
		}
		out = append(out, mi)
	}
	return out, nil
}

func (s *memStore) CreateMailbox(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.boxes[name] == nil {
		s.boxes[name] = &memBox{validity: uint32(1000 + s.made), next: 1, modseq: 1, msgs: map[UID]*memMsg{}}
		s.made++
	}
	return nil
}

func (s *memStore) DeleteMailbox(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.boxes[name]
	if b == nil {
		return ErrNoMailbox
	}
	if len(b.msgs) > 0 {
		return fmt.Errorf("%s: %w", name, ErrNotEmpty)
	}
	delete(s.boxes, name)
	return nil
}

func (s *memStore) OpenMailbox(ctx context.Context, name string, readOnly bool) (Mailbox, error) {
	if s.pool != nil {
		select {
		case <-time.After(s.openDelay[name]):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		select {
		case s.pool <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: waiting for a free connection: %w", s.name, ctx.Err())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("OpenMailbox")
	b := s.boxes[name]
	if b == nil {
		if s.pool != nil {
			<-s.pool
		}
		return nil, fmt.Errorf("%s: %w", name, ErrNoMailbox)
	}
	return &memMailbox{s: s, b: b, name: name, ro: readOnly, st: s.statusLocked(b), gate: s.gates[name]}, nil
}

func (s *memStore) Close() error { return nil }

func (s *memStore) statusLocked(b *memBox) Status {
	st := Status{UIDValidity: b.validity, UIDNext: b.next, Messages: int64(len(b.msgs))}
	if s.guessNext {
		// As a server that names no UIDNEXT, for which the store takes
		// the last message's UID + 1.
		st.UIDNext, st.UIDNextGuessed = 1, true
		for u := range b.msgs {
			st.UIDNext = max(st.UIDNext, u+1)
		}
	}
	if s.modseq {
		// As IMAP's HIGHESTMODSEQ: the highest mod-sequence given so far
		// (from 1 on); every later change gets a higher one.
		st.HighestModSeq = b.modseq
	}
	if !s.noStamp {
		st.Stamp = fmt.Sprintf("%d.%d", b.validity, b.version)
	}
	return st
}

func (b *memBox) touch() {
	b.modseq++
	b.version++
}

type memMailbox struct {
	s      *memStore
	b      *memBox
	name   string
	gate   *gate // holds Fetch when set
	ro     bool
	st     Status
	closed bool
	// touch is what WillTouch announced; operations on UIDs outside it
	// are counted as "untouched" calls.
	touch map[UID]bool
}

// WillTouch records the announcement (engine.TouchHinter) in the store's
// touched list, one sorted entry per call.
// op counts and records an operation (under m.s.mu); it fails once the
// mailbox is closed, so that every test catches a use after release.
func (m *memMailbox) op(name string) error {
	m.s.count(name)
	if m.s.events != nil {
		m.s.events.add(m.s.name + " " + name)
	}
	if m.closed {
		m.s.count("afterClose")
		return fmt.Errorf("%s: %s on a closed mailbox", m.s.name, name)
	}
	return nil
}

func (m *memMailbox) WillTouch(uids []UID) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.touch = map[UID]bool{}
	for _, u := range uids {
		m.touch[u] = true
	}
	m.s.touched = append(m.s.touched, slices.Sorted(maps.Keys(m.touch)))
}

// checkTouch counts an operation on UIDs that existed at open and were not
// announced (with m.s.mu held). Messages added since (say, appended without
// UIDPLUS and then looked for) are not the plan's to announce.
func (m *memMailbox) checkTouch(uids []UID) {
	if m.touch == nil {
		return
	}
	for _, u := range uids {
		if !m.touch[u] && u < m.st.UIDNext {
			m.s.count("untouched")
		}
	}
}

type memStaged struct {
	uid   UID
	body  []byte
	flags Flag
	date  time.Time
	done  bool
}

func (m *memStaged) UID() UID        { return m.uid }
func (m *memStaged) Size() int64     { return int64(len(m.body)) }
func (m *memMailbox) Status() Status { return m.st }

func (m *memMailbox) List(ctx context.Context, q ListQuery) ([]Message, bool, error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if err := m.op("List"); err != nil {
		return nil, false, err
	}
	if m.s.lookupDown {
		return nil, false, fmt.Errorf("list: injected failure")
	}
	all := q.All || !m.s.modseq
	var out []Message
	for uid, msg := range m.b.msgs {
		if all || uid >= q.From || (q.ChangedSince > 0 && msg.modseq > q.ChangedSince) {
			size := int64(len(msg.body))
			if m.s.crlf {
				size += int64(bytes.Count(msg.body, []byte{'\n'}))
			}
			out = append(out, Message{UID: uid, Flags: msg.flags, Size: size, SizeIsCRLF: m.s.crlf, Date: msg.date})
		}
	}
	slices.SortFunc(out, func(a, b Message) int { return cmpUID(a.UID, b.UID) })
	return out, all, nil
}

func (m *memMailbox) UIDs(ctx context.Context, below UID) ([]UID, error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if err := m.op("UIDs"); err != nil {
		return nil, err
	}
	if m.s.lookupDown {
		return nil, fmt.Errorf("uids: injected failure")
	}
	var out []UID
	for uid := range m.b.msgs {
		if uid < below {
			out = append(out, uid)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (m *memMailbox) Fetch(ctx context.Context, uids []UID, fn func(UID, io.Reader) error) error {
	m.s.mu.Lock()
	if err := m.op("Fetch"); err != nil {
		m.s.mu.Unlock()
		return err
	}
	m.checkTouch(uids)
	type item struct {
		uid  UID
		body []byte
	}
	var items []item
	for _, u := range uids {
		if msg := m.b.msgs[u]; msg != nil {
			items = append(items, item{u, msg.body})
		}
	}
	m.s.mu.Unlock()
	if m.gate != nil {
		if err := m.gate.wait(ctx); err != nil {
			return err
		}
	}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		body := it.body
		if m.s.emptyFetch {
			body = nil
		}
		if err := fn(it.uid, bytes.NewReader(body)); err != nil {
			return err
		}
	}
	return nil
}

func (m *memMailbox) Stage(ctx context.Context, nm NewMessage) (Staged, error) {
	if m.ro {
		return nil, ErrReadOnly
	}
	body, err := io.ReadAll(nm.Body)
	if err != nil {
		return nil, err
	}
	m.s.mu.Lock()
	if err := m.op("Stage"); err != nil {
		m.s.mu.Unlock()
		return nil, err
	}
	defer m.s.mu.Unlock()
	if m.s.failStage != "" && bytes.Contains(body, []byte(m.s.failStage)) {
		return nil, fmt.Errorf("stage: injected failure")
	}
	st := &memStaged{body: body, flags: nm.Flags, date: nm.Date}
	if m.s.reserve {
		st.uid = m.b.next
		m.b.next++
	}
	m.s.staged++
	return st, nil
}

func (m *memMailbox) Commit(ctx context.Context, staged []Staged) ([]CommitResult, error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if err := m.op("Commit"); err != nil {
		return nil, err
	}
	res := make([]CommitResult, len(staged))
	for i, x := range staged {
		st := x.(*memStaged)
		uid := st.uid
		if uid == 0 {
			uid = m.b.next
			m.b.next++
		}
		m.b.touch()
		body := st.body
		if m.s.rewrite != nil {
			body = m.s.rewrite(body)
		}
		m.b.msgs[uid] = &memMsg{body: body, flags: st.flags, date: st.date, modseq: m.b.modseq}
		st.done = true
		m.s.staged--
		if m.s.reserve || m.s.uidplus {
			res[i].UID = uid
		}
		if m.s.lostCommit {
			res[i] = CommitResult{Err: fmt.Errorf("commit: injected lost connection")}
		}
	}
	if m.s.lostCommit {
		m.s.lookupDown = true
	}
	return res, nil
}

func (m *memMailbox) Discard(staged []Staged) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	for _, x := range staged {
		if st := x.(*memStaged); !st.done {
			st.done = true
			m.s.staged--
		}
	}
}

func (m *memMailbox) SetFlags(ctx context.Context, uids []UID, add, remove Flag) error {
	if m.ro {
		return ErrReadOnly
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if err := m.op("SetFlags"); err != nil {
		return err
	}
	m.checkTouch(uids)
	for _, u := range uids {
		if msg := m.b.msgs[u]; msg != nil {
			nf := (msg.flags | add) &^ remove
			if nf != msg.flags {
				m.b.touch()
				msg.flags, msg.modseq = nf, m.b.modseq
			}
		}
	}
	return nil
}

func (m *memMailbox) Expunge(ctx context.Context, uids []UID) error {
	if m.ro {
		return ErrReadOnly
	}
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if err := m.op("Expunge"); err != nil {
		return err
	}
	m.checkTouch(uids)
	for _, u := range uids {
		if m.b.msgs[u] != nil {
			delete(m.b.msgs, u)
			m.b.touch()
		}
	}
	return nil
}

func (m *memMailbox) Close() error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if m.closed {
		m.s.count("doubleClose")
	} else if m.s.pool != nil {
		<-m.s.pool
	}
	m.closed = true
	m.s.count("Close")
	if m.s.events != nil {
		m.s.events.add(m.s.name + " Close")
	}
	return nil
}

// msgBody builds a small message whose subject names it.
func msgBody(subject string) string {
	return fmt.Sprintf("From: a@example.org\nMessage-ID: <%s@test>\nSubject: %s\n\nbody of %s\n%s\n",
		subject, subject, subject, strings.Repeat("x", len(subject)*7))
}
