package proxyproto

import (
	"bufio"
	"bytes"
	"testing"
)

func benchRead(b *testing.B, in []byte) {
	b.Helper()
	br := bytes.NewReader(in)
	r := bufio.NewReader(br)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		br.Reset(in)
		r.Reset(br)
		if _, err := Read(r, ReadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead(b *testing.B) {
	tcp4 := ip4Block("192.168.0.1", "192.168.0.11", 56324, 443)
	cases := []struct {
		name string
		in   []byte
	}{
		{name: "v1 TCP4", in: []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n")},
		{name: "v1 TCP6", in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n")},
		{name: "v2 TCP4", in: v2(0x21, 0x11, tcp4)},
		{name: "v2 TCP6", in: v2(0x21, 0x21, ip6Block("2001:db8::1", "2001:db8::2", 56324, 443))},
		{name: "v2 TCP4 ALPN authority CRC32C", in: withCRC(v2(0x21, 0x11, tcp4, tlv(TypeALPN, "h2"), tlv(TypeAuthority, "example.com")))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { benchRead(b, c.in) })
	}
}

func BenchmarkReadNoHeader(b *testing.B) {
	benchRead := func(b *testing.B, in []byte) {
		br := bytes.NewReader(in)
		r := bufio.NewReader(br)
		b.ReportAllocs()
		for b.Loop() {
			br.Reset(in)
			r.Reset(br)
			if _, err := Read(r, ReadOptions{}); err != ErrNoHeader {
				b.Fatal(err)
			}
		}
	}
	benchRead(b, []byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))
}

func BenchmarkFormat(b *testing.B) {
	withCRC := v2h(Stream, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443), TLV{TypeALPN, []byte("h2")}, TLV{TypeAuthority, []byte("example.com")})
	withCRC.AddCRC32C()
	cases := []struct {
		name string
		h    *Header
	}{
		{name: "v1 TCP4", h: v1h(tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443))},
		{name: "v1 TCP6", h: v1h(tcp("2001:db8::1", 56324), tcp("2001:db8::2", 443))},
		{name: "v2 TCP4", h: v2h(Stream, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443))},
		{name: "v2 TCP6", h: v2h(Stream, tcp("2001:db8::1", 56324), tcp("2001:db8::2", 443))},
		{name: "v2 TCP4 ALPN authority CRC32C", h: withCRC},
	}
	for _, c := range cases {
		b.Run(c.name+"/Format", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.h.Format(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/Append", func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = c.h.Append(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
