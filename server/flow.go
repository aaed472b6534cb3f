package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"

	"ferry/plugins"
	"ferry/plugins/pkg/netx"
)

// flowTunnel serves the HTTP requests inside an intercepted tunnel
// (plugins.Tunnel.HTTP) as flows: ferry is the HTTP server the client
// talks to and the HTTP client of the target, and each request is a
// session of its own (flowproxy.go) whose Parent is the tunnel's id. The
// tunnel's data hooks see its plaintext on the client side (flowClient).
type flowTunnel struct {
	l      *frontend
	tun    *plugins.Session
	scheme string // "https" or "http"
	proto  string // "h2" or "http/1.1"
	client *flowClient
	tr     *http.Transport
	rp     *httputil.ReverseProxy

	mu     sync.Mutex
	first  net.Conn // the interceptor's upstream connection, until dialed
	redial func(context.Context) (net.Conn, error)
	closed bool
	flows  sync.WaitGroup
	// upgradeIdle says an upgraded flow, which owns the tunnel's
	// connection to its end, was ended by ferry's idle watch: the
	// tunnel ended for the same reason, not by the client.
	upgradeIdle atomic.Bool
}

// serveFlows runs an intercepted tunnel as HTTP until the client's
// connection ends, closes t's connections and fills st; the caller ends
// the tunnel's session.
func (h *conn) serveFlows(ctx context.Context, s *plugins.Session, st *plugins.Stats, t *plugins.Tunnel) {
	l := h.l
	ft := &flowTunnel{l: l, tun: s, scheme: t.Scheme, proto: t.HTTP, first: t.Upstream, redial: t.Redial}
	if ft.scheme == "" {
		ft.scheme = "https"
	}
	c := t.Client
	if len(t.ClientPending) > 0 {
		c = &netx.PrefixConn{Conn: c, Prefix: t.ClientPending}
	}
	ft.client = newFlowClient(c, s, l.chain)
	ft.tr = ft.transport()
	ft.rp = ft.reverseProxy()
	s.Request = nil
	l.srv.track(s, ft)
	stopHard := context.AfterFunc(ctx, func() { ft.client.Conn.Close() })
	s.Log.Debug().Str("http", ft.proto).Str("scheme", ft.scheme).Msg("serving intercepted tunnel as HTTP flows")
	if ft.proto == "h2" {
		ft.serveH2()
	} else {
		ft.serveH1()
	}
	stopHard()
	ft.flows.Wait()
	ft.shut()
	l.srv.untrack(s.ID)
	st.Up, st.Down = ft.client.Bytes()
	st.Reason = plugins.ReasonClientClosed
	switch err := ft.client.err(); {
	case ctx.Err() == nil && ft.upgradeIdle.Load():
		st.Reason = plugins.ReasonIdleTimeout
	case err != nil:
		st.Reason, st.Err = reasonFor(err), err
	case ctx.Err() != nil:
		st.Reason = plugins.ReasonShutdown
	}
}

// Close implements liveRelay: /channels closes the tunnel.
func (ft *flowTunnel) Close() { ft.client.Conn.Close() }

// Bytes implements liveRelay.
func (ft *flowTunnel) Bytes() (up, down int64) { return ft.client.Bytes() }

// shut closes the upstream side: the first connection if no flow took
// it, and the transport's idle ones; no dial happens after it.
func (ft *flowTunnel) shut() {
	ft.mu.Lock()
	ft.closed = true
	first := ft.first
	ft.first = nil
	ft.mu.Unlock()
	if first != nil {
		first.Close()
	}
	ft.tr.CloseIdleConnections()
	ft.client.Close()
}

// serveH1 serves HTTP/1.1 (keep-alive, pipelining as net/http does it,
// upgrades) on the client connection until it closes.
func (ft *flowTunnel) serveH1() {
	l := ft.l
	ft.client.writeIdle = l.boundedIdle() // HTTP/2's server has WriteByteTimeout
	done := make(chan struct{})
	var once sync.Once
	srv := &http.Server{
		Handler:           ft,
		ReadHeaderTimeout: l.set.HandshakeTimeout,
		IdleTimeout:       l.set.IdleTimeout,
		MaxHeaderBytes:    int(l.gen.cfg.Limits.MaxHeaderBytes),
		ErrorLog:          log.New(debugWriter{l}, "", 0),
		// No HTTP/2 upgrade here: ALPN already decided the protocol.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnState: func(_ net.Conn, cs http.ConnState) {
			if cs == http.StateClosed || cs == http.StateHijacked {
				once.Do(func() { close(done) })
			}
		},
	}
	stopDrain := context.AfterFunc(l.srv.drainCtx, func() { srv.SetKeepAlivesEnabled(false) })
	defer stopDrain()
	ln := newOneConnListener(ft.client)
	go srv.Serve(ln)
	<-done
	ln.Close()
}

// serveH2 serves HTTP/2 on the client connection, with the listener's
// stream limit and windows (h2.go), until it closes.
func (ft *flowTunnel) serveH2() {
	l := ft.l
	hc := &h2Conn{h: &conn{l: l}, id: ft.tun.ID}
	base, srv := hc.servers()
	stopDrain := context.AfterFunc(l.srv.drainCtx, func() { base.Shutdown(context.Background()) })
	defer stopDrain()
	srv.ServeConn(ft.client, &http2.ServeConnOpts{Context: l.srv.hardCtx, BaseConfig: base, Handler: ft})
}

// transport is the tunnel's HTTP client toward the target: the
// interceptor's connection first, then new ones through Redial when the
// target closed it; HTTP/2 when the target chose it by ALPN.
func (ft *flowTunnel) transport() *http.Transport {
	l := ft.l
	return &http.Transport{
		DialContext:        ft.dial,
		DialTLSContext:     ft.dial,
		ForceAttemptHTTP2:  ft.proto == "h2",
		DisableCompression: true, // the client's Accept-Encoding is its own
		// Connections are keyed by the URL's host, which is the client's
		// Host field: a client cycling through names gets a new
		// connection each, of which at most 4 are kept.
		MaxIdleConns:           4,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        l.set.IdleTimeout,
		ResponseHeaderTimeout:  l.set.IdleTimeout,
		MaxResponseHeaderBytes: int64(l.gen.cfg.Limits.MaxResponseHeaderBytes),
	}
}

// dial hands out the interceptor's upstream connection once, then
// connects again through Redial. The address is the URL's; the
// connection always goes to the tunnel's target, which the plugins
// decided on at CONNECT time.
func (ft *flowTunnel) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	ft.mu.Lock()
	first, redial, closed := ft.first, ft.redial, ft.closed
	ft.first = nil
	ft.mu.Unlock()
	switch {
	case first != nil:
		return first, nil
	case closed:
		return nil, net.ErrClosed
	case redial == nil:
		return nil, errNoRedial
	}
	return redial(ctx)
}

var errNoRedial = errors.New("the target closed the tunnel's connection and no new one can be made")
