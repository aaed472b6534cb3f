//go:build unix

package capture

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on f, so that writers of one
// HAR file in other generations of the configuration (a reload) or other
// processes never interleave their appends.
func lockFile(f *os.File) error {
	for range 100 { // EINTR only; bounded all the same
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
	return syscall.EINTR
}

func unlockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
