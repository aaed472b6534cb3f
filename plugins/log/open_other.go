//go:build !unix

package log

// openNonblock is 0 here: Windows has no FIFOs whose open blocks (a named
// pipe with no server fails at once), and os.OpenFile ignores the
// syscall package's made-up O_NONBLOCK.
const openNonblock = 0
