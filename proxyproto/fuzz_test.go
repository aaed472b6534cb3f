package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func FuzzReadV1(f *testing.F) {
	for _, s := range []string{
		// Spec section 2.1.
		"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n",
		"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
		"PROXY TCP6 " + ff6 + " " + ff6 + " 65535 65535\r\n",
		"PROXY UNKNOWN\r\n",
		unknown1,
		// Near misses.
		"PROXY TCP6 ::ffff:1.2.3.4 ::1 0 1\r\n",
		"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
		"PROXY TCP4 01.2.3.4 5.6.7.8 01 2\r\n",
		"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXY UNKNOWN junk\r junk\r\n",
		"PROXYTCP4",
		"GET / HTTP/1.1\r\n\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRead(t, data)
	})
}

// FuzzReadV2 fuzzes what follows the 12-byte signature, so that the fuzzer
// does not spend its time rediscovering it.
func FuzzReadV2(f *testing.F) {
	tcp4 := ip4Block("192.168.0.1", "192.168.0.11", 56324, 443)
	for _, b := range [][]byte{
		v2(0x21, 0x11, tcp4),
		v2(0x21, 0x12, tcp4, tlv(TypeALPN, "h2")),
		v2(0x21, 0x21, ip6Block("2001:db8::1", "::ffff:1.2.3.4", 1, 2), tlv(TypeAuthority, "example.com")),
		v2(0x21, 0x22, ip6Block("::1", "::2", 1, 2), tlv(TypeUniqueID, "id"), tlv(TypeNOOP, "")),
		v2(0x21, 0x31, unixBlock("/run/a.sock", "\x00abstract")),
		v2(0x21, 0x32, unixBlock("", "b")),
		v2(0x21, 0x00, tlv(TypeNetNS, "blue")),
		v2(0x20, 0x00),
		v2(0x20, 0x11, tcp4, tlv(TypeALPN, "h2")),
		v2(0x21, 0x11, tcp4, tlv(TypeSSL, "\x07\x00\x00\x00\x00"+string(tlv(SubtypeSSLVersion, "TLSv1.3"))+string(tlv(SubtypeSSLCN, "cn")))),
		withCRC(v2(0x21, 0x11, tcp4, tlv(TypeALPN, "h2"))),
		append(v2(0x21, 0x11, tcp4), "GET / HTTP/1.1\r\n\r\n"...),
		v2(0x21, 0x11, tcp4[:11]),
		v2(0x21, 0x11, tcp4, []byte{1, 0}),
	} {
		f.Add(b[len(sig):])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkRead(t, append([]byte(sig), body...))
	})
}

// errClass names the sentinel or io error err wraps.
func errClass(err error) string {
	for _, e := range []error{ErrNoHeader, ErrInvalid, ErrTooLong, io.ErrUnexpectedEOF, io.EOF} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	if err == nil {
		return "nil"
	}
	return "other: " + err.Error()
}

// checkRead reads data and checks the invariants of Read: same result
// whether the bytes arrive at once or one by one; nothing consumed on
// error; exactly the header consumed on success; and what was read can be
// written and read back unchanged.
func checkRead(t *testing.T, data []byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(data))
	h, err := Read(r, ReadOptions{})
	r1 := bufio.NewReader(iotest.OneByteReader(bytes.NewReader(data)))
	h1, err1 := Read(r1, ReadOptions{})
	if errClass(err) != errClass(err1) {
		t.Fatalf("%q: whole: error %v; one byte at a time: error %v", data, err, err1)
	}
	rest, _ := io.ReadAll(r)
	if err != nil {
		if strings.HasPrefix(errClass(err), "other: ") {
			t.Fatalf("%q: got error %v, want a sentinel or io.EOF/io.ErrUnexpectedEOF", data, err)
		}
		if h != nil {
			t.Fatalf("%q: got header %+v with error %v", data, h, err)
		}
		if !bytes.Equal(rest, data) {
			t.Fatalf("%q: error %v consumed bytes: %q left", data, err, rest)
		}
		if maybe, _ := Detect(data); maybe == errors.Is(err, ErrNoHeader) {
			t.Fatalf("%q: Detect says maybe=%v but Read says %v", data, maybe, err)
		}
		return
	}
	if d := diffHeader(h1, h); d != "" {
		t.Fatalf("%q: one byte at a time: %s", data, d)
	}
	rest1, _ := io.ReadAll(r1)
	if !bytes.Equal(rest, rest1) {
		t.Fatalf("%q: whole left %q, one byte at a time left %q", data, rest, rest1)
	}

	// The header is exactly data[:n]: it parses alone, to the same header,
	// and its first n-1 bytes do not.
	n := len(data) - len(rest)
	hdr := data[:n]
	if again, err := Read(bufio.NewReader(bytes.NewReader(hdr)), ReadOptions{}); err != nil {
		t.Fatalf("%q: the %d header bytes alone: got error %v", data, n, err)
	} else if d := diffHeader(again, h); d != "" {
		t.Fatalf("%q: the %d header bytes alone: %s", data, n, d)
	}
	if _, err := Read(bufio.NewReader(bytes.NewReader(hdr[:n-1])), ReadOptions{}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("%q: the first %d header bytes: got error %v, want io.ErrUnexpectedEOF", data, n-1, err)
	}

	// Whatever Read returns, Format accepts, and it reads back the same.
	b, err := h.Format()
	if err != nil {
		t.Fatalf("%q: read %+v, format: got error %v", data, h, err)
	}
	h2, err := Read(bufio.NewReaderSize(bytes.NewReader(b), len(b)+16), ReadOptions{MaxHeaderLen: len(b)})
	if err != nil {
		t.Fatalf("%q: reformatted %q: got error %v", data, b, err)
	}
	if d := diffHeader(h2, h); d != "" {
		t.Fatalf("%q: reformatted %q: %s", data, b, d)
	}
	// And from then on the bytes are stable.
	if b2, err := h2.Format(); err != nil || !bytes.Equal(b2, b) {
		t.Fatalf("%q: formatted twice: got %q, %v, want %q", data, b2, err, b)
	}
}
