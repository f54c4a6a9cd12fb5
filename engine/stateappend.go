package engine

// A save appends what changed to the state file instead of rewriting it.
//
// A run over a mailbox of 100 000 messages that changed 300 of them rewrote
// 2.5 MB of state, fsynced it and the directory (29 ms of a 290 ms run,
// traced 2026-11-28); a folder of 200 messages paid two fsyncs for its save
// (the file's and the directory's after the rename). An append costs the
// changed lines and one fsync of the file.
//
// Version 3 files are a base, written whole by rename as before and ended by
// a line "%end", followed by zero or more sections:
//
//	%delta
//	generation 8                the whole header but the owner's lines
//	...
//	                            empty line
//	-FAR NEAR                   a pair gone, or changed: by its UIDs
//	+PAIR LINE                  a pair new, or changed: its whole line
//	%end CRC LEN
//
// LEN is the section's length up to its "%end" line, CRC the CRC-32C of those
// bytes. Sections are only ever appended, so a crash can only tear the last
// one: a section without its whole trailer line, or whose checksum does not
// match, at the end of the file is ignored, and the file reads as the state
// before that save — as a crash before the rename of a rewritten state did,
// with the journal of the run still there to replay. The next save truncates
// the torn bytes before it appends. Anything wrong in a section followed by
// another one is damage, reported as such.
//
// Once the sections would hold more than a sixteenth of the base (at least
// appendMin bytes), a save rewrites the file whole. Each section costs every
// later load: at 100 000 pairs, 20 sections of 300 changes took a load from
// 6.0 to 9.9 ms (BenchmarkStateLoadSections100k, 2026-11-28), where a rewrite
// costs about 7 ms and an fsync of the directory; 300 changes are about
// 8 KiB, a sixteenth of that base about 18 of them.

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/internal/sysfile"
)

// appendMin is how many bytes of sections a state file may hold whatever the
// size of its base: a section of a few hundred changes is a few KiB.
const appendMin = 16 << 10

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// stateImage is what a state file held when it was loaded or saved: enough
// for the next save to append the difference.
type stateImage struct {
	dev, ino          uint64
	baseLen, validLen int64
	owner             StateOwner
	// pairs, in file order; nil until a caller sets them (a copy of the
	// loaded pairs, which a run may change in place).
	pairs []Pair
}

// loadStateImage is loadState, also returning what the next save needs to
// append to the file (nil when it has to rewrite it).
func loadStateImage(path string) (State, stateMeta, *stateImage, error) {
	var sb unix.Stat_t
	serr := unix.Stat(path, &sb)
	st, meta, err := loadState(path, false)
	if err != nil || serr != nil || meta.version < 3 {
		return st, meta, nil, err
	}
	img := &stateImage{dev: sb.Dev, ino: sb.Ino, baseLen: meta.baseLen, validLen: meta.validLen, owner: meta.Owner,
		pairs: append([]Pair{}, st.Pairs...)} // not nil when empty: see appendState
	return st, meta, img, nil
}

// appendState appends to path the section that turns img into st (pairs
// sorted), when img still describes the file and the sections stay small.
// done is false when the caller is to rewrite the file instead (nothing was
// written then).
func appendState(path string, st State, owner StateOwner, img *stateImage, durable func(string) error, hook *crashHook) (next *stateImage, done bool, err error) {
	if img.pairs == nil && len(st.Pairs) > 0 || img.owner != owner || img.baseLen <= 0 {
		return nil, false, nil
	}
	sec, ok := diffSection(st, img.pairs)
	if !ok {
		return nil, false, nil
	}
	if img.validLen-img.baseLen+int64(len(sec)) > max(img.baseLen/16, appendMin) {
		return nil, false, nil
	}
	f, err := sysfile.Open(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, false, nil // gone: written anew
	}
	defer f.Close()
	var sb unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &sb); err != nil || sb.Dev != img.dev || sb.Ino != img.ino || sb.Size < img.validLen {
		// Replaced or cut since it was read (by hand, or by a restore):
		// what it holds is not what the section would follow.
		return nil, false, nil
	}
	// The pair's lock keeps other runs out; this keeps out a writer that
	// shares the file by mistake, as replaceFileWith's lock does.
	if err := flock(f, unix.LOCK_EX); err != nil {
		if err == unix.EWOULDBLOCK {
			return nil, false, fmt.Errorf("%s is being written by another process: %w", path, ErrLocked)
		}
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	undo := func(err error) (*stateImage, bool, error) {
		// Best effort: a torn section left behind is ignored anyway.
		f.Truncate(img.validLen)
		return nil, false, err
	}
	if sb.Size > img.validLen {
		// A torn section of a save that did not finish.
		if err := f.Truncate(img.validLen); err != nil {
			return nil, false, err
		}
	}
	if _, err := f.WriteAt(sec, img.validLen); err != nil {
		return undo(err)
	}
	if durable != nil {
		err = durable(path)
	} else {
		err = hook.fsync(f)
	}
	if err != nil {
		return undo(err)
	}
	next = &stateImage{dev: img.dev, ino: img.ino, baseLen: img.baseLen, validLen: img.validLen + int64(len(sec)), owner: owner}
	return next, true, nil
}

