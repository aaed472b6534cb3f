package load

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
)

// ReadSOCKS5Reply reads a SOCKS5 reply (VER REP RSV ATYP BND.ADDR
// BND.PORT) and returns BND; a REP other than 0 is a *Refusal. A name in
// BND.ADDR gives an invalid address with the port.
func ReadSOCKS5Reply(c net.Conn) (netip.AddrPort, error) {
	var b [262]byte
	if _, err := io.ReadFull(c, b[:5]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("socks5 reply: %w", err)
	}
	if b[1] != 0 {
		return netip.AddrPort{}, &Refusal{Proto: "socks5", Code: int(b[1])}
	}
	atyp, first := b[3], b[4]
	rest := 0
	switch atyp {
	case 1:
		rest = 4 - 1 + 2
	case 4:
		rest = 16 - 1 + 2
	case 3:
		rest = int(first) + 2
	default:
		return netip.AddrPort{}, fmt.Errorf("socks5 reply address type %d", atyp)
	}
	if _, err := io.ReadFull(c, b[5:5+rest]); err != nil {
		return netip.AddrPort{}, fmt.Errorf("socks5 reply: %w", err)
	}
	port := binary.BigEndian.Uint16(b[5+rest-2:])
	if atyp == 3 {
		return netip.AddrPortFrom(netip.Addr{}, port), nil
	}
	a, _ := netip.AddrFromSlice(b[4 : 5+rest-2])
	return netip.AddrPortFrom(a, port), nil
}

// SOCKS5UDP asks for a UDP association (RFC 1928 §7) over c, declaring
// the address datagrams will come from, and returns the relay's address
// (the proxy's own address when it answered the unspecified one). The
// caller sets c's deadline.
func SOCKS5UDP(c net.Conn, from netip.AddrPort) (netip.AddrPort, error) {
	if err := greetSOCKS5(c); err != nil {
		return netip.AddrPort{}, err
	}
	if _, err := c.Write(SOCKS5Request(3, from)); err != nil {
		return netip.AddrPort{}, fmt.Errorf("socks5 udp associate: %w", err)
	}
	relay, err := ReadSOCKS5Reply(c)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if !relay.Addr().IsValid() || relay.Addr().IsUnspecified() {
		ta, _ := c.RemoteAddr().(*net.TCPAddr)
		if ta == nil {
			return netip.AddrPort{}, fmt.Errorf("socks5 udp associate: relay %s", relay)
		}
		relay = netip.AddrPortFrom(ta.AddrPort().Addr(), relay.Port())
	}
	return relay, nil
}

// greetSOCKS5 offers no authentication and reads the proxy's choice.
func greetSOCKS5(c net.Conn) error {
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return fmt.Errorf("socks5 greeting: %w", err)
	}
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("socks5 greeting: %w", err)
	}
	if b[0] != 5 || b[1] != 0 {
		return fmt.Errorf("socks5 method %d", b[1])
	}
	return nil
}
