package server

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ferry/plugins"
	"ferry/relay"
)

// flowClient is an intercepted tunnel's client side as the HTTP server
// reads and writes it: the tunnel's data hooks see its plaintext both
// ways, as they would in a relayed tunnel, and the bytes are counted for
// the tunnel's access line and /channels.
type flowClient struct {
	net.Conn
	s     *plugins.Session
	chain *plugins.Chain
	// hookUp and hookDown: the chain has data hooks that way.
	hookUp, hookDown bool

	rmu     sync.Mutex
	pending []byte // hook output not yet handed to Read
	ended   bool   // the client's stream ended and OnReadEnd ran
	// cut is the hook error that ends the stream once pending (what a
	// Meter kept before cutting it) has been read.
	cut    error
	wmu    sync.Mutex
	wended bool
	// up counts bytes read from the client, down bytes written to it,
	// after the hooks.
	up, down atomic.Int64
	// hookErr is the first error a data hook returned; it ends the tunnel.
	errMu   sync.Mutex
	hookErr error
	// writeIdle, when set, bounds each write (writeRolling): net/http's
	// server, which serves HTTP/1.1 flows, has no timeout for a client
	// that stops reading, and a flow's idle watch cannot end a write.
	// stalled says a write timed out so.
	writeIdle time.Duration
	stalled   atomic.Bool
}

func newFlowClient(c net.Conn, s *plugins.Session, chain *plugins.Chain) *flowClient {
	return &flowClient{Conn: c, s: s, chain: chain, hookUp: chain.HasData(plugins.Up), hookDown: chain.HasData(plugins.Down)}
}

func (c *flowClient) Read(p []byte) (int, error) {
	if !c.hookUp {
		n, err := c.Conn.Read(p)
		c.up.Add(int64(n))
		return n, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.pending) == 0 {
		if c.cut != nil {
			return 0, c.fail(c.cut)
		}
		if c.ended {
			return 0, io.EOF
		}
		n, err := c.Conn.Read(p)
		if n > 0 {
			out, herr := c.chain.Data(c.s, plugins.Up, p[:n])
			c.take(out, herr)
		}
		if errors.Is(err, io.EOF) && c.cut == nil {
			c.take(c.chain.End(c.s, plugins.Up))
			c.ended = true
		} else if err != nil && c.cut == nil {
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.pending = nil
	}
	c.up.Add(int64(n))
	return n, nil
}

// take queues hook output for Read; an error ends the stream after it.
func (c *flowClient) take(out []byte, herr error) {
	c.pending = append(c.pending, out...)
	if herr != nil {
		c.cut = herr
	}
}

func (c *flowClient) Write(p []byte) (int, error) {
	if !c.hookDown {
		n, err := c.write(p)
		c.down.Add(int64(n))
		return n, err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	out, herr := c.chain.Data(c.s, plugins.Down, p)
	n, err := c.write(out) // a Meter's cut still delivers what it kept
	c.down.Add(int64(n))
	if herr != nil {
		return 0, c.fail(herr)
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// write writes p to the client, bounded when writeIdle is set.
func (c *flowClient) write(p []byte) (int, error) {
	if c.writeIdle <= 0 {
		return c.Conn.Write(p)
	}
	n, err := writeRolling(c.Conn, p, c.writeIdle)
	if isTimeout(err) {
		c.stalled.Store(true)
	}
	return n, err
}

// Close lets the Writers release what they hold (OnWriteEnd) before the
// connection closes. A client that stopped reading gets nothing more:
// not the Writers' rest, nor TLS's close_notify, which crypto/tls would
// wait up to 5 s to send; its connection is reset, as a cut answer's is.
func (c *flowClient) Close() error {
	if c.stalled.Load() {
		return relay.Abort(c.Conn)
	}
	if c.hookDown {
		c.wmu.Lock()
		if !c.wended {
			c.wended = true
			if out, _ := c.chain.End(c.s, plugins.Down); len(out) > 0 {
				n, _ := c.Conn.Write(out)
				c.down.Add(int64(n))
			}
		}
		c.wmu.Unlock()
	}
	return c.Conn.Close()
}

func (c *flowClient) fail(err error) error {
	c.errMu.Lock()
	if c.hookErr == nil {
		c.hookErr = err
	}
	c.errMu.Unlock()
	c.Conn.Close()
	return err
}

func (c *flowClient) err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.hookErr
}

// Bytes implements liveRelay for /channels.
func (c *flowClient) Bytes() (up, down int64) { return c.up.Load(), c.down.Load() }

// oneConnListener hands one connection to an http.Server, then blocks
// until closed, so the server serves that connection and nothing else.
type oneConnListener struct {
	c      chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func newOneConnListener(c net.Conn) *oneConnListener {
	l := &oneConnListener{c: make(chan net.Conn, 1), closed: make(chan struct{}), addr: c.LocalAddr()}
	l.c <- c
	return l
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }
