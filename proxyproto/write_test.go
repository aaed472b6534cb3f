package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
)

func TestFormatV1(t *testing.T) {
	tests := []struct {
		name string
		h    *Header
		want string
	}{
		{name: "spec example", h: v1h(tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443)),
			want: "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"},
		{name: "longest TCP6", h: v1h(tcp(ff6, 65535), tcp(ff6, 65535)),
			want: "PROXY TCP6 " + ff6 + " " + ff6 + " 65535 65535\r\n"},
		{name: "IPv6 is compressed", h: v1h(tcp("2001:db8:0:0:0:0:0:1", 1), tcp("::1", 0)),
			want: "PROXY TCP6 2001:db8::1 ::1 1 0\r\n"},
		{name: "IPv4 in 16-byte form", h: v1h(&net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 1}, &net.TCPAddr{IP: net.ParseIP("10.0.0.2"), Port: 2}),
			want: "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"},
		{name: "IPv4 and IPv6 mixed become TCP6", h: v1h(tcp("10.0.0.1", 1), tcp("2001:db8::2", 2)),
			want: "PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 1 2\r\n"},
		{name: "zone dropped", h: v1h(&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, tcp("fe80::2", 2)),
			want: "PROXY TCP6 fe80::1 fe80::2 1 2\r\n"},
		{name: "Transport left Unspec", h: &Header{Version: 1, Command: Proxy, Source: tcp("1.2.3.4", 1), Destination: tcp("5.6.7.8", 2)},
			want: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"},
		{name: "nil addresses", h: &Header{Version: 1, Command: Proxy}, want: "PROXY UNKNOWN\r\n"},
		{name: "one nil address", h: &Header{Version: 1, Command: Proxy, Source: tcp("1.2.3.4", 1)}, want: "PROXY UNKNOWN\r\n"},
		{name: "typed nil address", h: &Header{Version: 1, Command: Proxy, Source: (*net.TCPAddr)(nil), Destination: tcp("1.2.3.4", 1)}, want: "PROXY UNKNOWN\r\n"},
		{name: "TCP and UDP mixed", h: &Header{Version: 1, Command: Proxy, Source: tcp("1.2.3.4", 1), Destination: udp("1.2.3.4", 1)}, want: "PROXY UNKNOWN\r\n"},
		{name: "UDP", h: &Header{Version: 1, Command: Proxy, Transport: Datagram, Source: udp("1.2.3.4", 1), Destination: udp("1.2.3.4", 1)}, want: "PROXY UNKNOWN\r\n"},
		{name: "UNIX", h: &Header{Version: 1, Command: Proxy, Source: &net.UnixAddr{Name: "/a", Net: "unix"}, Destination: &net.UnixAddr{Name: "/b", Net: "unix"}}, want: "PROXY UNKNOWN\r\n"},
		{name: "nil IP", h: &Header{Version: 1, Command: Proxy, Source: &net.TCPAddr{Port: 1}, Destination: tcp("1.2.3.4", 1)}, want: "PROXY UNKNOWN\r\n"},
		{name: "LOCAL", h: &Header{Version: 1, Command: Local}, want: "PROXY UNKNOWN\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.h.Format()
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFormatV2(t *testing.T) {
	tcp4 := ip4Block("192.168.0.1", "192.168.0.11", 56324, 443)
	tests := []struct {
		name string
		h    *Header
		want []byte
	}{
		{name: "TCP over IPv4", h: v2h(Stream, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443)),
			want: v2(0x21, 0x11, tcp4)},
		{name: "Transport left Unspec", h: v2h(Unspec, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443)),
			want: v2(0x21, 0x11, tcp4)},
		{name: "UDP over IPv4", h: v2h(Datagram, udp("192.168.0.1", 56324), udp("192.168.0.11", 443)),
			want: v2(0x21, 0x12, tcp4)},
		{name: "TCP over IPv6", h: v2h(Stream, tcp("2001:db8::1", 1), tcp("::1", 2)),
			want: v2(0x21, 0x21, ip6Block("2001:db8::1", "::1", 1, 2))},
		{name: "UDP mixed families become IPv6", h: v2h(Datagram, udp("1.2.3.4", 1), udp("::1", 2)),
			want: v2(0x21, 0x22, ip6Block("::ffff:1.2.3.4", "::1", 1, 2))},
		{name: "IPv4-mapped pair becomes IPv4", h: v2h(Stream, &net.TCPAddr{IP: net.ParseIP("::ffff:1.2.3.4"), Port: 1}, tcp("5.6.7.8", 2)),
			want: v2(0x21, 0x11, ip4Block("1.2.3.4", "5.6.7.8", 1, 2))},
		{name: "UNIX stream", h: v2h(Stream, &net.UnixAddr{Name: "/run/a.sock", Net: "unix"}, &net.UnixAddr{Name: "@abstract", Net: "unix"}),
			want: v2(0x21, 0x31, unixBlock("/run/a.sock", "\x00abstract"))},
		{name: "UNIX name @ alone is literal", h: v2h(Stream, &net.UnixAddr{Name: "@", Net: "unix"}, &net.UnixAddr{Name: "@x", Net: "unix"}),
			want: v2(0x21, 0x31, unixBlock("@", "\x00x"))},
		{name: "UNIX datagram", h: v2h(Datagram, &net.UnixAddr{Name: "", Net: "unixgram"}, &net.UnixAddr{Name: strings.Repeat("n", 108), Net: "unixgram"}),
			want: v2(0x21, 0x32, unixBlock("", strings.Repeat("n", 108)))},
		{name: "UNIX with different Net", h: v2h(Unspec, &net.UnixAddr{Name: "/a", Net: "unix"}, &net.UnixAddr{Name: "/b", Net: "unixgram"}),
			want: v2(0x21, 0x00)},
		{name: "unixpacket", h: v2h(Unspec, &net.UnixAddr{Name: "/a", Net: "unixpacket"}, &net.UnixAddr{Name: "/b", Net: "unixpacket"}),
			want: v2(0x21, 0x00)},
		{name: "nil addresses", h: v2h(Unspec, nil, nil), want: v2(0x21, 0x00)},
		{name: "nil addresses with a Transport", h: v2h(Stream, nil, nil), want: v2(0x21, 0x00)},
		{name: "LOCAL", h: &Header{Version: 2, Command: Local}, want: v2(0x20, 0x00)},
		{name: "LOCAL with TLV", h: &Header{Version: 2, Command: Local, TLVs: []TLV{{TypeNOOP, nil}}}, want: v2(0x20, 0x00, tlv(TypeNOOP, ""))},
		{name: "TLVs in order", h: v2h(Stream, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443),
			TLV{TypeALPN, []byte("h2")}, TLV{0xe0, []byte("x")}, TLV{TypeAuthority, []byte("example.com")}),
			want: v2(0x21, 0x11, tcp4, tlv(TypeALPN, "h2"), tlv(0xe0, "x"), tlv(TypeAuthority, "example.com"))},
		{name: "CRC32C computed", h: v2h(Stream, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443),
			TLV{TypeALPN, []byte("h2")}, TLV{TypeCRC32C, []byte("junk")}),
			want: withCRC(v2(0x21, 0x11, tcp4, tlv(TypeALPN, "h2")))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.h.Format()
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestFormatErrors(t *testing.T) {
	a, b := tcp("1.2.3.4", 1), tcp("5.6.7.8", 2)
	tests := []struct {
		name string
		h    *Header
	}{
		{name: "version 0", h: &Header{Command: Proxy, Source: a, Destination: b}},
		{name: "version 3", h: &Header{Version: 3, Command: Proxy}},
		{name: "command 2", h: &Header{Version: 2, Command: 2}},
		{name: "transport 3", h: &Header{Version: 2, Command: Proxy, Transport: 3}},
		{name: "LOCAL with addresses v2", h: &Header{Version: 2, Source: a, Destination: b}},
		{name: "LOCAL with addresses v1", h: &Header{Version: 1, Source: a, Destination: b}},
		{name: "LOCAL with one typed nil", h: &Header{Version: 2, Source: (*net.TCPAddr)(nil)}},
		{name: "v1 with TLVs", h: &Header{Version: 1, Command: Proxy, Source: a, Destination: b, TLVs: []TLV{{TypeALPN, []byte("h2")}}}},
		{name: "STREAM with UDP addresses", h: v2h(Stream, udp("1.2.3.4", 1), udp("1.2.3.4", 2))},
		{name: "DGRAM with TCP addresses v1", h: &Header{Version: 1, Command: Proxy, Transport: Datagram, Source: a, Destination: b}},
		{name: "port -1", h: v2h(Stream, tcp("1.2.3.4", -1), b)},
		{name: "port 65536 v1", h: v1h(a, tcp("1.2.3.4", 65536))},
		{name: "UNIX name of 109 bytes", h: v2h(Stream, &net.UnixAddr{Name: strings.Repeat("a", 109), Net: "unix"}, &net.UnixAddr{Net: "unix"})},
		{name: "abstract name of 108 bytes", h: v2h(Stream, &net.UnixAddr{Name: "@" + strings.Repeat("a", 108), Net: "unix"}, &net.UnixAddr{Net: "unix"})},
		{name: "UNIX name with NUL", h: v2h(Stream, &net.UnixAddr{Name: "a\x00b", Net: "unix"}, &net.UnixAddr{Net: "unix"})},
		{name: "abstract name ending with NUL", h: v2h(Stream, &net.UnixAddr{Name: "@a\x00", Net: "unix"}, &net.UnixAddr{Net: "unix"})},
		{name: "CRC32C of 3 bytes", h: v2h(Stream, a, b, TLV{TypeCRC32C, []byte("abc")})},
		{name: "two CRC32C", h: v2h(Stream, a, b, TLV{TypeCRC32C, make([]byte, 4)}, TLV{TypeCRC32C, make([]byte, 4)})},
		{name: "UNIQUE_ID of 129 bytes", h: v2h(Stream, a, b, TLV{TypeUniqueID, make([]byte, 129)})},
		{name: "malformed SSL", h: v2h(Stream, a, b, TLV{TypeSSL, []byte{1}})},
		{name: "TLV of 65536 bytes", h: v2h(Stream, a, b, TLV{0xe0, make([]byte, 65536)})},
		{name: "TLVs beyond 65535 bytes", h: v2h(Stream, a, b, TLV{0xe0, make([]byte, 65535-12-3+1)})},
		{name: "SSL too long", h: v2h(Stream, a, b, SSLInfo{TLVs: []TLV{{SubtypeSSLCN, make([]byte, 70000)}}}.TLV())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.h.Format()
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			if n, err := tc.h.WriteTo(io.Discard); err == nil || n != 0 {
				t.Fatalf("WriteTo: got (%d, %v), want (0, error)", n, err)
			}
			// Append leaves the destination as it was.
			dst := []byte("keep")
			if out, _ := tc.h.Append(dst); string(out) != "keep" {
				t.Fatalf("Append: got %q, want %q", out, "keep")
			}
		})
	}
}

