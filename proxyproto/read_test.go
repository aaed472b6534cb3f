package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// readers returns the ways each read test feeds its input: all at once,
// and one byte per Read call, which makes Read wait for every byte.
func readers(data []byte) map[string]*bufio.Reader {
	return map[string]*bufio.Reader{
		"whole":    bufio.NewReader(bytes.NewReader(data)),
		"one byte": bufio.NewReader(iotest.OneByteReader(bytes.NewReader(data))),
	}
}

type readCase struct {
	name    string
	in      string
	opts    ReadOptions
	want    *Header
	wantErr error  // errors.Is target; nil for success
	rest    string // bytes left in the reader after a successful Read
}

func runReadCases(t *testing.T, cases []readCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for how, r := range readers([]byte(tc.in)) {
				h, err := Read(r, tc.opts)
				if tc.wantErr != nil {
					if !errors.Is(err, tc.wantErr) {
						t.Fatalf("%s: got error %v, want %v", how, err, tc.wantErr)
					}
					if h != nil {
						t.Fatalf("%s: got header %+v with error", how, h)
					}
					// A failed Read consumes nothing.
					if all, _ := io.ReadAll(r); string(all) != tc.in {
						t.Fatalf("%s: after error the reader holds %q, want all of %q", how, all, tc.in)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: got error %v, want none", how, err)
				}
				if d := diffHeader(h, tc.want); d != "" {
					t.Fatalf("%s: %s", how, d)
				}
				if rest, _ := io.ReadAll(r); string(rest) != tc.rest {
					t.Fatalf("%s: got rest %q, want %q", how, rest, tc.rest)
				}
			}
		})
	}
}

func v1h(src, dst net.Addr) *Header {
	return &Header{Version: 1, Command: Proxy, Transport: Stream, Source: src, Destination: dst}
}

var v1Unknown = &Header{Version: 1, Command: Proxy}

const (
	ff6      = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	httpReq  = "GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"
	unknown1 = "PROXY UNKNOWN " + ff6 + " " + ff6 + " 65535 65535\r\n"
)

