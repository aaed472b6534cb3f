package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// h2Pool opens tunnels as CONNECT streams of HTTP/2 connections with
// prior knowledge (-proto h2c): the streams of a run share one
// connection, as a browser's do, and a new connection is opened only
// when the current one takes no more streams (the proxy's
// SETTINGS_MAX_CONCURRENT_STREAMS).
type h2Pool struct {
	mu sync.Mutex
	tr http2.Transport
	cc *http2.ClientConn
}

// h2c opens a tunnel to d.target as a CONNECT stream.
func (d *dialer) h2c() (net.Conn, error) {
	cc, err := d.h2.conn(d.proxy, d.timeout)
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
	return &h2Stream{pw: pw, body: resp.Body}, nil
}

// conn returns a connection that can take another stream, dialing one
// when there is none.
func (p *h2Pool) conn(addr string, timeout time.Duration) (*http2.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cc != nil && p.cc.ReserveNewRequest() {
		return p.cc, nil
	}
	c, err := net.DialTimeout("tcp", addr, timeout)
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

// h2Stream is a CONNECT stream as a net.Conn: writes are the request
// body, reads the response body. Deadlines are not kept: the tool's
// -max-time bounds a run that stalls.
type h2Stream struct {
	pw   *io.PipeWriter
	body io.ReadCloser
}

func (s *h2Stream) Read(p []byte) (int, error)  { return s.body.Read(p) }
func (s *h2Stream) Write(p []byte) (int, error) { return s.pw.Write(p) }

// CloseWrite ends the stream's sending side (END_STREAM).
func (s *h2Stream) CloseWrite() error { return s.pw.Close() }

func (s *h2Stream) Close() error {
	s.pw.CloseWithError(net.ErrClosed)
	return s.body.Close()
}

func (s *h2Stream) LocalAddr() net.Addr              { return nil }
func (s *h2Stream) RemoteAddr() net.Addr             { return nil }
func (s *h2Stream) SetDeadline(time.Time) error      { return nil }
func (s *h2Stream) SetReadDeadline(time.Time) error  { return nil }
func (s *h2Stream) SetWriteDeadline(time.Time) error { return nil }
