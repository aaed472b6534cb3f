package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"ferry/plugins"
)

// SOCKS5 UDP ASSOCIATE (RFC 1928 §7). The client asks on its TCP control
// connection; ferry opens one UDP relay socket for the association and
// answers with its address. Each datagram the client sends there carries
// a header naming its destination; ferry checks the destination (once,
// then from a table), strips the header and sends the payload on. What
// comes back from a destination it sent to gets a header naming the
// source and goes to the client. The association ends when the control
// connection closes, after idle_timeout without a datagram either way,
// or at shutdown.
//
// One plugins.Session stands for the association: Protocol "socks5-udp",
// Target the address the client declared it sends from (often
// "0.0.0.0:0"). It goes through OnConnect once, so connlimit and
// ratelimit count associations; each destination is then decided by the
// DestinationCheckers (acl), ferry's own refusals (its listeners and
// admin service, the proxy host from a listener bound beyond loopback)
// and the routes. The data hooks (OnRead, OnWrite) see no datagrams:
// they are written for byte streams and may split, hold or rewrite bytes
// across calls, which datagrams cannot survive.

const socks5CmdUDPAssociate = 0x03

// serveSOCKS5UDP serves a UDP ASSOCIATE request whose DST.ADDR:DST.PORT
// is declared: the address the client will send datagrams from.
func (h *conn) serveSOCKS5UDP(declared string) {
	if !h.l.cfg.UDPEnabled() {
		h.socks5Reply(socks5RepCmdNotSupported, nil)
		h.l.log.Debug().Str("client", h.c.RemoteAddr().String()).Msg("socks5: UDP ASSOCIATE is off on this listener (socks5_udp = false)")
		return
	}
	s := h.newSession(plugins.ProtocolSOCKS5UDP, declared)
	st := &plugins.Stats{Start: h.start}
	ctx := h.l.srv.hardCtx
	a, err := h.associate(ctx, s)
	h.l.srv.obs.Handshake(s.Protocol, handshakeOutcome(err))
	if err != nil {
		h.socks5Reply(udpFailReply(err), nil)
		st.Reason, st.Err = reasonFor(err), err
		if errors.As(err, new(*noUDPError)) {
			st.Reason = plugins.ReasonRejected
		}
		h.l.finish(s, st)
		return
	}
	defer a.close()
	if err := h.socks5Reply(0x00, a.advertised()); err != nil {
		st.Reason, st.Err = plugins.ReasonClientClosed, fmt.Errorf("reply to client: %w", err)
		h.l.finish(s, st)
		return
	}
	h.c.SetDeadline(time.Time{})
	h.releaseReader()
	h.l.srv.track(s, a) // listed on the admin API's /channels, closable there
	a.run(ctx, h.c)
	h.l.srv.untrack(s.ID)
	a.stats(st)
	h.l.finish(s, st)
}

// udpFailReply is the SOCKS5 reply to an association refused with err. An
// upstream that cannot carry UDP (an HTTP proxy, a chain) is 0x07, command
// not supported: the command is what cannot be served on that path, and
// a client that sees 0x07 knows to fall back to TCP, where 0x01 would
// read as a passing failure worth retrying.
func udpFailReply(err error) byte {
	var ne *noUDPError
	if errors.As(err, &ne) {
		return socks5RepCmdNotSupported
	}
	return failCode(err).SOCKS5Reply()
}

// noUDPError is an association refused because its upstream cannot carry
// datagrams.
type noUDPError struct{ err error }

func (e *noUDPError) Error() string { return "udp associate: " + e.err.Error() }
func (e *noUDPError) Unwrap() error { return e.err }

// associate admits the association (OnConnect hooks, the upstream) and
// opens its relay socket.
func (h *conn) associate(ctx context.Context, s *plugins.Session) (*association, error) {
	if h.l.srv.drainCtx.Err() != nil {
		return nil, errShuttingDown
	}
	s.Upstream = ""
	if err := h.l.chain.Connect(ctx, s); err != nil {
		return nil, err
	}
	a := &association{l: h.l, s: s, fixed: s.Upstream}
	if a.fixed == "" {
		// No plugin chose: each destination takes its route. A route that
		// sends the declared address (every destination, for a route
		// without destination conditions) to an upstream without UDP
		// refuses the association now, with a clear answer, rather than
		// dropping every datagram later.
		name, _, err := a.route(ctx, routeTarget(s.Target))
		if err != nil {
			return nil, err
		}
		s.Upstream = name
	}
	if _, err := h.l.gen.ups.UDP(s.Upstream); err != nil {
		h.l.log.Info().Str("id", s.ID).Str("client", h.client.String()).Str("upstream", s.Upstream).Err(err).
			Msg("socks5: UDP ASSOCIATE refused: its upstream cannot carry datagrams")
		return nil, &noUDPError{err: err}
	}
	if err := a.open(h); err != nil {
		return nil, err
	}
	return a, nil
}

// routeTarget is the declared address as the routes see it at
// admission: a name (PySocks declares "0") becomes the unspecified
// address, so that no route resolves it.
func routeTarget(declared string) string {
	host, port, err := net.SplitHostPort(declared)
	if err != nil {
		return "0.0.0.0:0"
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return net.JoinHostPort("0.0.0.0", port)
	}
	return declared
}

// clientFilter works out which source address the relay accepts
// datagrams from (RFC 1928 §7: the client's, the one it declared or, for
// zeros, the control connection's peer). A declared IP other than the
// peer's is not trusted (it would let a client aim replies at another
// host); a client behind NAT declares its own inside address, so the
// peer's IP is taken then, with any port. A declared port 0 accepts any
// port of that IP until the first datagram fixes it.
func clientFilter(declared string, peer net.Addr) (ip netip.Addr, port uint16) {
	pa, _ := peer.(*net.TCPAddr)
	if pa == nil {
		return netip.Addr{}, 0
	}
	ip = pa.AddrPort().Addr().Unmap()
	host, portStr, err := net.SplitHostPort(declared)
	if err != nil {
		return ip, 0
	}
	p, _ := strconv.ParseUint(portStr, 10, 16)
	d, err := netip.ParseAddr(host)
	if err != nil {
		// A name (PySocks sends "0"): RFC 1928 gives it no meaning as an
		// address, but the port is still the client's.
		return ip, uint16(p)
	}
	if d = d.Unmap(); !d.IsUnspecified() && d != ip {
		return ip, 0
	}
	return ip, uint16(p)
}
