package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"time"

	"ferry/config"
	"ferry/plugins"
)

// UDPParent is a socks5:// upstream that SOCKS5 UDP associations can go
// through: ferry opens an association of its own at the parent (the
// client side of RFC 1928 §7, with the RFC 1929 login when the URL has
// credentials) and relays its client's datagrams to the parent's relay.
// x/net/proxy has no UDP, hence this small client.
type UDPParent struct {
	Name       string
	addr       string
	user, pass string
	auth       bool
}

// UDPAssociation is an open association at a parent. Control must stay
// open while Relay is used: the parent ends the association with it.
type UDPAssociation struct {
	Control net.Conn
	// Relay is where datagrams go, with their SOCKS5 UDP header. A parent
	// that answered the unspecified address means the address ferry
	// reached it at (the control connection's), which Relay holds then.
	Relay netip.AddrPort
}

// Associate opens an association at the parent for datagrams that will
// come from the address from (the unspecified address with a port means
// "the address you see", RFC 1928 §7). ctx bounds the dial and the
// handshake.
func (p *UDPParent) Associate(ctx context.Context, from netip.AddrPort) (*UDPAssociation, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, &Error{Upstream: p.Name, Stage: StageConnect, Code: DialCode(err), Err: err}
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	relay, err := p.handshake(c, from)
	if err != nil {
		c.Close()
		var ue *Error
		if errors.As(err, &ue) {
			return nil, err
		}
		return nil, handshakeError(p.Name, ctx, err)
	}
	c.SetDeadline(time.Time{})
	if relay.Addr().IsUnspecified() {
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			relay = netip.AddrPortFrom(ta.AddrPort().Addr(), relay.Port())
		}
	}
	relay = netip.AddrPortFrom(relay.Addr().Unmap(), relay.Port())
	return &UDPAssociation{Control: c, Relay: relay}, nil
}

// handshake runs the method negotiation, the login and the UDP ASSOCIATE
// request on c, returning BND.ADDR:BND.PORT.
func (p *UDPParent) handshake(c net.Conn, from netip.AddrPort) (netip.AddrPort, error) {
	method := byte(0x00)
	if p.auth {
		method = 0x02
	}
	buf := make([]byte, 3+2*255)
	if _, err := c.Write(append(buf[:0], 0x05, 0x01, method)); err != nil {
		return netip.AddrPort{}, fmt.Errorf("send greeting: %w", err)
	}
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("read method: %w", err)
	}
	if buf[0] != 0x05 || buf[1] != method {
		return netip.AddrPort{}, &Error{Upstream: p.Name, Stage: StageAuth, Code: plugins.CodeGeneral,
			Err: fmt.Errorf("no acceptable authentication methods (answered %#x)", buf[1])}
	}
	if p.auth {
		if err := p.login(c, buf); err != nil {
			return netip.AddrPort{}, err
		}
	}
	req := AppendSOCKS5Addr(append(buf[:0], 0x05, 0x03, 0x00), from)
	if _, err := c.Write(req); err != nil {
		return netip.AddrPort{}, fmt.Errorf("send udp associate: %w", err)
	}
	return p.readReply(c, buf)
}

// login runs RFC 1929's subnegotiation.
func (p *UDPParent) login(c net.Conn, buf []byte) error {
	b := append(buf[:0], 0x01, byte(len(p.user)))
	b = append(append(b, p.user...), byte(len(p.pass)))
	b = append(b, p.pass...)
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("send login: %w", err)
	}
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return fmt.Errorf("read login status: %w", err)
	}
	if buf[1] != 0x00 {
		return &Error{Upstream: p.Name, Stage: StageAuth, Code: plugins.CodeGeneral,
			Err: errors.New("username/password authentication failed")}
	}
	return nil
}

