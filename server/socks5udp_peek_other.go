//go:build !unix

package server

// udpReadable says readable at once: without a peek, readers do not park
// (they hold their buffer and wake every udpParkAfter).
func udpReadable(uintptr) bool { return true }
