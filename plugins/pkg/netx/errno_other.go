//go:build !windows

package netx

import "syscall"

var (
	errReset           = []syscall.Errno{syscall.ECONNRESET}
	errBrokenPipe      = []syscall.Errno{syscall.EPIPE}
	errRefused         = []syscall.Errno{syscall.ECONNREFUSED}
	errHostUnreachable = []syscall.Errno{syscall.EHOSTUNREACH, syscall.EADDRNOTAVAIL}
	errNetUnreachable  = []syscall.Errno{syscall.ENETUNREACH}
	errTimedOut        = []syscall.Errno{syscall.ETIMEDOUT}
	errAddrInUse       = []syscall.Errno{syscall.EADDRINUSE}
)
