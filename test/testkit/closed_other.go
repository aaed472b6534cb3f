//go:build !unix

package testkit

import (
	"net"
	"testing"
)

// ClosedAddr returns a loopback address on which nothing listens, as a
// target that refuses connections. Here the port is only closed, not
// held: another process may take it meanwhile.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
