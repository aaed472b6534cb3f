package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2Pool opens tunnels as CONNECT streams of HTTP/2 connections (-proto
// h2): with prior knowledge (h2c), or with -tls-ca over TLS where ALPN
// picks h2. The streams of a run share one connection, as a browser's
// do, and a new connection is opened only when the current one takes no
// more streams (the proxy's SETTINGS_MAX_CONCURRENT_STREAMS).
type h2Pool struct {
	mu sync.Mutex
	tr http2.Transport
	cc *http2.ClientConn
}

// h2Stream opens a tunnel to d.target as a CONNECT stream.
func (d *dialer) h2Stream() (net.Conn, error) {
	cc, err := d.h2.conn(d)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	pr, pw := io.Pipe()
	target := d.target.String()
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Host: target}, Host: target,
		Header: http.Header{}, Body: pr, ContentLength: -1}
	// The context bounds the handshake only: the stream outlives it.
	stop := context.AfterFunc(ctx, func() { pw.CloseWithError(context.DeadlineExceeded) })
	resp, err := cc.RoundTrip(req)
	stop()
	if err != nil {
		pw.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		pw.Close()
		return nil, fmt.Errorf("CONNECT answered %s", resp.Status)
	}
	return &h2Tunnel{pw: pw, body: resp.Body}, nil
}

// conn returns a connection that can take another stream, dialing one
// when there is none.
func (p *h2Pool) conn(d *dialer) (*http2.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cc != nil && p.cc.ReserveNewRequest() {
		return p.cc, nil
	}
	c, err := d.h2Conn()
	if err != nil {
		return nil, err
	}
	p.tr.AllowHTTP = true
	cc, err := p.tr.NewClientConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	if !cc.ReserveNewRequest() {
		cc.Close()
		return nil, fmt.Errorf("new HTTP/2 connection takes no stream")
	}
	p.cc = cc
	return cc, nil
}

// h2Conn dials the proxy for HTTP/2: TLS with ALPN h2 when the dialer
// speaks TLS, else plain TCP.
func (d *dialer) h2Conn() (net.Conn, error) {
	c, err := net.DialTimeout("tcp", d.proxy, d.timeout)
	if err != nil || d.tls == nil {
		return c, err
	}
	cfg := d.tls.Clone()
	cfg.NextProtos = []string{http2.NextProtoTLS}
	tc := tls.Client(c, cfg)
	tc.SetDeadline(time.Now().Add(d.timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("TLS handshake with the proxy: %w", err)
	}
	tc.SetDeadline(time.Time{})
	if p := tc.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
		c.Close()
		return nil, fmt.Errorf("the proxy picked ALPN %q, not h2", p)
	}
	return tc, nil
}

// h2Tunnel is a CONNECT stream as a net.Conn: writes are the request
// body, reads the response body. Deadlines are not kept: the tool's
// -max-time bounds a run that stalls.
type h2Tunnel struct {
	pw   *io.PipeWriter
	body io.ReadCloser
}

func (s *h2Tunnel) Read(p []byte) (int, error)  { return s.body.Read(p) }
func (s *h2Tunnel) Write(p []byte) (int, error) { return s.pw.Write(p) }

// CloseWrite ends the stream's sending side (END_STREAM).
func (s *h2Tunnel) CloseWrite() error { return s.pw.Close() }

func (s *h2Tunnel) Close() error {
	s.pw.CloseWithError(net.ErrClosed)
	return s.body.Close()
}

func (s *h2Tunnel) LocalAddr() net.Addr              { return nil }
func (s *h2Tunnel) RemoteAddr() net.Addr             { return nil }
func (s *h2Tunnel) SetDeadline(time.Time) error      { return nil }
func (s *h2Tunnel) SetReadDeadline(time.Time) error  { return nil }
func (s *h2Tunnel) SetWriteDeadline(time.Time) error { return nil }
