package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/quixysync/quixysync/internal/sysfile"
)

// The journal (<state>.journal) records each irreversible act before it
// happens (intent) and its outcome after (result), so a run killed at any
// instant can be resumed without duplicating or losing a message. Format in
// docs/state-format.md.
const (
	journalMagic   = "quixysync-journal"
	journalVersion = 1
)

// errCrash is returned by a journal whose crash hook fired: the run must stop
// at once, writing nothing more, as if the process had died.
var errCrash = errors.New("simulated crash (test hook)")

// crashHook counts journal lines over a whole run and simulates a crash after
// a given number of them (isync's -Ts). A test-only device.
type crashHook struct {
	lines *atomic.Int64
	syncs *atomic.Int64 // nil: not counted
	after int64         // 0: never
	exit  bool          // really exit the process (status 100) instead of returning errCrash
	// at, when set, simulates a crash at that named point of the run
	// (crashBeforeState and the like) instead of after a journal line.
	at string
	// fileErr, when set, fails the writing of a state or journal file with
	// the error it returns for the file's path (RunOptions.fileErr).
	fileErr func(path string) error
	// fsyncs, when set, is told of each fsync of the engine's own files
	// before it is made (RunOptions.fsyncs), and fails it with the error
	// it returns.
	fsyncs func(op, path string) error
}

// fsync makes f, a journal or a state's temporary file, durable. Its test
// hook (fsyncs) sees "fsync" and the file's name first, as the maildir
// store's testHook sees its own: a test can then tell an fsync that is
// not made, which nothing else shows short of a power loss.
func (h *crashHook) fsync(f *os.File) error {
	if h != nil && h.fsyncs != nil {
		if err := h.fsyncs("fsync", f.Name()); err != nil {
			return err
		}
	}
	return f.Sync()
}

