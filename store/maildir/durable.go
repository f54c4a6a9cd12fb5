package maildir

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/quixysync/quixysync/internal/sysfile"
)

// How Commit makes a batch of tmp/ files durable before renaming them.
//
// One fsync per file makes a journaling file system commit its journal once
// per message; mbsync does that and spends most of an initial pull waiting.
// Measured on this project's 2-core VM (Linux 6.18), 100 files of 4 kB per
// batch, median time to make the batch durable, rename it and fsync cur/:
//
//	                        journaled ext4 (loop)   ext4 without journal (/)
//	fsync each, in turn     240-300 ms (2.4-3.0 ms/msg)   74-79 ms
//	fsync, 4 goroutines      83-130 ms                    38-51 ms
//	fsync, 16 goroutines     46-56 ms                     29-34 ms
//	one syncfs(2)            12.6-13.1 ms (0.13 ms/msg)   7.5-8.7 ms
//
// and for small batches on journaled ext4: 1 file: fsync 3.4 ms, syncfs 6.3
// ms; 3 files: 7.8 ms vs 5.5 ms; 10 files: 26 ms vs 6.2 ms. So a batch of
// syncfsMin files or more is made durable with one syncfs(2) on a file system
// where syncfs is known to write and wait for everything (and, since Linux
// 5.8, to report write-back errors); smaller batches, and other file systems
// (FUSE, network file systems: syncfs may not reach the server or daemon
// there), fsync each file, from a few goroutines at once. The cost of syncfs
// is that it also flushes other programs' dirty data on that file system.
const syncfsMin = 3

// syncfsDirtyMax: when more than this much of the page cache is waiting to
// be written (Dirty plus Writeback in /proc/meminfo, every file system) and
// is not the store's own, no syncfs is used: it would wait until all of that
// is on disk. A download or a copy in progress on the Maildir's file system
// is enough. Measured on this project's VM (2026-11-26, server changes at
// 2 000 / 10): with 1 GB of another program's unwritten data on that file
// system a sync took 1.16 s instead of 0.20 s, with 2 GB 1.95 s; mbsync's
// fsyncs did not notice (0.44 s either way). An fsync of one of our files
// does not wait for other files' data on ext4 and XFS (delayed allocation),
// so past this bound the store fsyncs its own files, from a few goroutines.
// 16 MiB takes a few tens of milliseconds to write out on a slow disk, about
// what fsyncing a batch of a hundred messages costs.
//
// Only while the store has staged at most syncfsCheckFiles messages: a large
// run is better off paying for the others' data once, since the first syncfs
// writes it out and the ones after it are cheap again, than fsyncing each of
// thousands of files. An initial pull of 20 000 messages with 1 GB of other
// data waiting took 4.1-4.4 s with syncfs throughout, 5.8 s with fsyncs, 4.4 s
// with this rule (3.7-4.7 s with nothing waiting).
const (
	syncfsDirtyMax   = 16 << 20
	syncfsCheckFiles = 256
)

// fsyncWorkers bounds the goroutines fsyncing files at once.
const fsyncWorkers = 8

// syncfsTrusted says whether a file system (statfs f_type) is a local one
// whose syncfs writes back and waits for all data and metadata.
func syncfsTrusted(fsType int64) bool {
	switch fsType {
	case unix.EXT4_SUPER_MAGIC, // also ext2, ext3
		unix.XFS_SUPER_MAGIC,
		unix.BTRFS_SUPER_MAGIC,
		unix.F2FS_SUPER_MAGIC,
		unix.TMPFS_MAGIC,
		0x2fc12fc1: // zfs
		return true
	}
	return false
}

// syncfsReportsErrors says whether this kernel's syncfs returns write-back
// errors (Linux 5.8 and later); before that it always returned 0, so a failed
// write could go unnoticed.
func syncfsReportsErrors() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minorStr := parts[1]
	if i := strings.IndexFunc(minorStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minorStr = minorStr[:i]
	}
	minor, err2 := strconv.Atoi(minorStr)
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 8
}

