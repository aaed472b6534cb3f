//go:build !linux

package main

// portHolder finds no holder here: the socket tables it reads are Linux's
// /proc. A busy port is then a warning, as for a holder ferry cannot see.
func portHolder(addr string) (pid int, ferry bool) { return 0, false }
