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

// path is one way through ferry: a listener and the protocol spoken to it.
type path struct {
	name  string // "connect", "socks5+hook", "tcp": for messages
	proto string // connect (HTTP CONNECT) | socks5 | tcp (the listener forwards to its own target)
	addr  string // the listener
}

// refusal is a proxy's answer that it did not open the tunnel: an HTTP
// status other than 200, or a SOCKS5 reply code other than 0.
type refusal struct {
	proto string
	code  int
	line  string
}

func (r *refusal) Error() string {
	if r.proto == "socks5" {
		return fmt.Sprintf("socks5 reply code %d", r.code)
	}
	return fmt.Sprintf("CONNECT refused: %q", r.line)
}

// dial opens a tunnel through p to target (ignored for tcp: the listener
// has its own). The handshake must end by deadline, which stays set on the
// returned connection. After a refusal it waits (briefly) for ferry to
// close first, so the TIME_WAIT is ferry's, and returns a *refusal.
func dial(p path, target netip.AddrPort, deadline time.Time) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", p.addr, time.Until(deadline))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", p.name, err)
	}
	c.SetDeadline(deadline)
	var rc net.Conn = c
	switch p.proto {
	case "tcp":
		return c, nil
	case "connect":
		rc, err = connect(c, target)
	case "socks5":
		err = socks5(c, target)
	default:
		err = fmt.Errorf("unknown proto %q", p.proto)
	}
	if err != nil {
		var r *refusal
		if errors.As(err, &r) {
			waitClose(c, earliest(deadline, time.Now().Add(2*time.Second)))
		}
		c.Close()
		return nil, err
	}
	return rc, nil
}

// earliest is the earlier of two times.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// waitClose reads and discards until EOF, an error or deadline.
func waitClose(c net.Conn, deadline time.Time) error {
	c.SetReadDeadline(deadline)
	var buf [512]byte
	for range 1024 {
		if _, err := c.Read(buf[:]); err != nil {
			return err
		}
	}
	return errors.New("waiting for the close: too many bytes")
}

// connect asks for a CONNECT tunnel and reads the response head; bytes
// past the head are kept in front of the connection.
func connect(c net.Conn, target netip.AddrPort) (net.Conn, error) {
	t := target.String()
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", t, t); err != nil {
		return nil, fmt.Errorf("CONNECT request: %w", err)
	}
	head, rest, err := readHead(c)
	if err != nil {
		return nil, fmt.Errorf("CONNECT response: %w", err)
	}
	if code := statusCode(head); code != 200 {
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		return nil, &refusal{proto: "connect", code: code, line: string(line)}
	}
	if len(rest) > 0 {
		return &prefixConn{Conn: c, prefix: rest}, nil
	}
	return c, nil
}

// readHead reads an HTTP response head (up to 16 KiB) and returns it and
// the bytes read past it.
func readHead(c net.Conn) (head, rest []byte, err error) {
	buf := make([]byte, 0, 512)
	var tmp [512]byte
	for len(buf) <= 16<<10 {
		n, err := c.Read(tmp[:])
		buf = append(buf, tmp[:n]...)
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], append([]byte(nil), buf[i+4:]...), nil
		}
		if err != nil {
			return buf, nil, err
		}
	}
	return buf, nil, errors.New("response head over 16 KiB")
}

// statusCode is the status of an HTTP/1.x response head, 0 if none.
func statusCode(head []byte) int {
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) || len(f[1]) != 3 {
		return 0
	}
	code := 0
	for _, d := range f[1] {
		if d < '0' || d > '9' {
			return 0
		}
		code = code*10 + int(d-'0')
	}
	return code
}

// socks5 runs the RFC 1928 handshake: no-auth greeting, CONNECT to the
// target address.
func socks5(c net.Conn, target netip.AddrPort) error {
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return fmt.Errorf("socks5 greeting: %w", err)
	}
	var b [262]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return fmt.Errorf("socks5 greeting: %w", err)
	}
	if b[0] != 5 || b[1] != 0 {
		return fmt.Errorf("socks5 method %d", b[1])
	}
	if _, err := c.Write(socks5Request(1, target)); err != nil {
		return fmt.Errorf("socks5 request: %w", err)
	}
	if _, err := io.ReadFull(c, b[:5]); err != nil {
		return fmt.Errorf("socks5 reply: %w", err)
	}
	if b[1] != 0 {
		return &refusal{proto: "socks5", code: int(b[1])}
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
	if _, err := io.ReadFull(c, b[:rest]); err != nil {
		return fmt.Errorf("socks5 reply: %w", err)
	}
	return nil
}

// socks5Request is a SOCKS5 request with command cmd (1 CONNECT, 2 BIND)
// for an IP address.
func socks5Request(cmd byte, target netip.AddrPort) []byte {
	req := []byte{5, cmd, 0}
	if a := target.Addr(); a.Is4() {
		a4 := a.As4()
		req = append(append(req, 1), a4[:]...)
	} else {
		a16 := a.As16()
		req = append(append(req, 4), a16[:]...)
	}
	return binary.BigEndian.AppendUint16(req, target.Port())
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

// reset closes c with a TCP RST instead of a FIN (and leaves no TIME_WAIT).
func reset(c net.Conn) {
	if p, ok := c.(*prefixConn); ok {
		c = p.Conn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
