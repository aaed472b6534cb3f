//go:build linux

package test

import (
	"context"

	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2cConfig is a config maker for startFerry: one JSON-logging listener
// "e2e" with h2c on, the plugin chain given (the log plugin always last)
// and extra listener keys; tables are the other [[plugin]] tables.
func h2cConfig(keys string, chain []string, tables string) func(addr string) string {
	return func(addr string) string {
		return fmt.Sprintf(`[log]
level = "debug"
format = "json"

[[listener]]
name = "e2e"
listen = %q
protocols = ["http", "socks5"]
h2c = true
plugins = [%s]
%s

[[plugin]]
name = "log"

%s`, addr, quoteList(append(chain, "log")), keys, tables)
	}
}

// dialH2C opens one HTTP/2 connection with prior knowledge to addr.
func dialH2C(t testing.TB, addr string) *http2.ClientConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return newH2Client(t, c)
}

// newH2Client runs an HTTP/2 client connection over c (plaintext or TLS
// with h2 negotiated). Its window per stream is x/net's default (4 MiB).
func newH2Client(t testing.TB, c net.Conn) *http2.ClientConn {
	t.Helper()
	tr := &http2.Transport{AllowHTTP: true, ReadIdleTimeout: 0}
	cc, err := tr.NewClientConn(c)
	if err != nil {
		c.Close()
		t.Fatalf("http2 client connection: %v", err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// h2Tunnel is a CONNECT stream as a net.Conn: writes go into the request
// body, reads come from the response body.
type h2Tunnel struct {
	pw   *io.PipeWriter
	resp *http.Response
}

// h2Connect opens a CONNECT stream to target over cc with the extra
// request header hdr (may be nil). A non-2xx answer returns the response
// (body readable) and no tunnel.
func h2Connect(ctx context.Context, cc *http2.ClientConn, target string, hdr http.Header) (*h2Tunnel, *http.Response, error) {
	pr, pw := io.Pipe()
	if hdr == nil {
		hdr = http.Header{}
	}
	req := (&http.Request{
		Method: http.MethodConnect, URL: &url.URL{Host: target}, Host: target,
		Header: hdr, Body: pr, ContentLength: -1,
	}).WithContext(ctx)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		pw.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		pw.Close()
		return nil, resp, nil
	}
	return &h2Tunnel{pw: pw, resp: resp}, resp, nil
}

// mustH2Connect is h2Connect that fails t unless the tunnel opens.
func mustH2Connect(t testing.TB, ctx context.Context, cc *http2.ClientConn, target string) *h2Tunnel {
	t.Helper()
	tun, resp, err := h2Connect(ctx, cc, target, nil)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	if tun == nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		t.Fatalf("CONNECT %s: got %s %q, want 200", target, resp.Status, b)
	}
	return tun
}

func (c *h2Tunnel) Read(p []byte) (int, error)  { return c.resp.Body.Read(p) }
func (c *h2Tunnel) Write(p []byte) (int, error) { return c.pw.Write(p) }

// CloseWrite sends END_STREAM.
func (c *h2Tunnel) CloseWrite() error { return c.pw.Close() }

func (c *h2Tunnel) Close() error {
	c.pw.CloseWithError(net.ErrClosed)
	return c.resp.Body.Close()
}

func (c *h2Tunnel) LocalAddr() net.Addr              { return nil }
func (c *h2Tunnel) RemoteAddr() net.Addr             { return nil }
func (c *h2Tunnel) SetDeadline(time.Time) error      { return nil }
func (c *h2Tunnel) SetReadDeadline(time.Time) error  { return nil }
func (c *h2Tunnel) SetWriteDeadline(time.Time) error { return nil }

// h2Get sends an absolute-URI GET for rawURL over cc, as a browser does
// for http:// URLs through an HTTP/2 proxy.
func h2Get(ctx context.Context, cc *http2.ClientConn, rawURL string, hdr http.Header) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if hdr == nil {
		hdr = http.Header{}
	}
	req := (&http.Request{Method: http.MethodGet, URL: u, Host: u.Host, Header: hdr}).WithContext(ctx)
	return cc.RoundTrip(req)
}

// h2GetBody is h2Get without extra fields that reads the whole answer:
// its status and body.
func h2GetBody(t testing.TB, ctx context.Context, cc *http2.ClientConn, rawURL string) (int, string) {
	t.Helper()
	resp, err := h2Get(ctx, cc, rawURL, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
