//go:build !unix

package server

import "net"

// connIdleOpen takes every idle connection as open here: without
// MSG_DONTWAIT there is no peek that does not block, and a read with an
// immediate deadline would consume a byte when one is waiting. A pooled
// connection the peer has closed then fails on first use, as it can on
// any platform when the close races the reuse.
func connIdleOpen(c net.Conn) bool { return true }
