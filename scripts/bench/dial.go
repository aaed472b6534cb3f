package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// dialer opens tunnels to target through a proxy speaking proto:
// "connect" (HTTP CONNECT), "socks5" (no authentication, target as an
// IPv4/IPv6 address) or "tcp" (the proxy forwards every connection to a
// fixed target: nothing to say).
type dialer struct {
	proxy   string
	proto   string
	target  netip.AddrPort
	timeout time.Duration // for connect + handshake
}

func (d *dialer) dial() (net.Conn, error) {
	c, err := net.DialTimeout("tcp", d.proxy, d.timeout)
	if err != nil {
		return nil, err
	}
	if d.proto == "tcp" {
		return c, nil
	}
	c.SetDeadline(time.Now().Add(d.timeout))
	var rc net.Conn
	switch d.proto {
	case "connect":
		rc, err = d.connect(c)
	case "socks5":
		err = d.socks5(c)
		rc = c
	default:
		err = fmt.Errorf("unknown proto %q", d.proto)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return rc, nil
}

// connect asks for a CONNECT tunnel and reads the response head. Bytes
// past the head (none, in this tool: the target never speaks first) are
// kept in front of the connection.
func (d *dialer) connect(c net.Conn) (net.Conn, error) {
	t := d.target.String()
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", t, t); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 512)
	var tmp [512]byte
	for {
		n, err := c.Read(tmp[:])
		buf = append(buf, tmp[:n]...)
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			line, _, _ := bytes.Cut(buf, []byte("\r\n"))
			f := bytes.Fields(line)
			if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) || string(f[1]) != "200" {
				return nil, fmt.Errorf("CONNECT refused: %q", line)
			}
			if rest := buf[i+4:]; len(rest) > 0 {
				return &prefixConn{Conn: c, prefix: append([]byte(nil), rest...)}, nil
			}
			return c, nil
		}
		if err != nil {
			return nil, fmt.Errorf("CONNECT response: %w", err)
		}
		if len(buf) > 16<<10 {
			return nil, errors.New("CONNECT response head over 16 KiB")
		}
	}
}

// socks5 runs the RFC 1928 handshake: no-auth greeting, CONNECT to the
// target address.
func (d *dialer) socks5(c net.Conn) error {
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return err
	}
	var b [262]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return fmt.Errorf("socks5 greeting: %w", err)
	}
	if b[0] != 5 || b[1] != 0 {
		return fmt.Errorf("socks5 method %d", b[1])
	}
	req := []byte{5, 1, 0}
	if a := d.target.Addr(); a.Is4() {
		a4 := a.As4()
		req = append(append(req, 1), a4[:]...)
	} else {
		a16 := a.As16()
		req = append(append(req, 4), a16[:]...)
	}
	req = binary.BigEndian.AppendUint16(req, d.target.Port())
	if _, err := c.Write(req); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, b[:5]); err != nil {
		return fmt.Errorf("socks5 reply: %w", err)
	}
	if b[1] != 0 {
		return fmt.Errorf("socks5 reply code %d", b[1])
	}
	rest := 0
	switch b[3] {
	case 1:
		rest = 4 - 1 + 2
	case 4:
		rest = 16 - 1 + 2
	case 3:
		rest = int(b[4]) + 2
	default:
		return fmt.Errorf("socks5 reply address type %d", b[3])
	}
	_, err := io.ReadFull(c, b[:rest])
	return err
}

type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
