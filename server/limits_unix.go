//go:build unix

package server

import "golang.org/x/sys/unix"

// fileLimit is the soft open-file limit (RLIMIT_NOFILE); false when it
// cannot be read or is unlimited.
func fileLimit() (uint64, bool) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return 0, false
	}
	return uint64(lim.Cur), true
}
