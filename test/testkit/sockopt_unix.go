//go:build unix

package testkit

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// SockoptInt reads an integer socket option of c, a *net.TCPConn; the
// test fails if it cannot.
func SockoptInt(t testing.TB, c net.Conn, level, opt int) int {
	t.Helper()
	tc, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("sockopt of a %T, want a *net.TCPConn", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// KeepAliveOn reports whether c has TCP keep-alive on (SO_KEEPALIVE).
func KeepAliveOn(t testing.TB, c net.Conn) bool {
	t.Helper()
	return SockoptInt(t, c, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0
}
