package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// This file reads pcapng and TCP/IP back, written from the specifications
// rather than from the writer's code, so that the tests check the bytes
// on disk and not the writer against itself.

// capFile is a pcapng file read back.
type capFile struct {
	sections int
	ifaces   []capIface
	packets  []capPacket
}

type capIface struct {
	linkType uint16
	snapLen  uint32
	tsresol  int // -1 if absent
}

type capPacket struct {
	ts       time.Time
	data     []byte
	comments []string
}

// readCapture parses path strictly: every block's lengths agree, every
// section starts with a little-endian SHB 1.0, every packet names a known
// interface and has its whole length captured.
func readCapture(t *testing.T, path string) capFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseCapture(raw)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func parseCapture(raw []byte) (capFile, error) {
	var c capFile
	var ifaces []capIface // of the current section
	u32 := binary.LittleEndian.Uint32
	u16 := binary.LittleEndian.Uint16
	for off := 0; off < len(raw); {
		if len(raw)-off < 12 {
			return c, fmt.Errorf("offset %d: %d bytes left, too few for a block", off, len(raw)-off)
		}
		typ, total := u32(raw[off:]), int(u32(raw[off+4:]))
		if total < 12 || total%4 != 0 || off+total > len(raw) {
			return c, fmt.Errorf("offset %d: block type %#x has bad length %d", off, typ, total)
		}
		if trail := int(u32(raw[off+total-4:])); trail != total {
			return c, fmt.Errorf("offset %d: trailing length %d, leading %d", off, trail, total)
		}
		body := raw[off+8 : off+total-4]
		if off == 0 && typ != 0x0A0D0D0A {
			return c, fmt.Errorf("file starts with block type %#x, want a section header", typ)
		}
		switch typ {
		case 0x0A0D0D0A:
			if u32(body) != 0x1A2B3C4D {
				return c, fmt.Errorf("offset %d: byte-order magic %#x", off, u32(body))
			}
			if u16(body[4:]) != 1 || u16(body[6:]) != 0 {
				return c, fmt.Errorf("offset %d: version %d.%d", off, u16(body[4:]), u16(body[6:]))
			}
			if int64(binary.LittleEndian.Uint64(body[8:])) != -1 {
				return c, fmt.Errorf("offset %d: section length set", off)
			}
			if _, err := parseOptions(body[16:]); err != nil {
				return c, fmt.Errorf("offset %d: SHB: %v", off, err)
			}
			c.sections++
			ifaces = nil
		case 1:
			opts, err := parseOptions(body[8:])
			if err != nil {
				return c, fmt.Errorf("offset %d: IDB: %v", off, err)
			}
			ifc := capIface{linkType: u16(body), snapLen: u32(body[4:]), tsresol: -1}
			if v, ok := opts[9]; ok && len(v[0]) == 1 {
				ifc.tsresol = int(v[0][0])
			}
			ifaces = append(ifaces, ifc)
			c.ifaces = append(c.ifaces, ifc)
		case 6:
			id := int(u32(body))
			if id >= len(ifaces) {
				return c, fmt.Errorf("offset %d: packet on interface %d, section has %d", off, id, len(ifaces))
			}
			capLen, origLen := int(u32(body[12:])), int(u32(body[16:]))
			if capLen != origLen {
				return c, fmt.Errorf("offset %d: captured %d of %d bytes", off, capLen, origLen)
			}
			padded := (capLen + 3) &^ 3
			if 20+padded > len(body) {
				return c, fmt.Errorf("offset %d: packet of %d bytes overruns its block", off, capLen)
			}
			opts, err := parseOptions(body[20+padded:])
			if err != nil {
				return c, fmt.Errorf("offset %d: EPB: %v", off, err)
			}
			ts := uint64(u32(body[4:]))<<32 | uint64(u32(body[8:]))
			unit := time.Microsecond // pcapng's default resolution
			if ifaces[id].tsresol == 9 {
				unit = time.Nanosecond
			}
			p := capPacket{ts: time.Unix(0, int64(ts)*int64(unit)), data: body[20 : 20+capLen]}
			for _, v := range opts[1] {
				p.comments = append(p.comments, string(v))
			}
			c.packets = append(c.packets, p)
		default:
			return c, fmt.Errorf("offset %d: unexpected block type %#x", off, typ)
		}
		off += total
	}
	return c, nil
}

// parseOptions reads an options list; it must end with opt_endofopt if
// not empty.
func parseOptions(b []byte) (map[uint16][][]byte, error) {
	opts := map[uint16][][]byte{}
	if len(b) == 0 {
		return opts, nil
	}
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, fmt.Errorf("option header truncated")
		}
		code, n := binary.LittleEndian.Uint16(b), int(binary.LittleEndian.Uint16(b[2:]))
		if code == 0 {
			if n != 0 || len(b) != 4 {
				return nil, fmt.Errorf("bytes after opt_endofopt")
			}
			return opts, nil
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(b) {
			return nil, fmt.Errorf("option %d overruns", code)
		}
		opts[code] = append(opts[code], b[4:4+n])
		b = b[4+padded:]
	}
	return nil, fmt.Errorf("options without opt_endofopt")
}

