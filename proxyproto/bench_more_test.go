package proxyproto

import (
	"io"
	"testing"
)

// BenchmarkWriteTo measures WriteTo, the call ferry makes to send a header
// upstream (upstream.WriteProxyHeader): encoding plus one Write. bench_test.go
// measures Format and Append alone; the difference here is the Write and
// the buffer WriteTo allocates per header.
func BenchmarkWriteTo(b *testing.B) {
	cases := []struct {
		name string
		h    *Header
	}{
		{name: "v1 TCP4", h: v1h(tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443))},
		{name: "v1 TCP6", h: v1h(tcp("2001:db8::1", 56324), tcp("2001:db8::2", 443))},
		{name: "v2 TCP4", h: v2h(Stream, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443))},
		{name: "v2 TCP6", h: v2h(Stream, tcp("2001:db8::1", 56324), tcp("2001:db8::2", 443))},
		{name: "v2 TCP4 ALPN authority", h: v2h(Stream, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443),
			TLV{TypeALPN, []byte("h2")}, TLV{TypeAuthority, []byte("example.com")})},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.h.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
