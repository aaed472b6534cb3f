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
}

// TestAdmitAssociation: an association is refused only when the rules
// deny its client every destination.
func TestAdmitAssociation(t *testing.T) {
	const rules = `
default = "deny"

[[plugin.rule]]
action = "deny"
client = ["192.0.2.66"]

[[plugin.rule]]
action = "deny"
client = ["192.0.2.0/24"]
port = [25]

[[plugin.rule]]
action = "allow"
client = ["192.0.2.0/24"]
dest = ["9.9.9.9"]

[[plugin.rule]]
action = "allow"
user = ["alice"]
`
	p := newACL(t, rules)
	tests := []struct {
		name, client, user, want string
	}{
		{name: "an allow rule may match a destination", client: "192.0.2.50", want: "allow"},
		{name: "denied every destination by a client rule", client: "192.0.2.66", want: "deny"},
		{name: "no allow rule for the client: default deny", client: "198.51.100.1", want: "deny"},
		{name: "allowed by user", client: "198.51.100.1", user: "alice", want: "allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := req{target: "0.0.0.0:0", client: tt.client, user: tt.user}.session()
			s.Protocol = plugins.ProtocolSOCKS5UDP
			if got := outcome(t, p.OnConnect(context.Background(), s)); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	open := newACL(t, `default = "allow"`)
	s := req{target: "0.0.0.0:0"}.session()
	s.Protocol = plugins.ProtocolSOCKS5UDP
	if err := open.OnConnect(context.Background(), s); err != nil {
		t.Fatalf("default allow: %v, want the association admitted", err)
	}
}
