package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
)

func TestParseUDPHeader(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		wantErr  error
		wantAddr string // address or name:port
		wantLen  int
		wantFrag byte
	}{
		{name: "IPv4", in: []byte{0, 0, 0, 1, 192, 0, 2, 7, 0, 53, 'q'}, wantAddr: "192.0.2.7:53", wantLen: 10},
		{name: "IPv6", in: append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 1, 187),
			wantAddr: "[2001:db8::1]:443", wantLen: 22},
		{name: "name", in: []byte{0, 0, 0, 3, 3, 'a', '.', 'b', 0, 80, 'x', 'y'}, wantAddr: "a.b:80", wantLen: 10},
		{name: "fragment is parsed, its number kept", in: []byte{0, 0, 2, 1, 10, 0, 0, 1, 0, 1}, wantAddr: "10.0.0.1:1", wantLen: 10, wantFrag: 2},
		{name: "empty", in: nil, wantErr: ErrShortUDPHeader},
		{name: "reserved set", in: []byte{0, 1, 0, 1, 10, 0, 0, 1, 0, 1}, wantErr: ErrUDPReserved},
		{name: "unknown type", in: []byte{0, 0, 0, 2, 10, 0, 0, 1, 0, 1}, wantErr: ErrUDPAddrType},
		{name: "short IPv4", in: []byte{0, 0, 0, 1, 10, 0, 0, 1, 0}, wantErr: ErrShortUDPHeader},
		{name: "short IPv6", in: []byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0}, wantErr: ErrShortUDPHeader},
		{name: "name past the end", in: []byte{0, 0, 0, 3, 9, 'a', 0, 80}, wantErr: ErrShortUDPHeader},
		{name: "name without length", in: []byte{0, 0, 0, 3}, wantErr: ErrShortUDPHeader},
		{name: "empty name", in: []byte{0, 0, 0, 3, 0, 0, 80}, wantErr: ErrUDPAddrType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseUDPHeader(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := h.Addr.String()
			if h.Host != nil {
				got = net.JoinHostPort(string(h.Host), strconv.Itoa(int(h.Port)))
			}
			if got != tt.wantAddr || h.Len != tt.wantLen || h.Frag != tt.wantFrag {
				t.Fatalf("got %s len %d frag %d, want %s len %d frag %d", got, h.Len, h.Frag, tt.wantAddr, tt.wantLen, tt.wantFrag)
			}
		})
	}
}

func TestAppendUDPHeader(t *testing.T) {
	for _, s := range []string{"192.0.2.7:53", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80"} {
		ap := netip.MustParseAddrPort(s)
		b := AppendUDPHeader(nil, ap)
		if len(b) != UDPHeaderLen(ap) {
			t.Errorf("%s: header of %d bytes, UDPHeaderLen says %d", s, len(b), UDPHeaderLen(ap))
		}
		h, err := ParseUDPHeader(b)
		want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if err != nil || h.Addr != want || h.Len != len(b) {
			t.Errorf("%s: parsed back as %s len %d (%v), want %s", s, h.Addr, h.Len, err, want)
		}
	}
}

// FuzzUDPHeader: any datagram parses or fails without panic; what parses
// lies within the datagram, and an address header writes back the same.
func FuzzUDPHeader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 192, 0, 2, 7, 0, 53, 'q'})
	f.Add(append(append([]byte{0, 0, 0, 4}, netip.MustParseAddr("2001:db8::1").AsSlice()...), 1, 187))
	f.Add([]byte{0, 0, 0, 3, 3, 'a', '.', 'b', 0, 80})
	f.Add([]byte{0, 0, 1, 1, 10, 0, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseUDPHeader(b)
		if err != nil {
			return
		}
		if h.Len > len(b) || h.Len < 4 {
			t.Fatalf("header length %d of a %d-byte datagram", h.Len, len(b))
		}
		if (h.Host == nil) == !h.Addr.IsValid() {
			t.Fatalf("host %q and address %v: want exactly one", h.Host, h.Addr)
		}
		// An IPv4-mapped IPv6 address is written back as IPv4.
		if h.Host == nil && !h.Addr.Addr().Is4In6() {
			if got := AppendUDPHeader(nil, h.Addr); !bytes.Equal(got[3:], b[3:h.Len]) {
				t.Fatalf("written back as % x, was % x", got[3:], b[3:h.Len])
			}
		}
	})
}