func TestFormatLongestBody(t *testing.T) {
	h := v2h(Stream, tcp("1.2.3.4", 1), tcp("5.6.7.8", 2), TLV{0xe0, make([]byte, 65535-12-3)})
	b, err := h.Format()
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if len(b) != 16+65535 {
		t.Fatalf("got %d bytes, want %d", len(b), 16+65535)
	}
	got, err := Read(bufio.NewReaderSize(bytes.NewReader(b), len(b)), ReadOptions{MaxHeaderLen: len(b)})
	if err != nil {
		t.Fatalf("read back: got error %v, want none", err)
	}
	if d := diffHeader(got, h); d != "" {
		t.Fatal(d)
	}
}

// countWriter records the size of each Write.
type countWriter struct{ writes []int }

func (c *countWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, len(p))
	return len(p), nil
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriteTo(t *testing.T) {
	h := v2h(Stream, tcp("1.2.3.4", 1), tcp("5.6.7.8", 2), TLV{TypeALPN, []byte("h2")})
	h.AddCRC32C()
	var w countWriter
	n, err := h.WriteTo(&w)
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if want := 16 + 12 + 5 + 7; n != int64(want) || len(w.writes) != 1 || w.writes[0] != want {
		t.Fatalf("got n=%d writes=%v, want %d in one write", n, w.writes, want)
	}
	if _, err := h.WriteTo(errWriter{}); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("got error %v, want a wrapped io.ErrClosedPipe", err)
	}
}