// diffSection is the section that turns old (in file order) into st (its
// pairs in file order). ok is false when a pair's UIDs are not unique in
// either, which a section cannot say.
func diffSection(st State, old []Pair) (sec []byte, ok bool) {
	var b bytes.Buffer
	b.WriteString("%delta\n")
	writeHeaderFields(&b, st)
	b.WriteByte('\n')
	var line []byte
	gone := func(p Pair) {
		line = append(line[:0], '-')
		line = strconv.AppendUint(line, uint64(p.Far), 10)
		line = append(line, ' ')
		line = strconv.AppendUint(line, uint64(p.Near), 10)
		line = append(line, '\n')
		b.Write(line)
	}
	added := func(p Pair) {
		line = appendPairLine(append(line[:0], '+'), p)
		line = append(line, '\n')
		b.Write(line)
	}
	nw := st.Pairs
	i, j := 0, 0
	var lastOld, lastNew uint64
	for i < len(old) || j < len(nw) {
		var ko, kn uint64
		if i < len(old) {
			ko = pairOrder(old[i])
			if i > 0 && ko <= lastOld {
				return nil, false
			}
		}
		if j < len(nw) {
			kn = pairOrder(nw[j])
			if j > 0 && kn <= lastNew {
				return nil, false
			}
		}
		switch {
		case j == len(nw) || i < len(old) && ko < kn:
			gone(old[i])
			lastOld = ko
			i++
		case i == len(old) || kn < ko:
			added(nw[j])
			lastNew = kn
			j++
		default:
			if old[i] != nw[j] {
				gone(old[i])
				added(nw[j])
			}
			lastOld, lastNew = ko, kn
			i++
			j++
		}
	}
	n := b.Len()
	fmt.Fprintf(&b, "%%end %08x %d\n", crc32.Checksum(b.Bytes()[:n], crc32c), n)
	return b.Bytes(), true
}

// splitSection finds the whole section at the start of b: its length up to
// the "%end" line, and with that line. ok is false for a section cut short
// or whose checksum does not match (torn, unless another one follows).
func splitSection(b []byte) (body, whole int, ok bool) {
	if !bytes.HasPrefix(b, []byte("%delta\n")) {
		return 0, 0, false
	}
	for p := 0; p < len(b); {
		nl := bytes.IndexByte(b[p:], '\n')
		if nl < 0 {
			return 0, 0, false
		}
		ln := b[p : p+nl]
		if bytes.HasPrefix(ln, []byte("%end ")) {
			f := strings.Fields(string(ln[len("%end "):]))
			if len(f) != 2 {
				return 0, 0, false
			}
			crc, err1 := strconv.ParseUint(f[0], 16, 32)
			n, err2 := strconv.Atoi(f[1])
			if err1 != nil || err2 != nil || n != p || uint32(crc) != crc32.Checksum(b[:p], crc32c) {
				return 0, 0, false
			}
			return p, p + nl + 1, true
		}
		p += nl + 1
	}
	return 0, 0, false
}

