//go:build !linux

package server

import "net"

// listenTCP opens a listening socket; Go turns keep-alive on for each
// accepted connection (see listen_linux.go for why Linux differs).
func listenTCP(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
