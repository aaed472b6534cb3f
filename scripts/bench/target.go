package main

import (
	"encoding/binary"
	"io"
	"net"
	"time"

	"ferry/scripts/internal/load"
)

// target is the tool's own server at the far end of the proxy.
//
// In throughput mode (stream) each connection starts with a 9-byte
// header: 'U' (client to target) or 'D' (target to client) and a
// big-endian uint64 byte count n. For 'U' the target reads n bytes and
// answers one byte 'K'; for 'D' it writes n zero bytes and closes. With
// once > 0 (connrate) it echoes the first once bytes and closes. Otherwise
// it echoes what it reads.
//
// The target closes first where it can: the side that closes first keeps
// the connection in TIME_WAIT for a minute, and a TIME_WAIT on the
// target's own port (or on the proxy's listening port, when the proxy
// passes the close on) holds no ephemeral port. Proxies that bind before
// they connect (dante) run out of ephemeral ports when tens of thousands
// of them wait out TIME_WAIT.
type target struct {
	*load.Server
	stream bool
	once   int
}

const chunk = 256 << 10

var zeros = make([]byte, chunk)

func startTarget(addr string, stream bool, once int, deadline time.Time) (*target, error) {
	t := &target{stream: stream, once: once}
	srv, err := load.Listen(addr, deadline, t.serve)
	if err != nil {
		return nil, err
	}
	t.Server = srv
	return t, nil
}

func (t *target) serve(c net.Conn) {
	switch {
	case t.stream:
		t.serveStream(c)
	case t.once > 0:
		buf := make([]byte, t.once)
		if _, err := io.ReadFull(c, buf); err == nil {
			c.Write(buf)
		}
	default:
		t.echo(c)
	}
}

func (t *target) serveStream(c net.Conn) {
	var h [9]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint64(h[1:]))
	switch h[0] {
	case 'U':
		buf := make([]byte, chunk)
		for n > 0 {
			k, err := c.Read(buf[:min(int64(len(buf)), n)])
			n -= int64(k)
			if err != nil {
				return
			}
		}
		c.Write([]byte{'K'})
	case 'D':
		for n > 0 {
			k, err := c.Write(zeros[:min(int64(len(zeros)), n)])
			n -= int64(k)
			if err != nil {
				return
			}
		}
	}
}

func (t *target) echo(c net.Conn) {
	buf := make([]byte, 2048)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