// hook lets tests watch and fail the durability steps: op is "syncfs",
// "fsync" or "fsyncdir". Nil outside tests.
func (s *Store) hook(op, path string) error {
	if s.testHook == nil {
		return nil
	}
	return s.testHook(op, path)
}

// syncDir fsyncs a directory (making renames and unlinks in it durable).
func (s *Store) syncPath(dir string) error {
	if err := s.hook("fsyncdir", dir); err != nil {
		return err
	}
	return syncPath(dir)
}

func (s *Store) fsyncFile(path string) error {
	if err := s.hook("fsync", path); err != nil {
		return err
	}
	return syncPath(path)
}

// makeDurable makes the files (all in dir, a tmp/) durable: one syncfs for a
// batch where that is cheaper and trustworthy, else an fsync per file. errs[i]
// is the error for paths[i]; whole says a syncfs made everything on dir's file
// system durable (then nothing else written before needs its own fsync).
// size is what the files hold, for the count of unflushed bytes.
// since is the store's count of failed syncfs calls when the first of the
// files was written (see syncfs).
func (s *Store) makeDurable(dir string, paths []string, size int64, since uint64) (errs []error, whole bool) {
	errs = make([]error, len(paths))
	if len(paths) == 0 {
		return errs, false
	}
	if len(paths) >= syncfsMin && s.syncfsErrs {
		err := s.syncfs(dir, since)
		if err == nil {
			return errs, true
		}
		// Not a file system we trust syncfs on, one busy with other
		// programs' writes, or an error that may be another file's: fsync
		// each of ours to learn which, if any, failed.
		s.log.Debug("no syncfs, fsyncing each file", "dir", dir, "err", err)
	}
	s.fsyncAll(paths, errs)
	s.flushed(size)
	return errs, false
}

// flushed takes n bytes off the count of unflushed ones, not below zero:
// a file can be counted out twice (covered by another mailbox's syncfs, then
// fsynced), and an estimate too high here only makes syncfs likelier.
func (s *Store) flushed(n int64) {
	for {
		v := s.unflushed.Load()
		if s.unflushed.CompareAndSwap(v, max(v-n, 0)) {
			return
		}
	}
}

// errBusyFS says a syncfs was not tried: it would have waited for other
// programs' writes (see syncfsDirtyMax).
var errBusyFS = errors.New("other programs' writes are waiting to reach the disk")

// othersDirty is how much of the page cache waits to be written, less what
// the store wrote itself and has not flushed. ok is false when
// /proc/meminfo cannot be read or understood.
func (s *Store) othersDirty() (n int64, ok bool) {
	data, err := sysfile.ReadFile(s.meminfo)
	if err != nil {
		return 0, false
	}
	dirty, writeback, ok := parseMeminfo(data)
	if !ok {
		return 0, false
	}
	return max(dirty+writeback-s.unflushed.Load(), 0), true
}

// parseMeminfo returns the Dirty and Writeback lines of /proc/meminfo in
// bytes; ok is false (and both 0) unless each is there once and well formed.
func parseMeminfo(data []byte) (dirty, writeback int64, ok bool) {
	var seen [2]bool
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		key, rest, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		var k int
		switch string(key) {
		case "Dirty":
			k = 0
		case "Writeback":
			k = 1
		default:
			continue
		}
		f := bytes.Fields(rest)
		if seen[k] || len(f) != 2 || string(f[1]) != "kB" {
			return 0, 0, false
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64>>10 {
			return 0, 0, false
		}
		seen[k] = true
		if k == 0 {
			dirty = kb << 10
		} else {
			writeback = kb << 10
		}
	}
	if !seen[0] || !seen[1] {
		return 0, 0, false
	}
	return dirty, writeback, true
}

