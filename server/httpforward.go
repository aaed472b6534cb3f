package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"ferry/plugins"
	"ferry/relay"
	"ferry/relay/upstream"
	"ferry/server/httphead"
)

// httpForwarder forwards plain HTTP requests of one client connection.
type httpForwarder struct {
	h *conn
	// The kept-alive upstream connection and what it reaches.
	up       net.Conn
	upRC     *rollingConn
	upBr     *bufio.Reader
	upTarget string
	upVia    string
	upUser   string
	upSource netip.Addr // the local address it was bound to
	upInfo   *upstream.DialInfo

	// waiting is set while waitNextRequest waits; stopDrain unregisters
	// the connection's one drain watch (see watchDrain).
	waiting   atomic.Bool
	stopDrain func() bool
}

// watchDrain registers, once per client connection, what a shutdown does
// to it: a connection waiting for its next request stops waiting. One
// registration per connection rather than per wait: context.AfterFunc
// allocates and takes the server-wide context's lock, 3-4 allocations of
// each small request's 40.
func (f *httpForwarder) watchDrain() {
	if f.stopDrain != nil {
		return
	}
	c := f.h.c
	f.stopDrain = context.AfterFunc(f.h.l.srv.drainCtx, func() {
		if f.waiting.Load() {
			c.SetReadDeadline(time.Now())
		}
	})
}

// end lets go of what the forwarder holds: the kept-alive upstream and
// its drain watch.
func (f *httpForwarder) end() {
	f.closeUpstream()
	if f.stopDrain != nil {
		f.stopDrain()
	}
}

// closeUpstream ends the upstream connection; abort resets it, so a
// truncated message cannot pass for a complete one.
func (f *httpForwarder) closeUpstream() { f.endUpstream(false) }

func (f *httpForwarder) endUpstream(abort bool) {
	if f.up == nil {
		return
	}
	// Bytes still unsent mean the origin stopped reading the request:
	// they can never go, and a reset frees them (see relay.Unsent).
	if abort || relay.Unsent(f.up) {
		relay.Abort(f.up)
	} else {
		f.up.Close()
	}
	f.upInfo.Release()
	f.h.l.putReader(f.upBr)
	f.up, f.upRC, f.upBr, f.upInfo = nil, nil, nil, nil
}

// waitNextRequest waits for the next request on a kept-alive client
// connection: at most idle_timeout, and not past the start of a shutdown.
func (f *httpForwarder) waitNextRequest() bool {
	h := f.h
	if h.l.srv.drainCtx.Err() != nil {
		return false
	}
	h.c.SetReadDeadline(time.Now().Add(h.l.boundedIdle()))
	f.watchDrain()
	f.waiting.Store(true)
	// A drain that began before waiting was set did not touch the
	// deadline: look again now that it would.
	var err error
	if h.l.srv.drainCtx.Err() == nil {
		_, err = h.br.Peek(1)
	}
	f.waiting.Store(false)
	if err != nil || h.l.srv.drainCtx.Err() != nil {
		return false
	}
	// The request head then gets handshake_timeout, like the first one.
	h.c.SetDeadline(time.Now().Add(h.l.set.HandshakeTimeout))
	return true
}

