//go:build !unix

package relay

import (
	"errors"
	"net"
	"syscall"
)

// rawConn is always nil here, so chunkReader and chunkWriter use the
// connection's Read and Write. Windows cannot wait for a socket to become
// writable inside RawConn.Write, and its descriptors are handles, not the
// ints read(2) takes.
func rawConn(c net.Conn) syscall.RawConn { return nil }

// rawRead and rawWrite are never called here: rawConn returns nil.
func rawRead(fd int, p []byte) (int, error)  { return 0, errors.ErrUnsupported }
func rawWrite(fd int, p []byte) (int, error) { return 0, errors.ErrUnsupported }
