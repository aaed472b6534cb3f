package proxyproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Format returns h encoded as a PROXY header. See Append.
func (h *Header) Format() ([]byte, error) {
	return h.Append(make([]byte, 0, h.formatLen()))
}

// WriteTo writes h to w in a single Write, as the spec asks (the header
// must reach the receiver at once). It implements io.WriterTo.
func (h *Header) WriteTo(w io.Writer) (int64, error) {
	b, err := h.Format()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	if err != nil {
		return int64(n), fmt.Errorf("proxyproto: write header: %w", err)
	}
	return int64(n), nil
}

// Append appends h encoded as a PROXY header to b.
//
// The family is taken from Source and Destination: two *net.TCPAddr give
// TCP, two *net.UDPAddr UDP (both IPv4 when both IPs have a To4 form, else
// both IPv6, an IPv4 one written IPv4-mapped), two *net.UnixAddr with the
// same Net ("unix" or "unixgram") UNIX. Any other pair, nil included, cannot
// be expressed and is written as v1 "PROXY UNKNOWN" or v2 AF_UNSPEC, as
// the spec says for unsupported families. v1 can only express TCP, so UDP
// and UNIX also become UNKNOWN there.
//
// It fails when Version, Command or Transport is not one of the defined
// values; when Transport is not Unspec and contradicts the address types;
// when a Local header has addresses (LOCAL carries none, and a forgotten
// Command is the usual cause); when a v1 header has TLVs; when a port is
// outside 0-65535 or a UNIX name does not fit 108 bytes; when TLVs break the
// rules Read enforces (one CRC32C of 4 bytes, UNIQUE_ID at most 128 bytes,
// well-formed SSL); or when the v2 body exceeds 65535 bytes.
//
// A TypeCRC32C TLV's value is computed here, over the finished header; see
// AddCRC32C. A v2 header longer than the receiver's limit (DefaultMaxHeaderLen
// for this package) will be refused by it.
func (h *Header) Append(b []byte) ([]byte, error) {
	if h.Version != 1 && h.Version != 2 {
		return b, fmt.Errorf("proxyproto: format header: version %d, want 1 or 2", h.Version)
	}
	if h.Command != Local && h.Command != Proxy {
		return b, fmt.Errorf("proxyproto: format header: %v, want LOCAL or PROXY", h.Command)
	}
	if h.Transport > Datagram {
		return b, fmt.Errorf("proxyproto: format header: %v, want UNSPEC, STREAM or DGRAM", h.Transport)
	}
	if h.Command == Local && (h.Source != nil || h.Destination != nil) {
		return b, errors.New("proxyproto: format header: LOCAL with addresses (did you mean Command: Proxy?)")
	}
	fam := family(h.Source, h.Destination)
	if fam != 0 && h.Transport != Unspec && h.Transport != Transport(fam&0x0f) {
		return b, fmt.Errorf("proxyproto: format header: transport %v with %T addresses", h.Transport, h.Source)
	}
	if h.Version == 1 {
		if len(h.TLVs) > 0 {
			return b, errors.New("proxyproto: format v1 header: v1 cannot carry TLVs")
		}
		return appendV1(b, h, fam)
	}
	return appendV2(b, h, fam)
}

// formatLen is the encoded length of h, or an upper bound for v1.
func (h *Header) formatLen() int {
	if h.Version == 1 {
		return v1MaxLen
	}
	n := v2FixedLen + max(addrLen(family(h.Source, h.Destination)), 0)
	for _, t := range h.TLVs {
		n += 3 + len(t.Value)
	}
	return n
}

// family returns the v2 family/protocol byte for a pair of addresses, or 0
// (AF_UNSPEC) if the pair cannot be expressed.
func family(src, dst net.Addr) byte {
	switch s := src.(type) {
	case *net.TCPAddr:
		if d, ok := dst.(*net.TCPAddr); ok && s != nil && d != nil {
			return ipFamily(s.IP, d.IP, Stream)
		}
	case *net.UDPAddr:
		if d, ok := dst.(*net.UDPAddr); ok && s != nil && d != nil {
			return ipFamily(s.IP, d.IP, Datagram)
		}
	case *net.UnixAddr:
		if d, ok := dst.(*net.UnixAddr); ok && s != nil && d != nil && s.Net == d.Net {
			switch s.Net {
			case "unix":
				return 0x30 | byte(Stream)
			case "unixgram":
				return 0x30 | byte(Datagram)
			}
		}
	}
	return 0
}

// ipFamily returns the family/protocol byte for two IPs over t: AF_INET if
// both have an IPv4 form, else AF_INET6, or 0 if either is not an IP.
func ipFamily(s, d net.IP, t Transport) byte {
	switch {
	case s.To4() != nil && d.To4() != nil:
		return 0x10 | byte(t)
	case s.To16() != nil && d.To16() != nil:
		return 0x20 | byte(t)
	}
	return 0
}

func appendV1(b []byte, h *Header, fam byte) ([]byte, error) {
	var src, dst netip.Addr
	var sport, dport int
	switch fam {
	case 0x11, 0x21:
		s, d := h.Source.(*net.TCPAddr), h.Destination.(*net.TCPAddr)
		if err := checkPorts(s.Port, d.Port); err != nil {
			return b, err
		}
		src, dst, sport, dport = ipAddr(s.IP, fam), ipAddr(d.IP, fam), s.Port, d.Port
	default:
		return append(b, "PROXY UNKNOWN\r\n"...), nil
	}
	if fam == 0x11 {
		b = append(b, "PROXY TCP4 "...)
	} else {
		b = append(b, "PROXY TCP6 "...)
	}
	b = src.AppendTo(b)
	b = append(b, ' ')
	b = dst.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(sport), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(dport), 10)
	return append(b, '\r', '\n'), nil
}

// ipAddr converts ip to IPv4 for family 0x1X, else to IPv6 (IPv4-mapped if
// needed). family has already checked that the conversion works.
func ipAddr(ip net.IP, fam byte) netip.Addr {
	if fam>>4 == 1 {
		return netip.AddrFrom4([4]byte(ip.To4()))
	}
	return netip.AddrFrom16([16]byte(ip.To16()))
}

func checkPorts(ports ...int) error {
	for _, p := range ports {
		if p < 0 || p > 0xffff {
			return fmt.Errorf("proxyproto: format header: port %d, want 0-65535", p)
		}
	}
	return nil
}

func appendV2(b []byte, h *Header, fam byte) ([]byte, error) {
	crcIdx, err := checkTLVs(h.TLVs)
	if err != nil {
		return b, fmt.Errorf("proxyproto: format v2 header: %w", err)
	}
	start := len(b)
	b = append(b, sigV2[:]...)
	b = append(b, 0x20|byte(h.Command), fam, 0, 0)

	switch fam {
	case 0x11, 0x12, 0x21, 0x22:
		var sip, dip net.IP
		var sport, dport int
		switch s := h.Source.(type) {
		case *net.TCPAddr:
			d := h.Destination.(*net.TCPAddr)
			sip, dip, sport, dport = s.IP, d.IP, s.Port, d.Port
		case *net.UDPAddr:
			d := h.Destination.(*net.UDPAddr)
			sip, dip, sport, dport = s.IP, d.IP, s.Port, d.Port
		}
		if err := checkPorts(sport, dport); err != nil {
			return b[:start], err
		}
		s, d := ipAddr(sip, fam), ipAddr(dip, fam)
		b = append(b, s.AsSlice()...)
		b = append(b, d.AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, uint16(sport))
		b = binary.BigEndian.AppendUint16(b, uint16(dport))
	case 0x31, 0x32:
		s, d := h.Source.(*net.UnixAddr), h.Destination.(*net.UnixAddr)
		var err error
		if b, err = appendUnixName(b, s.Name); err != nil {
			return b[:start], err
		}
		if b, err = appendUnixName(b, d.Name); err != nil {
			return b[:start], err
		}
	}

	crcOff := -1
	for i, t := range h.TLVs {
		if i == crcIdx {
			crcOff = len(b) + 3
			b = appendTLV(b, t.Type, []byte{0, 0, 0, 0})
			continue
		}
		b = appendTLV(b, t.Type, t.Value)
	}
	n := len(b) - start - v2FixedLen
	if n > 0xffff {
		return b[:start], fmt.Errorf("proxyproto: format v2 header: %d bytes after the fixed part, want at most 65535", n)
	}
	binary.BigEndian.PutUint16(b[start+14:], uint16(n))
	if crcOff >= 0 {
		binary.BigEndian.PutUint32(b[crcOff:], crc32.Checksum(b[start:], castagnoli))
	}
	return b, nil
}

// appendUnixName appends name as a 108-byte, NUL-padded sun_path. As in
// package net, a leading '@' stands for the NUL that starts a Linux abstract
// name; "@" alone is written as is, since an empty abstract name would read
// back as an unnamed socket ("").
func appendUnixName(b []byte, name string) ([]byte, error) {
	raw := name
	if abstract, ok := strings.CutPrefix(name, "@"); ok && abstract != "" {
		if strings.HasSuffix(abstract, "\x00") {
			return b, fmt.Errorf("proxyproto: format header: abstract UNIX name %q ends with NUL", name)
		}
		raw = "\x00" + abstract
	} else if strings.IndexByte(name, 0) >= 0 {
		return b, fmt.Errorf("proxyproto: format header: UNIX name %q contains NUL", name)
	}
	if len(raw) > unixAddrLen {
		return b, fmt.Errorf("proxyproto: format header: UNIX name of %d bytes, want at most %d", len(raw), unixAddrLen)
	}
	b = append(b, raw...)
	for range unixAddrLen - len(raw) {
		b = append(b, 0)
	}
	return b, nil
}
