//go:build unix

package server

import (
	"net"
	"os"
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
	err = raw.Read(func(fd uintptr) bool {
		open = peek(fd) == syscall.EAGAIN
		return true // never wait
	})
	return err == nil && open
}

// waitReadable blocks, in the runtime's poller and under the socket's
// read deadline, until a read of raw's socket would not block: bytes or
// EOF are waiting (nil), or an error, which it returns. The kernel
// reports a socket error once, to the peek that finds it, so the error
// (a reset, say) is the caller's to pass on: a read after it would see
// EOF.
func waitReadable(raw syscall.RawConn) error {
	var perr error
	err := raw.Read(func(fd uintptr) bool {
		switch e := peek(fd); e {
		case syscall.EAGAIN:
			return false
		case nil:
		default:
			perr = os.NewSyscallError("read", e)
		}
		return true
	})
	if err != nil {
		return err
	}
	return perr
}

// peek peeks at one byte without waiting: nil when a byte or EOF is
// there, EAGAIN when nothing is, else the socket's error.
func peek(fd uintptr) error {
	var buf [1]byte
	_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err
}
