//go:build windows

package netx

import (
	"syscall"

	"golang.org/x/sys/windows"
)

// Windows reports Winsock codes; WSAECONNABORTED is what a reset or a
// local abort of an established connection reads as there, and
// WSAESHUTDOWN a write after the peer's shutdown.
var (
	errReset           = []syscall.Errno{windows.WSAECONNRESET, windows.WSAECONNABORTED}
	errBrokenPipe      = []syscall.Errno{windows.WSAESHUTDOWN, syscall.EPIPE}
	errRefused         = []syscall.Errno{windows.WSAECONNREFUSED}
	errHostUnreachable = []syscall.Errno{windows.WSAEHOSTUNREACH, windows.WSAEADDRNOTAVAIL}
	errNetUnreachable  = []syscall.Errno{windows.WSAENETUNREACH}
	errTimedOut        = []syscall.Errno{windows.WSAETIMEDOUT}
	errAddrInUse       = []syscall.Errno{windows.WSAEADDRINUSE}
)