// forward serves one plain HTTP request and reports whether the client
// connection may carry another.
func (f *httpForwarder) forward(hd *httphead.Head, req *http.Request, fr httphead.Framing) (keepAlive bool) {
	h := f.h
	if !req.URL.IsAbs() || req.URL.Scheme != "http" || req.URL.Host == "" {
		h.httpError(http.StatusBadRequest, "ferry is a proxy: send an absolute http:// URL, or CONNECT", nil)
		return false
	}
	s := h.newSession("http", defaultPort(req.URL.Host, "80"))
	s.Request = req
	ex := &exchange{f: f, s: s, out: requestOut{hd: hd, req: req, fr: fr}}
	// The request's context ends with its exchange.
	ex.ctx.parent = h.l.srv.hardCtx
	s.BindContext(&ex.ctx)
	st := &ex.st
	st.Start = time.Now()
	defer func() { ex.ctx.end(); h.l.finish(s, st) }()

	up, reused, code, err := f.upstreamFor(s, fr.Kind == httphead.None && idempotent(req.Method))
	h.l.srv.obs.Handshake(s.Protocol, handshakeOutcome(err))
	if err != nil && answerOf(err) != nil {
		// An OnConnect refusal with an answer of the plugin's (acl's
		// deny_body): answered like an OnHTTPRequest one.
		return ex.refused(err, fr.Kind == httphead.None) && h.l.srv.drainCtx.Err() == nil
	}
	if err != nil {
		s.Status = code.HTTPStatus()
		h.httpError(s.Status, code.String(), err)
		st.Reason, st.Err = reasonFor(err), err
		return false
	}
	ex.link = httpLink{client: h.c, upConn: up}
	link := &ex.link
	s.Attach(link)
	defer s.Attach(nil)
	if err := ex.prepare(); err != nil {
		return ex.refused(err, fr.Kind == httphead.None) && h.l.srv.drainCtx.Err() == nil
	}
	h.c.SetDeadline(time.Time{})
	h.rc.d.Store(int64(h.l.set.IdleTimeout)) // the body streams under the idle timeout,
	h.rc.alive.Store(&link.down)             // which the answer's bytes renew (full duplex)
	defer func() {
		h.rc.d.Store(0)
		h.rc.alive.Store(nil)
	}()
	if goOn, keep := ex.gatherRequest(); !goOn {
		st.Up, st.Down = link.up.Load(), link.down.Load()
		return keep && h.l.srv.drainCtx.Err() == nil
	}
	keepAlive = ex.run(reused)
	st.Up, st.Down = link.up.Load(), link.down.Load()
	return keepAlive && h.l.srv.drainCtx.Err() == nil
}

// defaultPort returns host:port for an authority, with port added when
// the authority has none.
func defaultPort(authority, port string) string {
	if _, p, err := net.SplitHostPort(authority); err == nil && p != "" {
		return authority
	}
	u := url.URL{Host: authority}
	return net.JoinHostPort(strings.Trim(u.Hostname(), "[]"), port)
}

// upstreamFor runs OnConnect and returns a connection to the session's
// target: the kept-alive one when it goes to the same place and is still
// open, else a new dial. retryable: the request may be sent again on a
// new connection if the kept one turns out closed (see idleAlive).
func (f *httpForwarder) upstreamFor(s *plugins.Session, retryable bool) (net.Conn, bool, plugins.Code, error) {
	if err := f.h.admit(f.h.l.srv.hardCtx, s); err != nil {
		return nil, false, plugins.CodeOf(err), err
	}
	if f.up != nil && f.upTarget == s.Target && f.upVia == s.Upstream && f.upUser == s.User &&
		f.upSource == s.SourceAddr && f.idleAlive(retryable) {
		// A reused connection skips the dial, not the dial checks: rules
		// on destination addresses still see where it goes.
		if ta, ok := f.up.RemoteAddr().(*net.TCPAddr); ok && f.h.l.chain.HasDialCheckers() && f.upInfo.Path() == "" {
			if err := f.h.l.chain.CheckDial(s, ta.AddrPort()); err != nil {
				return nil, false, plugins.CodeOf(err), err
			}
		}
		s.UpstreamAddr = f.up.RemoteAddr()
		s.UpstreamPath = f.upInfo.Path()
		return f.up, true, 0, nil
	}
	f.closeUpstream()
	up, code, err := f.dial(s)
	return up, false, code, err
}

// idleAlive reports whether the kept-alive upstream connection can carry
// a request: nothing arrived on it while idle, neither bytes (which no
// request asked for) nor its end. Origins close idle connections after
// their keep-alive timeout; reusing one would fail the request.
//
// For a retryable request, a connection whose last response arrived
// under freshIdle ago is taken as open without the peek, a system call
// per request (about 6% of a small request's CPU): keep-alive timeouts
// are seconds long, an origin that closes after a response says so first
// (Connection: close, RFC 9112 section 9.6), and a retryable request
// that still meets a closed connection is sent again on a new one
// (exchange.roundTrip). Others, whose body could not be sent twice, are
// always looked at.
func (f *httpForwarder) idleAlive(retryable bool) bool {
	if f.upBr.Buffered() > 0 {
		return false
	}
	if retryable && f.upRC.sinceRead() < freshIdle {
		return true
	}
	return connIdleOpen(f.up)
}

