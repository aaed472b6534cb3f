package capture

import (
	"encoding/binary"
	"net/netip"
)

// TCP flags.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagPSH = 0x08
	flagACK = 0x10
)

const (
	// maxSegment is the most payload one segment carries: an IPv4 packet
	// of 65535 bytes less 20 of IP and 20 of TCP header. It is also the
	// MSS the synthetic handshake announces.
	maxSegment = 65535 - 20 - 20
	// windowScale is the shift both ends announce; with a window field
	// of 65535 it makes an 8 MiB window, more than one chunk ever fills.
	windowScale = 7
	window      = 0xFFFF
	ttl         = 64
	protoTCP    = 6
)

var be = binary.BigEndian

// synOptions are the TCP options of SYN and SYN-ACK: MSS, NOP, window
// scale.
var synOptions = []byte{2, 4, maxSegment >> 8, maxSegment & 0xFF, 1, 3, 3, windowScale}

// segment describes one TCP segment of a synthetic connection.
type segment struct {
	src, dst netip.AddrPort // same family: both IPv4 or both IPv6
	seq, ack uint32
	flags    byte
	opts     []byte // TCP options, a multiple of 4 bytes
	ipID     uint16 // IPv4 identification
}

// headers returns the IP and TCP headers of s carrying payload, with both
// checksums filled in; payload follows them on the wire.
func (s *segment) headers(payload []byte) []byte {
	tcpLen := 20 + len(s.opts) + len(payload)
	v4 := s.src.Addr().Is4()
	var b []byte
	if v4 {
		b = make([]byte, 20, 20+20+len(s.opts))
		b[0] = 0x45 // version 4, 5 words
		be.PutUint16(b[2:], uint16(20+tcpLen))
		be.PutUint16(b[4:], s.ipID)
		be.PutUint16(b[6:], 0x4000) // don't fragment
		b[8] = ttl
		b[9] = protoTCP
		src, dst := s.src.Addr().As4(), s.dst.Addr().As4()
		copy(b[12:], src[:])
		copy(b[16:], dst[:])
		be.PutUint16(b[10:], ^fold(sum(b, 0)))
	} else {
		b = make([]byte, 40, 40+20+len(s.opts))
		b[0] = 0x60 // version 6, no traffic class or flow label
		be.PutUint16(b[4:], uint16(tcpLen))
		b[6] = protoTCP
		b[7] = ttl
		src, dst := s.src.Addr().As16(), s.dst.Addr().As16()
		copy(b[8:], src[:])
		copy(b[24:], dst[:])
	}
	ip := len(b)
	b = be.AppendUint16(b, s.src.Port())
	b = be.AppendUint16(b, s.dst.Port())
	b = be.AppendUint32(b, s.seq)
	b = be.AppendUint32(b, s.ack)
	b = append(b, byte((20+len(s.opts))/4)<<4, s.flags)
	b = be.AppendUint16(b, window)
	b = append(b, 0, 0, 0, 0) // checksum, urgent pointer
	b = append(b, s.opts...)

	// The checksum covers a pseudo-header of the addresses, protocol and
	// TCP length, then the TCP header and the payload.
	var acc uint64
	if v4 {
		acc = sum(b[12:20], 0)
	} else {
		acc = sum(b[8:40], 0)
	}
	acc += protoTCP + uint64(tcpLen)
	acc = sum(b[ip:], acc)
	acc = sum(payload, acc)
	be.PutUint16(b[ip+16:], ^fold(acc))
	return b
}

// sum adds b to acc as big-endian 16-bit words, the Internet checksum's
// one's complement sum before folding (RFC 1071). An odd last byte counts
// as its word's high byte, so only the last piece summed may be odd.
func sum(b []byte, acc uint64) uint64 {
	for len(b) >= 2 {
		acc += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// fold reduces a sum to 16 bits with end-around carry.
func fold(acc uint64) uint16 {
	for acc > 0xFFFF {
		acc = acc>>16 + acc&0xFFFF
	}
	return uint16(acc)
}
