package match

import "net/netip"

// privateRanges are the destinations a proxy open to untrusted clients
// should not reach: the host itself, private networks, link-local (cloud
// metadata services at 169.254.169.254 and fd00:ec2::254), multicast, and
// the ranges IANA's special-purpose registries mark not globally
// reachable. The README of the acl plugin lists them with reasons; keep
// both in step.
var privateRanges = []struct {
	prefix netip.Prefix
	why    string
}{
	// IPv4
	{netip.MustParsePrefix("0.0.0.0/8"), "this network (0.0.0.0 reaches the local host)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT (RFC 6598)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local, cloud metadata"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private (RFC 1918)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation (TEST-NET-1)"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast (deprecated)"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private (RFC 1918)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation (TEST-NET-2)"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation (TEST-NET-3)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved, broadcast"},
	// IPv6. IPv4-mapped addresses (::ffff:0:0/96) are checked as IPv4.
	{netip.MustParsePrefix("::/96"), "unspecified, loopback, IPv4-compatible"},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "IPv4-translated"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments (Teredo, benchmarking, ORCHID)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	{netip.MustParsePrefix("5f00::/16"), "segment routing (SRv6) SIDs"},
	{netip.MustParsePrefix("fc00::/7"), "unique local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// PrivateRange reports whether a is a destination that only makes sense
// inside a network: loopback, private (RFC 1918, unique local), carrier-
// grade NAT, link-local, multicast, broadcast, unspecified, and the other
// ranges not globally reachable. It returns the range a is in and a short
// reason, for logs.
//
// IPv4-mapped IPv6 addresses (::ffff:127.0.0.1) are checked as the IPv4
// address they carry, and so are the IPv4 addresses embedded in NAT64
// (64:ff9b::/96) and 6to4 (2002::/16) addresses, which gateways translate
// back into IPv4: 64:ff9b::a00:1 is private because 10.0.0.1 is. The
// invalid Addr is reported private, so that a caller fails closed.
func PrivateRange(a netip.Addr) (netip.Prefix, string, bool) {
	if !a.IsValid() {
		return netip.Prefix{}, "invalid address", true
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64Prefix.Contains(a):
			a = netip.AddrFrom4([4]byte(b[12:16]))
		case sixToFour.Contains(a):
			a = netip.AddrFrom4([4]byte(b[2:6]))
		}
	}
	for _, r := range privateRanges {
		if r.prefix.Contains(a) {
			return r.prefix, r.why, true
		}
	}
	return netip.Prefix{}, "", false
}

// Private reports whether PrivateRange would.
func Private(a netip.Addr) bool {
	_, _, ok := PrivateRange(a)
	return ok
}

// PrivatePrefixes lists the ranges Private checks, for documentation and
// tests. Embedded IPv4 addresses (NAT64, 6to4) are checked too, beyond
// this list.
func PrivatePrefixes() []netip.Prefix {
	out := make([]netip.Prefix, len(privateRanges))
	for i, r := range privateRanges {
		out[i] = r.prefix
	}
	return out
}