// readReply reads VER REP RSV ATYP BND.ADDR BND.PORT into buf (at least
// 262 bytes).
func (p *UDPParent) readReply(c io.Reader, buf []byte) (netip.AddrPort, error) {
	if _, err := io.ReadFull(c, buf[:5]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("read reply: %w", err)
	}
	if buf[0] != 0x05 {
		return netip.AddrPort{}, fmt.Errorf("reply version %#x", buf[0])
	}
	if rep := buf[1]; rep != 0x00 {
		return netip.AddrPort{}, &Error{Upstream: p.Name, Stage: StageTarget, Code: socksReplyCode(rep),
			Err: fmt.Errorf("SOCKS5 reply to UDP ASSOCIATE: %#x", rep)}
	}
	atyp, rest := buf[3], 0
	switch atyp {
	case atypIPv4:
		rest = 4 - 1 + 2
	case atypIPv6:
		rest = 16 - 1 + 2
	case atypDomain:
		rest = int(buf[4]) + 2
	default:
		return netip.AddrPort{}, fmt.Errorf("reply: %w %#x", ErrUDPAddrType, atyp)
	}
	if _, err := io.ReadFull(c, buf[5:5+rest]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("read reply address: %w", err)
	}
	ap, host, _, err := parseAddr(atyp, buf[4:5+rest])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("reply: %w", err)
	}
	if host != nil {
		// A relay named, not addressed: RFC 1928 allows it, no parent
		// ferry was tested with does it, and resolving it here would
		// be a second place that resolves.
		return netip.AddrPort{}, fmt.Errorf("reply names its relay %q instead of an address", host)
	}
	return ap, nil
}

// socksReplyCode maps a SOCKS5 reply code to what ferry's client is told.
func socksReplyCode(rep byte) plugins.Code {
	if int(rep) >= 1 && int(rep) <= len(socksReplies) {
		return socksReplies[rep-1].code
	}
	return plugins.CodeGeneral
}

// udpParent says how associations reach the upstream uc: through the
// parent it returns, or not at all (the error says why). Only a socks5://
// upstream reached directly carries UDP: an HTTP proxy has no datagrams,
// and a chain (via) or a PROXY header would need every hop to relay
// datagrams too, which ferry does not do.
func udpParent(uc *config.Upstream) (*UDPParent, error) {
	switch {
	case len(uc.Members) > 0:
		return nil, fmt.Errorf("upstream %s is a group: UDP associations go through one socks5 upstream only", uc.Name)
	case uc.Via != "":
		return nil, fmt.Errorf("upstream %s is reached via %s: UDP associations go through one socks5 hop only", uc.Name, uc.Via)
	case uc.SendProxyProtocol == "v1" || uc.SendProxyProtocol == "v2":
		return nil, fmt.Errorf("upstream %s sends a PROXY header, which a UDP association cannot carry", uc.Name)
	}
	pu, err := url.Parse(uc.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: invalid url", uc.Name)
	}
	if pu.Scheme != "socks5" && pu.Scheme != "socks5h" {
		return nil, fmt.Errorf("upstream %s is a %s proxy, which has no UDP: only a socks5 upstream relays UDP", uc.Name, pu.Scheme)
	}
	p := &UDPParent{Name: uc.Name, addr: pu.Host}
	if pu.User != nil {
		p.auth, p.user = true, pu.User.Username()
		p.pass, _ = pu.User.Password()
	}
	return p, nil
}

// UDP returns how a SOCKS5 UDP association reaches the upstream name: nil
// and no error for direct, the parent for a socks5 upstream, and an error
// saying why not for any other.
func (u *Table) UDP(name string) (*UDPParent, error) {
	if name == config.Direct || name == "" {
		return nil, nil
	}
	r, ok := u.udp[name]
	if !ok {
		return nil, fmt.Errorf("no upstream %q", name)
	}
	return r.parent, r.err
}

// udpRoute is UDP's answer for one upstream.
type udpRoute struct {
	parent *UDPParent
	err    error
}
