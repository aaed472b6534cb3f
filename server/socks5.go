package server

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"ferry/plugins"
	"ferry/relay/upstream"
)

// SOCKS5 (RFC 1928) constants.
const (
	socks5Version      = 0x05
	socks5NoAuth       = 0x00
	socks5UserPass     = 0x02
	socks5NoAcceptable = 0xFF
	socks5CmdConnect   = 0x01
	socks5CmdBind      = 0x02
	socks5AtypIPv4     = 0x01
	socks5AtypDomain   = 0x03
	socks5AtypIPv6     = 0x04

	socks5RepCmdNotSupported  = 0x07
	socks5RepAtypNotSupported = 0x08
)

// serveSOCKS5 reads the greeting and request, answering protocol errors
// with the RFC's codes.
func (h *conn) serveSOCKS5() {
	if !h.socks5Negotiate() {
		return
	}
	cmd, target, ok := h.socks5Request()
	if !ok {
		return
	}
	switch {
	case cmd == socks5CmdConnect:
		h.tunnel(h.newSession("socks5", target), socks5Replier{h})
	case cmd == socks5CmdBind && h.l.cfg.Socks5Bind:
		h.serveSOCKS5Bind(target)
	case cmd == socks5CmdUDPAssociate:
		h.serveSOCKS5UDP(target)
	default:
		h.socks5Reply(socks5RepCmdNotSupported, nil)
		h.l.log.Debug().Str("client", h.c.RemoteAddr().String()).Uint8("cmd", cmd).Msg("socks5: command not supported")
	}
}

// socks5Negotiate reads the greeting, picks the auth method and, for
// username/password, checks the login. It reports whether the client may
// go on to its request; when not, the client has been answered or is gone.
func (h *conn) socks5Negotiate() bool {
	buf := h.scratch[:] // a local array would escape through io.ReadFull
	// Greeting: VER NMETHODS METHODS...
	if _, err := io.ReadFull(h.br, buf[:2]); err != nil {
		h.debugHandshake("socks5", err)
		return false
	}
	methods := buf[1]
	if _, err := io.ReadFull(h.br, buf[:methods]); err != nil {
		h.debugHandshake("socks5", err)
		return false
	}
	// A listener with an authenticator accepts username/password only,
	// but from a client its certificate named.
	want := byte(socks5NoAuth)
	if h.l.chain.RequiresAuth() && !h.certUser {
		want = socks5UserPass
	}
	if !slices.Contains(buf[:methods], want) {
		h.write(socks5Version, socks5NoAcceptable)
		h.l.log.Debug().Str("client", h.client.String()).Msg("socks5: no acceptable auth method")
		return false
	}
	if err := h.write(socks5Version, want); err != nil {
		return false
	}
	return want != socks5UserPass || h.socks5Auth()
}

// socks5Request reads the request and returns its command and its
// target as host:port. A bad address type or name is answered with its
// RFC failure code and ok is false; the caller answers the command.
func (h *conn) socks5Request() (cmd byte, target string, ok bool) {
	buf := h.scratch[:] // a local array would escape through io.ReadFull
	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT
	if _, err := io.ReadFull(h.br, buf[:4]); err != nil {
		h.debugHandshake("socks5", err)
		return 0, "", false
	}
	if buf[0] != socks5Version {
		h.l.log.Debug().Str("client", h.c.RemoteAddr().String()).Msg("socks5: bad request version")
		return 0, "", false
	}
	cmd = buf[1]
	atyp := buf[3]
	host, ok := h.socks5Host(atyp)
	if !ok {
		return 0, "", false
	}
	if _, err := io.ReadFull(h.br, buf[:2]); err != nil {
		h.debugHandshake("socks5", err)
		return 0, "", false
	}
	port := binary.BigEndian.Uint16(buf[:2])
	return cmd, net.JoinHostPort(host, strconv.Itoa(int(port))), true
}

// socks5Host reads DST.ADDR of address type atyp. A domain name that is
// no valid host name, or an unknown address type, is answered with a
// failure and ok is false.
func (h *conn) socks5Host(atyp byte) (host string, ok bool) {
	buf := h.scratch[:] // a local array would escape through io.ReadFull
	switch atyp {
	case socks5AtypIPv4, socks5AtypIPv6:
		n := 4
		if atyp == socks5AtypIPv6 {
			n = 16
		}
		if _, err := io.ReadFull(h.br, buf[:n]); err != nil {
			h.debugHandshake("socks5", err)
			return "", false
		}
		a, _ := netip.AddrFromSlice(buf[:n])
		return a.String(), true
	case socks5AtypDomain:
		if _, err := io.ReadFull(h.br, buf[:1]); err != nil {
			h.debugHandshake("socks5", err)
			return "", false
		}
		n := int(buf[0])
		if _, err := io.ReadFull(h.br, buf[:n]); err != nil {
			h.debugHandshake("socks5", err)
			return "", false
		}
		host = string(buf[:n])
		if !validHostName(host) {
			h.socks5Reply(plugins.CodeHostUnreachable.SOCKS5Reply(), nil)
			return "", false
		}
		return host, true
	default:
		h.socks5Reply(socks5RepAtypNotSupported, nil)
		return "", false
	}
}

