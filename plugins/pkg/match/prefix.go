package match

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Prefix is an address range written as a CIDR ("10.0.0.0/8",
// "fd00::/8") or a bare address ("192.0.2.1", a /32 or /128). It
// implements encoding.TextUnmarshaler for config decoders.
type Prefix netip.Prefix

// ParsePrefix parses a CIDR or a bare address. It refuses zones and
// addresses with bits set past the prefix length ("10.1.2.3/8": say
// 10.0.0.0/8 or 10.1.2.3), a mistake that would otherwise widen or narrow
// a rule silently. An IPv4-mapped IPv6 prefix (::ffff:10.0.0.0/104) is
// turned into its IPv4 form (10.0.0.0/8).
func ParsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: want an address or a prefix, like \"10.0.0.0/8\" or \"::1\"", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: zones are not allowed", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	} else {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: want a prefix, like \"10.0.0.0/8\" or \"fd00::/8\"", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: address has bits set beyond /%d (did you mean %s?)", s, p.Bits(), m)
		}
	}
	return canonicalPrefix(p), nil
}

// canonicalPrefix masks p and gives IPv4-mapped prefixes their IPv4 form.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// String formats p like netip.Prefix.
func (p Prefix) String() string { return netip.Prefix(p).String() }

// UnmarshalText parses a CIDR or an address with ParsePrefix.
func (p *Prefix) UnmarshalText(text []byte) error {
	v, err := ParsePrefix(string(text))
	if err != nil {
		return err
	}
	*p = Prefix(v)
	return nil
}

// MarshalText formats p like String.
func (p Prefix) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Prefixes is a set of address prefixes, merged into sorted disjoint
// ranges so that a lookup is a binary search: about 20 steps for a million
// prefixes. IPv4 addresses, also when written IPv4-mapped
// (::ffff:10.1.2.3), are matched against IPv4 prefixes only: ::/0 does not
// cover IPv4, as with netip.Prefix.Contains. Zones are ignored.
//
// A Prefixes is immutable and safe for concurrent use. A nil *Prefixes
// contains nothing.
type Prefixes struct {
	v4 []span4
	v6 []span6
	n  int
}

type span4 struct{ lo, hi uint32 }

type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

// next is a+1, and whether it did not wrap.
func (a u128) next() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return u128{}, false
}

type span6 struct{ lo, hi u128 }

func addr128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func addr32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// NewPrefixes builds a set of ps. Invalid prefixes are skipped.
func NewPrefixes(ps ...netip.Prefix) *Prefixes {
	s := &Prefixes{n: len(ps)}
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		p = canonicalPrefix(p)
		a := p.Addr()
		if a.Is4() {
			lo := addr32(a)
			host := uint32(0)
			if p.Bits() < 32 {
				host = ^uint32(0) >> p.Bits()
			}
			s.v4 = append(s.v4, span4{lo, lo | host})
			continue
		}
		lo := addr128(a)
		hi := lo
		switch b := p.Bits(); {
		case b == 0:
			hi = u128{^uint64(0), ^uint64(0)}
		case b < 64:
			hi = u128{lo.hi | ^uint64(0)>>b, ^uint64(0)}
		case b < 128:
			hi.lo |= ^uint64(0) >> (b - 64)
		}
		s.v6 = append(s.v6, span6{lo, hi})
	}
	slices.SortFunc(s.v4, func(a, b span4) int { return cmp.Compare(a.lo, b.lo) })
	s.v4 = mergeSpans(s.v4, func(a, b span4) (span4, bool) {
		if a.hi != ^uint32(0) && b.lo > a.hi+1 {
			return a, false
		}
		return span4{a.lo, max(a.hi, b.hi)}, true
	})
	slices.SortFunc(s.v6, func(a, b span6) int { return a.lo.cmp(b.lo) })
	s.v6 = mergeSpans(s.v6, func(a, b span6) (span6, bool) {
		if n, ok := a.hi.next(); ok && b.lo.cmp(n) > 0 {
			return a, false
		}
		if b.hi.cmp(a.hi) > 0 {
			a.hi = b.hi
		}
		return a, true
	})
	return s
}

// mergeSpans merges sorted spans in place: join(a, b) returns the union
// of a and a following b when they overlap or touch.
func mergeSpans[S any](spans []S, join func(a, b S) (S, bool)) []S {
	if len(spans) == 0 {
		return nil
	}
	out := spans[:1]
	for _, sp := range spans[1:] {
		if u, ok := join(out[len(out)-1], sp); ok {
			out[len(out)-1] = u
		} else {
			out = append(out, sp)
		}
	}
	return slices.Clip(out)
}

// Len is the number of prefixes the set was built from.
func (s *Prefixes) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Contains reports whether a is in one of the prefixes.
func (s *Prefixes) Contains(a netip.Addr) bool {
	if s == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap()
	if a.Is4() {
		x := addr32(a)
		v := s.v4
		i, j := 0, len(v)
		for i < j { // first span with hi >= x
			h := int(uint(i+j) >> 1)
			if v[h].hi < x {
				i = h + 1
			} else {
				j = h
			}
		}
		return i < len(v) && v[i].lo <= x
	}
	x := addr128(a)
	v := s.v6
	i, j := 0, len(v)
	for i < j {
		h := int(uint(i+j) >> 1)
		if v[h].hi.cmp(x) < 0 {
			i = h + 1
		} else {
			j = h
		}
	}
	return i < len(v) && v[i].lo.cmp(x) <= 0
}
