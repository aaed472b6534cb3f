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
	"syscall"
	"time"

	"golang.org/x/sys/unix"

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

	var head []byte
	var rest []byte // bytes read past the head (only when peeking is impossible)
	var err error
	if rc, ok := conn.(syscall.Conn); ok && d.tls == nil {
		head, err = readHeadExact(rc)
	} else {
		head, rest, err = readHeadBuffered(conn)
	}
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

// readHeadExact reads an HTTP response head from a socket without
// consuming a byte past it: it peeks at what has arrived, and reads for
// real only the bytes known to belong to the head.
func readHeadExact(c syscall.Conn) ([]byte, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	head := make([]byte, 0, 512)
	buf := make([]byte, 4096)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK)
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, io.ErrUnexpectedEOF
		}
		// The head ends in what was peeked, or all of it belongs to the
		// head: take it and wait for more.
		take := n
		joined := append(head[max(0, len(head)-3):len(head):len(head)], buf[:n]...)
		if i := bytes.Index(joined, headEnd); i >= 0 {
			take = i + len(headEnd) - min(3, len(head))
		}
		if len(head)+take > maxResponseHead {
			return nil, fmt.Errorf("response head over %d bytes", maxResponseHead)
		}
		m, err := readFull(rc, buf[:take])
		head = append(head, buf[:m]...)
		if err != nil {
			return nil, err
		}
		if take < n || bytes.HasSuffix(head, headEnd) {
			return head, nil
		}
	}
}

// readFull reads exactly len(b) bytes the peek saw, through the poller
// (so deadlines hold).
func readFull(rc syscall.RawConn, b []byte) (int, error) {
	got := 0
	for got < len(b) {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), b[got:])
			return rerr != unix.EAGAIN
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			return got, err
		}
		if n == 0 {
			return got, io.ErrUnexpectedEOF
		}
		got += n
	}
	return got, nil
}

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
