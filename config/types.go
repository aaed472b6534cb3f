package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Duration is a time span written as a string with a unit: "10s", "1m30s",
// "250ms". It must not be negative. The integer 0 is accepted as "0s"; other
// bare numbers are rejected because their unit would be a guess.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a duration such as "10s".
func (d *Duration) UnmarshalText(text []byte) error {
	s := string(text)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit (ns, us, ms, s, m, h), like \"10s\"", s)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats d like String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a number of bytes, written as a string with an optional unit or as
// a TOML integer: "512B", "32KiB", "64KB", "1MiB", 4096. KiB, MiB, GiB, TiB
// and K, M, G, T are powers of 1024; KB, MB, GB, TB are powers of 1000.
// Units are case-insensitive and may follow a space.
//
// A negative TOML integer is stored by the TOML decoder without calling
// UnmarshalText; Load rejects it, and code that decodes a Size on its own
// (plugins through PluginConfig.Decode) gets the same check.
type Size int64

// Byte size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
)

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ParseSize parses a size such as "32KiB" or "4096".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("invalid size %q: must not be negative", s)
		}
		return 0, fmt.Errorf("invalid size %q: want a whole number with an optional unit, like \"32KiB\" or \"4096\"", s)
	}
	mult, ok := sizeUnits[unit]
	if strings.HasPrefix(unit, ".") {
		return 0, fmt.Errorf("invalid size %q: want a whole number of bytes or units, like \"1536KiB\"", s)
	}
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KiB, MiB, GiB, KB, MB or GB)", s, strings.TrimSpace(t[i:]))
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(n * mult), nil
}

// String formats s with the largest binary unit that divides it exactly:
// "32KiB", "1MiB", "1000B".
func (s Size) String() string {
	switch {
	case s != 0 && s%GiB == 0:
		return strconv.FormatInt(int64(s/GiB), 10) + "GiB"
	case s != 0 && s%MiB == 0:
		return strconv.FormatInt(int64(s/MiB), 10) + "MiB"
	case s != 0 && s%KiB == 0:
		return strconv.FormatInt(int64(s/KiB), 10) + "KiB"
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// UnmarshalText parses a size such as "32KiB".
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText formats s like String.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

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
