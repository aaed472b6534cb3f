package match

import (
	"net/netip"
	"testing"
)

func TestPrivate(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		// Loopback, unspecified, "this network".
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"::1", true},
		{"::", true},
		// RFC 1918.
		{"10.0.0.1", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true},
		// Link-local and cloud metadata.
		{"169.254.169.254", true},
		{"169.254.0.1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"febf::1", true},
		{"fd00:ec2::254", true},
		// Unique local, site-local.
		{"fc00::1", true},
		{"fdff::1", true},
		{"fec0::1", true},
		// CGNAT.
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"100.128.0.1", false},
		// Multicast and broadcast.
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"255.255.255.255", true},
		{"ff02::1", true},
		{"ff0e::1", true},
		// Special purpose.
		{"192.0.0.8", true},
		{"192.0.2.10", true},
		{"198.18.0.1", true},
		{"198.51.100.1", true},
		{"203.0.113.1", true},
		{"240.0.0.1", true},
		{"2001:db8::1", true},
		{"2001::1", true}, // Teredo
		{"100::1", true},
		{"64:ff9b:1::1", true},
		{"3fff::1", true},
		// IPv4-mapped and -compatible forms.
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.1.2.3", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:8.8.8.8", false},
		{"::127.0.0.1", true},
		{"::ffff:0:7f00:1", true}, // IPv4-translated
		// Embedded IPv4: NAT64 and 6to4.
		{"64:ff9b::7f00:1", true},
		{"64:ff9b::a9fe:a9fe", true},
		{"64:ff9b::808:808", false},
		{"2002:a00:1::1", true},
		{"2002:c0a8:101::1", true},
		{"2002:808:808::1", false},
		// Public.
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"93.184.216.34", false},
		{"2606:4700:4700::1111", false},
		{"2a00:1450:4001::1", false},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		pr, why, got := PrivateRange(a)
		if got != tt.want {
			t.Errorf("Private(%s) = %v (%v %s), want %v", tt.addr, got, pr, why, tt.want)
		}
		if got && why == "" {
			t.Errorf("Private(%s) gives no reason", tt.addr)
		}
	}
	if !Private(netip.Addr{}) {
		t.Error("the zero Addr is not private, want private (fail closed)")
	}
}

func TestPrivatePrefixesCanonical(t *testing.T) {
	for _, p := range PrivatePrefixes() {
		if p != p.Masked() {
			t.Errorf("%s is not masked", p)
		}
		if !Private(p.Addr()) {
			t.Errorf("first address of %s not private", p)
		}
	}
}