// FuzzUDPParentReply: a parent's reply to UDP ASSOCIATE, whatever its
// bytes, gives an address or an error, never a panic.
func FuzzUDPParentReply(f *testing.F) {
	f.Add([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90})
	f.Add([]byte{5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{5, 0, 0, 3, 4, 'h', 'o', 's', 't', 0, 80})
	p := &UDPParent{Name: "fuzz"}
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, err := p.readReply(bytes.NewReader(b), make([]byte, 3+2*255))
		if err == nil && !ap.IsValid() {
			t.Fatalf("no error and no address from % x", b)
		}
	})
}

// udpParentFake answers one UDP ASSOCIATE: it checks the greeting (and
// login) ferry sends and answers reply.
func udpParentFake(t *testing.T, user, pass string, reply []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 600)
		if _, err := io.ReadFull(c, b[:3]); err != nil {
			return
		}
		if user == "" {
			c.Write([]byte{5, 0})
		} else {
			c.Write([]byte{5, 2})
			want := append(append(append([]byte{1, byte(len(user))}, user...), byte(len(pass))), pass...)
			if _, err := io.ReadFull(c, b[:len(want)]); err != nil {
				return
			}
			if !bytes.Equal(b[:len(want)], want) {
				c.Write([]byte{1, 1})
				return
			}
			c.Write([]byte{1, 0})
		}
		if _, err := io.ReadFull(c, b[:10]); err != nil || b[1] != 3 {
			return
		}
		c.Write(reply)
		io.Copy(io.Discard, c)
	}()
	return ln.Addr().String()
}

func TestUDPParentAssociate(t *testing.T) {
	tests := []struct {
		name       string
		user, pass string // the parent's
		url        string // userinfo ferry sends
		reply      []byte
		wantRelay  string
		wantErr    string
	}{
		{name: "relay address", reply: []byte{5, 0, 0, 1, 127, 0, 0, 9, 0x1f, 0x90}, wantRelay: "127.0.0.9:8080"},
		{name: "unspecified means the parent's address", reply: []byte{5, 0, 0, 1, 0, 0, 0, 0, 0x1f, 0x90}, wantRelay: "127.0.0.1:8080"},
		{name: "login", user: "u", pass: "p", url: "u:p@", reply: []byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 99}, wantRelay: "127.0.0.1:99"},
		{name: "wrong login", user: "u", pass: "p", url: "u:x@", wantErr: "auth failed"},
		{name: "refused", reply: []byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0}, wantErr: "SOCKS5 reply to UDP ASSOCIATE: 0x7"},
		{name: "named relay", reply: []byte{5, 0, 0, 3, 1, 'h', 0, 80}, wantErr: "names its relay"},
		{name: "short reply", reply: []byte{5, 0, 0}, wantErr: "read reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := udpParentFake(t, tt.user, tt.pass, tt.reply)
			p, err := udpParent(&config.Upstream{Name: "p", URL: "socks5://" + tt.url + addr})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a, err := p.Associate(ctx, netip.MustParseAddrPort("0.0.0.0:1234"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer a.Control.Close()
			if a.Relay.String() != tt.wantRelay {
				t.Fatalf("relay %s, want %s", a.Relay, tt.wantRelay)
			}
		})
	}
}

// TestTableUDP: which upstreams carry associations, and why the others
// do not.
func TestTableUDP(t *testing.T) {
	cfg, err := config.Parse("udp.toml", []byte(`
[[listener]]
listen = "127.0.0.1:0"

[[upstream]]
name = "s"
url = "socks5://127.0.0.1:1080"

[[upstream]]
name = "h"
url = "http://127.0.0.1:3128"

[[upstream]]
name = "v"
url = "socks5://127.0.0.1:1081"
via = "s"

[[upstream]]
name = "g"
members = ["s", "h"]
`))
	if err != nil {
		t.Fatal(err)
	}
	ups, err := Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, wantErr string }{
		{"direct", ""}, {"s", ""}, {"h", "is a http proxy"}, {"v", "reached via s"}, {"g", "is a group"}, {"nope", "no upstream"},
	}
	for _, tt := range tests {
		p, err := ups.UDP(tt.name)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.wantErr)
		case tt.name == "s" && (p == nil || p.addr != "127.0.0.1:1080"):
			t.Errorf("s: parent %+v, want 127.0.0.1:1080", p)
		}
	}
}
