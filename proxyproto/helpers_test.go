package proxyproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"net"
	"strings"
)

// Test helpers that build wire bytes by hand, independently of write.go.

const sig = "\r\n\r\n\x00\r\nQUIT\n"

// v2 builds a v2 header: signature, ver/cmd byte, family byte, the length
// of body, body.
func v2(verCmd, fam byte, body ...[]byte) []byte {
	b := append([]byte(sig), verCmd, fam, 0, 0)
	for _, p := range body {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint16(b[14:], uint16(len(b)-16))
	return b
}

// tlv encodes one TLV by hand.
func tlv(typ byte, v string) []byte {
	return append([]byte{typ, byte(len(v) >> 8), byte(len(v))}, v...)
}

// ip4Block and ip6Block build address blocks.
func ip4Block(src, dst string, sport, dport uint16) []byte {
	b := append(net.ParseIP(src).To4(), net.ParseIP(dst).To4()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func ip6Block(src, dst string, sport, dport uint16) []byte {
	b := append(append([]byte{}, net.ParseIP(src).To16()...), net.ParseIP(dst).To16()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func unixBlock(src, dst string) []byte {
	b := make([]byte, 216)
	copy(b, src)
	copy(b[108:], dst)
	return b
}

// withCRC appends a CRC32C TLV to a v2 header built by v2, fixing the
// length and computing the checksum.
func withCRC(h []byte) []byte {
	h = append(append([]byte{}, h...), 0x03, 0, 4, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(h[14:], uint16(len(h)-16))
	sum := crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(h[len(h)-4:], sum)
	return h
}

func tcp(ip string, port int) *net.TCPAddr {
	a := net.ParseIP(ip)
	if a4 := a.To4(); a4 != nil {
		a = a4
	}
	return &net.TCPAddr{IP: a, Port: port}
}

func udp(ip string, port int) *net.UDPAddr {
	t := tcp(ip, port)
	return &net.UDPAddr{IP: t.IP, Port: t.Port}
}

// diffHeader returns "" if got and want describe the same header, else a
// description of the first difference. IPs compare with net.IP.Equal (an
// IPv4 address equals its IPv4-mapped form) and CRC32C values are ignored,
// since they depend on the exact bytes.
func diffHeader(got, want *Header) string {
	switch {
	case got == nil || want == nil:
		if got != want {
			return fmt.Sprintf("got header %v, want %v", got, want)
		}
		return ""
	case got.Version != want.Version:
		return fmt.Sprintf("got version %d, want %d", got.Version, want.Version)
	case got.Command != want.Command:
		return fmt.Sprintf("got command %v, want %v", got.Command, want.Command)
	case got.Transport != want.Transport:
		return fmt.Sprintf("got transport %v, want %v", got.Transport, want.Transport)
	}
	if d := diffAddr(got.Source, want.Source); d != "" {
		return "source: " + d
	}
	if d := diffAddr(got.Destination, want.Destination); d != "" {
		return "destination: " + d
	}
	if len(got.TLVs) != len(want.TLVs) {
		return fmt.Sprintf("got %d TLVs %v, want %d %v", len(got.TLVs), got.TLVs, len(want.TLVs), want.TLVs)
	}
	for i := range got.TLVs {
		g, w := got.TLVs[i], want.TLVs[i]
		if g.Type != w.Type || (g.Type != TypeCRC32C && !bytes.Equal(g.Value, w.Value)) {
			return fmt.Sprintf("TLV %d: got {%#x %q}, want {%#x %q}", i, g.Type, g.Value, w.Type, w.Value)
		}
	}
	return ""
}

func diffAddr(got, want net.Addr) string {
	switch w := want.(type) {
	case nil:
		if got != nil {
			return fmt.Sprintf("got %T %v, want nil", got, got)
		}
	case *net.TCPAddr:
		g, ok := got.(*net.TCPAddr)
		if !ok || !g.IP.Equal(w.IP) || g.Port != w.Port {
			return fmt.Sprintf("got %T %v, want %T %v", got, got, want, want)
		}
	case *net.UDPAddr:
		g, ok := got.(*net.UDPAddr)
		if !ok || !g.IP.Equal(w.IP) || g.Port != w.Port {
			return fmt.Sprintf("got %T %v, want %T %v", got, got, want, want)
		}
	case *net.UnixAddr:
		g, ok := got.(*net.UnixAddr)
		if !ok || g.Name != w.Name || g.Net != w.Net {
			return fmt.Sprintf("got %T %#v, want %T %#v", got, got, want, want)
		}
	default:
		return fmt.Sprintf("unexpected want type %T", want)
	}
	return ""
}

// randHeader returns a random header of the given version that Format
// accepts and Read returns unchanged, except that a v2 LOCAL header's TLVs
// are dropped by Read (see wantAfterRead). Options trim what the
// cross-check against go-proxyproto cannot express.
type randOpts struct {
	noUnspecProxy bool // no PROXY with nil addresses
	noAbstract    bool // no abstract UNIX names
	noCRC         bool
}

func randHeader(rng *rand.Rand, version int, o randOpts) *Header {
	h := &Header{Version: version, Command: Proxy}
	if version == 1 {
		switch rng.IntN(5) {
		case 0:
			if !o.noUnspecProxy {
				return h // UNKNOWN
			}
			fallthrough
		case 1, 2:
			h.Transport, h.Source, h.Destination = Stream, &net.TCPAddr{IP: randIP(rng, 4), Port: randPort(rng)}, &net.TCPAddr{IP: randIP(rng, 4), Port: randPort(rng)}
		default:
			h.Transport, h.Source, h.Destination = Stream, &net.TCPAddr{IP: randIP(rng, 16), Port: randPort(rng)}, &net.TCPAddr{IP: randIP(rng, 16), Port: randPort(rng)}
		}
		return h
	}
	fams := []byte{0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32}
	if o.noUnspecProxy {
		fams = fams[1:]
	}
	if rng.IntN(8) == 0 {
		h.Command = Local
	} else {
		switch fam := fams[rng.IntN(len(fams))]; fam {
		case 0x11, 0x21:
			n := ipLenOf(fam)
			h.Transport, h.Source, h.Destination = Stream, &net.TCPAddr{IP: randIP(rng, n), Port: randPort(rng)}, &net.TCPAddr{IP: randIP(rng, n), Port: randPort(rng)}
		case 0x12, 0x22:
			n := ipLenOf(fam)
			h.Transport, h.Source, h.Destination = Datagram, &net.UDPAddr{IP: randIP(rng, n), Port: randPort(rng)}, &net.UDPAddr{IP: randIP(rng, n), Port: randPort(rng)}
		case 0x31, 0x32:
			nw := "unix"
			h.Transport = Stream
			if fam == 0x32 {
				nw, h.Transport = "unixgram", Datagram
			}
			h.Source = &net.UnixAddr{Name: randUnixName(rng, o.noAbstract), Net: nw}
			h.Destination = &net.UnixAddr{Name: randUnixName(rng, o.noAbstract), Net: nw}
		}
	}
	for range rng.IntN(5) {
		h.TLVs = append(h.TLVs, randTLV(rng))
	}
	if !o.noCRC && rng.IntN(3) == 0 {
		h.AddCRC32C()
		// Move it to a random position: Format must find it anywhere.
		i := rng.IntN(len(h.TLVs))
		h.TLVs[i], h.TLVs[len(h.TLVs)-1] = h.TLVs[len(h.TLVs)-1], h.TLVs[i]
	}
	return h
}

// wantAfterRead is what Read returns for a header written from h.
func wantAfterRead(h *Header) *Header {
	w := *h
	if w.Version == 2 && w.Command == Local {
		w.TLVs = nil
	}
	if len(w.TLVs) == 0 {
		w.TLVs = nil
	}
	return &w
}

func randIP(rng *rand.Rand, n int) net.IP {
	ip := make(net.IP, n)
	for i := range ip {
		ip[i] = byte(rng.UintN(256))
	}
	if n == 16 {
		ip[0] |= 0x20 // never IPv4-mapped, which Format writes as IPv4
	}
	return ip
}

func randPort(rng *rand.Rand) int {
	if rng.IntN(10) == 0 {
		return []int{0, 1, 65535}[rng.IntN(3)]
	}
	return rng.IntN(65536)
}

func randUnixName(rng *rand.Rand, noAbstract bool) string {
	n := rng.IntN(108)
	if rng.IntN(8) == 0 {
		n = 108
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(1 + rng.UintN(255))
	}
	s := string(b)
	if strings.HasPrefix(s, "@") {
		s = "/" + s[1:]
	}
	if !noAbstract && n > 1 && rng.IntN(4) == 0 {
		s = "@" + s[1:]
	}
	return s
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

func randTLV(rng *rand.Rand) TLV {
	switch rng.IntN(8) {
	case 0:
		return TLV{Type: TypeALPN, Value: []byte([]string{"h2", "http/1.1", "acme-tls/1"}[rng.IntN(3)])}
	case 1:
		return TLV{Type: TypeAuthority, Value: []byte("host-" + fmt.Sprint(rng.IntN(1000)) + ".example.com")}
	case 2:
		return TLV{Type: TypeNOOP, Value: make([]byte, rng.IntN(8))}
	case 3:
		return TLV{Type: TypeUniqueID, Value: randBytes(rng, rng.IntN(MaxUniqueIDLen+1))}
	case 4:
		return TLV{Type: TypeNetNS, Value: []byte("ns" + fmt.Sprint(rng.IntN(10)))}
	case 5:
		s := SSLInfo{Client: byte(rng.IntN(8)), Verify: rng.Uint32()}
		if s.Client&ClientSSL != 0 {
			s.TLVs = append(s.TLVs, TLV{Type: SubtypeSSLVersion, Value: []byte("TLSv1.3")})
		}
		if rng.IntN(2) == 0 {
			s.TLVs = append(s.TLVs, TLV{Type: SubtypeSSLCN, Value: []byte("client.example.com")},
				TLV{Type: SubtypeSSLCipher, Value: []byte("ECDHE-RSA-AES128-GCM-SHA256")})
		}
		return s.TLV()
	default:
		// Custom, experimental and future types are kept raw.
		return TLV{Type: byte(0xe0 + rng.IntN(32)), Value: randBytes(rng, rng.IntN(40))}
	}
}

func ipLenOf(fam byte) int {
	if fam>>4 == 2 {
		return 16
	}
	return 4
}