// tcpPacket is an IP packet carrying TCP, decoded.
type tcpPacket struct {
	src, dst netip.AddrPort
	seq, ack uint32
	flags    byte
	window   uint16
	opts     []byte
	payload  []byte
	comments []string
}

// decodeTCP parses an IPv4 or IPv6 packet with a TCP segment and checks
// both checksums with onesSum, an implementation independent of the
// writer's.
func decodeTCP(data []byte) (tcpPacket, error) {
	var p tcpPacket
	var tcp, pseudo []byte
	if len(data) < 20 {
		return p, fmt.Errorf("packet of %d bytes", len(data))
	}
	switch data[0] >> 4 {
	case 4:
		ihl := int(data[0]&0x0F) * 4
		if ihl != 20 || int(binary.BigEndian.Uint16(data[2:])) != len(data) {
			return p, fmt.Errorf("IPv4 header length %d, total length %d for %d bytes", ihl, binary.BigEndian.Uint16(data[2:]), len(data))
		}
		if data[9] != 6 {
			return p, fmt.Errorf("IPv4 protocol %d", data[9])
		}
		if onesSum(data[:20]) != 0xFFFF {
			return p, fmt.Errorf("IPv4 header checksum %#04x is wrong", binary.BigEndian.Uint16(data[10:]))
		}
		src, _ := netip.AddrFromSlice(data[12:16])
		dst, _ := netip.AddrFromSlice(data[16:20])
		tcp = data[20:]
		pseudo = append(append(append([]byte{}, data[12:20]...), 0, 6), byte(len(tcp)>>8), byte(len(tcp)))
		p.src, p.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
	case 6:
		if len(data) < 40 || int(binary.BigEndian.Uint16(data[4:]))+40 != len(data) || data[6] != 6 {
			return p, fmt.Errorf("bad IPv6 header")
		}
		src, _ := netip.AddrFromSlice(data[8:24])
		dst, _ := netip.AddrFromSlice(data[24:40])
		tcp = data[40:]
		n := len(tcp)
		pseudo = append(append([]byte{}, data[8:40]...), byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, 6)
		p.src, p.dst = netip.AddrPortFrom(src, 0), netip.AddrPortFrom(dst, 0)
	default:
		return p, fmt.Errorf("IP version %d", data[0]>>4)
	}
	if len(tcp) < 20 {
		return p, fmt.Errorf("TCP segment of %d bytes", len(tcp))
	}
	hlen := int(tcp[12]>>4) * 4
	if hlen < 20 || hlen > len(tcp) {
		return p, fmt.Errorf("TCP data offset %d", hlen)
	}
	if onesSum(append(pseudo, tcp...)) != 0xFFFF {
		return p, fmt.Errorf("TCP checksum %#04x is wrong", binary.BigEndian.Uint16(tcp[16:]))
	}
	p.src = netip.AddrPortFrom(p.src.Addr(), binary.BigEndian.Uint16(tcp))
	p.dst = netip.AddrPortFrom(p.dst.Addr(), binary.BigEndian.Uint16(tcp[2:]))
	p.seq, p.ack = binary.BigEndian.Uint32(tcp[4:]), binary.BigEndian.Uint32(tcp[8:])
	p.flags, p.window = tcp[13], binary.BigEndian.Uint16(tcp[14:])
	p.opts, p.payload = tcp[20:hlen], tcp[hlen:]
	return p, nil
}

// onesSum is the one's complement sum of b as 16-bit words (RFC 1071),
// computed as the sum modulo 65535, with 0 written as 0xFFFF: a block
// whose checksum is right sums to 0xFFFF.
func onesSum(b []byte) uint16 {
	if len(b)%2 == 1 {
		b = append(b[:len(b):len(b)], 0)
	}
	var s uint64
	for i := 0; i < len(b); i += 2 {
		s += uint64(binary.BigEndian.Uint16(b[i:]))
	}
	if s == 0 {
		return 0
	}
	if r := s % 0xFFFF; r != 0 {
		return uint16(r)
	}
	return 0xFFFF
}

// tcpPackets decodes every packet of c, failing the test on a bad one.
func tcpPackets(t *testing.T, c capFile) []tcpPacket {
	t.Helper()
	out := make([]tcpPacket, 0, len(c.packets))
	for i, cp := range c.packets {
		p, err := decodeTCP(cp.data)
		if err != nil {
			t.Fatalf("packet %d: %v", i+1, err)
		}
		p.comments = cp.comments
		out = append(out, p)
	}
	return out
}

