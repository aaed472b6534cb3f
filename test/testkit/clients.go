package testkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// DialTimeout bounds every dial to ferry and every proxy handshake.
const DialTimeout = 10 * time.Second

// BufConn is a TCP connection whose reads go through the reader that read
// its proxy handshake, so bytes that arrived with the reply are not lost.
// CloseWrite still reaches the socket.
type BufConn struct {
	*net.TCPConn
	r *bufio.Reader
}

// NewBufConn is c read through br, or through a new reader if br is nil.
func NewBufConn(c *net.TCPConn, br *bufio.Reader) *BufConn {
	if br == nil {
		br = bufio.NewReader(c)
	}
	return &BufConn{TCPConn: c, r: br}
}

func (c *BufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Reader is the reader c's reads go through, for helpers that parse from
// a *bufio.Reader.
func (c *BufConn) Reader() *bufio.Reader { return c.r }

// WriteTo hides the embedded TCPConn's WriteTo, which io.Copy would use
// and which would skip the buffered bytes.
func (c *BufConn) WriteTo(w io.Writer) (int64, error) { return c.r.WriteTo(w) }

// DialCONNECT opens a tunnel with HTTP CONNECT.
func DialCONNECT(ctx context.Context, proxyAddr, target string) (*BufConn, error) {
	c, err := DialTCP(ctx, proxyAddr)
	if err != nil {
		return nil, err
	}
	return ConnectOver(c, target)
}

// DialCONNECTAuth opens a tunnel with HTTP CONNECT, logged in as user
// with Proxy-Authorization: Basic.
func DialCONNECTAuth(ctx context.Context, proxyAddr, target, user, pass string) (*BufConn, error) {
	c, err := DialTCP(ctx, proxyAddr)
	if err != nil {
		return nil, err
	}
	auth := "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + "\r\n"
	return connectOver(c, target, auth)
}

// ConnectOver asks for a CONNECT tunnel to target over c, a connection to
// ferry, and closes c if it is refused.
func ConnectOver(c *net.TCPConn, target string) (*BufConn, error) {
	return connectOver(c, target, "")
}

// connectOver is ConnectOver with extra header lines, each ending in CRLF.
func connectOver(c *net.TCPConn, target, header string) (*BufConn, error) {
	c.SetDeadline(time.Now().Add(DialTimeout))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", target, target, header)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read CONNECT response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: got status %q, want 200", target, resp.Status)
	}
	c.SetDeadline(time.Time{})
	return NewBufConn(c, br), nil
}

// DialSOCKS5 opens a tunnel with golang.org/x/net/proxy's SOCKS5 client,
// run over a connection the test owns so that CloseWrite stays available.
func DialSOCKS5(ctx context.Context, proxyAddr, target string) (*BufConn, error) {
	return DialSOCKS5With(ctx, proxyAddr, target, nil)
}

// DialSOCKS5Auth is DialSOCKS5 with RFC 1929 username/password.
func DialSOCKS5Auth(ctx context.Context, proxyAddr, target, user, pass string) (*BufConn, error) {
	return DialSOCKS5With(ctx, proxyAddr, target, &proxy.Auth{User: user, Password: pass})
}

// DialSOCKS5With is DialSOCKS5 with auth, nil for none.
func DialSOCKS5With(ctx context.Context, proxyAddr, target string, auth *proxy.Auth) (*BufConn, error) {
	d, err := proxy.SOCKS5("tcp", proxyAddr, auth, proxy.Direct)
	if err != nil {
		return nil, err
	}
	wc, ok := d.(interface {
		DialWithConn(ctx context.Context, c net.Conn, network, address string) (net.Addr, error)
	})
	if !ok {
		return nil, fmt.Errorf("x/net/proxy SOCKS5 dialer %T has no DialWithConn", d)
	}
	c, err := DialTCP(ctx, proxyAddr)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	if _, err := wc.DialWithConn(hctx, c, "tcp", target); err != nil {
		c.Close()
		return nil, err
	}
	return NewBufConn(c, nil), nil
}

// DialTCP connects to addr within DialTimeout.
func DialTCP(ctx context.Context, addr string) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: DialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// SOCKS5Request sends a no-auth greeting and a CONNECT request for target
// (an IP address and port) over c and returns the REP byte of the reply.
func SOCKS5Request(c net.Conn, target string) (byte, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return 0, err
	}
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return 0, err
	}
	var greet [2]byte
	if _, err := io.ReadFull(c, greet[:]); err != nil {
		return 0, fmt.Errorf("read greeting reply: %w", err)
	}
	if greet != [2]byte{5, 0} {
		return 0, fmt.Errorf("greeting reply % x, want 05 00", greet)
	}
	req := []byte{5, 1, 0, 1}
	if ap.Addr().Is6() {
		req[3] = 4
	}
	req = append(req, ap.Addr().AsSlice()...)
	req = binary.BigEndian.AppendUint16(req, ap.Port())
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	// VER REP RSV ATYP, then an address whose length ATYP gives, and a port.
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return 0, fmt.Errorf("read reply: %w", err)
	}
	if hdr[0] != 5 {
		return 0, fmt.Errorf("reply version %#x, want 0x05", hdr[0])
	}
	n := 4
	if hdr[3] == 4 {
		n = 16
	}
	if _, err := io.ReadFull(c, make([]byte, n+2)); err != nil {
		return 0, fmt.Errorf("read reply address: %w", err)
	}
	return hdr[1], nil
}

// SOCKS4Request sends a SOCKS4 CONNECT for an IPv4 target and returns CD.
func SOCKS4Request(c net.Conn, target string) (byte, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil {
		return 0, err
	}
	req := []byte{4, 1}
	req = binary.BigEndian.AppendUint16(req, ap.Port())
	req = append(req, ap.Addr().AsSlice()...)
	req = append(req, 'e', '2', 'e', 0)
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	var rep [8]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return 0, fmt.Errorf("read reply: %w", err)
	}
	return rep[1], nil
}

// EchoCheck writes a message over c and fails t unless the same bytes
// come back.
func EchoCheck(t testing.TB, c net.Conn) {
	t.Helper()
	msg := []byte("hello through ferry")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %q, want %q", got, msg)
	}
}
