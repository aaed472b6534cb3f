//go:build !linux

package upstream

import "net"

// readHead reads the proxy's response head through a buffer; rest is what
// came after it. Only Linux reads exactly the head off a plain socket
// (httpconnect_linux.go): elsewhere the relay has no splice path for the
// raw socket to keep.
func readHead(c net.Conn, _ bool) (head, rest []byte, err error) {
	return readHeadBuffered(c)
}
