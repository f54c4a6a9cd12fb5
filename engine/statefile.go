package engine

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/internal/sysfile"
)

// StateFileName is the name of a mailbox pair's state file when it lives inside
// the near mailbox's directory.
const StateFileName = ".quixysync-state"

// stateMagic starts every state file; the number is the format version.
const (
	stateMagic = "quixysync-state"
	// 2: the header says how many pair lines follow ("pairs N"), so a file
	// cut at a line boundary is not taken as whole. Version 1 files are
	// still read.
	// 3: the pairs end with a line "%end", after which a save may append
	// what changed as sections (see stateappend.go). Versions 1 and 2 are
	// still read; the next save of such a file writes version 3.
	stateVersion = 3
)

// StatePath returns where the state of one mailbox pair lives: inside the near
// mailbox's directory when the near store is local, else under spec.StateDir.
func StatePath(spec ChannelSpec, mailbox string) (string, error) {
	if ls, ok := spec.Near.(LocalStore); ok {
		dir, err := ls.MailboxDir(mailbox)
		if err != nil {
			return "", fmt.Errorf("state location of %s: %w", mailbox, err)
		}
		return filepath.Join(dir, StateFileName), nil
	}
	if spec.StateDir == "" {
		return "", fmt.Errorf("channel %s: no state directory configured and the near store is not local", spec.Name)
	}
	p := filepath.Join(spec.StateDir, escapeBoxName(mailbox))
	if old := filepath.Join(spec.StateDir, escapeBoxNameV1(mailbox)); old != p && isStateFile(old) {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			// Written by a version before the escaping changed (a name
			// ending in .lock or .journal, or of 241 bytes): used where it
			// is, rather than the mailbox synced anew from no state.
			return old, nil
		}
	}
	return p, nil
}

// isStateFile says whether path is a state file (not a lock or a journal
// that once shared its name).
func isStateFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, len(stateMagic)+1)
	_, err = io.ReadFull(f, head)
	return err == nil && string(head) == stateMagic+" "
}

// escapeBoxName turns a mailbox name into one file name that cannot collide
// with another mailbox's or climb out of the directory ("a/b" and "a%2Fb" stay
// distinct because "%" itself is escaped).
func escapeBoxName(name string) string {
	out := escapeBoxNameV1(name)
	// The lock and journal are the state's name plus these: a mailbox named
	// like one ("A.lock") must not get mailbox A's lock as its state.
	for _, suffix := range []string{".lock", ".journal"} {
		if strings.HasSuffix(out, suffix) {
			out = out[:len(out)-len(suffix)] + "%2E" + suffix[1:]
		}
	}
	if len(out) > maxStateName {
		// File names stop at 255 bytes, and the state's temporary file
		// adds ".tmp" and ten digits: such a mailbox could never be
		// synced. Its name's start and a digest of all of it instead (a
		// name used as is would have to end in that very digest).
		sum := sha256.Sum256([]byte(name))
		out = out[:maxStateName-33] + "%" + hex.EncodeToString(sum[:16])
	}
	return out
}

