//go:build !linux

package relay

import (
	"errors"
	"net"

	"ferry/plugins"
)

// spliceCopy is Linux only; elsewhere the caller copies with io.Copy.
func spliceCopy(dst, src net.Conn, moved func(int), meter func(int) (int, error), idle *idleWait) (ok bool, err error) {
	return false, nil
}

type idleWait struct {
	c   *Channel
	dir plugins.Direction
}

func spliceable(a, b net.Conn) bool { return false }

// SpliceN is Linux only: elsewhere it moves nothing and says
// errors.ErrUnsupported (CanSplice is false here).
func SpliceN(dst, src net.Conn, n int64, h SpliceHooks) (readErr, writeErr error) {
	return errors.ErrUnsupported, nil
}

// TunnelFDs is the most descriptors one tunnel holds: its two sockets
// (the splice path, which adds a pipe per direction, is Linux only).
const TunnelFDs = 2

// SplicePipes is always 0: there is no splice path here.
func SplicePipes() int64 { return 0 }
