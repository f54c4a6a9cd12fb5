//go:build !linux

package imap

import "net"

// quickAcker: only Linux has TCP_QUICKACK.
func quickAcker(net.Conn) func() { return nil }
