package acl

import (
	"context"
	"net/netip"
	"testing"

	"ferry/plugins"
)

// TestOnDestination: each destination of a SOCKS5 UDP association gets
// the whole decision a TCP target gets, with its resolved address when
// ferry sends there itself; the association's OnConnect decides nothing.
func TestOnDestination(t *testing.T) {
	p := newACL(t, `
default = "deny"
deny_private_destinations = true

[[plugin.rule]]
action = "deny"
dest = ["203.0.113.0/24"]

[[plugin.rule]]
action = "allow"
domain = ["*.example.com"]
port = [53]

[[plugin.rule]]
action = "allow"
dest = ["9.9.9.0/24"]
`)
	tests := []struct {
		name   string
		target string
		addr   string // resolved address; "" through an upstream
		want   string
	}{
		{name: "name allowed, public address", target: "ns.example.com:53", addr: "198.18.0.1:53", want: "deny"}, // 198.18/15 is private (benchmarking)
		{name: "name allowed", target: "ns.example.com:53", addr: "8.8.8.8:53", want: "allow"},
		{name: "name resolved to a denied address", target: "ns.example.com:53", addr: "203.0.113.5:53", want: "deny"},
		{name: "name resolved to a private address", target: "ns.example.com:53", addr: "127.0.0.1:53", want: "deny"},
		{name: "wrong port", target: "ns.example.com:54", addr: "8.8.8.8:54", want: "deny"},
		{name: "literal allowed by dest", target: "9.9.9.9:9", addr: "9.9.9.9:9", want: "allow"},
		{name: "literal private through an upstream", target: "10.0.0.1:53", want: "deny"},
		{name: "name through an upstream, verdict waits for an address: allowed as a TCP dial through one", target: "other.test:9", want: "allow"},
		{name: "name through an upstream, allowed by name", target: "ns.example.com:53", want: "allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := req{target: "0.0.0.0:0"}.session()
			s.Protocol = plugins.ProtocolSOCKS5UDP
			var ap netip.AddrPort
			if tt.addr != "" {
				ap = netip.MustParseAddrPort(tt.addr)
			}
			if got := outcome(t, p.OnDestination(s, tt.target, ap)); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	s := req{target: "0.0.0.0:0"}.session()
	s.Protocol = plugins.ProtocolSOCKS5UDP
	if err := p.OnConnect(context.Background(), s); err != nil {
		t.Fatalf("OnConnect of an association: %v, want nil (its destinations are decided one by one)", err)
	}
}
