//go:build !linux

package relay

import "net"

// spliceCopy is Linux only; elsewhere the caller copies with io.Copy.
func spliceCopy(dst, src net.Conn, moved func(int), idle *idleWait) (ok bool, err error) {
	return false, nil
}

type idleWait struct {
	c   *Channel
	dir int
}

func spliceable(a, b net.Conn) bool { return false }