// escapeBoxNameV1 is escapeBoxName as it was until 2026-11-27: every byte
// outside [A-Za-z0-9._-] (and a leading '.') as %XX.
func escapeBoxNameV1(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '_' || (c == '.' && i > 0)
		if ok {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() == 0 {
		return "%"
	}
	return b.String()
}

// maxStateName is the longest escaped mailbox name used as is: with the
// longest suffix of its files (".journal.%tmp", a journal being replaced)
// it stays within the 255 bytes a file name may have.
const maxStateName = 240

// StateOwner names the channel and the mailboxes a state file describes. Two
// channels whose near mailboxes are one directory would otherwise share (and
// corrupt) one state: the far UIDs in it mean something only for its far store
// and mailbox.
type StateOwner struct {
	Channel                string
	FarStore, FarMailbox   string
	NearStore, NearMailbox string
}

func ownerOf(spec ChannelSpec, mailbox string) StateOwner {
	return StateOwner{Channel: spec.Name, FarStore: spec.Far.Name(), FarMailbox: mailbox,
		NearStore: spec.Near.Name(), NearMailbox: mailbox}
}

// ErrForeignState: a state file belongs to another channel's, or another
// store's, mailbox.
var ErrForeignState = errors.New("the state belongs to another channel or store")

// check fails when the recorded owner (if any: files written before owners were
// recorded have none) is another far store or mailbox than this channel's.
func (o StateOwner) check(spec ChannelSpec, mailbox, path string) error {
	if o.FarStore == "" && o.FarMailbox == "" {
		return nil
	}
	me := ownerOf(spec, mailbox)
	if _, local := spec.Near.(LocalStore); !local && o.NearStore != "" && o.NearStore != me.NearStore {
		// A near side that is not a folder is named by its store only: the
		// near UIDs in this file mean nothing on another one (and if its
		// UIDVALIDITY matched by chance, its missing UIDs would count as
		// deletions to carry to the far side).
		return fmt.Errorf("%w: %s records the near store %s, but channel %q now syncs mailbox %q with near store %s. "+
			"Nothing was changed in this mailbox. If %s is the same account renamed, edit the near-store line of that "+
			"file to %q; if it is another account, give the channel another state_dir (or move that file away: the "+
			"next run then pairs the messages anew by Message-ID)",
			ErrForeignState, path, o.NearStore, spec.Name, mailbox, me.NearStore, me.NearStore, me.NearStore)
	}
	if o.FarStore == me.FarStore && o.FarMailbox == me.FarMailbox {
		return nil
	}
	if o.Channel == spec.Name && o.FarMailbox == me.FarMailbox {
		// The same channel over a far store of another name: most likely a
		// store renamed in the configuration, but maybe another account
		// (whose UIDs these are not), so a person decides.
		return fmt.Errorf("%w: %s was written when channel %q synced far store %s; it now syncs far store %s. "+
			"Nothing was changed in this mailbox. If you renamed the store in the configuration (same account), "+
			"change the line \"far-store %s\" of that file, and of the other mailboxes' state files, to \"far-store %s\" "+
			"(for example: sed -i 's/^far-store %s$/far-store %s/' FILES); if it is another account, move the state "+
			"files away (the next run then pairs the messages anew by Message-ID)",
			ErrForeignState, path, spec.Name, o.FarStore, me.FarStore, o.FarStore, me.FarStore, o.FarStore, me.FarStore)
	}
	if _, local := spec.Near.(LocalStore); local && o.Channel == spec.Name && o.FarStore == me.FarStore {
		// The state lives in the folder and moves with it: this channel's
		// state of another mailbox is that of a folder renamed (or copied)
		// by mv or a mail client. A rename on both sides is taken over
		// before this (adoptRenamed), one here only carried to the far side
		// when the run can tell (followNearRenames); said as such, the way
		// out is plain.
		return fmt.Errorf("%w: %s is the state of mailbox %q of this channel: the folder was renamed (or copied) from %q here. "+
			"Nothing was changed in this mailbox. The rename was not carried to the far side (a run does that only when the "+
			"folder is clearly the far mailbox moved, far mailboxes may be created and the run pushes), and %q's far UIDs "+
			"are not %q's: rename %q to %q on the far side too, and the next run syncs this folder with its state, copying "+
			"nothing (delete the folder %q if a run made it again here meanwhile); or move that file away, and the next run "+
			"copies this folder's messages to a new far mailbox %q (as new mail; the far %q keeps its own)",
			ErrForeignState, path, o.FarMailbox, o.FarMailbox, o.FarMailbox, mailbox, o.FarMailbox, mailbox,
			o.FarMailbox, mailbox, o.FarMailbox)
	}
	return fmt.Errorf("%w: %s is the state of channel %q (far store %s, mailbox %q), but channel %q syncs "+
		"far store %s, mailbox %q into the same near folder. Nothing was changed in this mailbox. Two channels "+
		"must not share a near folder: give them different near folders (another near store path, or patterns "+
		"that do not overlap). If this channel replaces the other one (a store or mailbox was renamed), edit the "+
		"far-store and far-mailbox lines of that file to %q and %q",
		ErrForeignState, path, o.Channel, o.FarStore, o.FarMailbox, spec.Name, me.FarStore, me.FarMailbox,
		me.FarStore, me.FarMailbox)
}

// stateMeta is what a state file's header says beyond State.
type stateMeta struct {
	Owner StateOwner
	// Deleted[s] counts pairs whose side-s message is flagged deleted (-1: the
	// file does not say).
	Deleted [2]int
	// pairs is the header's count of pair lines (version 2).
	pairs int
	// version is the file's format version.
	version int
	// baseLen is the length of the base (header, pairs and "%end" line),
	// validLen that of the base and the whole sections after it: what a
	// torn last section leaves beyond it is not part of the state.
	baseLen, validLen int64
}

// StateHeader is a state file's header: State without Pairs, plus what a run
// needs to decide without reading the pairs that a mailbox is unchanged.
type StateHeader struct {
	State
	Owner StateOwner
	// Deleted[s] counts the pairs whose side-s message is flagged deleted, so
	// whether an expunge is pending is known from the header; -1 when the file
	// predates these counts.
	Deleted [2]int
}

// LoadState reads a state file. A missing file yields the zero State (first
// run); a damaged one an error naming the file, the line and the way out.
func LoadState(path string) (State, error) {
	st, _, err := loadState(path, false)
	return st, err
}

// LoadStateHeader reads only the header of a state file (not the pairs): the
// cost of a run over an unchanged mailbox must not grow with its size.
func LoadStateHeader(path string) (StateHeader, error) {
	st, meta, err := loadState(path, true)
	return StateHeader{State: st, Owner: meta.Owner, Deleted: meta.Deleted}, err
}

func loadState(path string, headerOnly bool) (State, stateMeta, error) {
	if !headerOnly {
		// parseState copies what it keeps (it also parses from a reused
		// bufio buffer), so the mapping can go when it returns.
		data, done, err := sysfile.MapFile(path)
		if errors.Is(err, os.ErrNotExist) {
			return State{}, stateMeta{}, nil
		}
		if err != nil {
			return State{}, stateMeta{Deleted: [2]int{-1, -1}}, fmt.Errorf("state %s: %w", path, err)
		}
		defer done()
		return parseMapped(data, path)
	}
	f, err := sysfile.Open(path, os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return State{}, stateMeta{}, nil
	}
	if err != nil {
		return State{}, stateMeta{Deleted: [2]int{-1, -1}}, fmt.Errorf("state %s: %w", path, err)
	}
	defer f.Close()
	// A header is a few hundred bytes: do not read the pairs behind it.
	st, meta, err := parseState(bufio.NewReaderSize(f, 4<<10), nil, path, true)
	if err != nil || meta.version < 3 {
		return st, meta, err
	}
	// The last section appended, if any, has the current header.
	if cur, cmeta, ok := lastSectionHeader(f, st, meta); ok {
		return cur, cmeta, nil
	}
	// A torn last section (or something not looked for here): the whole
	// file tells.
	full, fmeta, err := loadState(path, false)
	full.Pairs = nil
	return full, fmeta, err
}

// parseMapped parses a state mapped from its file. The file is replaced by
// rename or appended to, and cut only where a torn section was (by the
// pair's lock holder, never under a reader of its own run), but if something
// truncates it anyway, reading the lost pages faults (SIGBUS): that becomes
// an error here instead of a crash of the whole run.
func parseMapped(data []byte, path string) (st State, meta stateMeta, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// Only a memory fault (its error has the faulting address);
			// anything else is a bug and stays a panic.
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			st, meta = State{}, stateMeta{Deleted: [2]int{-1, -1}}
			err = fmt.Errorf("state %s: the file shrank while it was read (%v); run again", path, r)
		}
	}()
	return parseState(nil, data, path, false)
}

