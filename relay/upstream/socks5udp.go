package upstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The SOCKS5 UDP codec (RFC 1928 §7), shared by ferry's UDP relay (the
// server side) and its client side of an upstream association, which
// sees the same header from the parent's relay. Each datagram is
//
//	RSV(2) FRAG(1) ATYP(1) DST.ADDR DST.PORT(2) DATA
//
// DST.ADDR is 4 bytes (ATYP 1), 16 (ATYP 4) or a length byte and a name
// (ATYP 3).

// SOCKS5 address types (RFC 1928 §5).
const (
	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// MaxUDPHeader is the longest SOCKS5 UDP header: 4 fixed bytes, a name of
// 255 bytes with its length byte, and the port.
const MaxUDPHeader = 4 + 1 + 255 + 2

// UDPHeader is a parsed SOCKS5 UDP request header.
type UDPHeader struct {
	// Frag is the fragment number; 0 for a standalone datagram, the only
	// kind ferry relays (RFC 1928 §7 lets a relay drop fragments).
	Frag byte
	// Addr is DST.ADDR:DST.PORT for an address; invalid for a name.
	Addr netip.AddrPort
	// Host is the name of ATYP 3, a slice of the datagram (no copy); nil
	// for an address.
	Host []byte
	// Port is DST.PORT (also in Addr for an address).
	Port uint16
	// Len is the header's length: the payload starts there.
	Len int
}

// Errors of ParseUDPHeader.
var (
	ErrShortUDPHeader = errors.New("socks5 udp: datagram shorter than its header")
	ErrUDPReserved    = errors.New("socks5 udp: reserved bytes not zero")
	ErrUDPAddrType    = errors.New("socks5 udp: unknown address type")
)

// ParseUDPHeader parses the header at the start of datagram b. It does not
// allocate: Host points into b.
func ParseUDPHeader(b []byte) (UDPHeader, error) {
	if len(b) < 4 {
		return UDPHeader{}, ErrShortUDPHeader
	}
	if b[0] != 0 || b[1] != 0 {
		return UDPHeader{}, ErrUDPReserved
	}
	h := UDPHeader{Frag: b[2]}
	ap, host, n, err := parseAddr(b[3], b[4:])
	if err != nil {
		return UDPHeader{}, err
	}
	h.Addr, h.Host, h.Len = ap, host, 4+n
	h.Port = binary.BigEndian.Uint16(b[h.Len-2 : h.Len])
	return h, nil
}

// parseAddr parses DST.ADDR DST.PORT of address type atyp at the start of
// b, returning the address (or the name) and how many bytes it took.
func parseAddr(atyp byte, b []byte) (ap netip.AddrPort, host []byte, n int, err error) {
	switch atyp {
	case atypIPv4, atypIPv6:
		alen := 4
		if atyp == atypIPv6 {
			alen = 16
		}
		if len(b) < alen+2 {
			return ap, nil, 0, ErrShortUDPHeader
		}
		a, _ := netip.AddrFromSlice(b[:alen])
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[alen:])), nil, alen + 2, nil
	case atypDomain:
		if len(b) < 1 || len(b) < 1+int(b[0])+2 {
			return ap, nil, 0, ErrShortUDPHeader
		}
		hl := int(b[0])
		if hl == 0 {
			return ap, nil, 0, fmt.Errorf("socks5 udp: empty host name: %w", ErrUDPAddrType)
		}
		return ap, b[1 : 1+hl], 1 + hl + 2, nil
	}
	return ap, nil, 0, fmt.Errorf("%w %#x", ErrUDPAddrType, atyp)
}

// UDPHeaderLen is the length of the header AppendUDPHeader writes for ap.
func UDPHeaderLen(ap netip.AddrPort) int {
	if ap.Addr().Unmap().Is4() {
		return 4 + 4 + 2
	}
	return 4 + 16 + 2
}

// AppendUDPHeader appends a standalone datagram's header for address ap
// (an IPv4-mapped address is written as IPv4).
func AppendUDPHeader(b []byte, ap netip.AddrPort) []byte {
	b = append(b, 0, 0, 0)
	return AppendSOCKS5Addr(b, ap)
}

// AppendSOCKS5Addr appends ATYP ADDR PORT for ap (RFC 1928 section 5),
// an IPv4-mapped address as IPv4: the address part of SOCKS5 requests,
// replies and UDP headers alike.
func AppendSOCKS5Addr(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr().Unmap()
	if a.Is4() {
		a4 := a.As4()
		b = append(b, atypIPv4)
		b = append(b, a4[:]...)
	} else {
		a16 := a.As16()
		b = append(b, atypIPv6)
		b = append(b, a16[:]...)
	}
	return binary.BigEndian.AppendUint16(b, ap.Port())
}
