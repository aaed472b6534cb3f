//go:build unix

package log

import "syscall"

// openNonblock is O_NONBLOCK, for opening the access log.
const openNonblock = syscall.O_NONBLOCK