// StateError is a damaged state file, or one of a format newer than this
// quixysync reads (Newer is then its version).
type StateError struct {
	File  string
	Line  int
	Msg   string
	Newer int
}

func (e *StateError) Error() string {
	if e.Newer > 0 {
		return fmt.Sprintf("state file %s: written by a newer quixysync (format version %d; this one reads version %d). "+
			"The file is not damaged: keep it and run the newer quixysync (or a later one); moving it away "+
			"would make this one re-pair the mailbox from scratch", e.File, e.Newer, stateVersion)
	}
	return fmt.Sprintf("state file %s line %d: %s (the file is damaged; move it away to make the next run "+
		"re-pair this mailbox from scratch — messages present on only one side are then copied again)",
		e.File, e.Line, e.Msg)
}

// ParseState parses the text form of a state; name is used in errors.
func ParseState(r io.Reader, name string) (State, error) {
	st, _, err := parseState(bufio.NewReaderSize(r, 64<<10), nil, name, false)
	return st, err
}

// parseState parses a state; with headerOnly it stops after the header.
// It reads from data when br is nil: a whole file in memory lets the pairs be
// allocated once at their exact number.
func parseState(br *bufio.Reader, data []byte, name string, headerOnly bool) (State, stateMeta, error) {
	var st State
	meta := stateMeta{Deleted: [2]int{-1, -1}}
	line := 0
	var consumed int64 // bytes of the lines read
	bad := func(format string, a ...any) (State, stateMeta, error) {
		return State{}, stateMeta{Deleted: [2]int{-1, -1}}, &StateError{File: name, Line: line, Msg: fmt.Sprintf(format, a...)}
	}
	readLine := func() ([]byte, bool, error) {
		if br == nil {
			i := bytes.IndexByte(data, '\n')
			switch {
			case i >= 0:
				b := data[:i]
				data = data[i+1:]
				line++
				consumed += int64(i) + 1
				return b, true, nil
			case len(data) == 0:
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("file ends in the middle of a line")
		}
		b, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return nil, false, fmt.Errorf("line too long")
		}
		if err == io.EOF {
			if len(b) == 0 {
				return nil, false, nil
			}
			// A state is written whole by rename: a missing final newline
			// means the file was cut off.
			return nil, false, fmt.Errorf("file ends in the middle of a line")
		}
		if err != nil {
			return nil, false, err
		}
		line++
		consumed += int64(len(b))
		return b[:len(b)-1], true, nil
	}

	b, ok, err := readLine()
	if err != nil {
		line++
		return bad("%v", err)
	}
	if !ok {
		line = 1
		return bad("empty file")
	}
	magic, ver, _ := strings.Cut(string(b), " ")
	if magic != stateMagic {
		return bad("not a quixysync state file (first line %q)", truncate(string(b), 40))
	}
	version, verr := strconv.Atoi(ver)
	if verr == nil && version > stateVersion {
		return State{}, stateMeta{Deleted: [2]int{-1, -1}}, &StateError{File: name, Line: line, Newer: version}
	} else if verr != nil || version < 1 {
		return bad("unsupported format version %q (this quixysync reads versions 1 to %d)", ver, stateVersion)
	}
	meta.version = version
	// Header: "key value" lines up to an empty line.
	seen := map[string]bool{}
	for {
		b, ok, err = readLine()
		if err != nil {
			line++
			return bad("%v", err)
		}
		if !ok {
			return bad("header not terminated by an empty line")
		}
		if len(b) == 0 {
			break
		}
		key, val, _ := strings.Cut(string(b), " ")
		if seen[key] {
			return bad("header %q repeated", key)
		}
		seen[key] = true
		if err := setHeader(&st, &meta, key, val); err != nil {
			return bad("header %s: %v", key, err)
		}
	}
	for _, k := range []string{"generation", "far-validity", "near-validity", "max-pulled", "max-pushed"} {
		if !seen[k] {
			return bad("header %q missing", k)
		}
	}
	if version >= 2 && !seen["pairs"] {
		return bad("header \"pairs\" missing")
	}
	if headerOnly {
		return st, meta, nil
	}
	if br == nil {
		// Every line a pair at most (with sections after the base, room
		// for the pairs they add: merged in place).
		st.Pairs = make([]Pair, 0, bytes.Count(data, []byte{'\n'}))
	}
	ended := false
	for {
		b, ok, err = readLine()
		if err != nil {
			line++
			return bad("%v", err)
		}
		if !ok {
			break
		}
		if version >= 3 && string(b) == "%end" {
			ended = true
			break
		}
		p, err := parsePairLine(b)
		if err != nil {
			return bad("%v", err)
		}
		st.Pairs = append(st.Pairs, p)
	}
	if version >= 2 && len(st.Pairs) != meta.pairs {
		// Cut at a line boundary (a file-sync tool, a partial restore):
		// taken as whole, the missing pairs' messages would look new.
		line++
		return bad("%d pairs, but the header says %d: the file was cut off or altered", len(st.Pairs), meta.pairs)
	}
	if version < 3 {
		return st, meta, nil
	}
	if !ended {
		line++
		return bad("no \"%%end\" line after the pairs: the file was cut off or altered")
	}
	meta.baseLen = consumed
	rest := data
	if br != nil {
		// Read from a stream (ParseState): the sections are read whole.
		if rest, err = io.ReadAll(br); err != nil {
			return bad("%v", err)
		}
	}
	valid, err := applySections(&st, &meta, rest, name, line)
	if err != nil {
		return State{}, stateMeta{Deleted: [2]int{-1, -1}}, err
	}
	meta.validLen = meta.baseLen + int64(valid)
	return st, meta, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func setHeader(st *State, meta *stateMeta, key, val string) error {
	u32 := func(dst *uint32) error {
		v, err := strconv.ParseUint(val, 10, 32)
		*dst = uint32(v)
		return err
	}
	uid := func(dst *UID) error {
		v, err := strconv.ParseUint(val, 10, 32)
		*dst = UID(v)
		return err
	}
	u64 := func(dst *uint64) error {
		v, err := strconv.ParseUint(val, 10, 64)
		*dst = v
		return err
	}
	i64 := func(dst *int64) error {
		v, err := strconv.ParseInt(val, 10, 64)
		*dst = v
		return err
	}
	str := func(dst *string) error {
		v, err := strconv.Unquote(val)
		*dst = v
		return err
	}
	switch key {
	case "generation":
		return u64(&st.Generation)
	case "far-validity":
		return u32(&st.FarValidity)
	case "near-validity":
		return u32(&st.NearValidity)
	case "max-pulled":
		return uid(&st.MaxPulled)
	case "max-pushed":
		return uid(&st.MaxPushed)
	case "far-uidnext":
		return uid(&st.Far.UIDNext)
	case "far-highestmodseq":
		return u64(&st.Far.HighestModSeq)
	case "far-messages":
		return i64(&st.Far.Messages)
	case "far-stamp":
		return str(&st.Far.Stamp)
	case "near-uidnext":
		return uid(&st.Near.UIDNext)
	case "near-highestmodseq":
		return u64(&st.Near.HighestModSeq)
	case "near-messages":
		return i64(&st.Near.Messages)
	case "near-stamp":
		return str(&st.Near.Stamp)
	case "pairs":
		v, err := strconv.ParseUint(val, 10, 31)
		meta.pairs = int(v)
		return err
	case "far-deleted", "near-deleted":
		v, err := strconv.ParseUint(val, 10, 31)
		meta.Deleted[sideOfKey(key)] = int(v)
		return err
	case "channel":
		return str(&meta.Owner.Channel)
	case "far-store":
		return str(&meta.Owner.FarStore)
	case "far-mailbox":
		return str(&meta.Owner.FarMailbox)
	case "near-store":
		return str(&meta.Owner.NearStore)
	case "near-mailbox":
		return str(&meta.Owner.NearMailbox)
	}
	return fmt.Errorf("unknown header")
}

// parsePairLine parses "far near [[skip]flags] [#ident/ident]" without
// allocating: one pass for the usual line, the careful one for anything
// unusual (and its error).
func parsePairLine(b []byte) (Pair, error) {
	var p Pair
	var v [2]uint64
	i := 0
	for f := 0; f < 2; f++ {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			v[f] = v[f]*10 + uint64(b[i]-'0')
			i++
		}
		end := i == len(b)
		if i == start || i-start > 10 || v[f] > 1<<32-1 || (!end && b[i] != ' ') || (end && f == 0) || (!end && i+1 == len(b)) {
			return parsePairLineSlow(b)
		}
		i++ // the space (or one past the end)
	}
	if v[0] == 0 && v[1] == 0 {
		return parsePairLineSlow(b)
	}
	p.Far, p.Near = UID(v[0]), UID(v[1])
	if i >= len(b) {
		return p, nil
	}
	if b[i] != '#' {
		start := i
		switch b[i] {
		case '>':
			p.Skip, i = SkipTooBig, i+1
		case 'x':
			p.Skip, i = SkipDeleted, i+1
		case '-':
			p.Skip, i = SkipGone, i+1
		case '!':
			p.Skip, i = SkipRefused, i+1
		case '=':
			p.Skip, i = SkipMerged, i+1
			var v uint64
			d := i
			for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
				v = v*10 + uint64(b[i]-'0')
				if i-d >= 10 {
					return parsePairLineSlow(b)
				}
			}
			if v > 1<<32-1 || (i > d && v == 0) {
				return parsePairLineSlow(b)
			}
			p.Into = UID(v)
		}
		for ; i < len(b) && b[i] != ' '; i++ {
			g, ok := FlagFromLetter(b[i])
			if !ok {
				return parsePairLineSlow(b)
			}
			p.Flags |= g
		}
		if i == len(b) {
			return p, nil
		}
		if i == start || i+1 == len(b) || b[i+1] != '#' {
			return parsePairLineSlow(b)
		}
		i++
	}
	id, ok := parseIdents(b[i+1:])
	if !ok {
		return parsePairLineSlow(b)
	}
	p.Ident = id
	return p, nil
}