// sameTrustedFS says whether path lies on the file system of dir and that
// one is a file system whose syncfs the store trusts (see makeDurable).
func (s *Store) sameTrustedFS(dir, path string) bool {
	if !s.opt.Fsync || !s.syncfsErrs {
		return false
	}
	key := [2]string{dir, filepath.Dir(path)}
	s.trustedMu.Lock()
	defer s.trustedMu.Unlock()
	if ok, known := s.trusted[key]; known {
		return ok
	}
	ok := s.statTrustedFS(key[0], key[1])
	if s.trusted == nil {
		s.trusted = map[[2]string]bool{}
	}
	s.trusted[key] = ok
	return ok
}

// statTrustedFS is sameTrustedFS without the cache: path's directory is on
// dir's file system, and that is a trusted one.
func (s *Store) statTrustedFS(dir, pathDir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(pathDir, &b) != nil || a.Dev != b.Dev {
		return false
	}
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && syncfsTrusted(int64(st.Type))
}

// errSyncfsShared says a syncfs succeeded, but another one of this store's
// failed since the files it was to cover were written.
var errSyncfsShared = errors.New("another syncfs of this store failed meanwhile: its error may have been this one's")

// syncfs runs syncfs(2) on dir's file system, or fails with ENOTSUP where
// that file system is not known to honour it.
//
// A write-back error is reported to one syncfs caller only: the first to
// look after it (Linux's errseq, per open file; each call here opens its
// own). When two mailboxes flush at once and one's file fails to be
// written, the other's syncfs may be the one told, and the first's then
// returns success. So every syncfs of the store that fails is counted, and
// a syncfs that succeeds still fails, with errSyncfsShared, when the count
// moved since since (taken before the files it covers were written): the
// caller then fsyncs each file, and a file's own fsync reports its own
// error whoever saw the file system's. syncfsMu makes a successful caller
// wait for the calls in flight beside it, so that their count is in.
// (Another program's syncfs can take the report as well; that case is not
// covered.)
func (s *Store) syncfs(dir string, since uint64) error {
	fd, err := openRaw(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return err
	}
	if !syncfsTrusted(int64(st.Type)) {
		return fmt.Errorf("syncfs on file system type %#x: %w", st.Type, unix.ENOTSUP)
	}
	// A large run syncfs's whatever waits (see syncfsCheckFiles); without
	// /proc/meminfo there is no telling, and syncfs is used as before.
	if s.stagedFiles.Load() <= syncfsCheckFiles {
		if n, ok := s.othersDirty(); ok && n > s.dirtyMax {
			return fmt.Errorf("syncfs: %d MiB: %w", n>>20, errBusyFS)
		}
	}
	own := s.unflushed.Load()
	s.syncfsMu.RLock()
	err = s.hook("syncfs", dir)
	if err == nil {
		err = unix.Syncfs(fd)
	}
	if err != nil {
		s.syncfsFailures.Add(1)
	}
	s.syncfsMu.RUnlock()
	if err != nil {
		return err
	}
	s.syncfsMu.Lock()
	failed := s.syncfsFailures.Load() != since
	s.syncfsMu.Unlock()
	if failed {
		return errSyncfsShared
	}
	s.flushed(own)
	return nil
}

// fsyncAll fsyncs each file, several at once: a journaling file system then
// folds the waiting fsyncs into fewer journal commits.
func (s *Store) fsyncAll(paths []string, errs []error) {
	workers := min(len(paths), fsyncWorkers)
	if workers <= 1 {
		for i, p := range paths {
			errs[i] = s.fsyncFile(p)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				errs[i] = s.fsyncFile(paths[i])
			}
		})
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
}

// openRaw opens path read-only as a bare file descriptor. The directories
// and files that are only fsynced, listed or stat'ed relative to need no
// os.File: opening one costs four fcntl calls and a failing epoll_ctl on top
// (about 2 000 system calls in a run over ten changed folders).
func openRaw(path string) (int, error) { return sysfile.OpenFD(path, os.O_RDONLY, 0) }
