// Package proxyproto reads and writes HAProxy's PROXY protocol header,
// versions 1 (text) and 2 (binary, with TLVs), as specified in HAProxy's
// doc/proxy-protocol.txt (revision 2020/03/05).
//
// A listener that sits behind a load balancer reads the header first:
//
//	if !trusted(conn.RemoteAddr()) { ... } // the caller decides trust
//	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
//	br := bufio.NewReader(conn)
//	h, err := proxyproto.Read(br, proxyproto.ReadOptions{})
//	switch {
//	case errors.Is(err, proxyproto.ErrNoHeader) && optional:
//		// no header: use conn's own addresses; br still holds every byte
//	case err != nil:
//		conn.Close()
//	case h.Source != nil:
//		client = h.Source // LOCAL, UNKNOWN and UNSPEC leave it nil
//	}
//	// keep reading the client's bytes from br, not from conn
//
// A dialer that sends a header to an upstream writes it before anything
// else:
//
//	h := &proxyproto.Header{Version: 2, Command: proxyproto.Proxy,
//		Source: client.RemoteAddr(), Destination: client.LocalAddr()}
//	h.AddCRC32C() // optional checksum
//	_, err := h.WriteTo(upstream)
//
// Read never consumes a byte past the header: whatever the client sent
// after it stays in the bufio.Reader for the relay.
//
// The package does not decide whether a peer may send a header: the caller
// checks the peer against its trusted proxies before calling Read, since a
// header from anyone else would let them forge their address. It does not
// open sockets, set deadlines or wrap net.Conn, and it does not handle the
// UDP form of the protocol (one header per datagram).
package proxyproto

import (
	"errors"
	"net"
	"strconv"
)

// Sentinel errors. Read wraps them, so test with errors.Is.
var (
	// ErrNoHeader means the first bytes are not a PROXY header (neither
	// "PROXY" nor the v2 signature). Nothing was consumed from the reader.
	ErrNoHeader = errors.New("proxyproto: no PROXY header")
	// ErrInvalid means the bytes start like a PROXY header but break the
	// specification.
	ErrInvalid = errors.New("proxyproto: invalid PROXY header")
	// ErrTooLong means a v1 line has no CRLF within 107 bytes, or a v2
	// header is longer than ReadOptions.MaxHeaderLen or the reader's buffer.
	ErrTooLong = errors.New("proxyproto: PROXY header too long")
)

// Command says whether the connection was relayed for a client (Proxy) or
// opened by the proxy itself, e.g. for a health check (Local). The values
// are those of the low nibble of the v2 version/command byte.
type Command byte

const (
	// Local: the proxy opened the connection on its own behalf; the
	// receiver uses the connection's real endpoints.
	Local Command = 0x0
	// Proxy: the connection is relayed for the client in Header.Source.
	Proxy Command = 0x1
)

// String returns "LOCAL", "PROXY" or "Command(N)".
func (c Command) String() string {
	switch c {
	case Local:
		return "LOCAL"
	case Proxy:
		return "PROXY"
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// Transport is the socket type of the relayed connection. The values are
// those of the low nibble of the v2 family/protocol byte.
type Transport byte

const (
	// Unspec: unknown or unsupported; the header carries no addresses.
	Unspec Transport = 0x0
	// Stream: TCP or a UNIX stream socket.
	Stream Transport = 0x1
	// Datagram: UDP or a UNIX datagram socket.
	Datagram Transport = 0x2
)

// String returns "UNSPEC", "STREAM", "DGRAM" or "Transport(N)".
func (t Transport) String() string {
	switch t {
	case Unspec:
		return "UNSPEC"
	case Stream:
		return "STREAM"
	case Datagram:
		return "DGRAM"
	}
	return "Transport(" + strconv.Itoa(int(t)) + ")"
}

// Header is one PROXY protocol header.
//
// Read fills Source and Destination with *net.TCPAddr (Stream over IPv4 or
// IPv6), *net.UDPAddr (Datagram over IPv4 or IPv6) or *net.UnixAddr (Net
// "unix" or "unixgram"); they are nil for a v1 UNKNOWN line, a v2 UNSPEC
// family and a LOCAL command. IPv4 addresses are 4-byte net.IPs. A Linux
// abstract UNIX name (leading NUL) is returned with a leading '@', as package
// net spells it.
//
// Append and Format take the address family from the address types, and
// use Transport only as a check; see Append for the rules.
type Header struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Command is Proxy or Local. v1 has no LOCAL: Read reports Proxy for
	// every v1 line, and Format writes "PROXY UNKNOWN" for a v1 Local.
	Command Command
	// Transport is the relayed socket type; Unspec when there are no
	// addresses.
	Transport Transport
	// Source is the client's address; Destination the address the client
	// connected to. Both nil, or both set.
	Source, Destination net.Addr
	// TLVs are the v2 type-length-value extensions in wire order,
	// including ones this package does not interpret. v1 has none. Read
	// leaves them empty for a LOCAL header too, since it skips the body as
	// the spec says; Format still writes them.
	TLVs []TLV
}
