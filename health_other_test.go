//go:build !linux

package main

import (
	"net"
	"testing"
)

// deadAddr returns a loopback address nothing listens on: a port that was
// listened on and closed. Unlike Linux's, which keeps the port bound, it
// could be taken again before the test ends, which on a loopback port
// just released is unlikely.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
