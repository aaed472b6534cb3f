package netx

import (
	"errors"
	"syscall"
)

// Socket errors by what they mean, so that code comparing them reads the
// same on every platform: Windows reports WSAE* codes (WSAECONNRESET is
// 10054), which are not the syscall.E* values Go defines there.

// IsReset reports a connection the peer reset.
func IsReset(err error) bool { return anyErrno(err, errReset) }

// IsBrokenPipe reports a write to a connection the peer no longer reads.
func IsBrokenPipe(err error) bool { return anyErrno(err, errBrokenPipe) }

// IsRefused reports a connection attempt nobody accepted.
func IsRefused(err error) bool { return anyErrno(err, errRefused) }

// IsHostUnreachable reports a host no route or address reaches.
func IsHostUnreachable(err error) bool { return anyErrno(err, errHostUnreachable) }

// IsNetUnreachable reports a network no route reaches.
func IsNetUnreachable(err error) bool { return anyErrno(err, errNetUnreachable) }

// IsTimedOut reports a connection attempt the kernel gave up on.
func IsTimedOut(err error) bool { return anyErrno(err, errTimedOut) }

// IsAddrInUse reports a bind to an address another socket holds.
func IsAddrInUse(err error) bool { return anyErrno(err, errAddrInUse) }

func anyErrno(err error, codes []syscall.Errno) bool {
	if err == nil {
		return false
	}
	for _, c := range codes {
		if errors.Is(err, c) {
			return true
		}
	}
	return false
}
