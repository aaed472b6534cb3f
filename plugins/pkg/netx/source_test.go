package netx

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckSource(t *testing.T) {
	local := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::7")}
	listErr := errors.New("list this host's addresses: no netlink")
	tests := []struct {
		name    string
		addr    string
		listErr error
		want    string // "" means accepted
	}{
		{name: "interface address", addr: "10.1.2.3"},
		{name: "interface IPv6", addr: "2001:db8::7"},
		{name: "loopback range", addr: "127.255.0.1"},
		{name: "loopback without a list", addr: "127.0.0.5", listErr: listErr},
		{name: "IPv6 loopback", addr: "::1"},
		{name: "not on the host", addr: "10.1.2.4", want: "10.1.2.4 is not assigned to this host"},
		{name: "list fails", addr: "10.1.2.3", listErr: listErr, want: "no netlink"},
		{name: "unspecified IPv6", addr: "::", want: ":: is unspecified"},
		{name: "multicast", addr: "224.0.0.1", want: "224.0.0.1 is a multicast address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSource(netip.MustParseAddr(tt.addr), local, tt.listErr)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("CheckSource(%s): got %v, want nil", tt.addr, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("CheckSource(%s): got %v, want an error with %q", tt.addr, err, tt.want)
			}
		})
	}
}

func TestParseSource(t *testing.T) {
	tests := []struct {
		name, in, want, err string
	}{
		{name: "loopback", in: "127.0.0.3", want: "127.0.0.3"},
		{name: "IPv4-mapped is IPv4", in: "::ffff:127.0.0.3", want: "127.0.0.3"},
		{name: "not an address", in: "eth0", err: `invalid address "eth0"`},
		{name: "a prefix", in: "127.0.0.0/8", err: "want an IP address"},
		{name: "unspecified", in: "0.0.0.0", err: "0.0.0.0 is unspecified"},
	}
	var host HostAddrs
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := host.ParseSource(tt.in)
			switch {
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("ParseSource(%q): got %v, %v; want an error with %q", tt.in, a, err, tt.err)
			case tt.err == "" && (err != nil || a.String() != tt.want):
				t.Fatalf("ParseSource(%q): got %v, %v; want %s", tt.in, a, err, tt.want)
			}
		})
	}
}
