package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"ferry/config"
	"ferry/plugins"
	"ferry/plugins/pkg/match"
	"ferry/relay/upstream"
)

// SOCKS5 BIND (RFC 1928 section 4), for protocols such as FTP's active
// mode where the client's peer connects back: ferry opens a port, tells
// the client where (first reply), accepts one connection, tells the
// client who connected (second reply) and relays as for CONNECT.
//
// Choices the RFC leaves open:
//   - DST.ADDR names the peer expected to connect. An IP address (or a
//     name, resolved once) admits connections from that address only, on
//     any port (an FTP server connects from port 20 or any other);
//     0.0.0.0 or :: admits any peer. DST.PORT is not checked.
//   - A connection from another address is closed at once and the port
//     stays open for the expected peer until the timeout: an unrelated
//     scanner must not be able to end the client's BIND.
//   - The session (protocol "socks5-bind") goes through OnConnect and the
//     routes with the expected peer as its target before any port opens,
//     so acl and connlimit apply. A route to a parent proxy is refused
//     (0x07): ferry does not relay BIND through a parent.
//   - Once the peer connects, the session's target becomes the peer's
//     address, so the access line names who connected.

// bindMaxStrays bounds the connections from unexpected addresses one BIND
// closes before it gives up.
const bindMaxStrays = 1000

// errBindUpstream refuses a BIND whose route names a parent proxy.
var errBindUpstream = errors.New("BIND is served direct only")

// serveSOCKS5Bind serves a BIND request for target, DST.ADDR:DST.PORT.
func (h *conn) serveSOCKS5Bind(target string) {
	s := h.newSession("socks5-bind", target)
	st := &plugins.Stats{Start: h.start}
	ctx := h.l.srv.hardCtx
	ln, allow, err := h.bindOpen(ctx, s)
	if err == nil {
		err = h.socks5Reply(0x00, ln.Addr())
		if err != nil {
			ln.Close()
			err = &clientError{err: fmt.Errorf("first reply: %w", err)}
		}
	}
	if err != nil {
		h.bindFailed(s, st, err)
		return
	}
	peer, err := h.bindAccept(ctx, s, ln, allow)
	if err != nil {
		h.bindFailed(s, st, err)
		return
	}
	s.Target = peer.RemoteAddr().String()
	s.UpstreamAddr = peer.RemoteAddr()
	if err := h.socks5Reply(0x00, peer.RemoteAddr()); err != nil {
		peer.Close()
		h.bindFailed(s, st, &clientError{err: fmt.Errorf("second reply: %w", err)})
		return
	}
	h.l.srv.obs.Handshake(s.Protocol, "ok")
	h.startChannel(ctx, s, st, peer, &upstream.DialInfo{})
}

// bindFailed answers a BIND that ended before its tunnel and accounts
// for it.
func (h *conn) bindFailed(s *plugins.Session, st *plugins.Stats, err error) {
	var ce *clientError
	switch {
	case errors.As(err, &ce):
		st.Reason = plugins.ReasonClientClosed
	case errors.Is(err, errBindUpstream):
		h.socks5Reply(socks5RepCmdNotSupported, nil)
		st.Reason = plugins.ReasonRejected
		s.Log.Warn().Str("upstream", s.Upstream).Str("client", h.client.String()).
			Msg("socks5 bind refused: the route names a parent proxy, and BIND is served direct only")
	default:
		h.socks5Reply(failCode(err).SOCKS5Reply(), nil)
		st.Reason = reasonFor(err)
	}
	h.l.srv.obs.Handshake(s.Protocol, handshakeOutcome(err))
	st.Err = err
	h.l.finish(s, st)
}

// bindOpen admits the session, works out which peers may connect and
// opens the listening socket on the local address of the client's
// connection.
func (h *conn) bindOpen(ctx context.Context, s *plugins.Session) (*net.TCPListener, []netip.Addr, error) {
	if h.l.srv.drainCtx.Err() != nil {
		return nil, nil, errShuttingDown
	}
	if err := h.admit(ctx, s); err != nil {
		return nil, nil, err
	}
	if upstreamName(s) != config.Direct {
		return nil, nil, errBindUpstream
	}
	allow, err := h.bindPeers(ctx, s.Target)
	if err != nil {
		return nil, nil, err
	}
	local, _ := h.c.LocalAddr().(*net.TCPAddr)
	if local == nil {
		return nil, nil, errors.New("bind: control connection has no TCP address")
	}
	// A v4 client of a dual-stack socket arrives on a v4-mapped address:
	// listen, and reply, on the IPv4 address it names.
	ln, err := listenBindPort(ctx, local.AddrPort().Addr().Unmap(), h.l.cfg.Socks5BindPorts)
	if err != nil {
		return nil, nil, &dialError{target: s.Target, code: plugins.CodeGeneral, err: err}
	}
	return ln, allow, nil
}

