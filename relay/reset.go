package relay

import (
	"errors"
	"io"
	"net"

	"ferry/plugins"
	"ferry/plugins/pkg/netx"
)

// IsReset reports whether err says the peer reset the connection
// (ECONNRESET): the stream was cut, and what came before it may be
// incomplete. A proxy that sees it on one side passes it on with Abort on
// the other, so the far peer does not take the cut for an orderly end.
//
// EPIPE is not a reset here. On Linux a TCP write fails with EPIPE after
// the local side shut down writing, after a reset whose ECONNRESET an
// earlier call already reported, or when the peer's reset came after its
// FIN (the kernel then records EPIPE, not ECONNRESET). In the first two
// cases the reset, if any, was handled where ECONNRESET was seen; in the
// last the peer had ended its stream in order, and its last bytes (an
// early answer, say) must still reach the other side, which an abort
// would discard.
func IsReset(err error) bool {
	return netx.IsReset(err)
}

// Abort closes c so that its peer sees a reset (RST) rather than an
// orderly close (FIN): it sets SO_LINGER 0 on the TCP connection under c
// and closes it, then closes c. Bytes not yet sent are discarded, and a
// wrapper's own goodbye (a TLS close_notify) is not sent: the TCP
// connection is closed first.
//
// Wrappers are looked through by their NetConn() net.Conn method, as
// crypto/tls.Conn has; a wrapper that hides its connection should have
// one. When there is no TCP connection under c, Abort just closes c.
// Abort is safe to call while other goroutines use c, as Close is.
// A connection that is not a socket and has its own way to say "reset"
// (an HTTP/2 stream: RST_STREAM) has an Abort method, which Abort calls.
func Abort(c net.Conn) error {
	if c == nil {
		return nil
	}
	if a, ok := c.(aborter); ok {
		return a.Abort()
	}
	if tc := tcpUnder(c); tc != nil {
		tc.SetLinger(0)
		err := tc.Close()
		if net.Conn(tc) == c {
			return err
		}
	}
	return c.Close()
}

type aborter interface{ Abort() error }

// tcpUnder finds the *net.TCPConn under wrappers with a NetConn method;
// nil when there is none.
func tcpUnder(c net.Conn) *net.TCPConn {
	for range 8 { // wrappers do not nest deeper than this
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case interface{ NetConn() net.Conn }:
			if c = v.NetConn(); c == nil {
				return nil
			}
		default:
			return nil
		}
	}
	return nil
}

// resetReason is the reset reason for the side r names.
func resetReason(r plugins.CloseReason) plugins.CloseReason {
	if r == plugins.ReasonClientClosed {
		return plugins.ReasonClientReset
	}
	return plugins.ReasonUpstreamReset
}

// isPeerGone reports errors that mean the other end went away, which are
// ordinary endings for a proxy rather than faults.
func isPeerGone(err error) bool {
	return netx.IsReset(err) || netx.IsBrokenPipe(err) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}
