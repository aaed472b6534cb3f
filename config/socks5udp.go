package config

import (
	"fmt"
	"net/netip"
	"slices"
)

// IPAddr is an IP address without port or zone ("203.0.113.7", "::1").
// The zero IPAddr is unset.
type IPAddr struct{ netip.Addr }

// UnmarshalText parses an IP address.
func (a *IPAddr) UnmarshalText(text []byte) error {
	v, err := netip.ParseAddr(string(text))
	if err != nil {
		return fmt.Errorf("not an IP address: %q", text)
	}
	if v.Zone() != "" || v.IsUnspecified() {
		return fmt.Errorf("%q: want the address clients reach, without zone, not unspecified", text)
	}
	a.Addr = v.Unmap()
	return nil
}

// UDPEnabled reports whether the listener serves SOCKS5 UDP ASSOCIATE:
// it serves socks5 and does not set socks5_udp = false.
func (ln Listener) UDPEnabled() bool {
	return slices.Contains(ln.Protocols, "socks5") && (ln.SOCKS5UDP == nil || *ln.SOCKS5UDP)
}

// socks5UDP checks the UDP ASSOCIATE settings of listener ln at path p.
func (l *loader) socks5UDP(p string, ln Listener) {
	socks5 := slices.Contains(ln.Protocols, "socks5")
	if ln.SOCKS5UDP != nil && !socks5 {
		l.errorf(p+".socks5_udp", `only a listener with "socks5" in protocols serves UDP ASSOCIATE`)
	}
	if ln.SOCKS5UDPAdvertise.IsValid() && !ln.UDPEnabled() {
		l.errorf(p+".socks5_udp_advertise", "the listener does not serve SOCKS5 UDP ASSOCIATE (socks5 in protocols, socks5_udp not false)")
	}
}