// parseIdents parses the idents field after its '#': "far/near", each 1 to
// 8 lower-case hex digits.
func parseIdents(b []byte) (id [2]uint32, ok bool) {
	f := 0
	n := 0
	for _, c := range b {
		switch {
		case c == '/' && f == 0 && n > 0:
			f, n = 1, 0
			continue
		case c >= '0' && c <= '9':
			id[f] = id[f]<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			id[f] = id[f]<<4 | uint32(c-'a'+10)
		default:
			return id, false
		}
		if n++; n > 8 {
			return id, false
		}
	}
	return id, f == 1 && n > 0
}

func parsePairLineSlow(b []byte) (Pair, error) {
	var p Pair
	fields := bytes.Split(b, []byte{' '})
	f2 := []byte(nil)
	if len(fields) > 1 {
		f2 = fields[1]
	}
	far, err := parseUID(fields[0])
	if err != nil {
		return p, fmt.Errorf("far UID: %v", err)
	}
	near, err := parseUID(f2)
	if err != nil {
		return p, fmt.Errorf("near UID: %v", err)
	}
	if far == 0 && near == 0 {
		return p, fmt.Errorf("pair without any UID")
	}
	p.Far, p.Near = far, near
	rest := fields[min(len(fields), 2):]
	if n := len(rest); n > 0 && len(rest[n-1]) > 0 && rest[n-1][0] == '#' {
		id, ok := parseIdents(rest[n-1][1:])
		if !ok {
			return p, fmt.Errorf("bad ident field %q (want #far/near, each 1 to 8 lower-case hex digits)", truncate(string(rest[n-1]), 30))
		}
		p.Ident = id
		rest = rest[:n-1]
	}
	switch {
	case len(rest) > 1:
		return p, fmt.Errorf("unexpected field %q", truncate(string(rest[1]), 20))
	case len(rest) == 1:
		fl := rest[0]
		if len(fl) == 0 {
			return p, fmt.Errorf("empty flags field")
		}
		switch fl[0] {
		case '>':
			p.Skip, fl = SkipTooBig, fl[1:]
		case 'x':
			p.Skip, fl = SkipDeleted, fl[1:]
		case '-':
			p.Skip, fl = SkipGone, fl[1:]
		case '!':
			p.Skip, fl = SkipRefused, fl[1:]
		case '=':
			p.Skip, fl = SkipMerged, fl[1:]
			d := 0
			for d < len(fl) && fl[d] >= '0' && fl[d] <= '9' {
				d++
			}
			if d > 0 {
				u, err := parseUID(fl[:d])
				if err != nil || u == 0 {
					return p, fmt.Errorf("bad merged-into UID %q after '=' (want 1 to 4294967295)", truncate(string(fl[:d]), 20))
				}
				p.Into, fl = u, fl[d:]
			}
		}
		for _, c := range fl {
			g, ok := FlagFromLetter(c)
			if !ok {
				return p, fmt.Errorf("unknown flag letter %q", c)
			}
			p.Flags |= g
		}
	}
	return p, nil
}

