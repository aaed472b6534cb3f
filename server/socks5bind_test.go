package server

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"ferry/plugins/pkg/match"
)

// readBindReply reads a SOCKS5 reply (after the method choice) and
// returns REP and BND.ADDR:BND.PORT.
func readBindReply(t *testing.T, c net.Conn) (byte, netip.AddrPort) {
	t.Helper()
	var r [4]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	n := 4
	if r[3] == 4 {
		n = 16
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read reply address: %v", err)
	}
	a, _ := netip.AddrFromSlice(b[:n])
	return r[1], netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[n:]))
}

// TestSOCKS5BindIPv6AndName: over IPv6 loopback the port opens on ::1
// and both replies carry IPv6 addresses; a DST.ADDR given as a name
// (localhost, 127.0.0.1 in every /etc/hosts) admits the addresses it
// resolves to.
func TestSOCKS5BindIPv6AndName(t *testing.T) {
	tests := []struct{ listen, dst, want string }{
		{"[::1]:0", "::1", "::1"},
		{"127.0.0.1:0", "localhost", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.dst, func(t *testing.T) {
			ln, err := net.Listen("tcp", tt.listen)
			if err != nil {
				t.Skipf("no %s: %v", tt.listen, err)
			}
			ln.Close()
			f := start(t, strings.Replace(basicConfig, `listen = "127.0.0.1:0"`,
				"listen = \""+tt.listen+"\"\nsocks5_bind = true", 1))
			c := dial(t, f.addr)
			c.Write(socks5Request(tt.dst, 21, 2))
			var m [2]byte
			io.ReadFull(c, m[:])
			rep, bnd := readBindReply(t, c)
			if rep != 0 || bnd.Addr().String() != tt.want {
				t.Fatalf("first reply %#x %v, want 0 on %s", rep, bnd, tt.want)
			}
			peer, err := net.Dial("tcp", bnd.String())
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			rep, named := readBindReply(t, c)
			if rep != 0 || named.String() != peer.LocalAddr().String() {
				t.Fatalf("second reply %#x naming %v, want 0 naming %v", rep, named, peer.LocalAddr())
			}
			peer.Write([]byte("hi"))
			b := make([]byte, 2)
			if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
				t.Fatalf("relayed %q, %v; want hi", b, err)
			}
		})
	}
}

// TestListenBindPort: a range is searched whole, once; a taken range
// fails.
func TestListenBindPort(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	p := uint16(held.Addr().(*net.TCPAddr).Port)
	if _, err := listenBindPort(context.Background(), lo, &match.PortRange{Lo: p, Hi: p}); err == nil {
		t.Fatal("listened on a taken port")
	}
	ln, err := listenBindPort(context.Background(), lo, nil)
	if err != nil {
		t.Fatal(err)
	}
	q := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	ln, err = listenBindPort(context.Background(), lo, &match.PortRange{Lo: q, Hi: q})
	if err != nil || uint16(ln.Addr().(*net.TCPAddr).Port) != q {
		t.Fatalf("range %d-%d: %v, %v", q, q, ln, err)
	}
	ln.Close()
}