// bindPeers returns the addresses a BIND admits connections from: none
// (any peer) for an unspecified DST.ADDR, else DST.ADDR's, a name
// resolved within dial_timeout.
func (h *conn) bindPeers(ctx context.Context, target string) ([]netip.Addr, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.IsUnspecified() {
			return nil, nil
		}
		return []netip.Addr{a.Unmap()}, nil
	}
	rctx, cancel := context.WithTimeout(ctx, h.l.set.DialTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return nil, &dialError{target: target, code: plugins.CodeHostUnreachable, err: fmt.Errorf("resolve expected peer: %w", err)}
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

// listenBindPort listens on ip, on a free port of ports (any port when
// nil), trying each port of the range once from a random start.
func listenBindPort(ctx context.Context, ip netip.Addr, ports *match.PortRange) (*net.TCPListener, error) {
	var lc net.ListenConfig
	if ports == nil {
		ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ip, 0).String())
		if err != nil {
			return nil, fmt.Errorf("bind: listen on %s: %w", ip, err)
		}
		return ln.(*net.TCPListener), nil
	}
	n := int(ports.Hi) - int(ports.Lo) + 1
	start := rand.IntN(n)
	var last error
	for i := range n {
		port := uint16(int(ports.Lo) + (start+i)%n)
		ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ip, port).String())
		if err == nil {
			return ln.(*net.TCPListener), nil
		}
		last = err
	}
	return nil, fmt.Errorf("bind: no free port in %s on %s: %w", ports, ip, last)
}

// bindAccept waits, within socks5_bind_timeout, for the one connection
// from an admitted peer, while watching the client's connection: a client
// that leaves closes the port, and so do a shutdown and the timeout. The
// listener is closed when it returns.
func (h *conn) bindAccept(ctx context.Context, s *plugins.Session, ln *net.TCPListener, allow []netip.Addr) (*net.TCPConn, error) {
	defer ln.Close()
	timeout := h.l.cfg.BindTimeout()
	ln.SetDeadline(time.Now().Add(timeout))
	// The client waits for the second reply: no handshake deadline.
	h.c.SetDeadline(time.Time{})
	watch := make(chan error, 1)
	go func() {
		// Bytes the client sends early stay buffered for the tunnel; an
		// end of its connection ends the wait.
		_, err := h.br.Peek(1)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			ln.Close()
		}
		watch <- err
	}()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	stopDrain := context.AfterFunc(h.l.srv.drainCtx, func() { ln.Close() })
	defer stopDrain()
	peer, err := acceptAllowed(ln, s, h, allow)
	// End the watcher's read: the buffer is the tunnel's from here.
	h.c.SetReadDeadline(time.Unix(1, 0))
	werr := <-watch
	h.c.SetReadDeadline(time.Time{})
	if werr != nil && !errors.Is(werr, os.ErrDeadlineExceeded) {
		if peer != nil {
			peer.Close()
		}
		return nil, &clientError{err: fmt.Errorf("left during bind: %w", werr)}
	}
	switch {
	case err == nil:
		return peer, nil
	case ctx.Err() != nil || h.l.srv.drainCtx.Err() != nil:
		return nil, errShuttingDown
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, &dialError{target: s.Target, code: plugins.CodeTimeout,
			err: fmt.Errorf("bind: no connection within %v on %s", timeout, ln.Addr())}
	}
	return nil, &dialError{target: s.Target, code: plugins.CodeGeneral, err: err}
}

// acceptAllowed accepts until a connection comes from an admitted peer
// (and passes the plugins' dial checks), closing the others.
func acceptAllowed(ln *net.TCPListener, s *plugins.Session, h *conn, allow []netip.Addr) (*net.TCPConn, error) {
	for range bindMaxStrays {
		c, err := ln.AcceptTCP()
		if err != nil {
			return nil, err
		}
		ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		why := ""
		if allow != nil && !slices.Contains(allow, ap.Addr()) {
			why = "not the address the client named"
		} else if h.l.chain.HasDialCheckers() {
			if err := h.l.chain.CheckDial(s, ap); err != nil {
				why = err.Error()
			}
		}
		if why == "" {
			return c, nil
		}
		c.Close()
		s.Log.Debug().Str("from", ap.String()).Str("why", why).Msg("socks5 bind: connection refused")
	}
	return nil, fmt.Errorf("bind: %d connections from unexpected peers", bindMaxStrays)
}
