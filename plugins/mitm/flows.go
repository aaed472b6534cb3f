package mitm

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"time"

	"ferry/plugins"
)

// serveHTTP asks ferry to serve an intercepted tunnel as HTTP flows when
// its protocol is HTTP: h2 or http/1.1 by ALPN, or, without ALPN, a
// first plaintext line that looks like an HTTP/1 request. Other
// protocols (and a client that stays silent) keep the byte relay. New
// connections the flows need get the same TLS as the first.
func (p *Plugin) serveHTTP(s *plugins.Session, t *plugins.Tunnel, name string) {
	alpn := t.Upstream.(*tls.Conn).ConnectionState().NegotiatedProtocol
	switch alpn {
	case "h2", "http/1.1":
	case "":
		if !p.sniffHTTP(t) {
			return
		}
		alpn = "http/1.1"
	default:
		return
	}
	t.HTTP, t.Scheme = alpn, "https"
	if raw := t.Redial; raw != nil {
		t.Redial = func(ctx context.Context) (net.Conn, error) {
			c, err := raw(ctx)
			if err != nil {
				return nil, err
			}
			hctx, cancel := context.WithTimeout(ctx, p.timeout)
			defer cancel()
			tc, err := p.handshakeTarget(hctx, s, c, name, []string{alpn})
			if err != nil {
				c.Close()
				return nil, err // not tc: a nil *tls.Conn is no nil net.Conn
			}
			return tc, nil
		}
	}
}

// sniffHTTP reports whether the client's first bytes in t (read now if
// there are none yet, for at most peekTimeout, and only inside TLS: in
// plaintext peekHello already waited) start an HTTP/1 request:
// a method token of at most 20 letters and a space (RFC 9112 section
// 3). What it reads stays in t.ClientPending.
func (p *Plugin) sniffHTTP(t *plugins.Tunnel) bool {
	if len(t.ClientPending) == 0 {
		// Nothing came within peekTimeout already: a server-first
		// protocol, not HTTP.
		if _, ok := t.Client.(*tls.Conn); !ok {
			return false
		}
	}
	buf := make([]byte, 24)
	deadline := time.Now().Add(peekTimeout)
	for {
		if i := bytes.IndexByte(t.ClientPending, ' '); i >= 0 {
			return i > 0 && isMethod(t.ClientPending[:i])
		}
		if len(t.ClientPending) > 20 || !isMethod(t.ClientPending) {
			return false
		}
		t.Client.SetReadDeadline(deadline)
		n, err := t.Client.Read(buf)
		t.Client.SetReadDeadline(time.Time{})
		t.ClientPending = append(t.ClientPending, buf[:n]...)
		if err != nil && n == 0 {
			return false
		}
	}
}

// isMethod reports whether b is made of the letters methods use (all
// registered methods are upper-case letters and '-').
func isMethod(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && c != '-' {
			return false
		}
	}
	return true
}
