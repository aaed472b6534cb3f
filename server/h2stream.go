package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// streamConn is an HTTP/2 CONNECT stream as a net.Conn, so a relay.Channel
// can carry it like a socket: reads take the client's DATA frames, writes
// send DATA frames and flush them at once (a tunnel's bytes must not wait
// in a buffer). It has no CloseWrite: a handler cannot end its stream
// (END_STREAM) and keep reading, so the channel ends as a whole when the
// target closes first; the client's END_STREAM half-closes the target
// (RFC 9113 section 8.5).
type streamConn struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	body  io.ReadCloser
	ctx   context.Context // the stream's: ends when the client resets it
	local net.Addr
	peer  net.Addr

	closeOnce sync.Once
	writing   atomic.Bool
	// aborted: the channel ended with a reset; the handler resets the
	// stream (RST_STREAM) instead of ending it in order.
	aborted atomic.Bool
}

func newStreamConn(w http.ResponseWriter, r *http.Request, parent net.Conn) *streamConn {
	return &streamConn{
		w: w, rc: http.NewResponseController(w), body: r.Body, ctx: r.Context(),
		local: parent.LocalAddr(), peer: parent.RemoteAddr(),
	}
}

// errStreamReset is the client resetting its stream (RST_STREAM) or
// dropping the connection under it. It counts as a reset
// (ECONNRESET), so the channel resets the target's connection in turn
// rather than closing it in order: RFC 9113 section 8.5.
type errStreamReset struct{ err error }

func (e errStreamReset) Error() string        { return "stream reset: " + e.err.Error() }
func (e errStreamReset) Unwrap() error        { return e.err }
func (e errStreamReset) Is(target error) bool { return target == syscall.ECONNRESET }

func (c *streamConn) Read(p []byte) (int, error) {
	n, err := c.body.Read(p)
	if err != nil && err != io.EOF && c.ctx.Err() != nil {
		err = errStreamReset{err}
	}
	return n, err
}

func (c *streamConn) Write(p []byte) (int, error) {
	c.writing.Store(true)
	defer c.writing.Store(false)
	n, err := c.w.Write(p)
	if err == nil {
		err = c.rc.Flush()
	}
	if err != nil && c.ctx.Err() != nil {
		err = errStreamReset{err}
	}
	return n, err
}

// Close stops the stream's reader. A writer blocked on the client's flow
// control window cannot be ended in order: the stream is reset under
// it, which frees it.
func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		c.body.Close()
		if c.writing.Load() {
			c.aborted.Store(true)
			c.rc.SetWriteDeadline(time.Unix(1, 0))
		}
	})
	return nil
}

// Abort resets the stream: relay.Abort calls it where a socket would get
// an RST.
func (c *streamConn) Abort() error {
	c.aborted.Store(true)
	return c.Close()
}

func (c *streamConn) LocalAddr() net.Addr  { return c.local }
func (c *streamConn) RemoteAddr() net.Addr { return c.peer }

func (c *streamConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

func (c *streamConn) SetReadDeadline(t time.Time) error  { return c.rc.SetReadDeadline(t) }
func (c *streamConn) SetWriteDeadline(t time.Time) error { return c.rc.SetWriteDeadline(t) }
