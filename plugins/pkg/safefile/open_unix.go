//go:build unix

package safefile

import "syscall"

// openFlags open a path without blocking on a FIFO or device and without
// taking a terminal as the controlling one.
const openFlags = syscall.O_NONBLOCK | syscall.O_NOCTTY