// conversation is one synthetic connection read back and checked.
type conversation struct {
	client, target netip.AddrPort
	up, down       []byte   // payload each way, in order
	comments       []string // all comments of its packets
	firstFIN       netip.AddrPort
	gaps           [2]int // bytes skipped in sequence space (client, target)
	packets        int
	// trace lists its data and FINs in order: "c10" for 10 bytes from the
	// client (consecutive segments from one side merged), "T" for the
	// target's FIN, separated by spaces.
	trace string
	// last is the connection's last packet.
	last tcpPacket
}

// follow checks the packets of the connection whose SYN comes from client
// (nil: the first SYN) the way a TCP receiver would: handshake first,
// every segment's sequence number is the next expected one (or beyond it,
// counted as a gap), every ACK acknowledges exactly what the other side
// sent so far, and a FIN exchange ends it. It returns what it carried.
func follow(t *testing.T, ps []tcpPacket, client *netip.AddrPort) conversation {
	t.Helper()
	var c conversation
	start := -1
	for i, p := range ps {
		if p.flags == flagSYN && (client == nil || p.src == *client) {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("no SYN from %v", client)
	}
	c.client, c.target = ps[start].src, ps[start].dst
	var next [2]uint32 // expected sequence number from client, target
	var seen [2]bool
	var fin [2]bool
	var trace []string
	run, runSide := 0, -1 // data bytes of the current trace entry
	flush := func() {
		if run > 0 {
			trace = append(trace, fmt.Sprintf("%c%d", "ct"[runSide], run))
		}
		run, runSide = 0, -1
	}
	done := false
	for i := start; i < len(ps) && !done; i++ {
		p := ps[i]
		var d int
		switch {
		case p.src == c.client && p.dst == c.target:
			d = 0
		case p.src == c.target && p.dst == c.client:
			d = 1
		default:
			continue
		}
		c.packets++
		c.comments = append(c.comments, p.comments...)
		o := 1 - d
		if p.flags&flagSYN != 0 {
			if seen[d] {
				t.Fatalf("packet %d: second SYN from side %d", i+1, d)
			}
			if d == 1 && (p.flags&flagACK == 0 || p.ack != next[0]) {
				t.Fatalf("packet %d: SYN-ACK acks %d, want %d", i+1, p.ack, next[0])
			}
			if want := []byte{2, 4, 0xFF, 0xD7, 1, 3, 3, 7}; !bytes.Equal(p.opts, want) {
				t.Fatalf("packet %d: SYN options %x, want MSS 65495, NOP, WS 7 (%x)", i+1, p.opts, want)
			}
			seen[d], next[d] = true, p.seq+1
			continue
		}
		if !seen[0] || !seen[1] {
			t.Fatalf("packet %d: flags %#x before the handshake ended", i+1, p.flags)
		}
		if p.flags&flagACK == 0 {
			t.Fatalf("packet %d (side %d): no ACK flag", i+1, d)
		}
		// An ACK acknowledges all the other side sent; more than was
		// seen is bytes left out of the capture (counted as a gap).
		if gap := int(p.ack - next[o]); gap != 0 {
			if gap < 0 || gap > 1<<30 {
				t.Fatalf("packet %d (side %d): ack %d, want %d (all the other side sent)", i+1, d, p.ack, next[o])
			}
			c.gaps[o] += gap
			next[o] = p.ack
		}
		if gap := int(p.seq - next[d]); gap != 0 {
			if gap < 0 || gap > 1<<30 {
				t.Fatalf("packet %d (side %d): seq %d, want %d", i+1, d, p.seq, next[d])
			}
			c.gaps[d] += gap
			next[d] = p.seq
		}
		if fin[d] && (len(p.payload) > 0 || p.flags&flagFIN != 0) {
			t.Fatalf("packet %d (side %d): data or FIN after its FIN", i+1, d)
		}
		if len(p.payload) > maxSegment {
			t.Fatalf("packet %d: %d bytes of payload, more than %d", i+1, len(p.payload), maxSegment)
		}
		if d == 0 {
			c.up = append(c.up, p.payload...)
		} else {
			c.down = append(c.down, p.payload...)
		}
		next[d] += uint32(len(p.payload))
		if len(p.payload) > 0 {
			if runSide != d {
				flush()
			}
			run, runSide = run+len(p.payload), d
		}
		if p.flags&flagFIN != 0 {
			flush()
			trace = append(trace, string("CT"[d]))
			if !fin[0] && !fin[1] {
				c.firstFIN = p.src
			}
			fin[d] = true
			next[d]++
		}
		if fin[0] && fin[1] && p.flags&flagFIN == 0 && len(p.payload) == 0 {
			done = true // the last ACK
			c.last = p
		}
	}
	flush()
	c.trace = strings.Join(trace, " ")
	if !done {
		t.Fatalf("connection from %v has no complete FIN exchange", c.client)
	}
	return c
}
