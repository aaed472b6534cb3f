//go:build unix

package server

import (
	"net"
	"syscall"
)

// connIdleOpen reports whether an idle connection is still open with
// nothing to read: a peek that would block. A closed peer (EOF), a reset
// or unsolicited bytes mean it cannot carry a request. Connections that
// are not sockets (TLS to a parent) are taken as open.
func connIdleOpen(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = rerr == syscall.EAGAIN
		return true // never wait
	})
	return err == nil && open
}
