package server

import (
	"errors"
	"net"
	"net/netip"

	"ferry/config"
	"ferry/proxyproto"
	"ferry/relay/upstream"
)

// PROXY protocol modes of a listener.
const (
	ppOff = iota
	ppOptional
	ppRequired
)

func proxyMode(s string) int {
	switch s {
	case "optional":
		return ppOptional
	case "required":
		return ppRequired
	}
	return ppOff
}

func prefixes(cs []config.CIDR) []netip.Prefix {
	out := make([]netip.Prefix, len(cs))
	for i, c := range cs {
		out[i] = c.Prefix()
	}
	return out
}

// trusts reports whether addr may send a PROXY header.
func (l *frontend) trusts(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := ta.AddrPort().Addr().Unmap()
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// readProxyHeader reads the PROXY header a load balancer sends before the
// client's bytes, within the handshake deadline, and reports whether the
// connection may go on. Only peers in trusted_proxies may send one, since
// the header names the client and would otherwise let anyone forge it:
//
//   - required: the peer must be trusted and must send a header;
//   - optional: a trusted peer may send one or not; an untrusted peer is
//     served as a direct client, but refused if it sends a header.
//
// "optional" guesses from the first bytes, which the spec advises against:
// prefer "required" where every connection comes through the balancer.
func (h *conn) readProxyHeader() bool {
	trusted := h.l.trusts(h.peer)
	if !trusted && h.l.proxyMode == ppRequired {
		h.proxyRefused("peer not in trusted_proxies", nil)
		return false
	}
	hdr, err := proxyproto.Read(h.br, proxyproto.ReadOptions{})
	switch {
	case errors.Is(err, proxyproto.ErrNoHeader):
		if h.l.proxyMode == ppRequired {
			h.proxyRefused("no PROXY header (proxy_protocol = \"required\")", nil)
			return false
		}
		return true
	case err != nil:
		h.proxyRefused("bad PROXY header", err)
		return false
	case !trusted:
		h.proxyRefused("PROXY header from a peer not in trusted_proxies", nil)
		return false
	}
	h.proxyHeader = hdr
	// LOCAL (health checks) and UNKNOWN carry no client: the connection's
	// own endpoints stand, as the spec says.
	if hdr.Command == proxyproto.Proxy && hdr.Source != nil {
		h.client = hdr.Source
	}
	return true
}

func (h *conn) proxyRefused(why string, err error) {
	h.l.srv.obs.Handshake("proxy_protocol", "rejected")
	ev := h.l.log.Warn().Str("peer", h.peer.String())
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Msg("connection refused: " + why)
}

// sendProxyHeader writes the PROXY header a tcp listener's target expects,
// before any payload, with the TLVs pass_tlvs names.
func (h *conn) sendProxyHeader(up net.Conn) error {
	if h.l.sendProxy == 0 {
		return nil
	}
	return upstream.WriteProxyHeader(up, h.clientHeader(), h.l.sendProxy, h.l.passTLVs)
}

// clientHeader is the PROXY header ferry sends onward for this connection:
// the original client (from the balancer's header when one came) and the
// address it connected to, with every TLV the balancer sent (the sender
// keeps those it is told to pass).
func (h *conn) clientHeader() *proxyproto.Header {
	hdr := &proxyproto.Header{
		Command:     proxyproto.Proxy,
		Source:      h.client,
		Destination: h.c.LocalAddr(),
	}
	if in := h.proxyHeader; in != nil {
		if in.Destination != nil && in.Command == proxyproto.Proxy {
			hdr.Destination = in.Destination
		}
		hdr.TLVs = in.TLVs
	}
	return hdr
}
