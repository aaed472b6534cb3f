package relay

import "net"

// SpliceHooks are what SpliceN calls around each chunk.
type SpliceHooks struct {
	// BeforeRead runs before each read of the source; its error ends
	// the copy as a read error (a rolling deadline renewed, a stop
	// noticed).
	BeforeRead func() error
	// BeforeWrite runs before each write to the destination; its error
	// ends the copy as a write error (a deadline renewed, a stop
	// noticed), with the chunk unwritten.
	BeforeWrite func() error
	// Moved is told the size of each chunk delivered.
	Moved func(int)
}

// CanSplice reports whether SpliceN can join a and b: two TCP
// connections, on Linux.
func CanSplice(a, b net.Conn) bool { return spliceable(a, b) }
