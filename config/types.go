package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"ferry/plugins/pkg/units"
)

// Duration and Size are the value types config shares with plugins; they
// live in package units so that plugins need not import config.
type (
	Duration = units.Duration
	Size     = units.Size
)

// CIDR is an IP prefix such as "10.0.0.0/8" or "::1/128". A bare address
// means that one address (/32 or /128). The address must not have bits set
// beyond the prefix length ("10.0.0.1/8" is rejected as a likely typo).
type CIDR netip.Prefix

// ParseCIDR parses a prefix or a bare IP address.
func ParseCIDR(s string) (CIDR, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return CIDR{}, fmt.Errorf("invalid CIDR %q: want an address or a prefix, like \"10.0.0.0/8\" or \"::1\"", s)
		}
		if a.Zone() != "" {
			return CIDR{}, fmt.Errorf("invalid CIDR %q: zones are not allowed", s)
		}
		return CIDR(netip.PrefixFrom(a, a.BitLen())), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return CIDR{}, fmt.Errorf("invalid CIDR %q: want a prefix, like \"10.0.0.0/8\" or \"fd00::/8\"", s)
	}
	if m := p.Masked(); m != p {
		return CIDR{}, fmt.Errorf("invalid CIDR %q: address has bits set beyond /%d (did you mean %s?)", s, p.Bits(), m)
	}
	return CIDR(p), nil
}

// Prefix returns c as a netip.Prefix.
func (c CIDR) Prefix() netip.Prefix { return netip.Prefix(c) }

// String formats c like netip.Prefix ("10.0.0.0/8").
func (c CIDR) String() string { return netip.Prefix(c).String() }

// UnmarshalText parses a prefix or a bare address.
func (c *CIDR) UnmarshalText(text []byte) error {
	v, err := ParseCIDR(string(text))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// MarshalText formats c like String.
func (c CIDR) MarshalText() ([]byte, error) {
	if !netip.Prefix(c).IsValid() {
		return nil, errors.New("marshal CIDR: invalid prefix")
	}
	return []byte(c.String()), nil
}

// TLVType is a PROXY protocol v2 TLV type: a number 0-255, or one of the
// spec's names as a string: "alpn", "authority", "crc32c", "noop",
// "unique_id", "ssl", "netns" (or a number in a string, "0xE0").
type TLVType uint8

var tlvNames = map[string]TLVType{
	"alpn": 0x01, "authority": 0x02, "crc32c": 0x03, "noop": 0x04,
	"unique_id": 0x05, "ssl": 0x20, "netns": 0x30,
}

// UnmarshalText parses a TLV name or number.
func (t *TLVType) UnmarshalText(text []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(text)))
	if v, ok := tlvNames[s]; ok {
		*t = v
		return nil
	}
	n, err := strconv.ParseUint(s, 0, 8)
	if err != nil {
		return fmt.Errorf("invalid TLV type %q: want 0-255 or one of alpn, authority, crc32c, noop, unique_id, ssl, netns", string(text))
	}
	*t = TLVType(n)
	return nil
}

// MarshalText writes the type's name, or its number.
func (t TLVType) MarshalText() ([]byte, error) {
	for name, v := range tlvNames {
		if v == t {
			return []byte(name), nil
		}
	}
	return []byte(strconv.Itoa(int(t))), nil
}
