//go:build !linux

package relay

import (
	"net"
	"syscall"
)

// spliceCopy is Linux only; elsewhere the caller copies with io.Copy.
func spliceCopy(dst, src net.Conn, moved func(int), idle *idleWait) (ok bool, err error) {
	return false, nil
}

type idleWait struct {
	c   *Channel
	dir int
}

func spliceable(a, b net.Conn) bool { return false }

// rawRead and rawWrite are plain read(2) and write(2) here; on Linux they
// skip the runtime's syscall bookkeeping.
func rawRead(fd int, p []byte) (int, error)  { return syscall.Read(fd, p) }
func rawWrite(fd int, p []byte) (int, error) { return syscall.Write(fd, p) }
