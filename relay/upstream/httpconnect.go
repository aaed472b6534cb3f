package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"ferry/plugins"
	"ferry/plugins/pkg/netx"
)

// HTTPConnect returns a dialer that reaches targets through the HTTP proxy
// at addr with CONNECT, connecting to the proxy through forward. With
// tlsConfig set it speaks TLS to the proxy first (an https:// upstream).
// A user sends Proxy-Authorization Basic. name identifies the upstream in
// errors and in DialInfo.Path.
//
// On a plain TCP connection the response head is read without reading
// past it (a peek, then an exact read), so bytes the target sends at once
// (an SMTP or SSH greeting) stay in the socket and the connection handed
// back is the raw *net.TCPConn: the relay keeps its zero-copy path.
func HTTPConnect(name, addr, user, password string, tlsConfig *tls.Config, forward Dialer) Dialer {
	d := &httpConnectDialer{name: name, addr: addr, tls: tlsConfig, forward: forward}
	if user != "" || password != "" {
		d.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	}
	return d
}

type httpConnectDialer struct {
	name, addr string
	auth       string
	tls        *tls.Config
	forward    Dialer
}

// maxResponseHead bounds the proxy's answer to CONNECT.
const maxResponseHead = 16 << 10

func (d *httpConnectDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("upstream %s: network %s: CONNECT carries tcp only", d.name, network)
	}
	c, err := d.forward.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, forwardError(d.name, err)
	}
	conn, err := d.handshake(ctx, c, address)
	if err != nil {
		c.Close()
		return nil, err
	}
	dialInfoFrom(ctx).addHop(d.name)
	return conn, nil
}

func (d *httpConnectDialer) handshake(ctx context.Context, c net.Conn, target string) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// A cancelled dial ends the handshake at once. The deadline is cleared
	// after the callback is stopped or has run, never before it.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
		c.SetDeadline(time.Time{})
	}()

	conn := c
	if d.tls != nil {
		tc := tls.Client(c, d.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, handshakeError(d.name, ctx, fmt.Errorf("TLS: %w", err))
		}
		conn = tc
	}
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if d.auth != "" {
		req += "Proxy-Authorization: " + d.auth + "\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return nil, handshakeError(d.name, ctx, fmt.Errorf("send CONNECT: %w", err))
	}

	// rest: bytes read past the head (only when peeking is impossible)
	head, rest, err := readHead(conn, d.tls == nil)
	if err != nil {
		return nil, handshakeError(d.name, ctx, fmt.Errorf("read CONNECT response: %w", err))
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), nil)
	if err != nil {
		return nil, handshakeError(d.name, ctx, fmt.Errorf("read CONNECT response: %w", err))
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, d.statusError(resp)
	}
	if len(rest) > 0 {
		return &netx.PrefixConn{Conn: conn, Prefix: rest}, nil
	}
	return conn, nil
}

// statusError maps a CONNECT refusal to what ferry's client is told.
func (d *httpConnectDialer) statusError(resp *http.Response) error {
	err := fmt.Errorf("CONNECT answered %q", resp.Status)
	switch resp.StatusCode {
	case http.StatusProxyAuthRequired:
		if d.auth == "" {
			err = fmt.Errorf("%w: the proxy wants credentials: put user:password in its url", err)
		}
		return &Error{Upstream: d.name, Stage: StageAuth, Code: plugins.CodeGeneral, Err: err}
	case http.StatusForbidden:
		return &Error{Upstream: d.name, Stage: StageTarget, Code: plugins.CodeForbidden, Err: err}
	case http.StatusGatewayTimeout:
		return &Error{Upstream: d.name, Stage: StageTarget, Code: plugins.CodeTimeout, Err: err}
	}
	return &Error{Upstream: d.name, Stage: StageTarget, Code: plugins.CodeGeneral, Err: err}
}

var headEnd = []byte("\r\n\r\n")

// readHeadBuffered reads a response head from a connection that cannot be
// peeked (TLS), returning what came after it too.
func readHeadBuffered(c net.Conn) (head, rest []byte, err error) {
	buf := make([]byte, 0, 1024)
	tmp := make([]byte, 1024)
	for {
		n, err := c.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if i := bytes.Index(buf, headEnd); i >= 0 {
			end := i + len(headEnd)
			return buf[:end], buf[end:], nil
		}
		if len(buf) > maxResponseHead {
			return nil, nil, fmt.Errorf("response head over %d bytes", maxResponseHead)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
	}
}
