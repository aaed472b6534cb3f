//go:build !linux

package relay

import "net"

// Unsent is Linux only (SIOCOUTQNSD); elsewhere it says false, and
// connections given up on are closed in order.
func Unsent(net.Conn) bool { return false }
