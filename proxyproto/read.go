package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/netip"
	"strings"
)

const (
	// DefaultMaxHeaderLen is the v2 length limit when ReadOptions leaves it
	// zero. It is also bufio's default buffer size.
	DefaultMaxHeaderLen = 4096
	// MinMaxHeaderLen is the smallest limit Read applies: the 16 fixed
	// bytes plus the largest (AF_UNIX, 2*108 bytes) address block.
	MinMaxHeaderLen = 232

	// v1MaxLen is the longest v1 line, CRLF included (spec section 2.1).
	v1MaxLen    = 107
	v2FixedLen  = 16
	unixAddrLen = 108
)

// ReadOptions tune Read. The zero value is ready to use.
type ReadOptions struct {
	// MaxHeaderLen caps the total length of a v2 header: the 16 fixed
	// bytes, the addresses and the TLVs. A longer header fails with
	// ErrTooLong before its body is read. If zero or negative,
	// DefaultMaxHeaderLen is used; values below MinMaxHeaderLen are raised
	// to it. The bufio.Reader's buffer (bufio.NewReaderSize) must be at
	// least this large, or headers longer than the buffer fail with
	// ErrTooLong too.
	MaxHeaderLen int
}

// sigV2 opens every v2 header; sigV1 every v1 line.
var sigV2 = [12]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}

const sigV1 = "PROXY"

// castagnoli is the CRC32c table for TypeCRC32C. Read-only.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// What the first bytes of a connection say.
const (
	detNo   = iota // not a PROXY header
	detMore        // a prefix of a signature: need more bytes
	detV1          // "PROXY"
	detV2          // the 12-byte v2 signature
)

func detect(b []byte) int {
	if len(b) == 0 {
		return detMore
	}
	var sig string
	var v int
	switch b[0] {
	case 'P':
		sig, v = sigV1, detV1
	case '\r':
		sig, v = string(sigV2[:]), detV2
	default:
		return detNo
	}
	n := min(len(b), len(sig))
	if string(b[:n]) != sig[:n] {
		return detNo
	}
	if n < len(sig) {
		return detMore
	}
	return v
}

// Detect tells from the first bytes of a connection whether a PROXY header
// may follow. maybe is false once b rules a header out; complete is true
// once b holds a whole signature ("PROXY" for v1, the 12-byte signature for
// v2), so that Read will treat the bytes as a header and fail with
// ErrInvalid rather than ErrNoHeader if the rest is wrong. maybe && !complete
// means more bytes are needed. An empty b gives (true, false).
func Detect(b []byte) (maybe, complete bool) {
	switch detect(b) {
	case detNo:
		return false, false
	case detMore:
		return true, false
	}
	return true, true
}

// Read reads one PROXY header, v1 or v2, from the start of r. It consumes
// exactly the header's bytes and nothing more, and nothing at all when it
// fails, so after ErrNoHeader r still holds every byte the peer sent.
//
// It waits only for the bytes it needs: when the first byte is neither 'P'
// nor '\r' it returns ErrNoHeader after one byte, and it keeps waiting only
// while the bytes so far match a signature. It sets no deadline; the caller
// sets one on the connection first.
//
// Errors wrap ErrNoHeader, ErrInvalid or ErrTooLong, or the reader's own
// error: io.EOF when the peer sent nothing, io.ErrUnexpectedEOF when it
// stopped inside a header, a timeout, and so on.
//
// v1 lines are parsed strictly: single spaces, CRLF, dotted-quad IPv4 for
// TCP4 and IPv6 for TCP6 without zones, no leading zeros in ports or IPv4
// octets. Anything after "PROXY UNKNOWN" up to the CRLF is ignored. v2
// headers must use one of the seven family/protocol bytes the spec lists;
// a TypeCRC32C TLV is verified; TLVs must fill the length exactly. A v2
// LOCAL header's body is skipped unread, so its TLVs are not returned.
func Read(r *bufio.Reader, opts ReadOptions) (*Header, error) {
	maxLen := opts.MaxHeaderLen
	if maxLen <= 0 {
		maxLen = DefaultMaxHeaderLen
	}
	maxLen = max(maxLen, MinMaxHeaderLen)

	b, err := r.Peek(1)
	for {
		if n := r.Buffered(); n > len(b) {
			b, _ = r.Peek(n) // no I/O: the bytes are buffered
		}
		switch detect(b) {
		case detNo:
			return nil, ErrNoHeader
		case detV1:
			return readV1(r)
		case detV2:
			return readV2(r, maxLen)
		}
		if err != nil {
			return nil, readErr(err, len(b))
		}
		b, err = r.Peek(len(b) + 1)
	}
}

