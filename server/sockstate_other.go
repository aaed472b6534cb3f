//go:build !unix

package server

import (
	"net"
	"syscall"
)

// connIdleOpen takes every idle connection as open here: without
// MSG_DONTWAIT there is no peek that does not block, and a read with an
// immediate deadline would consume a byte when one is waiting. A pooled
// connection the peer has closed then fails on first use, as it can on
// any platform when the close races the reuse.
func connIdleOpen(c net.Conn) bool { return true }

// waitReadable cannot wait without reading here: it returns at once, and
// the caller reads (holding its buffer) as it would without it.
func waitReadable(syscall.RawConn) error { return nil }
