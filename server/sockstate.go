package server

import (
	"errors"
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

// abortConn closes c with a reset (SO_LINGER 0) rather than a FIN, so
// its peer sees that the exchange was cut short.
func abortConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// isReset reports an error caused by the peer resetting the connection.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}
