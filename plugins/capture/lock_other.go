//go:build !unix

package capture

import "os"

// lockFile is a no-op without flock: only the service's mutex orders
// appends, so two writers of one HAR file (a reload's old and new
// configuration) may interleave there.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }
