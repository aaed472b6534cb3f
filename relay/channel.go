// Package relay joins two connections and copies bytes between them: the
// byte engine of a channel.
//
//	ch := &relay.Channel{Client: c, Upstream: up, Session: s, Chain: chain,
//		Buffers: pool, IdleTimeout: 5 * time.Minute}
//	res := ch.Run(ctx) // returns when both directions are done
//
// A Channel runs the plugin data hooks on each chunk when the chain has
// them; without hooks it splices between the two TCP sockets in the
// kernel, taking a pipe only while bytes flow. It propagates half-closes
// (FIN stays FIN) and resets (a reset from one side is passed on as a
// reset, see Abort), enforces the idle timeout and ends both sides on the
// first error or when ctx is cancelled. SpliceN moves a known number of
// bytes between two sockets the same way, for a caller that frames its
// own messages (a plain HTTP body).
//
// The package does not parse proxy handshakes (server does), does not
// dial (relay/upstream does) and does not call OnConnect or OnClose
// hooks: the caller owns the session's lifecycle.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ferry/plugins"
)

// Channel is one client joined to one upstream. Set the fields, then call
// Run once.
type Channel struct {
	Client, Upstream net.Conn
	// Session is handed to the hooks and can inject bytes while Run runs.
	Session *plugins.Session
	// Chain holds the listener's plugins; nil means none.
	Chain *plugins.Chain
	// Buffers supplies read buffers for the hooked copy; if nil, a pool of
	// DefaultBufferSize buffers is made for this channel.
	Buffers *BufferPool
	// ClientBuffers, if set, supplies the buffers that reads of the client
	// go into instead. A client that is not a socket (an HTTP/2 stream)
	// holds its buffer while it waits for data, where small ones keep
	// idle channels cheap.
	ClientBuffers *BufferPool
	// IdleTimeout ends the channel after no bytes either way for this
	// long; zero disables it.
	IdleTimeout time.Duration
	// ClientPending are bytes already read from the client (past its
	// handshake) that go upstream first, through the Reader hooks.
	// UpstreamPending are the same for the way back.
	ClientPending, UpstreamPending []byte
	// Parker, if set, takes the goroutines of spliced copies that have
	// been idle for its After; nil keeps them waiting.
	Parker *Parker
	// Go, if set, starts the goroutine of the copy Start does not run
	// itself (a pool's, whose stack has grown already); nil uses a go
	// statement.
	Go func(func())
	// UpstreamKeepAlive, if set, is turned on on Upstream (when it is a
	// *net.TCPConn) once the channel may need it: when a direction first
	// parks, or at Start when the channel cannot park. A tunnel that ends
	// before it goes idle, as most do, never pays the four system calls.
	UpstreamKeepAlive *net.KeepAliveConfig

	start     time.Time
	lastNano  atomic.Int64    // last user-space activity, ns since start
	delivered [2]atomic.Int64 // bytes delivered each way, by plugins.Direction
	writeMu   [2]sync.Mutex   // serialise hook output with injected bytes, by direction

	timerMu   sync.Mutex
	idleTimer *time.Timer
	fast      bool

	done         func(Result)
	stopShutdown func() bool  // nil: the context given to Start never ends
	live         atomic.Int32 // copies not yet ended; a parked one counts
	// parkToken is each direction's token when it last parked (see
	// parkSlot), guarded by the Parker's mu.
	parkToken [2]uint64
	ending    atomic.Bool
	// parker is Parker once Start has decided the channel may park: end,
	// which may run on any goroutine before or while Start runs (the
	// shutdown context, Close), reads it instead of the field Start sets.
	parker atomic.Pointer[Parker]

	// The session's context (see channelCtx): parent is Start's, set
	// before the session can see it; the rest under ctxMu, since end may
	// run before or while Start does.
	parent   context.Context
	ctxMu    sync.Mutex
	ctxDone  chan struct{}
	ctxEnded bool

	keptAlive atomic.Bool  // UpstreamKeepAlive was applied
	firstEOF  atomic.Int32 // the side whose orderly close came first
	endOnce   sync.Once
	reason    plugins.CloseReason
	err       error
}

// Result is how a channel ended.
type Result struct {
	// Up and Down count bytes delivered to the upstream and to the client.
	Up, Down int64
	Reason   plugins.CloseReason
	// Err is the error behind Reason; nil for orderly ends.
	Err error
}

// Run copies both ways until both sides are done, then closes both
// connections. It returns after both copies have ended.
func (c *Channel) Run(ctx context.Context) Result {
	res := make(chan Result, 1)
	c.Start(ctx, func(r Result) { res <- r })
	return <-res
}

// Start copies both ways, one direction on the calling goroutine. It
// returns when that direction has ended, or has parked (see Parker), so
// possibly before the channel ends; done runs once, on whichever goroutine
// ends the channel, after both copies have ended and both connections are
// closed.
func (c *Channel) Start(ctx context.Context, done func(Result)) {
	c.start = time.Now()
	c.done = done
	if c.Buffers == nil {
		c.Buffers = NewBufferPool(0)
	}
	// The session's context ends with the channel (see channelCtx), so
	// hooks that wait (rate limits) wake when it closes.
	c.parent = ctx
	if c.Session != nil {
		c.Session.BindContext((*channelCtx)(c))
	}
	if ctx.Done() != nil {
		c.stopShutdown = context.AfterFunc(ctx, c.Shutdown)
	}

	hooked := c.Chain.SeesData(plugins.Up) || c.Chain.SeesData(plugins.Down)
	metered := c.Chain.HasMeters(plugins.Up) || c.Chain.HasMeters(plugins.Down)
	splices := spliceable(c.Client, c.Upstream)
	// The splice loop counts bytes and activity per chunk, and tells the
	// Meters. io.Copy (for connections that cannot be spliced) reports
	// nothing until it ends, so with an idle timeout or Meters those go
	// through the counting copy.
	c.fast = !hooked && (splices || (c.IdleTimeout <= 0 && !metered))
	if c.Parker != nil && c.fast && splices {
		c.parker.Store(c.Parker)
	} else {
		c.Parker = nil
		c.keepAlive()
	}

	if c.IdleTimeout > 0 {
		c.timerMu.Lock()
		c.idleTimer = time.AfterFunc(c.IdleTimeout, c.checkIdle)
		c.timerMu.Unlock()
	}
	if c.Session != nil {
		c.Session.Attach(c)
	}
	c.live.Store(2)
	if c.Go != nil {
		c.Go(c.runUp)
	} else {
		go c.runUp()
	}
	c.run(plugins.Down)
}

func (c *Channel) runUp() { c.run(plugins.Up) }

// run copies one direction until it ends or parks. The last direction to
// end completes the channel.
func (c *Channel) run(d plugins.Direction) {
	var err error
	if d == plugins.Up {
		err = c.clientToUpstream()
	} else {
		err = c.upstreamToClient()
	}
	if err == errParked {
		return // a new goroutine carries on when the socket wakes
	}
	c.finishDirection(d, err)
	if c.live.Add(-1) == 0 {
		c.complete()
	}
}

// resume carries on a parked direction; the Parker calls it on a new
// goroutine.
func (c *Channel) resume(d plugins.Direction) { c.run(d) }

// keepAlive applies UpstreamKeepAlive, once.
func (c *Channel) keepAlive() {
	if c.UpstreamKeepAlive == nil || !c.keptAlive.CompareAndSwap(false, true) {
		return
	}
	if tc, ok := c.Upstream.(*net.TCPConn); ok {
		// An error means the socket is closing: nothing to keep alive.
		_ = tc.SetKeepAliveConfig(*c.UpstreamKeepAlive)
	}
}

// complete ends the channel once both copies have ended and reports.
func (c *Channel) complete() {
	c.end(plugins.CloseReason(c.firstEOF.Load()), nil)
	if c.Session != nil {
		c.Session.Attach(nil)
	}
	if c.IdleTimeout > 0 {
		c.timerMu.Lock()
		c.idleTimer.Stop()
		c.idleTimer = nil
		c.timerMu.Unlock()
	}
	if c.stopShutdown != nil {
		c.stopShutdown()
	}
	c.cancelCtx()
	up, down := c.Bytes()
	c.done(Result{Up: up, Down: down, Reason: c.reason, Err: c.err})
}

// end records the first reason the channel ends for and closes both sides,
// which unblocks both copy loops.
func (c *Channel) end(r plugins.CloseReason, err error) {
	c.endOnce.Do(func() {
		c.reason, c.err = r, err
		// A reset on one side is passed on as a reset on the other: an
		// orderly close would make a cut stream look complete.
		closeSide(c.Client, r == plugins.ReasonUpstreamReset, r)
		closeSide(c.Upstream, r == plugins.ReasonClientReset, r)
		c.cancelCtx()
		// Parked copies have no goroutine to notice the closed sockets:
		// wake them to finish.
		c.ending.Store(true)
		if p := c.parker.Load(); p != nil {
			p.unpark(c, plugins.Up)
			p.unpark(c, plugins.Down)
		}
	})
}

// closeSide closes one side of a channel that ends for r: with a reset
// when reset is set, or when the channel went idle with bytes the side
// never took still queued for it. That peer stopped reading for
// IdleTimeout; an orderly close would leave the bytes in the kernel,
// which probes the peer's shut window for minutes before it gives the
// socket up, while a reset frees it at once.
func closeSide(conn net.Conn, reset bool, r plugins.CloseReason) {
	if reset || r == plugins.ReasonIdleTimeout && Unsent(conn) {
		Abort(conn)
		return
	}
	conn.Close()
}

// Bytes returns the bytes delivered so far to the upstream and to the
// client. It is safe to call from any goroutine while Run runs.
func (c *Channel) Bytes() (up, down int64) {
	return c.delivered[plugins.Up].Load(), c.delivered[plugins.Down].Load()
}

// Close ends the channel with plugins.ReasonAdminClosed, unless it has
// already ended for another reason. It is safe to call from any goroutine,
// before or while Run runs; Run still returns only after both copies are
// done.
func (c *Channel) Close() {
	c.end(plugins.ReasonAdminClosed, nil)
}

// flow is one direction of a channel as its copy loop sees it.
type flow struct {
	dir      plugins.Direction
	src, dst net.Conn
	wr       chunkWriter // writes to dst; set up by its first write
	idle     idleWait    // for parking (spliceFlow)
	// splice copies in the kernel; hooked passes each chunk through the
	// chain's Data (its data hooks and Meters) for dir (never both).
	// metered: a spliced flow tells the Meters.
	splice, hooked, metered bool
}

// newFlow describes direction d of c.
func (c *Channel) newFlow(d plugins.Direction) *flow {
	f := &flow{dir: d, src: c.Client, dst: c.Upstream}
	if d == plugins.Down {
		f.src, f.dst = c.Upstream, c.Client
	}
	f.splice = c.fast && !c.Chain.SeesData(d)
	f.hooked = !f.splice && c.Chain.HasData(d)
	f.metered = f.splice && c.Chain.HasMeters(d)
	return f
}

// Named so that goroutine dumps say which way a stuck copy goes.
func (c *Channel) clientToUpstream() error {
	pending := c.ClientPending
	c.ClientPending = nil // delivered once, not again on a resume
	return c.copy(c.newFlow(plugins.Up), pending)
}

func (c *Channel) upstreamToClient() error {
	pending := c.UpstreamPending
	c.UpstreamPending = nil
	return c.copy(c.newFlow(plugins.Down), pending)
}

type closeWriter interface{ CloseWrite() error }

// readError and writeError tell which side of a copy failed.
type readError struct{ error }
type writeError struct{ error }

func (e readError) Unwrap() error  { return e.error }
func (e writeError) Unwrap() error { return e.error }

// ends describes each direction's two sides, by plugins.Direction: the
// reasons that name the side it reads from (src) and the one it writes to
// (dst), and the prefix of its errors.
var ends = [2]struct {
	src, dst plugins.CloseReason
	label    string
}{
	plugins.Up:   {plugins.ReasonClientClosed, plugins.ReasonUpstreamClosed, "from client to upstream"},
	plugins.Down: {plugins.ReasonUpstreamClosed, plugins.ReasonClientClosed, "from upstream to client"},
}

// finishDirection half-closes direction d's destination after an orderly
// EOF from its source, or ends the whole channel on an error.
//
// The kernel reports a reset once: when the other direction's write to
// src takes the ECONNRESET, a read of src that comes after it sees EOF,
// and may pass on a FIN just before that direction resets dst. That
// needs a reset while both directions use the socket (an upload); a
// reset while the tunnel is idle or downloading reaches the read.
func (c *Channel) finishDirection(d plugins.Direction, err error) {
	srcReason, dstReason := ends[d].src, ends[d].dst
	if err == nil {
		dst := c.Upstream
		if d == plugins.Down {
			dst = c.Client
		}
		c.firstEOF.CompareAndSwap(0, int32(srcReason))
		if _, tcp := dst.(*net.TCPConn); tcp && c.live.Load() == 1 {
			// The other direction has ended at its EOF: dst has nothing
			// left to read, so closing it sends the FIN a shutdown would
			// (not a reset), one system call fewer per tunnel. Other
			// connections (TLS, HTTP/2 streams) may end differently on
			// Close, so they keep their CloseWrite.
			c.end(plugins.CloseReason(c.firstEOF.Load()), nil)
			return
		}
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return
		}
		c.end(srcReason, nil)
		return
	}
	var he *plugins.HookError // declared past the common case: it escapes
	switch {
	case errors.Is(err, plugins.ErrClose):
		c.end(plugins.ReasonPluginClosed, nil)
	case errors.As(err, &he):
		c.end(plugins.ReasonPluginError, err)
	case isPeerGone(err):
		// The side that failed: dst when the write did, else src.
		r := srcReason
		var we writeError
		if errors.As(err, &we) {
			r = dstReason
		}
		if IsReset(err) {
			r = resetReason(r)
		}
		c.end(r, fmt.Errorf("%s: %w", ends[d].label, err))
	default:
		c.end(plugins.ReasonError, fmt.Errorf("%s: %w", ends[d].label, err))
	}
}

// copy delivers pending, then moves bytes along f until EOF (nil) or an
// error.
func (c *Channel) copy(f *flow, pending []byte) error {
	if err := c.deliver(f, pending, f.hooked || f.metered); err != nil {
		return err
	}
	if f.splice {
		return c.spliceFlow(f)
	}
	return c.copyChunks(f)
}

// spliceFlow moves f's bytes in the kernel, with a pipe held only while
// bytes flow, or with io.Copy where the connections cannot be spliced.
func (c *Channel) spliceFlow(f *flow) error {
	var idle *idleWait
	if c.Parker != nil {
		f.idle = idleWait{c: c, dir: f.dir}
		idle = &f.idle
	}
	count := &c.delivered[f.dir]
	var meter func(int) (int, error)
	if f.metered {
		meter = func(n int) (int, error) { return c.Chain.Meter(c.Session, f.dir, n) }
	}
	ok, err := spliceCopy(f.dst, f.src, func(n int) {
		count.Add(int64(n))
		c.lastNano.Store(int64(time.Since(c.start)))
	}, meter, idle)
	if ok {
		return err
	}
	if f.metered {
		f.hooked = true // io.Copy would tell the Meters nothing
		return c.copyChunks(f)
	}
	n, err := io.Copy(f.dst, f.src)
	count.Add(n)
	return err
}

// copyChunks reads f's source chunk by chunk into pooled buffers and
// delivers each, through the data hooks when f is hooked.
func (c *Channel) copyChunks(f *flow) error {
	pool := c.Buffers
	if f.dir == plugins.Up && c.ClientBuffers != nil {
		pool = c.ClientBuffers
	}
	rd := newChunkReader(f.src, pool, c.Chain.MaxChunk())
	for {
		// A buffer is held only while a chunk is handled, not while the
		// channel waits for one: idle channels cost no buffers.
		bufp, n, rerr := rd.next()
		if n > 0 {
			c.lastNano.Store(int64(time.Since(c.start)))
			err := c.deliver(f, (*bufp)[:n], f.hooked)
			pool.Put(bufp)
			if err != nil {
				return err
			}
		} else if bufp != nil {
			pool.Put(bufp)
		}
		if rerr == io.EOF {
			return c.endFlow(f)
		}
		if rerr != nil {
			return readError{rerr}
		}
	}
}

// endFlow delivers, at f's EOF, the bytes its hooks held back: their last
// call.
func (c *Channel) endFlow(f *flow) error {
	if !f.hooked {
		return nil
	}
	rest, err := c.Chain.End(c.Session, f.dir)
	if werr := c.write(f, rest); werr != nil {
		return werr
	}
	return err
}

// deliver writes p to f's destination, first through the data hooks and
// Meters if hooked. A Meter's cut delivers what it kept, then ends the
// flow.
func (c *Channel) deliver(f *flow, p []byte, hooked bool) error {
	if len(p) == 0 {
		return nil
	}
	var herr error
	if hooked {
		p, herr = c.Chain.Data(c.Session, f.dir, p)
	}
	if err := c.write(f, p); err != nil {
		return err
	}
	return herr
}

// write writes p to f's destination and counts what went.
func (c *Channel) write(f *flow, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if f.wr.dst == nil {
		// Not before: a spliced flow writes here only what was pending,
		// and most have nothing.
		f.wr.init(f.dst)
	}
	mu := &c.writeMu[f.dir]
	mu.Lock()
	n, err := f.wr.write(p)
	mu.Unlock()
	c.delivered[f.dir].Add(int64(n))
	if err != nil {
		return writeError{err}
	}
	return nil
}

// checkIdle runs from the idle timer: it ends the channel if nothing moved
// for IdleTimeout, or re-arms for the time left.
func (c *Channel) checkIdle() {
	idle := c.sinceActivity()
	if idle >= c.IdleTimeout {
		c.end(plugins.ReasonIdleTimeout, nil)
		return
	}
	c.timerMu.Lock()
	if c.idleTimer != nil {
		c.idleTimer.Reset(c.IdleTimeout - idle)
	}
	c.timerMu.Unlock()
}

// sinceActivity is the time since the last byte moved either way.
func (c *Channel) sinceActivity() time.Duration {
	return time.Since(c.start) - time.Duration(c.lastNano.Load())
}