// syncFile fsyncs the file at path (seen by the test hook as "fsync").
func (h *crashHook) syncFile(path string) error {
	f, err := sysfile.Open(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	defer f.Close()
	if err := h.fsync(f); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	return nil
}

// syncDir is the package's syncDir (a directory made durable: a rename or
// a creation in it), seen first by the test hook as "fsyncdir".
func (h *crashHook) syncDir(dir string) error {
	if h != nil && h.fsyncs != nil {
		if err := h.fsyncs("fsyncdir", dir); err != nil {
			return fmt.Errorf("fsync %s: %w", dir, err)
		}
	}
	return syncDir(dir)
}

// writeErr is the error a test has the writing of the file at path fail with.
func (h *crashHook) writeErr(path string) error {
	if h == nil || h.fileErr == nil {
		return nil
	}
	return h.fileErr(path)
}

// Named crash points (crashHook.at): around the state saves that a kept
// journal must survive in either order.
const (
	crashBeforeState = "before saving the state"  // finish: journal rebased, state not yet saved
	crashAfterState  = "after saving the state"   // finish: state saved
	crashAfterReplay = "after the replay's state" // replay: state saved, journal not yet removed
)

// point simulates a crash when the run reaches the named point.
func (h *crashHook) point(name string) error {
	if h == nil || h.at == "" || h.at != name {
		return nil
	}
	if h.exit {
		os.Exit(100)
	}
	return errCrash
}

func (h *crashHook) line() error {
	if h == nil {
		return nil
	}
	n := h.lines.Add(1)
	if h.after > 0 && n >= h.after {
		return errCrash
	}
	return nil
}

func (h *crashHook) crashed() bool {
	return h != nil && h.after > 0 && h.lines.Load() >= h.after
}

// journal is an open journal being appended to.
type journal struct {
	path   string
	header journalHeader
	f      *os.File
	w      *bufio.Writer
	nextID int
	hook   *crashHook
	// dirDurable: the journal's directory entry has been fsynced (see
	// syncWithName).
	dirDurable bool
}

type journalHeader struct {
	Generation                uint64
	FarValidity, NearValidity uint32
}

func newJournal(path string, h journalHeader, hook *crashHook) *journal {
	return &journal{path: path, header: h, hook: hook, nextID: 1}
}

func (j *journal) open() error {
	if j.f != nil {
		return nil
	}
	f, err := sysfile.Open(j.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	j.f = f
	// Most journals hold a few dozen short lines; a bigger buffer is fresh
	// memory that a short run pays for in page faults.
	j.w = bufio.NewWriterSize(f, 8<<10)
	fmt.Fprintf(j.w, "%s %d\ngeneration %d\nfar-validity %d\nnear-validity %d\n\n",
		journalMagic, journalVersion, j.header.Generation, j.header.FarValidity, j.header.NearValidity)
	return nil
}

// add appends one line (without newline); it becomes durable at the next sync.
func (j *journal) add(line string) error {
	if err := j.open(); err != nil {
		return err
	}
	j.w.WriteString(line)
	j.w.WriteByte('\n')
	if err := j.hook.line(); err != nil {
		j.w.Flush() // what a dead process would have handed to the kernel
		if j.hook.exit {
			os.Exit(100)
		}
		return err
	}
	return nil
}

// sync makes every line added so far durable.
func (j *journal) sync() error {
	if j.f == nil {
		return nil
	}
	if err := j.flush(); err != nil {
		return err
	}
	if err := j.hook.fsync(j.f); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	if j.hook != nil && j.hook.syncs != nil {
		j.hook.syncs.Add(1)
	}
	return nil
}

// syncWithName is sync for lines that must not be lost with the file's
// name: copy intents. Flag changes and removals are safe without it (the
// next run finds them done on both sides, or redoes them); a copy whose
// intent is lost is found on its target as a new message and copied back.
func (j *journal) syncWithName() error {
	if err := j.sync(); err != nil || j.f == nil || j.dirDurable {
		return err
	}
	dir := filepath.Dir(j.path)
	if err := j.hook.writeErr(dir); err != nil {
		return fmt.Errorf("journal %s: fsync %s: %w", j.path, dir, err)
	}
	if err := j.hook.syncDir(dir); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	j.dirDurable = true
	return nil
}

// durablePaths is what a caller that makes the journal durable some other
// way (see Barrierer) must make durable after a flush: the file, and its
// directory until an fsync of the journal has made that durable.
func (j *journal) durablePaths() []string {
	if j.dirDurable {
		return []string{j.path}
	}
	return []string{j.path, filepath.Dir(j.path)}
}

// flush hands every line added so far to the kernel, for a caller that
// makes the file durable some other way (see Barrierer).
func (j *journal) flush() error {
	if j.f == nil {
		return nil
	}
	if err := j.hook.writeErr(j.path); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	return nil
}

// close closes the file without removing it (crash path and errors).
func (j *journal) close() {
	if j.f != nil {
		j.w.Flush()
		j.f.Close()
		j.f = nil
	}
}

// rebase gives a journal kept past a state save (copies whose outcome could
// not be found out) the generation of the state about to be saved, before
// it is saved: a journal of another generation than the state's or the
// next one is discarded as stale, and the next run would copy those
// messages again. Written first, the records survive a crash on either
// side of the state's rename (see boxRun.run). The records stay; the file
// is replaced atomically.
func (j *journal) rebase(gen uint64) error {
	if j.f == nil {
		return nil
	}
	if err := j.sync(); err != nil {
		return err
	}
	j.close()
	data, err := sysfile.ReadFile(j.path)
	if err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	end := bytes.Index(data, []byte("\n\n"))
	if end < 0 {
		return fmt.Errorf("journal %s: no header", j.path)
	}
	j.header.Generation = gen
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %d\ngeneration %d\nfar-validity %d\nnear-validity %d\n\n",
		journalMagic, journalVersion, j.header.Generation, j.header.FarValidity, j.header.NearValidity)
	b.Write(data[end+2:])
	if err := replaceFileWith(j.path, func(f *os.File) error { _, err := f.Write(b.Bytes()); return err }, nil, j.hook); err != nil {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	return nil
}

// remove deletes the journal once the state that includes it is durable.
func (j *journal) remove() error {
	j.close()
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal %s: %w", j.path, err)
	}
	return nil
}

func (j *journal) id() int {
	id := j.nextID
	j.nextID++
	return id
}

// copyIntent is a journaled copy of one message to the target side.
type copyIntent struct {
	ID       int
	To       Side // target side
	Src      UID  // source UID (on To.Other())
	Flags    Flag
	Reserved UID   // target UID chosen in advance by the store, 0 if none
	UIDNext  UID   // target UIDNEXT seen before the copy
	Size     int64 // canonical (LF) size
	CRLFSize int64 // size with CRLF line endings
	SHA256   string
	// MessageID is the message's Message-ID header ("" if none): the
	// fallback when the target server changed the bytes on APPEND.
	MessageID string
	// Result: Done when a result line was read or written; Target then holds
	// the target UID (0 = committed but UID unknown), Failed a copy that
	// certainly did not happen.
	Done, Failed bool
	Target       UID
}

type flagIntent struct {
	ID          int
	Side        Side
	Add, Remove Flag
	UIDs        []UID
	Done        bool
}

type expungeIntent struct {
	ID   int
	Side Side
	UIDs []UID
	Done bool
}

func (j *journal) addCopy(c *copyIntent) error {
	c.ID = j.id()
	line := fmt.Sprintf("copy %d %s %d %s %d %d %d %d %s", c.ID, c.To, c.Src, flagField(c.Flags),
		c.Reserved, c.UIDNext, c.Size, c.CRLFSize, c.SHA256)
	if c.MessageID != "" {
		line += " " + escapeField(c.MessageID)
	}
	return j.add(line)
}

// escapeField makes a value one journal field: %XX for '%', spaces, control
// and non-ASCII bytes.
func escapeField(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func unescapeField(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape in %q", s)
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}

func (j *journal) addCopyResult(c *copyIntent) error {
	if c.Failed {
		return j.add("fail " + strconv.Itoa(c.ID))
	}
	return j.add(fmt.Sprintf("ok %d %d", c.ID, c.Target))
}

func (j *journal) addFlags(f *flagIntent) error {
	f.ID = j.id()
	return j.add(fmt.Sprintf("flags %d %s %s %s %s", f.ID, f.Side, flagField(f.Add), flagField(f.Remove), formatUIDSet(f.UIDs)))
}

func (j *journal) addExpunge(e *expungeIntent) error {
	e.ID = j.id()
	return j.add(fmt.Sprintf("expunge %d %s %s", e.ID, e.Side, formatUIDSet(e.UIDs)))
}

func (j *journal) addDone(id int) error { return j.add("done " + strconv.Itoa(id)) }

func flagField(f Flag) string {
	if f == 0 {
		return "-"
	}
	return f.String()
}

func parseFlagField(s string) (Flag, error) {
	if s == "-" {
		return 0, nil
	}
	return ParseFlags(s)
}

// formatUIDSet writes ascending UIDs as compact ranges: "1:5,7,9:10".
func formatUIDSet(uids []UID) string {
	var b strings.Builder
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(uids[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(uids[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

// maxUIDSet bounds the UIDs one journal line may name: far more than any
// mailbox holds, and a damaged line ("1:4294967295,1:4294967295,...") is an
// error rather than gigabytes of UIDs.
const maxUIDSet = 1 << 24

func parseUIDSet(s string) ([]UID, error) {
	var out []UID
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := parseUID([]byte(lo))
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parseUID([]byte(hi)); err != nil {
				return nil, err
			}
		}
		if a == 0 || b < a || uint64(len(out))+uint64(b-a) >= maxUIDSet {
			return nil, fmt.Errorf("bad range %q", part)
		}
		for u := a; ; u++ {
			out = append(out, u)
			if u == b {
				break
			}
		}
	}
	return out, nil
}

func parseSide(s string) (Side, error) {
	switch s {
	case "far":
		return Far, nil
	case "near":
		return Near, nil
	}
	return 0, fmt.Errorf("bad side %q", s)
}

// journalData is a journal read back for replay.
type journalData struct {
	Header   journalHeader
	Copies   []*copyIntent
	Flags    []*flagIntent
	Expunges []*expungeIntent
}

// readJournal reads a journal; a missing one yields nil, nil. A final line
// without newline is ignored (the writer died in the middle of it, so the act
// it announces never started).
func readJournal(path string) (*journalData, error) {
	f, err := sysfile.Open(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	defer f.Close()
	return parseJournal(f, path)
}

func parseJournal(r io.Reader, name string) (*journalData, error) {
	br := bufio.NewReader(r)
	jd := &journalData{}
	lineNo := 0
	bad := func(format string, a ...any) error {
		return fmt.Errorf("journal %s line %d: %s (the file is damaged; move it away and run again: "+
			"messages copied by the interrupted run may then appear twice)", name, lineNo, fmt.Sprintf(format, a...))
	}
	var lines []string
	for {
		s, err := br.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("journal %s: %w", name, err)
		}
		lines = append(lines, s[:len(s)-1])
	}
	if len(lines) < 5 {
		// Cut off inside the header: written before any act, so nothing happened.
		return nil, nil
	}
	lineNo = 1
	if magic, ver, _ := strings.Cut(lines[0], " "); magic == journalMagic {
		if v, err := strconv.Atoi(ver); err == nil && v > journalVersion {
			return nil, fmt.Errorf("journal %s: written by a newer quixysync (format version %d; this one reads version %d): "+
				"it holds what an interrupted run of that version did; keep it and run that version (or a later one) to finish it",
				name, v, journalVersion)
		}
	}
	if lines[0] != journalMagic+" "+strconv.Itoa(journalVersion) {
		return nil, bad("not a quixysync journal of version %d", journalVersion)
	}
	var hdr [3]uint64
	for i, key := range []string{"generation", "far-validity", "near-validity"} {
		lineNo = i + 2
		k, v, _ := strings.Cut(lines[i+1], " ")
		bits := 32 // a UIDVALIDITY: a larger number is damage, not a value to truncate
		if i == 0 {
			bits = 64
		}
		n, err := strconv.ParseUint(v, 10, bits)
		if k != key || err != nil {
			return nil, bad("expected %q", key)
		}
		hdr[i] = n
	}
	jd.Header = journalHeader{Generation: hdr[0], FarValidity: uint32(hdr[1]), NearValidity: uint32(hdr[2])}
	copies := map[int]*copyIntent{}
	flags := map[int]*flagIntent{}
	expunges := map[int]*expungeIntent{}
	for i := 5; i < len(lines); i++ {
		lineNo = i + 1
		fs := strings.Fields(lines[i])
		if len(fs) < 2 {
			return nil, bad("malformed line")
		}
		id, err := strconv.Atoi(fs[1])
		if err != nil || id <= 0 {
			return nil, bad("bad id %q", fs[1])
		}
		switch fs[0] {
		case "copy", "flags", "expunge":
			// The writer numbers the steps of a journal 1, 2, 3...: an id
			// seen twice would give one step's outcome to another.
			if copies[id] != nil || flags[id] != nil || expunges[id] != nil {
				return nil, bad("step %d recorded twice", id)
			}
		}
		switch fs[0] {
		case "copy":
			if len(fs) != 10 && len(fs) != 11 {
				return nil, bad("copy needs 10 or 11 fields")
			}
			c := &copyIntent{ID: id, SHA256: fs[9]}
			var err error
			if len(fs) == 11 {
				if c.MessageID, err = unescapeField(fs[10]); err != nil {
					return nil, bad("%v", err)
				}
			}
			if c.To, err = parseSide(fs[2]); err != nil {
				return nil, bad("%v", err)
			}
			if c.Flags, err = parseFlagField(fs[4]); err != nil {
				return nil, bad("%v", err)
			}
			// UIDs are 32 bits: a larger number read as one, truncated,
			// would name another message.
			var uids [3]UID
			for k, idx := range []int{3, 5, 6} {
				if uids[k], err = parseUID([]byte(fs[idx])); err != nil {
					return nil, bad("bad UID %q", fs[idx])
				}
			}
			if uids[0] == 0 {
				return nil, bad("copy of source UID 0")
			}
			var sizes [2]uint64
			for k, idx := range []int{7, 8} {
				if sizes[k], err = strconv.ParseUint(fs[idx], 10, 63); err != nil {
					return nil, bad("bad number %q", fs[idx])
				}
			}
			c.Src, c.Reserved, c.UIDNext = uids[0], uids[1], uids[2]
			c.Size, c.CRLFSize = int64(sizes[0]), int64(sizes[1])
			copies[id] = c
			jd.Copies = append(jd.Copies, c)
		case "ok", "fail":
			c := copies[id]
			if c == nil {
				return nil, bad("result for unknown copy %d", id)
			}
			if c.Done {
				// The writer records one outcome per copy.
				return nil, bad("second result for copy %d", id)
			}
			c.Done = true
			if fs[0] == "fail" {
				if len(fs) != 2 {
					return nil, bad("fail needs 2 fields")
				}
				c.Failed = true
			} else {
				if len(fs) != 3 {
					return nil, bad("ok needs 3 fields")
				}
				u, err := parseUID([]byte(fs[2]))
				if err != nil {
					return nil, bad("%v", err)
				}
				c.Target = u
			}
		case "flags":
			if len(fs) != 6 {
				return nil, bad("flags needs 6 fields")
			}
			f := &flagIntent{ID: id}
			var err error
			if f.Side, err = parseSide(fs[2]); err != nil {
				return nil, bad("%v", err)
			}
			if f.Add, err = parseFlagField(fs[3]); err != nil {
				return nil, bad("%v", err)
			}
			if f.Remove, err = parseFlagField(fs[4]); err != nil {
				return nil, bad("%v", err)
			}
			if f.UIDs, err = parseUIDSet(fs[5]); err != nil {
				return nil, bad("%v", err)
			}
			flags[id] = f
			jd.Flags = append(jd.Flags, f)
		case "expunge":
			if len(fs) != 4 {
				return nil, bad("expunge needs 4 fields")
			}
			e := &expungeIntent{ID: id}
			var err error
			if e.Side, err = parseSide(fs[2]); err != nil {
				return nil, bad("%v", err)
			}
			if e.UIDs, err = parseUIDSet(fs[3]); err != nil {
				return nil, bad("%v", err)
			}
			expunges[id] = e
			jd.Expunges = append(jd.Expunges, e)
		case "done":
			if len(fs) != 2 {
				return nil, bad("done needs 2 fields")
			}
			if f := flags[id]; f != nil {
				f.Done = true
			} else if e := expunges[id]; e != nil {
				e.Done = true
			} else {
				return nil, bad("result for unknown step %d", id)
			}
		default:
			return nil, bad("unknown entry %q", fs[0])
		}
	}
	return jd, nil
}
