// Package upstream reaches a session's target: directly, through a SOCKS5
// or HTTP(S) CONNECT parent, through chains of them (via), or through a
// group that picks among several and skips those whose health checks or
// dials failed. Build makes one configuration's upstreams, routes and
// health checks from config; every dialer is golang.org/x/net/proxy's
// ContextDialer, so the kinds nest freely.
//
//	t, err := upstream.Build(cfg, log)
//	t.Start() // health checks, until t.Stop()
//	name, pinned, err := t.Route(ctx, session, dialTimeout)
//	n, _ := t.Node(name)
//	info := &upstream.DialInfo{Pinned: pinned, PinnedHost: host}
//	c, err := n.DialContext(upstream.WithDialInfo(ctx, info), "tcp", session.Target)
//	if err != nil {
//		return upstream.DialCode(err), err // what the client is told
//	}
//	defer info.Release() // when the connection ends
//	session.UpstreamPath = info.Path() // "corp>edge", empty for direct
//
// A failed dial through a parent is an *Error naming the upstream, the
// stage it failed at and the client's code. The connection handed back
// is the socket itself wherever the handshake allows, so the relay keeps
// its splice path.
//
// The package does not copy bytes (relay does), does not run plugin
// hooks or answer clients (server does), and does not parse config
// files: it takes a loaded *config.Config.
package upstream
