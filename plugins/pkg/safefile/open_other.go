//go:build !unix

package safefile

// openFlags is 0 here: Windows has no FIFOs whose open blocks and no
// controlling terminals, and os.OpenFile ignores the syscall package's
// made-up O_NONBLOCK and O_NOCTTY. The fstat check still refuses what is
// not a regular file.
const openFlags = 0
