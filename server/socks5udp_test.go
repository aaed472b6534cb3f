package server

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"ferry/relay/upstream"
	"ferry/test/testkit"
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

// TestSOCKS5UDPAssociate asks a running server for associations: served
// by default, with the relay at the address the client reached and a
// datagram echoed through it; 0x07 with socks5_udp = false; and the
// association ends with its control connection, with one access line.
func TestSOCKS5UDPAssociate(t *testing.T) {
	echo, err := testkit.UDPEcho(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	echoAP := echo.LocalAddr().(*net.UDPAddr).AddrPort()
	tests := []struct {
		name    string
		config  string
		wantRep byte
	}{
		{name: "on by default", config: basicConfig, wantRep: 0},
		{name: "socks5_udp = false", config: basicConfig + "[[listener]]\nname = \"off\"\nlisten = \"127.0.0.1:0\"\nsocks5_udp = false\n", wantRep: 0x07},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, tt.config)
			addr := f.srv.Addrs()[len(f.srv.Addrs())-1].String()
			conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := dial(t, addr)
			c.Write(socks5Request("0.0.0.0", uint16(conn.LocalAddr().(*net.UDPAddr).Port), socks5CmdUDPAssociate))
			var r [2 + 10]byte
			if _, err := io.ReadFull(c, r[:]); err != nil {
				t.Fatalf("read reply: %v", err)
			}
			if r[3] != tt.wantRep {
				t.Fatalf("REP %#x, want %#x", r[3], tt.wantRep)
			}
			if tt.wantRep != 0 {
				return
			}
			relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(r[6:10])), binary.BigEndian.Uint16(r[10:12]))
			if relay.Addr() != netip.MustParseAddr("127.0.0.1") {
				t.Fatalf("relay %s, want 127.0.0.1 (the address the client reached)", relay)
			}
			dgram := upstream.AppendUDPHeader(nil, echoAP)
			conn.WriteToUDPAddrPort(append(dgram, "ping"...), relay)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 100)
			n, _, err := conn.ReadFromUDPAddrPort(b)
			if err != nil || string(b[:n]) != string(dgram)+"ping" {
				t.Fatalf("echo through the relay: %q (%v), want %q", b[:n], err, string(dgram)+"ping")
			}
			c.Close()
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(f.logs.String(), `"proto":"socks5-udp"`) {
				if time.Now().After(deadline) {
					t.Fatalf("no access line for the association:\n%s", f.logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
