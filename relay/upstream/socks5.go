package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/net/proxy"

	"ferry/plugins"
)

// SOCKS5 returns a dialer that reaches targets through the SOCKS5 proxy at
// addr (RFC 1928, with RFC 1929 username/password when auth is set),
// connecting to the proxy through forward. Target names are sent
// unresolved: the proxy resolves them. name identifies the upstream in
// errors and in DialInfo.Path.
//
// The handshake is x/net/proxy's; the connection handed back is forward's
// own (a *net.TCPConn for a first hop), not x/net's wrapper, so the relay
// keeps its zero-copy path.
func SOCKS5(name, addr string, auth *proxy.Auth, forward Dialer) (Dialer, error) {
	d, err := proxy.SOCKS5("tcp", addr, auth, nil)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", name, err)
	}
	hs, ok := d.(socksHandshaker)
	if !ok {
		return nil, fmt.Errorf("upstream %s: x/net/proxy's SOCKS5 dialer has no DialWithConn", name)
	}
	return &socks5Dialer{name: name, addr: addr, forward: forward, hs: hs}, nil
}

// socksHandshaker is the part of x/net's socks.Dialer used: the handshake
// on a connection made by someone else.
type socksHandshaker interface {
	DialWithConn(ctx context.Context, c net.Conn, network, address string) (net.Addr, error)
}

type socks5Dialer struct {
	name, addr string
	forward    Dialer
	hs         socksHandshaker
}

func (d *socks5Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.forward.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, forwardError(d.name, err)
	}
	if _, err := d.hs.DialWithConn(ctx, c, network, address); err != nil {
		c.Close()
		return nil, d.classify(ctx, err)
	}
	dialInfoFrom(ctx).addHop(d.name)
	return c, nil
}

// socksReplies are x/net's texts of RFC 1928 reply codes (its errors carry
// no code), with what each tells ferry's client. Tests against real
// proxies pin them.
var socksReplies = []struct {
	text string
	code plugins.Code
}{
	{"general SOCKS server failure", plugins.CodeGeneral},
	{"connection not allowed by ruleset", plugins.CodeForbidden},
	{"network unreachable", plugins.CodeNetUnreachable},
	{"host unreachable", plugins.CodeHostUnreachable},
	{"connection refused", plugins.CodeConnRefused},
	{"TTL expired", plugins.CodeTimeout},
	{"command not supported", plugins.CodeGeneral},
	{"address type not supported", plugins.CodeGeneral},
}

func (d *socks5Dialer) classify(ctx context.Context, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "username/password authentication failed"),
		strings.Contains(msg, "no acceptable authentication methods"):
		return &Error{Upstream: d.name, Stage: StageAuth, Code: plugins.CodeGeneral, Err: unwrapOp(err)}
	case strings.Contains(msg, "unknown error "):
		for _, r := range socksReplies {
			if strings.HasSuffix(msg, "unknown error "+r.text) {
				return &Error{Upstream: d.name, Stage: StageTarget, Code: r.code,
					Err: fmt.Errorf("SOCKS5 reply: %s", r.text)}
			}
		}
	}
	return handshakeError(d.name, ctx, unwrapOp(err))
}

// unwrapOp drops x/net's net.OpError around a handshake error, whose text
// repeats addresses the Error already gives.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