func TestReadV1(t *testing.T) {
	runReadCases(t, []readCase{
		// The examples of the spec, section 2.1.
		{name: "spec HTTP example", in: "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" + httpReq,
			want: v1h(tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443)), rest: httpReq},
		{name: "spec longest TCP4", in: "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
			want: v1h(tcp("255.255.255.255", 65535), tcp("255.255.255.255", 65535))},
		{name: "spec longest TCP6", in: "PROXY TCP6 " + ff6 + " " + ff6 + " 65535 65535\r\n",
			want: v1h(tcp(ff6, 65535), tcp(ff6, 65535))},
		{name: "spec UNKNOWN short form", in: "PROXY UNKNOWN\r\n", want: v1Unknown},
		{name: "spec UNKNOWN worst case 107 bytes", in: unknown1 + "x", want: v1Unknown, rest: "x"},

		{name: "port 0 and zero address", in: "PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n",
			want: v1h(tcp("0.0.0.0", 0), tcp("10.0.0.1", 0))},
		{name: "IPv6 compressed", in: "PROXY TCP6 ::1 2001:db8::a 1 2\r\n",
			want: v1h(tcp("::1", 1), tcp("2001:db8::a", 2))},
		{name: "IPv6 upper case and zero-padded groups", in: "PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 ::A 1 2\r\n",
			want: v1h(tcp("2001:db8::1", 1), tcp("::a", 2))},
		{name: "IPv6 IPv4-mapped as inet_ntop writes it", in: "PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n",
			want: v1h(tcp("::ffff:1.2.3.4", 1), tcp("::1", 2))},
		{name: "UNKNOWN with garbage is ignored", in: "PROXY UNKNOWN what\tever\r ~!\r\nrest", want: v1Unknown, rest: "rest"},
		{name: "UNKNOWN with trailing space", in: "PROXY UNKNOWN \r\n", want: v1Unknown},
		{name: "payload starting with CRLF stays", in: "PROXY UNKNOWN\r\n\r\n", want: v1Unknown, rest: "\r\n"},

		// Malformed lines.
		{name: "two spaces after PROXY", in: "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "two spaces between addresses", in: "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "two spaces after protocol", in: "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "trailing space", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", wantErr: ErrInvalid},
		{name: "leading space before port", in: "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n", wantErr: ErrInvalid},
		{name: "tab separator", in: "PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "no space after PROXY", in: "PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "PROXY alone", in: "PROXY\r\n", wantErr: ErrInvalid},
		{name: "empty protocol", in: "PROXY \r\n", wantErr: ErrInvalid},
		{name: "missing CR", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", wantErr: ErrInvalid},
		{name: "missing CR UNKNOWN", in: "PROXY UNKNOWN\n", wantErr: ErrInvalid},
		{name: "bare CR then LF later", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET\n", wantErr: ErrInvalid},
		{name: "CR LF reversed", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r", wantErr: ErrInvalid},
		{name: "108-byte line", in: strings.Replace(unknown1, "PROXY UNKNOWN ", "PROXY UNKNOWN  ", 1), wantErr: ErrTooLong},
		{name: "no CRLF at all", in: "PROXY " + strings.Repeat("a", 200), wantErr: ErrTooLong},
		{name: "unknown protocol", in: "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "UDP4 is not v1", in: "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "lower case protocol", in: "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "UNKNOWN glued to text", in: "PROXY UNKNOWNX\r\n", wantErr: ErrInvalid},
		{name: "lower case proxy", in: "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrNoHeader},
		{name: "TCP4 without addresses", in: "PROXY TCP4\r\n", wantErr: ErrInvalid},
		{name: "TCP4 missing a port", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", wantErr: ErrInvalid},
		{name: "TCP4 extra field", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", wantErr: ErrInvalid},
		{name: "port 65536", in: "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", wantErr: ErrInvalid},
		{name: "port with leading zero", in: "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", wantErr: ErrInvalid},
		{name: "port 00", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", wantErr: ErrInvalid},
		{name: "port with plus", in: "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", wantErr: ErrInvalid},
		{name: "negative port", in: "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", wantErr: ErrInvalid},
		{name: "port with letters", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n", wantErr: ErrInvalid},
		{name: "port six digits", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 100000\r\n", wantErr: ErrInvalid},
		{name: "port hex", in: "PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv4 in TCP6", in: "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv6 in TCP4", in: "PROXY TCP4 ::1 ::2 1 2\r\n", wantErr: ErrInvalid},
		{name: "mixed families in TCP4", in: "PROXY TCP4 1.2.3.4 ::1 1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv4-mapped in TCP4", in: "PROXY TCP4 ::ffff:1.2.3.4 1.2.3.4 1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv4 leading zero", in: "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv4 octet 256", in: "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv4 three octets", in: "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv4 host name", in: "PROXY TCP4 localhost 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv6 with zone", in: "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv6 two double colons", in: "PROXY TCP6 1::2::3 ::1 1 2\r\n", wantErr: ErrInvalid},
		{name: "IPv6 in brackets", in: "PROXY TCP6 [::1] ::1 1 2\r\n", wantErr: ErrInvalid},

		// Truncated input.
		{name: "EOF inside line", in: "PROXY TCP4 1.2.3.4", wantErr: io.ErrUnexpectedEOF},
		{name: "EOF after CR", in: "PROXY UNKNOWN\r", wantErr: io.ErrUnexpectedEOF},
	})
}

func v2h(t Transport, src, dst net.Addr, tlvs ...TLV) *Header {
	return &Header{Version: 2, Command: Proxy, Transport: t, Source: src, Destination: dst, TLVs: tlvs}
}

func TestReadV2(t *testing.T) {
	tcp4 := ip4Block("192.168.0.1", "192.168.0.11", 56324, 443)
	tcp4h := v2h(Stream, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443))
	sslValue := "\x07\x00\x00\x00\x00" + string(tlv(0x21, "TLSv1.3")) + string(tlv(0x22, "client.example.com"))
	big := v2(0x21, 0x11, tcp4, tlv(0xe0, strings.Repeat("x", DefaultMaxHeaderLen-16-12-3)))
	runReadCases(t, []readCase{
		{name: "TCP over IPv4", in: string(v2(0x21, 0x11, tcp4)) + httpReq, want: tcp4h, rest: httpReq},
		{name: "UDP over IPv4", in: string(v2(0x21, 0x12, ip4Block("10.0.0.1", "10.0.0.2", 53, 5353))),
			want: v2h(Datagram, udp("10.0.0.1", 53), udp("10.0.0.2", 5353))},
		{name: "TCP over IPv6", in: string(v2(0x21, 0x21, ip6Block("2001:db8::1", "::1", 1, 65535))),
			want: v2h(Stream, tcp("2001:db8::1", 1), tcp("::1", 65535))},
		{name: "UDP over IPv6", in: string(v2(0x21, 0x22, ip6Block("2001:db8::1", "::ffff:1.2.3.4", 0, 0))),
			want: v2h(Datagram, udp("2001:db8::1", 0), udp("1.2.3.4", 0))},
		{name: "UNIX stream", in: string(v2(0x21, 0x31, unixBlock("/run/client.sock", "/run/haproxy.sock"))),
			want: v2h(Stream, &net.UnixAddr{Name: "/run/client.sock", Net: "unix"}, &net.UnixAddr{Name: "/run/haproxy.sock", Net: "unix"})},
		{name: "UNIX datagram, abstract and empty names", in: string(v2(0x21, 0x32, unixBlock("\x00abstract", ""))),
			want: v2h(Datagram, &net.UnixAddr{Name: "@abstract", Net: "unixgram"}, &net.UnixAddr{Name: "", Net: "unixgram"})},
		{name: "UNIX name of 108 bytes", in: string(v2(0x21, 0x31, unixBlock(strings.Repeat("a", 108), "b"))),
			want: v2h(Stream, &net.UnixAddr{Name: strings.Repeat("a", 108), Net: "unix"}, &net.UnixAddr{Name: "b", Net: "unix"})},
		{name: "PROXY UNSPEC", in: string(v2(0x21, 0x00)), want: v2h(Unspec, nil, nil)},
		{name: "PROXY UNSPEC with TLV", in: string(v2(0x21, 0x00, tlv(TypeAuthority, "a.example"))),
			want: v2h(Unspec, nil, nil, TLV{TypeAuthority, []byte("a.example")})},
		{name: "LOCAL", in: string(v2(0x20, 0x00)) + "x", want: &Header{Version: 2, Command: Local}, rest: "x"},
		{name: "LOCAL with addresses and TLVs skipped", in: string(v2(0x20, 0x11, tcp4, tlv(TypeALPN, "h2"))) + "x",
			want: &Header{Version: 2, Command: Local}, rest: "x"},
		{name: "LOCAL ignores an undefined family and a short body", in: string(v2(0x20, 0xff, []byte{1, 2})),
			want: &Header{Version: 2, Command: Local}},
		{name: "TLVs of every registered type", in: string(v2(0x21, 0x11, tcp4,
			tlv(TypeALPN, "h2"), tlv(TypeAuthority, "example.com"), tlv(TypeNOOP, ""), tlv(TypeUniqueID, strings.Repeat("u", 128)),
			tlv(TypeSSL, sslValue), tlv(TypeNetNS, "blue"), tlv(0xe5, "custom"), tlv(0xff, "future"))),
			want: v2h(Stream, tcp4h.Source, tcp4h.Destination,
				TLV{TypeALPN, []byte("h2")}, TLV{TypeAuthority, []byte("example.com")}, TLV{TypeNOOP, []byte{}},
				TLV{TypeUniqueID, []byte(strings.Repeat("u", 128))}, TLV{TypeSSL, []byte(sslValue)}, TLV{TypeNetNS, []byte("blue")},
				TLV{0xe5, []byte("custom")}, TLV{0xff, []byte("future")})},
		{name: "valid CRC32C", in: string(withCRC(v2(0x21, 0x11, tcp4, tlv(TypeALPN, "h2")))) + httpReq,
			want: v2h(Stream, tcp4h.Source, tcp4h.Destination, TLV{TypeALPN, []byte("h2")}, TLV{TypeCRC32C, nil}), rest: httpReq},
		{name: "header of exactly the default limit", in: string(big),
			want: v2h(Stream, tcp4h.Source, tcp4h.Destination, TLV{0xe0, []byte(strings.Repeat("x", DefaultMaxHeaderLen-16-12-3))})},
		{name: "small limit is raised to the UNIX block", in: string(v2(0x21, 0x31, unixBlock("a", "b"))), opts: ReadOptions{MaxHeaderLen: 20},
			want: v2h(Stream, &net.UnixAddr{Name: "a", Net: "unix"}, &net.UnixAddr{Name: "b", Net: "unix"})},

		// Malformed headers.
		{name: "version 1 in v2 signature", in: string(v2(0x11, 0x11, tcp4)), wantErr: ErrInvalid},
		{name: "version 3", in: string(v2(0x31, 0x11, tcp4)), wantErr: ErrInvalid},
		{name: "command 2", in: string(v2(0x22, 0x11, tcp4)), wantErr: ErrInvalid},
		{name: "command 15", in: string(v2(0x2f, 0x11, tcp4)), wantErr: ErrInvalid},
		{name: "family 4", in: string(v2(0x21, 0x41, tcp4)), wantErr: ErrInvalid},
		{name: "protocol 3", in: string(v2(0x21, 0x13, tcp4)), wantErr: ErrInvalid},
		{name: "AF_INET with UNSPEC protocol", in: string(v2(0x21, 0x10, tcp4)), wantErr: ErrInvalid},
		{name: "AF_UNSPEC with STREAM", in: string(v2(0x21, 0x01)), wantErr: ErrInvalid},
		{name: "length shorter than IPv4 block", in: string(v2(0x21, 0x11, tcp4[:11])), wantErr: ErrInvalid},
		{name: "length shorter than IPv6 block", in: string(v2(0x21, 0x21, tcp4)), wantErr: ErrInvalid},
		{name: "length shorter than UNIX block", in: string(v2(0x21, 0x31, make([]byte, 215))), wantErr: ErrInvalid},
		{name: "TLV overruns the length", in: string(v2(0x21, 0x11, tcp4, tlv(TypeALPN, "h2")[:4])), wantErr: ErrInvalid},
		{name: "TLV length beyond the header", in: string(v2(0x21, 0x11, tcp4, []byte{TypeALPN, 0, 10, 'h', '2'})) + "12345678", wantErr: ErrInvalid},
		{name: "one trailing byte", in: string(v2(0x21, 0x11, tcp4, []byte{0})), wantErr: ErrInvalid},
		{name: "two trailing bytes", in: string(v2(0x21, 0x11, tcp4, tlv(TypeNOOP, ""), []byte{0, 0})), wantErr: ErrInvalid},
		{name: "bad CRC32C", in: string(func() []byte { b := withCRC(v2(0x21, 0x11, tcp4)); b[len(b)-1] ^= 1; return b }()), wantErr: ErrInvalid},
		{name: "CRC32C over other bytes", in: string(func() []byte { b := withCRC(v2(0x21, 0x11, tcp4)); b[20] ^= 1; return b }()), wantErr: ErrInvalid},
		{name: "CRC32C of 3 bytes", in: string(v2(0x21, 0x11, tcp4, tlv(TypeCRC32C, "abc"))), wantErr: ErrInvalid},
		{name: "two CRC32C", in: string(withCRC(v2(0x21, 0x11, tcp4, tlv(TypeCRC32C, "\x00\x00\x00\x00")))), wantErr: ErrInvalid},
		{name: "UNIQUE_ID of 129 bytes", in: string(v2(0x21, 0x11, tcp4, tlv(TypeUniqueID, strings.Repeat("u", 129)))), wantErr: ErrInvalid},
		{name: "SSL shorter than client and verify", in: string(v2(0x21, 0x11, tcp4, tlv(TypeSSL, "\x01\x00\x00\x00"))), wantErr: ErrInvalid},
		{name: "SSL sub-TLV overruns", in: string(v2(0x21, 0x11, tcp4, tlv(TypeSSL, "\x01\x00\x00\x00\x00\x21\x00\x09TLSv1.3"))), wantErr: ErrInvalid},
		{name: "length beyond the default limit", in: sig + "\x21\x11\x0f\xf1", wantErr: ErrTooLong},
		{name: "length beyond a set limit", in: string(v2(0x21, 0x11, tcp4, tlv(0xe0, strings.Repeat("x", 300))))[:16],
			opts: ReadOptions{MaxHeaderLen: 300}, wantErr: ErrTooLong},
		{name: "maximum length field", in: string(sig) + "\x21\x11\xff\xff", opts: ReadOptions{MaxHeaderLen: 1 << 20}, wantErr: ErrTooLong},
		{name: "truncated body", in: string(v2(0x21, 0x11, tcp4))[:20], wantErr: io.ErrUnexpectedEOF},
		{name: "truncated fixed part", in: string(sig) + "\x21", wantErr: io.ErrUnexpectedEOF},
	})
}

func TestReadV2LengthBeyondLimitNotWaitedFor(t *testing.T) {
	// 16 bytes announce 5000 more; Read must fail without reading on. The
	// reader fails the test if asked for more.
	head := []byte(sig + "\x21\x11\x13\x88")
	r := bufio.NewReader(io.MultiReader(bytes.NewReader(head), failReader{t}))
	if _, err := Read(r, ReadOptions{}); !errors.Is(err, ErrTooLong) {
		t.Fatalf("got error %v, want ErrTooLong", err)
	}
}

func TestReadV2BufferSmallerThanHeader(t *testing.T) {
	b := v2(0x21, 0x11, ip4Block("1.2.3.4", "5.6.7.8", 1, 2), tlv(0xe0, strings.Repeat("x", 300)))
	r := bufio.NewReaderSize(bytes.NewReader(b), 256)
	if _, err := Read(r, ReadOptions{}); !errors.Is(err, ErrTooLong) {
		t.Fatalf("got error %v, want ErrTooLong", err)
	}
	if n := r.Buffered(); n > 256 {
		t.Fatalf("got %d buffered, want at most 256", n)
	}
}

// failReader fails the test when read: the code under test asked for bytes
// it should not need.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Helper()
	f.t.Error("read past the bytes needed")
	return 0, errors.New("read past the bytes needed")
}

// chunkReader hands out one chunk per Read, then fails the test.
type chunkReader struct {
	t      *testing.T
	chunks []string
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return failReader{c.t}.Read(p)
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func TestReadWaitsOnlyAsLongAsASignatureMatches(t *testing.T) {
	tests := []struct {
		name    string
		chunks  []string
		wantErr error
	}{
		{name: "HTTP after one byte", chunks: []string{"G"}, wantErr: ErrNoHeader},
		{name: "TLS after one byte", chunks: []string{"\x16"}, wantErr: ErrNoHeader},
		{name: "SOCKS5 after one byte", chunks: []string{"\x05"}, wantErr: ErrNoHeader},
		{name: "POST after two bytes", chunks: []string{"P", "O"}, wantErr: ErrNoHeader},
		{name: "PROXX after five bytes", chunks: []string{"P", "R", "O", "X", "X"}, wantErr: ErrNoHeader},
		{name: "CRLF CRLF then not NUL", chunks: []string{"\r", "\n", "\r", "\n", "G"}, wantErr: ErrNoHeader},
		{name: "v2 signature but version 1", chunks: []string{sig[:6], sig[6:], "\x11"}, wantErr: ErrInvalid},
		{name: "PROXY without space", chunks: []string{"PROX", "Y", "!"}, wantErr: ErrInvalid},
		{name: "v1 in pieces", chunks: []string{"PRO", "XY UNK", "NOWN\r", "\n"}},
		{name: "v2 in pieces", chunks: []string{sig[:3], sig[3:], "\x21\x00", "\x00", "\x00"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cr := &chunkReader{t: t, chunks: tc.chunks}
			r := bufio.NewReader(cr)
			_, err := Read(r, ReadOptions{})
			if !errors.Is(err, tc.wantErr) && (err != nil || tc.wantErr != nil) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestReadNoHeaderKeepsEverything(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{name: "HTTP", in: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{name: "CONNECT", in: "CONNECT example.com:443 HTTP/1.1\r\n\r\n"},
		{name: "POST", in: "POST / HTTP/1.1\r\n\r\n"},
		{name: "TLS hello", in: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{name: "SOCKS5", in: "\x05\x01\x00"},
		{name: "SOCKS4", in: "\x04\x01\x00\x50\x7f\x00\x00\x01\x00"},
		{name: "lone CRLF", in: "\r\nhello"},
		{name: "v2 signature broken at byte 12", in: sig[:11] + "X\x21\x11\x00\x0c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for how, r := range readers([]byte(tc.in)) {
				if _, err := Read(r, ReadOptions{}); !errors.Is(err, ErrNoHeader) {
					t.Fatalf("%s: got error %v, want ErrNoHeader", how, err)
				}
				if all, _ := io.ReadAll(r); string(all) != tc.in {
					t.Fatalf("%s: got %q left, want %q", how, all, tc.in)
				}
			}
		})
	}
}

func TestReadEmptyAndTruncated(t *testing.T) {
	full := map[string][]byte{
		"v1":          []byte("PROXY TCP6 2001:db8::1 2001:db8::2 4000 443\r\n"),
		"v1 UNKNOWN":  []byte("PROXY UNKNOWN\r\n"),
		"v2 TCP4":     v2(0x21, 0x11, ip4Block("1.2.3.4", "5.6.7.8", 1, 2)),
		"v2 LOCAL":    v2(0x20, 0x00, tlv(TypeNOOP, "pad")),
		"v2 with CRC": withCRC(v2(0x21, 0x21, ip6Block("::1", "::2", 3, 4), tlv(TypeAuthority, "example.com"))),
		"v2 UNIX":     v2(0x21, 0x31, unixBlock("/a", "/b"), tlv(TypeUniqueID, "id")),
	}
	for name, b := range full {
		t.Run(name, func(t *testing.T) {
			for i := range len(b) {
				want := io.ErrUnexpectedEOF
				if i == 0 {
					want = io.EOF
				}
				for how, r := range readers(b[:i]) {
					_, err := Read(r, ReadOptions{})
					if !errors.Is(err, want) {
						t.Fatalf("%s: %d of %d bytes: got error %v, want %v", how, i, len(b), err, want)
					}
					if all, _ := io.ReadAll(r); !bytes.Equal(all, b[:i]) {
						t.Fatalf("%s: %d of %d bytes: got %q left, want %q", how, i, len(b), all, b[:i])
					}
				}
			}
			for how, r := range readers(b) {
				if _, err := Read(r, ReadOptions{}); err != nil {
					t.Fatalf("%s: whole header: got error %v, want none", how, err)
				}
			}
		})
	}
}

// timeoutReader reports a timeout, like a net.Conn past its deadline.
type timeoutReader struct{}

func (timeoutReader) Read([]byte) (int, error) { return 0, timeoutErr{} }

type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

func TestReadTimeoutIsWrapped(t *testing.T) {
	r := bufio.NewReader(io.MultiReader(strings.NewReader("PROXY TCP4"), timeoutReader{}))
	_, err := Read(r, ReadOptions{})
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("got error %v, want a wrapped timeout", err)
	}
}

// TestReadOverTCP sends a header and a request in one write over a real
// connection and checks that the relay would see exactly the request.
func TestReadOverTCP(t *testing.T) {
	tests := []struct {
		name   string
		header []byte
		want   *Header
	}{
		{name: "v1", header: []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
			want: v1h(tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443))},
		{name: "v2", header: withCRC(v2(0x21, 0x11, ip4Block("192.168.0.1", "192.168.0.11", 56324, 443))),
			want: v2h(Stream, tcp("192.168.0.1", 56324), tcp("192.168.0.11", 443), TLV{TypeCRC32C, nil})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			payload := []byte(httpReq + strings.Repeat("body", 2000))
			go func() {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = c.Write(append(append([]byte{}, tc.header...), payload...))
			}()
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			h, err := Read(r, ReadOptions{})
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if d := diffHeader(h, tc.want); d != "" {
				t.Fatal(d)
			}
			rest, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("read payload: %v", err)
			}
			if !bytes.Equal(rest, payload) {
				t.Fatalf("got %d payload bytes starting %q, want %d starting %q", len(rest), rest[:min(len(rest), 20)], len(payload), payload[:20])
			}
		})
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		maybe, compl bool
	}{
		{name: "empty", in: "", maybe: true},
		{name: "P", in: "P", maybe: true},
		{name: "PROX", in: "PROX", maybe: true},
		{name: "PROXY", in: "PROXY", maybe: true, compl: true},
		{name: "PROXY line", in: "PROXY TCP4 ", maybe: true, compl: true},
		{name: "PROXZ", in: "PROXZ", maybe: false},
		{name: "GET", in: "GET", maybe: false},
		{name: "CR", in: "\r", maybe: true},
		{name: "11 signature bytes", in: sig[:11], maybe: true},
		{name: "whole signature", in: sig, maybe: true, compl: true},
		{name: "signature and more", in: sig + "\x21\x11", maybe: true, compl: true},
		{name: "broken signature", in: sig[:7] + "q", maybe: false},
		{name: "NUL", in: "\x00", maybe: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			maybe, compl := Detect([]byte(tc.in))
			if maybe != tc.maybe || compl != tc.compl {
				t.Fatalf("got (%v, %v), want (%v, %v)", maybe, compl, tc.maybe, tc.compl)
			}
		})
	}
}

func TestMinMaxHeaderLen(t *testing.T) {
	if MinMaxHeaderLen != v2FixedLen+2*unixAddrLen {
		t.Fatalf("got %d, want %d", MinMaxHeaderLen, v2FixedLen+2*unixAddrLen)
	}
}
