//go:build unix

package relay

import (
	"net"
	"syscall"
)

// rawConn is c's RawConn when c is a socket, for the raw reads and writes
// of chunkReader and chunkWriter (rawRead and rawWrite); nil otherwise
// (TLS after mitm, pipes in tests), and those use Read and Write.
func rawConn(c net.Conn) syscall.RawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
