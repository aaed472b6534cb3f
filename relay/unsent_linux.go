package relay

import (
	"net"

	"golang.org/x/sys/unix"
)

// Unsent reports whether the socket under c holds bytes it has not yet
// sent (SIOCOUTQNSD): its peer's window is shut, or they are still on
// their way. False when there is no TCP socket under c or it cannot say.
// A connection given up on with bytes unsent is better reset than
// closed (see closeSide).
func Unsent(c net.Conn) bool {
	tc := tcpUnder(c)
	if tc == nil {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQNSD)
	})
	return err == nil && n > 0
}
