package capture

import (
	"encoding/binary"
	"time"
)

// pcapng block types and option codes, from the pcapng specification
// (draft-ietf-opsawg-pcapng). Everything is written little-endian; the
// byte-order magic of each section tells readers so.
const (
	blockSHB = 0x0A0D0D0A // Section Header Block
	blockIDB = 0x00000001 // Interface Description Block
	blockEPB = 0x00000006 // Enhanced Packet Block

	byteOrderMagic = 0x1A2B3C4D

	optEnd      = 0 // opt_endofopt
	optComment  = 1 // opt_comment, UTF-8
	optShbAppl  = 4 // shb_userappl
	optIfName   = 2 // if_name
	optIfTsresl = 9 // if_tsresol

	// linkTypeRaw is LINKTYPE_RAW: each packet starts with an IPv4 or
	// IPv6 header, told apart by its version nibble.
	linkTypeRaw = 101

	// epbFixed is the size of an EPB without packet data and options:
	// type, length, interface, timestamp (2), captured and original
	// length, and the trailing length.
	epbFixed = 32
)

var le = binary.LittleEndian

// pad4 rounds n up to a multiple of 4, as every pcapng field is.
func pad4(n int) int { return (n + 3) &^ 3 }

// option is one pcapng option: a code and its value.
type option struct {
	code  uint16
	value []byte
}

// optionsLen is the encoded size of opts with the end marker; 0 if none.
func optionsLen(opts []option) int {
	if len(opts) == 0 {
		return 0
	}
	n := 4 // opt_endofopt
	for _, o := range opts {
		n += 4 + pad4(len(o.value))
	}
	return n
}

// appendOptions encodes opts and the end marker; nothing if none.
func appendOptions(b []byte, opts []option) []byte {
	if len(opts) == 0 {
		return b
	}
	for _, o := range opts {
		b = le.AppendUint16(b, o.code)
		b = le.AppendUint16(b, uint16(len(o.value)))
		b = append(b, o.value...)
		b = append(b, make([]byte, pad4(len(o.value))-len(o.value))...)
	}
	return le.AppendUint32(b, optEnd) // code 0, length 0
}

// header starts every capture file and every section appended to one.
var header = sectionHeader()

// sectionHeader returns a Section Header Block followed by the one
// Interface Description Block every packet refers to (interface 0): raw
// IP, no snap length, nanosecond timestamps. Each file, and each section
// appended to an existing file, starts with it.
func sectionHeader() []byte {
	shbOpts := []option{{optShbAppl, []byte("ferry capture")}}
	shbLen := 28 + optionsLen(shbOpts)
	b := make([]byte, 0, 64)
	b = le.AppendUint32(b, blockSHB)
	b = le.AppendUint32(b, uint32(shbLen))
	b = le.AppendUint32(b, byteOrderMagic)
	b = le.AppendUint16(b, 1) // major version
	b = le.AppendUint16(b, 0) // minor version
	b = le.AppendUint64(b, ^uint64(0))
	b = appendOptions(b, shbOpts)
	b = le.AppendUint32(b, uint32(shbLen))

	idbOpts := []option{{optIfName, []byte("ferry")}, {optIfTsresl, []byte{9}}}
	idbLen := 20 + optionsLen(idbOpts)
	b = le.AppendUint32(b, blockIDB)
	b = le.AppendUint32(b, uint32(idbLen))
	b = le.AppendUint16(b, linkTypeRaw)
	b = le.AppendUint16(b, 0) // reserved
	b = le.AppendUint32(b, 0) // snaplen: no limit
	b = appendOptions(b, idbOpts)
	b = le.AppendUint32(b, uint32(idbLen))
	return b
}

// epbLen is the size of an Enhanced Packet Block for a packet of n bytes
// with the given comments.
func epbLen(n int, comments []string) int {
	return epbFixed + pad4(n) + optionsLen(commentOptions(comments))
}

func commentOptions(comments []string) []option {
	if len(comments) == 0 {
		return nil
	}
	opts := make([]option, len(comments))
	for i, c := range comments {
		opts[i] = option{optComment, []byte(c)}
	}
	return opts
}

// epbHead returns the start of an Enhanced Packet Block for a packet of n
// bytes captured at ts on interface 0; the packet follows it, then
// epbTail.
func epbHead(ts time.Time, n int, comments []string) []byte {
	total := epbLen(n, comments)
	ns := uint64(ts.UnixNano())
	b := make([]byte, 0, 28)
	b = le.AppendUint32(b, blockEPB)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, 0) // interface id
	b = le.AppendUint32(b, uint32(ns>>32))
	b = le.AppendUint32(b, uint32(ns))
	b = le.AppendUint32(b, uint32(n)) // captured length
	b = le.AppendUint32(b, uint32(n)) // original length
	return b
}

// epbTail returns the padding after a packet of n bytes, the comment
// options and the block's trailing length.
func epbTail(n int, comments []string) []byte {
	opts := commentOptions(comments)
	b := make([]byte, pad4(n)-n, pad4(n)-n+optionsLen(opts)+4)
	b = appendOptions(b, opts)
	return le.AppendUint32(b, uint32(epbLen(n, comments)))
}