// readErr wraps an error from Peek after got bytes of a header arrived.
func readErr(err error, got int) error {
	if err == io.EOF && got > 0 {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("proxyproto: read header: %w", err)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func readV1(r *bufio.Reader) (*Header, error) {
	limit := min(v1MaxLen, r.Size())
	b, err := r.Peek(r.Buffered())
	for {
		if len(b) > len(sigV1) && b[len(sigV1)] != ' ' {
			return nil, invalid("v1: want a space after PROXY, got %q", b[len(sigV1)])
		}
		if i := bytes.IndexByte(b[:min(len(b), limit)], '\n'); i >= 0 {
			h, perr := parseV1(b[:i+1])
			if perr != nil {
				return nil, perr
			}
			_, _ = r.Discard(i + 1) // cannot fail: the bytes are buffered
			return h, nil
		}
		if len(b) >= limit {
			if limit < v1MaxLen {
				return nil, fmt.Errorf("%w: v1: no LF in the reader's %d-byte buffer", ErrTooLong, limit)
			}
			return nil, fmt.Errorf("%w: v1: no CRLF in the first %d bytes", ErrTooLong, v1MaxLen)
		}
		if err != nil {
			return nil, readErr(err, len(b))
		}
		b, err = r.Peek(len(b) + 1)
		if n := r.Buffered(); n > len(b) {
			b, _ = r.Peek(n)
		}
	}
}

// parseV1 parses one line that starts with "PROXY" and ends with LF.
func parseV1(line []byte) (*Header, error) {
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, invalid("v1: line ends with LF, want CRLF")
	}
	s := string(line[:len(line)-2])
	rest, ok := strings.CutPrefix(s, "PROXY ")
	if !ok {
		return nil, invalid("v1: want one space after PROXY in %q", s)
	}
	proto, rest, hasRest := strings.Cut(rest, " ")
	var is4 bool
	switch proto {
	case "UNKNOWN":
		// The receiver must ignore anything before the CRLF.
		return &Header{Version: 1, Command: Proxy}, nil
	case "TCP4":
		is4 = true
	case "TCP6":
	default:
		return nil, invalid("v1: protocol %q, want TCP4, TCP6 or UNKNOWN", proto)
	}
	if !hasRest {
		return nil, invalid("v1: %s without addresses", proto)
	}
	var f [4]string
	for i := range f {
		var more bool
		f[i], rest, more = strings.Cut(rest, " ")
		if more != (i < 3) {
			return nil, invalid("v1: want exactly 4 space-separated fields after %s in %q", proto, s)
		}
	}
	src, err := parseV1Addr(f[0], is4)
	if err != nil {
		return nil, invalid("v1: source address: %v", err)
	}
	dst, err := parseV1Addr(f[1], is4)
	if err != nil {
		return nil, invalid("v1: destination address: %v", err)
	}
	sport, ok := parsePort(f[2])
	if !ok {
		return nil, invalid("v1: source port %q, want 0-65535 without leading zeros", f[2])
	}
	dport, ok := parsePort(f[3])
	if !ok {
		return nil, invalid("v1: destination port %q, want 0-65535 without leading zeros", f[3])
	}
	x := new(tcpHeader)
	sip, dip := x.ips(src.BitLen() / 8)
	copy(sip, src.AsSlice())
	copy(dip, dst.AsSlice())
	x.src = net.TCPAddr{IP: sip, Port: sport}
	x.dst = net.TCPAddr{IP: dip, Port: dport}
	x.h = Header{Version: 1, Command: Proxy, Transport: Stream, Source: &x.src, Destination: &x.dst}
	return &x.h, nil
}

// tcpHeader and udpHeader put a header, its two addresses and their IPs in
// one allocation.
type tcpHeader struct {
	h        Header
	src, dst net.TCPAddr
	ipStore
}

type udpHeader struct {
	h        Header
	src, dst net.UDPAddr
	ipStore
}

type ipStore struct{ buf [32]byte }

// ips returns room for two IPs of n bytes (4 or 16).
func (s *ipStore) ips(n int) (src, dst net.IP) {
	return s.buf[:n:n], s.buf[n : 2*n : 2*n]
}

func parseV1Addr(s string, is4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(s) // rejects leading zeros in IPv4 octets
	switch {
	case err != nil:
		return a, err
	case is4 && !a.Is4():
		return a, fmt.Errorf("%q is not IPv4", s)
	case !is4 && !a.Is6():
		return a, fmt.Errorf("%q is not IPv6", s)
	case a.Zone() != "":
		return a, fmt.Errorf("%q has a zone", s)
	}
	return a, nil
}

// parsePort accepts 0-65535 in decimal with no sign and no leading zeros.
func parsePort(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 0xffff
}

// addrLen returns the address block length of a v2 family/protocol byte,
// or -1 if the byte is not one of the seven the spec lists.
func addrLen(fam byte) int {
	switch fam {
	case 0x00:
		return 0
	case 0x11, 0x12:
		return 2*4 + 2*2
	case 0x21, 0x22:
		return 2*16 + 2*2
	case 0x31, 0x32:
		return 2 * unixAddrLen
	}
	return -1
}

func readV2(r *bufio.Reader, maxLen int) (*Header, error) {
	// Check each byte as it arrives, so that a bad header fails without
	// waiting for the rest.
	b, err := r.Peek(len(sigV2) + 1)
	if err != nil {
		return nil, readErr(err, len(b))
	}
	if v := b[12] >> 4; v != 2 {
		return nil, invalid("v2: version %d, want 2", v)
	}
	cmd := Command(b[12] & 0x0f)
	if cmd != Local && cmd != Proxy {
		return nil, invalid("v2: command 0x%x, want LOCAL (0) or PROXY (1)", byte(cmd))
	}
	alen := 0
	if cmd == Proxy {
		if b, err = r.Peek(len(sigV2) + 2); err != nil {
			return nil, readErr(err, len(b))
		}
		// LOCAL: "discard the protocol block including the family".
		if alen = addrLen(b[13]); alen < 0 {
			return nil, invalid("v2: family/protocol byte 0x%02x", b[13])
		}
	}
	if b, err = r.Peek(v2FixedLen); err != nil {
		return nil, readErr(err, len(b))
	}
	fam := b[13]
	n := int(binary.BigEndian.Uint16(b[14:]))
	if cmd == Proxy {
		if n < alen {
			return nil, invalid("v2: length %d is shorter than the %d-byte address block of family 0x%02x", n, alen, fam)
		}
	}
	total := v2FixedLen + n
	if total > maxLen {
		return nil, fmt.Errorf("%w: v2: %d bytes, limit %d", ErrTooLong, total, maxLen)
	}
	if total > r.Size() {
		return nil, fmt.Errorf("%w: v2: %d bytes, more than the reader's %d-byte buffer", ErrTooLong, total, r.Size())
	}
	if b, err = r.Peek(total); err != nil {
		return nil, readErr(err, len(b))
	}
	var h *Header
	if cmd == Local {
		h = &Header{Version: 2, Command: Local}
	} else if h, err = parseV2(b, fam, alen); err != nil {
		return nil, err
	}
	_, _ = r.Discard(total)
	return h, nil
}

// parseV2 decodes the addresses and TLVs of a whole PROXY header b.
func parseV2(b []byte, fam byte, alen int) (*Header, error) {
	a := b[v2FixedLen : v2FixedLen+alen]
	// Copy the TLVs out: b belongs to the bufio.Reader.
	var tlvs []TLV
	if raw := b[v2FixedLen+alen:]; len(raw) > 0 {
		var err error
		if tlvs, err = splitTLVs(bytes.Clone(raw)); err != nil {
			return nil, invalid("v2: %v", err)
		}
	}
	crc, err := checkTLVs(tlvs)
	if err != nil {
		return nil, invalid("v2: %v", err)
	}
	if crc >= 0 {
		off := v2FixedLen + alen + 3
		for _, t := range tlvs[:crc] {
			off += 3 + len(t.Value)
		}
		want := binary.BigEndian.Uint32(b[off:])
		var zero [4]byte
		got := crc32.Update(0, castagnoli, b[:off])
		got = crc32.Update(got, castagnoli, zero[:])
		got = crc32.Update(got, castagnoli, b[off+4:])
		if got != want {
			return nil, invalid("v2: CRC32C 0x%08x, computed 0x%08x", want, got)
		}
	}

	var h *Header
	switch fam {
	case 0x00:
		h = &Header{}
	case 0x11, 0x21:
		x := new(tcpHeader)
		n := alen/2 - 2
		sip, dip := x.ips(n)
		copy(sip, a)
		copy(dip, a[n:])
		x.src = net.TCPAddr{IP: sip, Port: int(binary.BigEndian.Uint16(a[2*n:]))}
		x.dst = net.TCPAddr{IP: dip, Port: int(binary.BigEndian.Uint16(a[2*n+2:]))}
		x.h = Header{Transport: Stream, Source: &x.src, Destination: &x.dst}
		h = &x.h
	case 0x12, 0x22:
		x := new(udpHeader)
		n := alen/2 - 2
		sip, dip := x.ips(n)
		copy(sip, a)
		copy(dip, a[n:])
		x.src = net.UDPAddr{IP: sip, Port: int(binary.BigEndian.Uint16(a[2*n:]))}
		x.dst = net.UDPAddr{IP: dip, Port: int(binary.BigEndian.Uint16(a[2*n+2:]))}
		x.h = Header{Transport: Datagram, Source: &x.src, Destination: &x.dst}
		h = &x.h
	default: // 0x31, 0x32: addrLen vetted fam
		t, nw := Stream, "unix"
		if fam == 0x32 {
			t, nw = Datagram, "unixgram"
		}
		h = &Header{
			Transport:   t,
			Source:      &net.UnixAddr{Name: unixName(a[:unixAddrLen]), Net: nw},
			Destination: &net.UnixAddr{Name: unixName(a[unixAddrLen:]), Net: nw},
		}
	}
	h.Version, h.Command, h.TLVs = 2, Proxy, tlvs
	return h, nil
}

// unixName decodes a 108-byte sun_path. A leading NUL marks a Linux
// abstract name, which Go spells with a leading '@'; trailing NULs are
// padding.
func unixName(b []byte) string {
	if b[0] != 0 {
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		return string(b)
	}
	rest := bytes.TrimRight(b[1:], "\x00")
	if len(rest) == 0 {
		return ""
	}
	return "@" + string(rest)
}
