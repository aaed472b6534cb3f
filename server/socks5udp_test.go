package server

import (
	"net"
	"net/netip"
	"testing"
)

func TestClientFilter(t *testing.T) {
	peer4 := net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:40000"))
	peer6 := net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[::1]:40000"))
	tests := []struct {
		name     string
		declared string
		peer     net.Addr
		wantIP   string
		wantPort uint16
	}{
		{name: "zeros: the peer's address, any port", declared: "0.0.0.0:0", peer: peer4, wantIP: "127.0.0.1"},
		{name: "port declared", declared: "0.0.0.0:5353", peer: peer4, wantIP: "127.0.0.1", wantPort: 5353},
		{name: "the peer's own address", declared: "127.0.0.1:5353", peer: peer4, wantIP: "127.0.0.1", wantPort: 5353},
		{name: "another address (NAT or a reflection attempt): the peer's, any port", declared: "192.0.2.1:5353", peer: peer4, wantIP: "127.0.0.1"},
		{name: "IPv6 peer, IPv4 zeros", declared: "0.0.0.0:7", peer: peer6, wantIP: "::1", wantPort: 7},
		{name: "IPv6 unspecified", declared: "[::]:7", peer: peer6, wantIP: "::1", wantPort: 7},
		{name: "a name (PySocks sends \"0\"): its port", declared: "0:9", peer: peer4, wantIP: "127.0.0.1", wantPort: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip, port := clientFilter(tt.declared, tt.peer)
			if ip.String() != tt.wantIP || port != tt.wantPort {
				t.Fatalf("got %s port %d, want %s port %d", ip, port, tt.wantIP, tt.wantPort)
			}
		})
	}
}
