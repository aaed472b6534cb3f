// Package netx holds small net.Conn helpers shared by relay/upstream
// and the plugins, which may not import each other, and the check of a
// source address that config and the plugins share.
//
//	// bytes read past a handshake are returned before the socket's own
//	c = &netx.PrefixConn{Conn: c, Prefix: rest}
//	// can a dial leave from 192.0.2.10?
//	var host netx.HostAddrs
//	a, err := host.ParseSource("192.0.2.10")
//
// It does not dial, listen or log.
package netx

import "net"

// PrefixConn returns Prefix, bytes already read from Conn (past a
// handshake, say), before reading Conn itself.
type PrefixConn struct {
	net.Conn
	Prefix []byte
}

func (c *PrefixConn) Read(b []byte) (int, error) {
	if len(c.Prefix) > 0 {
		n := copy(b, c.Prefix)
		c.Prefix = c.Prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// CloseWrite half-closes the connection underneath when it can (a TCP or
// TLS connection); otherwise it does nothing.
func (c *PrefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the connection underneath, so that relay.Abort can
// reach the TCP connection and reset it.
func (c *PrefixConn) NetConn() net.Conn { return c.Conn }