// freshIdle is how long after its last read a kept-alive upstream
// connection is taken as open without a look.
const freshIdle = 100 * time.Millisecond

func (f *httpForwarder) dial(s *plugins.Session) (net.Conn, plugins.Code, error) {
	h := f.h
	up, info, err := h.dialTarget(h.l.srv.hardCtx, s, false)
	if err != nil {
		return nil, failCode(err), err
	}
	f.up, f.upInfo = up, info
	f.upRC = &rollingConn{Conn: up}
	f.upRC.d.Store(int64(h.l.set.IdleTimeout))
	f.upBr = h.l.getReader(f.upRC)
	f.upTarget, f.upVia, f.upUser, f.upSource = s.Target, s.Upstream, s.User, s.SourceAddr
	return up, 0, nil
}

// upgradeTunnel turns the connection into a byte tunnel after a 101
// response (WebSocket and the like).
func (f *httpForwarder) upgradeTunnel(s *plugins.Session, st *plugins.Stats, link *httpLink) {
	h := f.h
	var upPending []byte
	if n := f.upBr.Buffered(); n > 0 {
		b, _ := f.upBr.Peek(n)
		upPending = append(upPending, b...)
	}
	up, info := f.up, f.upInfo
	// The exchange's rolling deadlines end with it: the tunnel has its
	// own idle timer, and the write deadlines left from the request and
	// the 101 would cut a busy tunnel idle_timeout after it began.
	h.c.SetDeadline(time.Time{})
	up.SetDeadline(time.Time{})
	h.l.putReader(f.upBr)
	f.up, f.upRC, f.upBr, f.upInfo = nil, nil, nil, nil // the channel owns and closes it now
	defer info.Release()
	ch := relay.Channel{
		Client: h.c, Upstream: up, Session: s, Chain: h.l.chain, Buffers: h.l.buffers,
		IdleTimeout: h.l.set.IdleTimeout, ClientPending: h.takeBuffered(), UpstreamPending: upPending,
	}
	s.Attach(nil)
	h.l.srv.track(s, &ch)
	res := ch.Run(h.l.srv.hardCtx)
	h.l.srv.untrack(s.ID)
	st.Up += res.Up
	st.Down += res.Down
	st.Reason, st.Err = res.Reason, res.Err
}

// upstreamError is a failure on the upstream side of an exchange, with
// what the client is told.
type upstreamError struct {
	msg string // the cause in words, for the client's 502 body
	err error
}

func (e *upstreamError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// describeUpstream names an upstream failure for the client's error body
// and the log, rather than one "general failure" for every cause.
func describeUpstream(err error, respStarted bool, maxHead int) string {
	var se *httphead.SyntaxError
	switch {
	case errors.Is(err, httphead.ErrHTTP2):
		return "upstream speaks HTTP/2, not HTTP/1.1"
	case errors.Is(err, httphead.ErrTooLarge):
		return fmt.Sprintf("upstream response head over %v", sizeString(maxHead))
	case errors.Is(err, httphead.ErrTooManyFields):
		return "upstream response head has too many header fields"
	case errors.Is(err, httphead.ErrFraming), errors.Is(err, httphead.ErrChunk):
		return "upstream response framing is invalid"
	case errors.As(err, &se), errors.Is(err, httphead.ErrVersion):
		return "upstream sent a malformed response head"
	case relay.IsReset(err):
		return "upstream reset the connection"
	case isTimeout(err):
		return "upstream timed out"
	case !respStarted:
		return "upstream closed the connection before answering"
	}
	return "upstream closed the connection mid-response"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
