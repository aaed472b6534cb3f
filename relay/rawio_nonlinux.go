//go:build unix && !linux

package relay

import "syscall"

// rawRead and rawWrite are read(2) and write(2), retried on EINTR. On
// Linux (splice_linux.go) they also skip the runtime's syscall
// bookkeeping.
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
