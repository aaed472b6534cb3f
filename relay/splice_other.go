//go:build !linux

package relay

import (
	"net"
	"syscall"

	"ferry/plugins"
)

// spliceCopy is Linux only; elsewhere the caller copies with io.Copy.
func spliceCopy(dst, src net.Conn, moved func(int), idle *idleWait) (ok bool, err error) {
	return false, nil
}

type idleWait struct {
	c   *Channel
	dir plugins.Direction
}

func spliceable(a, b net.Conn) bool { return false }

// rawRead and rawWrite are read(2) and write(2), retried on EINTR; on
// Linux they also skip the runtime's syscall bookkeeping.
func rawRead(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

func rawWrite(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Write(fd, p)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// TunnelFDs is the most descriptors one tunnel holds: its two sockets
// (the splice path, which adds a pipe per direction, is Linux only).
const TunnelFDs = 2

// SplicePipes is always 0: there is no splice path here.
func SplicePipes() int64 { return 0 }
