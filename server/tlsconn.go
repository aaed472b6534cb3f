package server

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"sync/atomic"
	"syscall"

	"ferry/relay"
)

// tlsClient is a client's TLS connection as the protocols and the relay
// use it.
//
// Its CloseWrite, which the relay calls when the upstream has sent all it
// will, sends close_notify (RFC 8446 section 6.1: the end of this side's
// stream) and then a FIN, so a client that waits for the TCP stream's end
// sees it too; tls.Conn's own CloseWrite leaves the TCP connection open.
// relay.Abort reaches the TCP connection through NetConn.
//
// It is a relay.ReadWaiter: an idle tunnel's copy loop waits on the
// socket, not in a Read that holds a buffer_size buffer for as long as
// the client says nothing. That is sound because crypto/tls reads the
// socket only through recordConn, which never reads past the next
// record's header: once a Read leaves room in its buffer and no record is
// begun, nothing is left inside crypto/tls, and all that is to come is
// in the socket.
type tlsClient struct {
	*tls.Conn
	rec *recordConn
	tcp net.Conn        // the accepted connection
	raw syscall.RawConn // tcp's socket; nil: WaitRead does not wait
	// more: the last Read filled its buffer, so plaintext may be left in
	// crypto/tls, or took a whole record, so more is likely on its way.
	// Read and WaitRead run on one goroutine at a time (the handshake's,
	// then the relay's copy to the upstream).
	more bool
	// broken: a Write failed. crypto/tls then refuses every write but
	// close_notify, which Close and CloseWrite would send under their
	// own 5-second deadline: to a client that stopped reading, that
	// holds the connection 5 s more for nothing.
	broken atomic.Bool
}

var _ relay.ReadWaiter = (*tlsClient)(nil)

func (c *tlsClient) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	// A full record is a transfer under way: the next Read does not wait
	// on the socket first, which would cost a syscall a record.
	c.more = n > 0 && (n == len(p) || n >= tlsMaxPlaintext)
	return n, err
}

// WaitRead returns once a Read may not block: at once when plaintext may
// be left from the last Read or a record is half read, else when the
// socket has bytes, EOF or an error, or with the socket's read deadline
// or close.
func (c *tlsClient) WaitRead() error {
	if c.more || c.raw == nil || c.rec.midRecord() {
		return nil
	}
	if err := waitReadable(c.raw); err != nil {
		return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return nil
}

func (c *tlsClient) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.broken.Store(true)
	}
	return n, err
}

// Close ends the connection, with close_notify unless a write failed:
// then the stream is cut mid-record or the client reads nothing, and it
// is reset instead (resetStalled).
func (c *tlsClient) Close() error {
	if c.broken.Load() {
		return relay.Abort(c.Conn)
	}
	return c.Conn.Close()
}

func (c *tlsClient) CloseWrite() error {
	if c.broken.Load() {
		return net.ErrClosed
	}
	if err := c.Conn.CloseWrite(); err != nil {
		return err
	}
	if cw, ok := c.tcp.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return nil
}

// tlsRecordHeaderLen is a TLS record's header: type, version, length
// (RFC 8446 section 5.1, RFC 5246 section 6.2.1); tlsMaxPlaintext the
// most plaintext a record carries (2^14).
const (
	tlsRecordHeaderLen = 5
	tlsMaxPlaintext    = 1 << 14
)

// recordConn is the connection under a TLS server. A Read stops at the
// end of the record being read, or at the end of the next record's
// header, so crypto/tls, which would fill its buffer with whatever the
// socket holds, holds at most the header of a record it has not been
// asked for, and midRecord says when it may. During a transfer each read
// takes a record's body and the next header, one read a record as
// before.
type recordConn struct {
	net.Conn
	hdr  [tlsRecordHeaderLen]byte
	nhdr int // bytes read of the next record's header
	body int // body bytes left of the current record
}

func (c *recordConn) Read(p []byte) (int, error) {
	// In a body, nhdr is 0; in a header, body is.
	if want := c.body + tlsRecordHeaderLen - c.nhdr; len(p) > want {
		p = p[:want]
	}
	n, err := c.Conn.Read(p)
	b := p[:n]
	k := min(len(b), c.body)
	c.body -= k
	if b = b[k:]; len(b) > 0 {
		c.nhdr += copy(c.hdr[c.nhdr:], b)
		if c.nhdr == tlsRecordHeaderLen {
			c.body, c.nhdr = int(binary.BigEndian.Uint16(c.hdr[3:])), 0
		}
	}
	return n, err
}

// midRecord reports whether crypto/tls may hold part of a record: a
// header read without all of its body, or part of a header.
func (c *recordConn) midRecord() bool { return c.body > 0 || c.nhdr > 0 }

// NetConn returns the connection underneath, for relay.Abort.
func (c *recordConn) NetConn() net.Conn { return c.Conn }
