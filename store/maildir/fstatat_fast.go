//go:build linux && (amd64 || arm64)

package maildir

import (
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fstatName is unix.Fstatat(fd, name, st, 0) with the NUL-terminated name
// built in *buf, reused from call to call: unix.Fstatat allocates a copy of
// every name, 100 000 allocations when a large folder is stat'ed.
func fstatName(fd int, name string, buf *[]byte, st *unix.Stat_t) error {
	if strings.IndexByte(name, 0) >= 0 {
		return unix.EINVAL // as unix.Fstatat says of such a name
	}
	b := append(append((*buf)[:0], name...), 0)
	*buf = b
	_, _, e := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(st)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