func parseUID(b []byte) (UID, error) {
	if len(b) == 0 || len(b) > 10 {
		return 0, fmt.Errorf("%q is not a number", b)
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number", b)
		}
		v = v*10 + uint64(c-'0')
	}
	if v > 1<<32-1 {
		return 0, fmt.Errorf("%q is too large", b)
	}
	return UID(v), nil
}

// sortPairs puts pairs in file order: by Far, pairs with Far == 0 last by Near.
func sortPairs(ps []Pair) {
	if !pairsSorted(ps) {
		slices.SortFunc(ps, cmpPairKey)
	}
}

// pairsSorted says whether ps are in file order: a loop of its own, where
// slices.IsSortedFunc calls cmpPairKey indirectly for each pair (2 ms of a
// 13.7 ms load of 100 000 pairs in a profile, 2026-11-28).
func pairsSorted(ps []Pair) bool {
	for i := 1; i < len(ps); i++ {
		if pairOrder(ps[i]) < pairOrder(ps[i-1]) {
			return false
		}
	}
	return true
}

// cmpPairKey orders pairs as files hold them, by their UIDs alone.
func cmpPairKey(a, b Pair) int {
	return cmp.Compare(pairOrder(a), pairOrder(b))
}

// pairOrder is a pair's place in a file as one number: by Far, then Near;
// pairs with Far == 0 last (Far-1 wraps to the largest), by Near.
func pairOrder(p Pair) uint64 {
	return uint64(uint32(p.Far)-1)<<32 | uint64(p.Near)
}

