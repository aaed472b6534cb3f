//go:build unix

package config

import "golang.org/x/sys/unix"

// writable reports whether this process may create files in directory p.
func writable(p string) bool { return unix.Access(p, unix.W_OK|unix.X_OK) == nil }