func TestAppendReusesBuffer(t *testing.T) {
	h := v1h(tcp("1.2.3.4", 1), tcp("5.6.7.8", 2))
	buf := make([]byte, 0, 128)
	out, err := h.Append(buf[:0])
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if &out[0] != &buf[:1][0] {
		t.Fatal("got a new buffer, want the one passed in")
	}
	out, _ = h.Append([]byte("pre:"))
	if want := "pre:PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"; string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
	h2 := v2h(Stream, tcp("1.2.3.4", 1), tcp("5.6.7.8", 2))
	h2.AddCRC32C()
	out, _ = h2.Append([]byte("pre:"))
	got, err := Read(bufio.NewReader(bytes.NewReader(out[4:])), ReadOptions{})
	if err != nil || string(out[:4]) != "pre:" {
		t.Fatalf("got %q, error %v, want a valid header after the prefix", out, err)
	}
	if d := diffHeader(got, h2); d != "" {
		t.Fatal(d)
	}
}

// TestRoundTrip writes random valid headers, reads them back with a
// payload behind, and compares.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	payload := []byte("GET / HTTP/1.1\r\n\r\n")
	for i := range 5000 {
		h := randHeader(rng, 1+i%2, randOpts{})
		b, err := h.Format()
		if err != nil {
			t.Fatalf("header %d %+v: got error %v, want none", i, h, err)
		}
		r := bufio.NewReader(bytes.NewReader(append(b, payload...)))
		got, err := Read(r, ReadOptions{})
		if err != nil {
			t.Fatalf("header %d %q: got error %v, want none", i, b, err)
		}
		if d := diffHeader(got, wantAfterRead(h)); d != "" {
			t.Fatalf("header %d %q: %s", i, b, d)
		}
		if rest, _ := io.ReadAll(r); !bytes.Equal(rest, payload) {
			t.Fatalf("header %d %q: got rest %q, want %q", i, b, rest, payload)
		}
		// Formatting what was read gives the same bytes, except where
		// Read drops information (LOCAL TLVs).
		again, err := got.Format()
		if err != nil {
			t.Fatalf("header %d: reformat: got error %v, want none", i, err)
		}
		if !(h.Version == 2 && h.Command == Local && len(h.TLVs) > 0) && !bytes.Equal(again, b) {
			t.Fatalf("header %d: reformat: got %q, want %q", i, again, b)
		}
	}
}
