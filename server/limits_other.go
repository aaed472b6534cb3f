//go:build !unix

package server

// fileLimit is always false here: Windows has no open-file limit that
// accept or a dial would hit (sockets are handles, bounded by memory), so
// max_connections left out of the file means no cap, as under an
// unlimited RLIMIT_NOFILE on Unix.
func fileLimit() (uint64, bool) { return 0, false }
