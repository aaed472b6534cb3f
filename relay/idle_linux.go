package relay

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// kernelActivityAvailable reports whether the kernel can tell when data
// last moved on one of the sockets. Either socket sees both directions.
func kernelActivityAvailable(conns ...net.Conn) bool {
	for _, c := range conns {
		if _, ok := kernelSinceActivity(c); ok {
			return true
		}
	}
	return false
}

// kernelBytesAcked reads TCP_INFO: the bytes c has sent that its peer
// acknowledged, which counts what splice moved without user space seeing
// it.
func kernelBytesAcked(c net.Conn) (int64, bool) {
	info, ok := tcpInfo(c)
	if !ok {
		return 0, false
	}
	return int64(info.Bytes_acked), true
}

func tcpInfo(c net.Conn) (*unix.TCPInfo, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, false
	}
	var info *unix.TCPInfo
	cerr := rc.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if cerr != nil || err != nil {
		return nil, false
	}
	return info, true
}

// kernelSinceActivity reads TCP_INFO: the time since data was last sent or
// received on c, at millisecond resolution. This costs one getsockopt per
// idle check and nothing per byte, which keeps splice usable.
func kernelSinceActivity(c net.Conn) (time.Duration, bool) {
	info, ok := tcpInfo(c)
	if !ok {
		return 0, false
	}
	ms := min(info.Last_data_recv, info.Last_data_sent)
	return time.Duration(ms) * time.Millisecond, true
}