// applySections applies the sections in rest (what follows a base) to st and
// meta, and returns the length of rest they take up; a torn last section is
// not part of it. line is the base's last line, for errors.
//
// The sections' changes are gathered first and merged into the base's pairs
// once: a merge per section would copy all the pairs once per section (at
// 100 000 pairs and a few dozen sections, most of a load).
func applySections(st *State, meta *stateMeta, rest []byte, name string, line int) (int, error) {
	bad := func(format string, a ...any) (int, error) {
		return 0, &StateError{File: name, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	ch := sectionChanges{gone: map[uint64]bool{}, added: map[uint64]Pair{}, count: len(st.Pairs)}
	off := 0
	for off < len(rest) {
		body, whole, ok := splitSection(rest[off:])
		if !ok {
			if !tornTail(rest[off:]) {
				line++
				return bad("what follows the pairs is not a section: the file was altered")
			}
			break // torn: the save that wrote it did not finish
		}
		if err := ch.read(st, meta, rest[off:off+body], name, &line); err != nil {
			return 0, err
		}
		line++ // its "%end"
		off += whole
	}
	if off == 0 {
		return 0, nil
	}
	if err := ch.merge(st); err != nil {
		return bad("%v", err)
	}
	return off, nil
}

// tornTail says whether b, which follows the whole sections of a state file,
// can be what a save that did not finish left: the start of a section (but
// not a whole one), or blocks the file system extended the file by before
// their bytes were written (zeros). Anything else is damage, as is a torn
// section followed by another one.
func tornTail(b []byte) bool {
	intro := []byte("%delta\n")
	if !bytes.HasPrefix(b, intro[:min(len(b), len(intro))]) && b[0] != 0 {
		return false
	}
	return !bytes.Contains(b[1:], []byte("\n%delta\n"))
}

// sectionChanges are the changes of the sections read so far, against the
// base: the base's pairs gone, and the pairs there now that the base does
// not hold as they are.
type sectionChanges struct {
	gone  map[uint64]bool // by pairOrder
	added map[uint64]Pair
	count int // pairs after the sections read
}

// read takes in one whole section (without its "%end" line): its header
// into st and meta, its changes into ch.
func (ch *sectionChanges) read(st *State, meta *stateMeta, sec []byte, name string, line *int) error {
	bad := func(format string, a ...any) error {
		return &StateError{File: name, Line: *line, Msg: fmt.Sprintf(format, a...)}
	}
	lines := bytes.Split(sec[:len(sec)-1], []byte{'\n'}) // sec ends in '\n'
	*line++                                              // "%delta"
	i := 1
	seen := map[string]bool{}
	for ; i < len(lines) && len(lines[i]) > 0; i++ {
		*line++
		key, val, _ := strings.Cut(string(lines[i]), " ")
		if seen[key] {
			return bad("header %q repeated", key)
		}
		seen[key] = true
		switch key {
		case "channel", "far-store", "far-mailbox", "near-store", "near-mailbox":
			return bad("header %q in a section (only the first header names the owner)", key)
		}
		if err := setHeader(st, meta, key, val); err != nil {
			return bad("header %s: %v", key, err)
		}
	}
	for _, k := range []string{"generation", "far-validity", "near-validity", "max-pulled", "max-pushed", "pairs"} {
		if !seen[k] {
			return bad("header %q missing in a section", k)
		}
	}
	if i == len(lines) {
		return bad("section header not terminated by an empty line")
	}
	*line++
	for i++; i < len(lines); i++ {
		*line++
		ln := lines[i]
		if len(ln) < 2 || ln[0] != '-' && ln[0] != '+' {
			return bad("not a pair gone (-) or added (+): %q", truncate(string(ln), 40))
		}
		p, err := parsePairLine(ln[1:])
		if err != nil {
			return bad("%v", err)
		}
		k := pairOrder(p)
		if ln[0] == '+' {
			if _, ok := ch.added[k]; ok {
				return bad("adds the pair %d %d, which is there already", p.Far, p.Near)
			}
			ch.added[k] = p // whether the base holds it too, merge tells
			ch.count++
			continue
		}
		if p != (Pair{Far: p.Far, Near: p.Near}) {
			return bad("a pair gone is named by its UIDs alone: %q", truncate(string(ln), 40))
		}
		switch _, ok := ch.added[k]; {
		case ok:
			delete(ch.added, k)
		case ch.gone[k]:
			return bad("removes the pair %d %d, which is not there", p.Far, p.Near)
		default:
			ch.gone[k] = true // whether the base holds it, merge tells
		}
		ch.count--
	}
	if ch.count != meta.pairs {
		return bad("%d pairs, but the section says %d: the file was altered", ch.count, meta.pairs)
	}
	return nil
}

// merge applies the changes to the base's pairs, once and in place: the
// pairs gone are dropped in one pass forward, the pairs added merged in one
// pass backward into the room behind (which the load leaves).
func (ch *sectionChanges) merge(st *State) error {
	gone := make([]uint64, 0, len(ch.gone))
	for k := range ch.gone {
		gone = append(gone, k)
	}
	slices.Sort(gone)
	keys := make([]uint64, 0, len(ch.added))
	for k := range ch.added {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	added := make([]Pair, len(keys))
	for i, k := range keys {
		added[i] = ch.added[k]
	}
	ps := st.Pairs
	sortPairs(ps) // if a base was put out of order by hand
	w, g := 0, 0
	for _, p := range ps {
		k := pairOrder(p)
		if g < len(gone) && gone[g] <= k {
			if gone[g] < k {
				return fmt.Errorf("a section removes the pair %d %d, which is not there", UID(gone[g]>>32+1), UID(gone[g]))
			}
			g++
			continue
		}
		ps[w] = p
		w++
	}
	if g < len(gone) {
		return fmt.Errorf("a section removes the pair %d %d, which is not there", UID(gone[g]>>32+1), UID(gone[g]))
	}
	ps = slices.Grow(ps[:w], len(added))[:w+len(added)]
	i, j := w-1, len(added)-1
	for k := len(ps) - 1; j >= 0; k-- {
		if i >= 0 {
			a, b := pairOrder(ps[i]), pairOrder(added[j])
			if a == b {
				return fmt.Errorf("a section adds the pair %d %d, which is there already", added[j].Far, added[j].Near)
			}
			if a > b {
				ps[k] = ps[i]
				i--
				continue
			}
		}
		ps[k] = added[j]
		j--
	}
	if len(ps) != ch.count {
		return fmt.Errorf("%d pairs, but the sections say %d: the file was altered", len(ps), ch.count)
	}
	st.Pairs = ps
	return nil
}

// lastSectionHeader reads the header of f's last section over base (the
// header of the base): ok is false when the file does not end with a whole
// section or with the base's "%end" (a torn section: the caller reads the
// whole file then).
func lastSectionHeader(f *os.File, base State, meta stateMeta) (State, stateMeta, bool) {
	var sb unix.Stat_t
	if unix.Fstat(int(f.Fd()), &sb) != nil {
		return State{}, stateMeta{}, false
	}
	size := sb.Size
	tail := make([]byte, min(size, 4<<10))
	if _, err := f.ReadAt(tail, size-int64(len(tail))); err != nil && !errors.Is(err, io.EOF) {
		return State{}, stateMeta{}, false
	}
	if bytes.HasSuffix(tail, []byte("\n%end\n")) {
		return base, meta, true // the base alone
	}
	if len(tail) < 2 || tail[len(tail)-1] != '\n' {
		return State{}, stateMeta{}, false
	}
	start := bytes.LastIndexByte(tail[:len(tail)-1], '\n') + 1
	f1 := strings.Fields(strings.TrimPrefix(string(tail[start:len(tail)-1]), "%end "))
	if start == 0 || !bytes.HasPrefix(tail[start:], []byte("%end ")) || len(f1) != 2 {
		return State{}, stateMeta{}, false
	}
	n, err := strconv.ParseInt(f1[1], 10, 64)
	trailer := int64(len(tail) - start)
	if err != nil || n <= 0 || n > size-trailer {
		return State{}, stateMeta{}, false
	}
	sec := make([]byte, n+trailer)
	if _, err := f.ReadAt(sec, size-int64(len(sec))); err != nil {
		return State{}, stateMeta{}, false
	}
	if body, whole, ok := splitSection(sec); !ok || int64(body) != n || int64(whole) != int64(len(sec)) {
		return State{}, stateMeta{}, false
	}
	st, m := base, meta
	hdr := sec[len("%delta\n"):]
	seen := 0
	for len(hdr) > 0 {
		nl := bytes.IndexByte(hdr, '\n')
		if nl <= 0 {
			break
		}
		key, val, _ := strings.Cut(string(hdr[:nl]), " ")
		if !slices.Contains(sectionKeys, key) || setHeader(&st, &m, key, val) != nil {
			return State{}, stateMeta{}, false
		}
		seen++
		hdr = hdr[nl+1:]
	}
	if seen != len(sectionKeys) {
		// Not as a save writes it: what the earlier sections said may
		// still count, which the whole file tells.
		return State{}, stateMeta{}, false
	}
	return st, m, true
}

// sectionKeys are the header lines a save writes in a section (those of
// writeHeaderFields).
var sectionKeys = []string{"generation", "far-validity", "near-validity", "max-pulled", "max-pushed", "pairs",
	"far-uidnext", "far-highestmodseq", "far-messages", "far-stamp", "far-deleted",
	"near-uidnext", "near-highestmodseq", "near-messages", "near-stamp", "near-deleted"}
