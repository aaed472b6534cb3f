package load

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"ferry/plugins/pkg/netx"
)

// Refusal is a proxy's answer that it did not open the tunnel: an HTTP
// status other than 200, or a SOCKS5 reply code other than 0.
type Refusal struct {
	Proto string // "connect" or "socks5"
	Code  int    // the HTTP status or the SOCKS5 reply code
	Line  string // the HTTP status line; empty for SOCKS5
}

func (r *Refusal) Error() string {
	if r.Proto == "socks5" {
		return fmt.Sprintf("socks5 reply code %d", r.Code)
	}
	return fmt.Sprintf("CONNECT refused: %q", r.Line)
}

// Connect asks for a CONNECT tunnel to target over c and reads the
// response head; bytes past the head are kept in front of the returned
// connection. A status other than 200 is a *Refusal. The caller sets c's
// deadline.
func Connect(c net.Conn, target netip.AddrPort) (net.Conn, error) {
	t := target.String()
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", t, t); err != nil {
		return nil, fmt.Errorf("CONNECT request: %w", err)
	}
	head, rest, err := ReadHead(c)
	if err != nil {
		return nil, fmt.Errorf("CONNECT response: %w", err)
	}
	if code := StatusCode(head); code != 200 {
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		return nil, &Refusal{Proto: "connect", Code: code, Line: string(line)}
	}
	if len(rest) > 0 {
		return &netx.PrefixConn{Conn: c, Prefix: rest}, nil
	}
	return c, nil
}

// ReadHead reads an HTTP response head (up to 16 KiB) and returns it and
// the bytes read past it.
func ReadHead(c net.Conn) (head, rest []byte, err error) {
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

// StatusCode is the status of an HTTP/1.x response head, 0 if none.
func StatusCode(head []byte) int {
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

// SOCKS5 runs the RFC 1928 handshake over c: no-auth greeting, CONNECT
// to the target address. A reply code other than 0 is a *Refusal. The
// caller sets c's deadline.
func SOCKS5(c net.Conn, target netip.AddrPort) error {
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
	if _, err := c.Write(SOCKS5Request(1, target)); err != nil {
		return fmt.Errorf("socks5 request: %w", err)
	}
	if _, err := io.ReadFull(c, b[:5]); err != nil {
		return fmt.Errorf("socks5 reply: %w", err)
	}
	if b[1] != 0 {
		return &Refusal{Proto: "socks5", Code: int(b[1])}
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

// SOCKS5Request is a SOCKS5 request with command cmd (1 CONNECT, 2 BIND)
// for an IP address.
func SOCKS5Request(cmd byte, target netip.AddrPort) []byte {
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

// Reset closes c with a TCP RST instead of a FIN (and leaves no
// TIME_WAIT); under TLS, without its close_notify.
func Reset(c net.Conn) {
	if p, ok := c.(*netx.PrefixConn); ok {
		c = p.Conn
	}
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = w.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// WaitClose reads and discards until EOF, an error or deadline.
func WaitClose(c net.Conn, deadline time.Time) error {
	c.SetReadDeadline(deadline)
	var buf [512]byte
	for range 1024 {
		if _, err := c.Read(buf[:]); err != nil {
			return err
		}
	}
	return errors.New("waiting for the close: too many bytes")
}
