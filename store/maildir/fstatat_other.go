//go:build !(linux && (amd64 || arm64))

package maildir

import "golang.org/x/sys/unix"

// fstatName is unix.Fstatat(fd, name, st, 0); buf serves the fast version
// on the platforms that have one.
func fstatName(fd int, name string, buf *[]byte, st *unix.Stat_t) error {
	return unix.Fstatat(fd, name, st, 0)
}