type socks5Replier struct{ h *conn }

func (r socks5Replier) fail(_ *plugins.Session, code plugins.Code, _ error) {
	r.h.socks5Reply(code.SOCKS5Reply(), nil)
}

func (r socks5Replier) ok(_ *plugins.Session, bound net.Addr) error {
	return r.h.socks5Reply(0x00, bound)
}

// socks5Reply writes VER REP RSV ATYP BND.ADDR BND.PORT; a nil bound sends
// 0.0.0.0:0 as RFC 1928 allows for failures.
func (h *conn) socks5Reply(rep byte, bound net.Addr) error {
	b := append(h.scratch[:0], socks5Version, rep, 0x00)
	ap := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	if ta, ok := bound.(*net.TCPAddr); ok {
		ap = ta.AddrPort()
	}
	b = upstream.AppendSOCKS5Addr(b, ap)
	_, err := h.c.Write(b)
	return err
}

// write sends a few bytes to the client from the conn's scratch buffer
// (a literal slice handed to Write would be allocated).
func (h *conn) write(b ...byte) error {
	_, err := h.c.Write(append(h.scratch[:0], b...))
	return err
}

// socks5Auth runs the username/password subnegotiation (RFC 1929):
// VER=1 ULEN UNAME PLEN PASSWD, answered VER=1 STATUS (0 success). A
// failure is answered and the connection closed, as the RFC requires.
func (h *conn) socks5Auth() bool {
	buf := h.scratch[:]
	if _, err := io.ReadFull(h.br, buf[:2]); err != nil {
		h.debugHandshake("socks5", err)
		return false
	}
	if buf[0] != 0x01 {
		h.l.log.Debug().Str("client", h.client.String()).Msg("socks5: bad auth subnegotiation version")
		return false
	}
	user := make([]byte, buf[1])
	if _, err := io.ReadFull(h.br, user); err != nil {
		h.debugHandshake("socks5", err)
		return false
	}
	if _, err := io.ReadFull(h.br, buf[:1]); err != nil {
		h.debugHandshake("socks5", err)
		return false
	}
	pass := make([]byte, buf[0])
	if _, err := io.ReadFull(h.br, pass); err != nil {
		h.debugHandshake("socks5", err)
		return false
	}
	// The session does not exist yet (the target comes after the login):
	// authenticate a provisional one that carries who is asking, with the
	// id the session will have, so that the plugins' lines about the
	// login carry it.
	h.id = h.l.srv.nextID()
	probe := &plugins.Session{ID: h.id, Listener: h.l.cfg.Name, Client: h.client, Peer: h.peer,
		ProxyHeader: h.proxyHeader, Protocol: "socks5"}
	probe.Log = h.l.log.Hook(idHook{probe})
	if err := h.l.chain.Authenticate(h.l.srv.hardCtx, probe, string(user), string(pass)); err != nil {
		h.write(0x01, 0x01)
		h.failedLogin(probe, string(user), err)
		return false
	}
	h.user, h.groups = string(user), probe.Groups
	return h.write(0x01, 0x00) == nil
}

// failedLogin accounts for a refused SOCKS5 login as a failed HTTP login
// is: a rejected handshake, and an access line (reason rejected) whose
// error names the user the client tried. The name goes in the error, not
// in Session.User, which holds authenticated users only.
func (h *conn) failedLogin(s *plugins.Session, user string, err error) {
	h.handshakeDone()
	h.l.srv.obs.Handshake("socks5", handshakeOutcome(err))
	st := &plugins.Stats{Start: h.start, Reason: plugins.ReasonRejected,
		Err: fmt.Errorf("socks5 login as %q: %w", user, err)}
	h.l.finish(s, st)
}

// validHostName reports whether a SOCKS client's host name is one: letters,
// digits, '-', '_' and '.' (IDNs arrive in punycode). Anything else
// (':', brackets, spaces) would make a target that is not host:port.
func validHostName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}
