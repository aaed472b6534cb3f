package server

import (
	"context"
	"net"

	"ferry/plugins"
)

// intercept hands a tunnel's connections to the chain's Interceptors,
// if it has any, and returns what the channel is to carry. On error every
// connection is closed.
func (h *conn) intercept(ctx context.Context, s *plugins.Session, client, up net.Conn, pending []byte) (*plugins.Tunnel, error) {
	t := &plugins.Tunnel{Client: client, Upstream: up, ClientPending: pending}
	if !h.l.chain.HasInterceptors() {
		return t, nil
	}
	t.Redial = h.redialer(s)
	if err := h.l.chain.Intercept(ctx, s, t); err != nil {
		t.Client.Close()
		t.Upstream.Close()
		up.Close()
		return nil, err
	}
	return t, nil
}

// redialer connects to a tunnel's target again as the tunnel's own dial
// did (routes, upstreams, dial checks, PROXY header), for HTTP flows
// that outlive the target's first connection.
func (h *conn) redialer(s *plugins.Session) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		c, info, err := h.dialTarget(ctx, s, false)
		if err != nil {
			return nil, err
		}
		if err := h.sendProxyHeader(c); err != nil {
			c.Close()
			info.Release()
			return nil, err
		}
		return newUpstreamConn(c, info, h.l.set.IdleTimeout), nil
	}
}
