package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/quixysync/quixysync/engine"
)

// staged is a message written to tmp/ under the name it will keep, with its
// UID already reserved in .uidvalidity.
type staged struct {
	mb    *Mailbox
	uid   engine.UID
	size  int64
	name  string
	flags engine.Flag
	date  time.Time
	done  bool
}

func (st *staged) UID() engine.UID { return st.uid }
func (st *staged) Size() int64     { return st.size }

// maxBatch caps how many UIDs one .uidvalidity write reserves ahead: bulk
// copies then cost one durable write per batch instead of per message, and
// unused reservations are only gaps in the UID sequence.
const maxBatch = 64

// takeUID hands out a durably reserved UID.
func (m *Mailbox) takeUID() (engine.UID, error) {
	if len(m.pool) == 0 {
		m.batch = min(max(1, m.batch*2), maxBatch)
		st, first, err := m.s.reserveUIDs(m.dir, m.batch)
		if err != nil {
			return 0, m.wrap("reserve UID", err)
		}
		if st.Validity != m.status.UIDValidity {
			return 0, m.wrap("reserve UID", engine.ErrValidity)
		}
		for i := 0; i < m.batch; i++ {
			m.pool = append(m.pool, first+engine.UID(i))
		}
	}
	u := m.pool[0]
	m.pool = m.pool[1:]
	m.ours[u] = true
	return u, nil
}

// prepareDirs creates the subdirectories (a folder may have only cur/) and,
// once per open, removes tmp/ files abandoned long ago.
func (m *Mailbox) prepareDirs() error {
	if m.dirsReady {
		return nil
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(m.dir, sub), 0o700); err != nil {
			return m.wrap("create "+sub, err)
		}
	}
	tmp := filepath.Join(m.dir, "tmp")
	if des, err := os.ReadDir(tmp); err == nil {
		for _, d := range des {
			if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > tmpMaxAge {
				_ = os.Remove(filepath.Join(tmp, d.Name()))
			}
		}
	}
	m.dirsReady = true
	return nil
}

// ctxReader stops a copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Stage reserves a UID and writes the message to tmp/ as
// <unique>,U=<uid>:2,<flags> (O_EXCL, 0600). A failure leaves nothing in tmp/.
func (m *Mailbox) Stage(ctx context.Context, nm engine.NewMessage) (engine.Staged, error) {
	if m.readOnly {
		return nil, m.wrap("add message", engine.ErrReadOnly)
	}
	if nm.Body == nil {
		return nil, m.errf("add message: no body")
	}
	if err := m.prepareDirs(); err != nil {
		return nil, err
	}
	uid, err := m.takeUID()
	if err != nil {
		return nil, err
	}
	var f *os.File
	var name string
	for try := 0; ; try++ {
		unique := fmt.Sprintf("%d.%d_%d.%s", time.Now().Unix(), os.Getpid(), m.s.seq.Add(1), m.s.host)
		name = fileName{Base: unique}.withUID(uid).withFlags(nm.Flags).String()
		f, err = os.OpenFile(filepath.Join(m.dir, "tmp", name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil || !errors.Is(err, fs.ErrExist) || try >= 10 {
			break
		}
	}
	if err != nil {
		return nil, m.wrap("add message", err)
	}
	path := f.Name()
	n, err := io.Copy(f, ctxReader{ctx, nm.Body})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, m.wrap("add message: write "+path, err)
	}
	return &staged{mb: m, uid: uid, size: n, name: name, flags: nm.Flags, date: nm.Date}, nil
}

// Commit sets each staged file's mtime to the message date (when given),
// fsyncs it, renames it into cur/ (seen) or new/ (unseen, keeping the ":2,"
// info as mbsync does) without ever replacing a file, and then fsyncs the
// directories once. If only that final fsync fails, the results still carry
// the UIDs (the files are in place) and the error is returned as well.
func (m *Mailbox) Commit(ctx context.Context, list []engine.Staged) ([]engine.CommitResult, error) {
	res := make([]engine.CommitResult, len(list))
	touched := map[string]bool{}
	for i, s := range list {
		st, ok := s.(*staged)
		switch {
		case !ok || st.mb != m:
			res[i].Err = m.errf("commit: staged message belongs to another mailbox")
			continue
		case st.done:
			res[i].Err = m.errf("commit: message already committed or discarded")
			continue
		}
		if err := ctx.Err(); err != nil {
			res[i].Err = err
			continue
		}
		sub := "new"
		if st.flags.Has(engine.FlagSeen) {
			sub = "cur"
		}
		if err := m.commitOne(st, sub); err != nil {
			res[i].Err = err
			continue
		}
		touched[sub] = true
		res[i].UID = st.uid
	}
	if m.scanned {
		m.status.Messages = int64(len(m.idx))
	}
	if err := m.syncSubs(touched); err != nil {
		return res, err
	}
	return res, nil
}

func (m *Mailbox) commitOne(st *staged, sub string) error {
	st.done = true
	tmpPath := filepath.Join(m.dir, "tmp", st.name)
	err := func() error {
		if !st.date.IsZero() {
			if err := os.Chtimes(tmpPath, st.date, st.date); err != nil {
				return err
			}
		}
		if m.s.opt.Fsync {
			f, err := os.Open(tmpPath)
			if err != nil {
				return err
			}
			err = f.Sync()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		return renameNoReplace(tmpPath, filepath.Join(m.dir, sub, st.name))
	}()
	if err != nil {
		_ = os.Remove(tmpPath)
		return m.wrap("commit", err)
	}
	if m.idx != nil {
		m.idx[st.uid] = &entry{sub: sub, name: st.name, fn: parseName(st.name)}
	}
	return nil
}

// Discard removes staged files; their reserved UIDs stay unused.
func (m *Mailbox) Discard(list []engine.Staged) {
	for _, s := range list {
		st, ok := s.(*staged)
		if !ok || st.mb != m || st.done {
			continue
		}
		st.done = true
		_ = os.Remove(filepath.Join(m.dir, "tmp", st.name))
	}
}
