//go:build unix

package server

import "syscall"

// udpReadable reports whether the (non-blocking) socket fd has a datagram
// waiting, without taking it. Any answer but "would block" counts as
// readable, so that the read that follows reports the error.
func udpReadable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
}