func cmpUID(a, b UID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func sideOfKey(key string) Side {
	if strings.HasPrefix(key, "near-") {
		return Near
	}
	return Far
}

// deletedCounts counts the pairs whose message on each side is flagged deleted.
func deletedCounts(ps []Pair) [2]int {
	var n [2]int
	for _, p := range ps {
		if p.Flags&FlagDeleted != 0 {
			if p.Far != 0 {
				n[Far]++
			}
			if p.Near != 0 {
				n[Near]++
			}
		}
	}
	return n
}

// WriteState writes the text form of st (pairs in the order given).
func WriteState(w io.Writer, st State) error {
	return writeState(w, st, StateOwner{})
}

// writeState writes st; the owner lines only when owner names a far store.
func writeState(w io.Writer, st State, owner StateOwner) error {
	// Sized to the state (about 20 bytes a pair): a run over many small
	// mailboxes would otherwise take 64 KiB of fresh memory for each.
	bw := bufio.NewWriterSize(w, min(max(1024+20*len(st.Pairs), 4<<10), 64<<10))
	fmt.Fprintf(bw, "%s %d\n", stateMagic, stateVersion)
	if owner.FarStore != "" {
		fmt.Fprintf(bw, "channel %s\nfar-store %s\nfar-mailbox %s\nnear-store %s\nnear-mailbox %s\n",
			strconv.Quote(owner.Channel), strconv.Quote(owner.FarStore), strconv.Quote(owner.FarMailbox),
			strconv.Quote(owner.NearStore), strconv.Quote(owner.NearMailbox))
	}
	writeHeaderFields(bw, st)
	bw.WriteByte('\n')
	var buf []byte
	for _, p := range st.Pairs {
		buf = appendPairLine(buf[:0], p)
		buf = append(buf, '\n')
		bw.Write(buf)
	}
	bw.WriteString("%end\n")
	return bw.Flush()
}

// writeHeaderFields writes the header lines that every save renews (all
// but the owner's).
func writeHeaderFields(w io.Writer, st State) {
	fmt.Fprintf(w, "generation %d\nfar-validity %d\nnear-validity %d\nmax-pulled %d\nmax-pushed %d\npairs %d\n",
		st.Generation, st.FarValidity, st.NearValidity, st.MaxPulled, st.MaxPushed, len(st.Pairs))
	del := deletedCounts(st.Pairs)
	for _, m := range []struct {
		side string
		m    Markers
		del  int
	}{{"far", st.Far, del[Far]}, {"near", st.Near, del[Near]}} {
		fmt.Fprintf(w, "%s-uidnext %d\n%s-highestmodseq %d\n%s-messages %d\n%s-stamp %s\n%s-deleted %d\n",
			m.side, m.m.UIDNext, m.side, m.m.HighestModSeq, m.side, m.m.Messages, m.side, strconv.Quote(m.m.Stamp),
			m.side, m.del)
	}
}

// appendPairLine appends p's line (without its newline) to buf.
func appendPairLine(buf []byte, p Pair) []byte {
	buf = strconv.AppendUint(buf, uint64(p.Far), 10)
	buf = append(buf, ' ')
	buf = strconv.AppendUint(buf, uint64(p.Near), 10)
	if p.Skip != SkipNone || p.Flags != 0 {
		buf = append(buf, ' ')
		buf = append(buf, p.Skip.String()...)
		if p.Skip == SkipMerged && p.Into != 0 {
			buf = strconv.AppendUint(buf, uint64(p.Into), 10)
		}
		for i := 0; i < len(flagLetters); i++ {
			if p.Flags&(1<<i) != 0 {
				buf = append(buf, flagLetters[i])
			}
		}
	}
	if p.Ident != [2]uint32{} {
		buf = append(buf, " #"...)
		buf = strconv.AppendUint(buf, uint64(p.Ident[Far]), 16)
		buf = append(buf, '/')
		buf = strconv.AppendUint(buf, uint64(p.Ident[Near]), 16)
	}
	return buf
}

// SaveState replaces the state file atomically: temp file, fsync, rename,
// fsync of the directory. Pairs are sorted in place into file order.
func SaveState(path string, st State) error {
	return saveState(path, st, StateOwner{})
}

func saveState(path string, st State, owner StateOwner) error {
	_, err := saveStateWith(path, st, owner, nil, nil, nil)
	return err
}

// saveStateWith is saveState with durable making the new bytes durable
// instead of an fsync (nil: the fsync), and hook's fsyncs (a test's)
// seeing the fsyncs (hook may be nil). Given img, what the file held when
// it was loaded, it appends what changed since instead, where it can (see
// appendState). It returns what the file holds now, without its pairs
// (the caller's st.Pairs, which it may change later).
func saveStateWith(path string, st State, owner StateOwner, img *stateImage, durable func(path string) error, hook *crashHook) (*stateImage, error) {
	sortPairs(st.Pairs)
	if img != nil {
		next, done, err := appendState(path, st, owner, img, durable, hook)
		if err != nil {
			return nil, fmt.Errorf("state %s: %w", path, err)
		}
		if done {
			return next, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	var n countingWriter
	write := func(f *os.File) error {
		n = countingWriter{w: f}
		return writeState(&n, st, owner)
	}
	if err := replaceFileWith(path, write, durable, hook); err != nil {
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	next := &stateImage{baseLen: n.n, validLen: n.n, owner: owner}
	var sb unix.Stat_t
	if unix.Stat(path, &sb) != nil {
		return nil, nil // nothing to append to next time: rewritten then
	}
	next.dev, next.ino = sb.Dev, sb.Ino
	return next, nil
}

// countingWriter counts what goes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// replaceFile replaces path atomically with what write writes: temp file in
// the same directory, fsync, rename, fsync of the directory.
func replaceFile(path string, write func(f *os.File) error) error {
	return replaceFileWith(path, write, nil, nil)
}

// replaceFileWith is replaceFile with durable (when not nil) making the
// temporary file durable in place of its fsync, and its fsyncs going
// through hook (nil: none), where a test observes them.
//
// The temporary file has one name per path (path + ".%tmp", which no
// escaped mailbox name can be: a '%' there is always followed by two hex
// digits): a run killed while writing it leaves it behind, and the next
// save of the same file overwrites it, where a random name would stay for
// good (a state of 100 000 messages is megabytes). The pair's lock keeps
// it to one writer; a flock on the temporary file makes sure of it.
func replaceFileWith(path string, write func(f *os.File) error, durable func(tmp string) error, hook *crashHook) error {
	dir := filepath.Dir(path)
	tmp := filepath.Join(dir, filepath.Base(path)+".%tmp")
	f, err := sysfile.Open(tmp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// Held until the rename: another writer of the same path (two channels
	// sharing a state by mistake, whose loads then tell it is not theirs)
	// must not truncate the file under us and have its bytes renamed into
	// place, or write into the state once it is in place.
	if err := flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		if err == unix.EWOULDBLOCK {
			return fmt.Errorf("%s is being written by another process: %w", tmp, ErrLocked)
		}
		return fmt.Errorf("lock %s: %w", tmp, err)
	}
	fail := func(err error) error {
		os.Remove(tmp)
		f.Close()
		return err
	}
	if err := f.Truncate(0); err != nil { // what a killed run left
		return fail(err)
	}
	if err := write(f); err != nil {
		return fail(err)
	}
	if durable == nil {
		if err := hook.fsync(f); err != nil {
			return fail(err)
		}
	}
	if durable != nil {
		if err := durable(tmp); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return hook.syncDir(dir)
}

func syncDir(dir string) error {
	d, err := sysfile.Open(dir, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
