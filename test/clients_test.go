package test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/net/proxy"
)

// dialTimeout bounds every dial to ferry and every proxy handshake.
const dialTimeout = 10 * time.Second

// tunnelDialer opens a byte tunnel through ferry to target.
type tunnelDialer func(ctx context.Context, proxyAddr, target string) (*bufConn, error)

// dialCONNECT opens a tunnel with HTTP CONNECT.
func dialCONNECT(ctx context.Context, proxyAddr, target string) (*bufConn, error) {
	c, err := dialTCP(ctx, proxyAddr)
	if err != nil {
		return nil, err
	}
	return connectOver(c, target)
}

// connectOver asks for a CONNECT tunnel to target over c, a connection to
// ferry, and closes c if it is refused.
func connectOver(c *net.TCPConn, target string) (*bufConn, error) {
	c.SetDeadline(time.Now().Add(dialTimeout))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
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
	return &bufConn{TCPConn: c, r: br}, nil
}

// dialSOCKS5 opens a tunnel with golang.org/x/net/proxy's SOCKS5 client,
// run over a connection the test owns so that CloseWrite stays available.
func dialSOCKS5(ctx context.Context, proxyAddr, target string) (*bufConn, error) {
	return dialSOCKS5With(ctx, proxyAddr, target, nil)
}

// dialSOCKS5Auth is dialSOCKS5 with RFC 1929 username/password.
func dialSOCKS5Auth(ctx context.Context, proxyAddr, target, user, pass string) (*bufConn, error) {
	return dialSOCKS5With(ctx, proxyAddr, target, &proxy.Auth{User: user, Password: pass})
}

func dialSOCKS5With(ctx context.Context, proxyAddr, target string, auth *proxy.Auth) (*bufConn, error) {
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
	c, err := dialTCP(ctx, proxyAddr)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if _, err := wc.DialWithConn(hctx, c, "tcp", target); err != nil {
		c.Close()
		return nil, err
	}
	return &bufConn{TCPConn: c, r: bufio.NewReader(c)}, nil
}

func dialTCP(ctx context.Context, addr string) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// socks5Request sends a no-auth greeting and a CONNECT request for target
// (an IP address and port) over c and returns the REP byte of the reply.
func socks5Request(c net.Conn, target string) (byte, error) {
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

// socks4Request sends a SOCKS4 CONNECT for an IPv4 target and returns CD.
func socks4Request(c net.Conn, target string) (byte, error) {
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
