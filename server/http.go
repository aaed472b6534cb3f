package server

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ferry/config"
	"ferry/plugins"
	"ferry/relay"
	"ferry/server/httphead"
)

// serveHTTP serves one client connection of HTTP proxy requests: a CONNECT
// turns it into a tunnel; absolute-form requests are forwarded one by one,
// each as its own session, with the client connection kept alive between
// them and the upstream connection reused while the target stays the same.
func (h *conn) serveHTTP() {
	fw := &httpForwarder{h: h}
	defer fw.end()
	lim := &h.l.gen.cfg.Limits
	hl := httphead.Limits{MaxBytes: int(lim.MaxHeaderBytes), MaxFields: lim.MaxHeaders}
	for n := 0; ; n++ {
		if n > 0 && !fw.waitNextRequest() {
			return
		}
		h.headReq = false
		hd, err := httphead.ReadRequest(h.br, hl)
		if err != nil {
			h.badRequestHead(err, n, lim)
			return
		}
		h.headReq = hd.Method() == http.MethodHead
		fr, err := httphead.RequestFraming(hd)
		var req *http.Request
		if err == nil {
			req, err = requestView(hd, fr)
		}
		if err != nil {
			h.httpError(http.StatusBadRequest, err.Error(), nil)
			h.debugHandshake("http", err)
			return
		}
		if req.Method == http.MethodConnect {
			// The tunnel may end, and the connection be released, before
			// this goroutine runs its defers: the kept-alive upstream of
			// earlier requests goes first.
			fw.closeUpstream()
			h.serveCONNECT(req)
			return
		}
		if h.l.cfg.PAC != nil && isPACRequest(req) {
			fw.closeUpstream()
			h.servePAC(req)
			return
		}
		if !fw.forward(hd, req, fr) {
			return
		}
	}
}

// badRequestHead answers a request head that could not be read: 431 for
// one over the limits, 505 for another HTTP version, 400 for bad syntax,
// nothing for a client that left or a handshake that timed out.
func (h *conn) badRequestHead(err error, n int, lim *config.Limits) {
	var se *httphead.SyntaxError
	switch {
	case errors.Is(h.rc.err, os.ErrDeadlineExceeded):
		// The handshake timed out mid-line: no answer, as for any
		// handshake timeout (the deadline has passed anyway).
		err = h.rc.err
	case errors.Is(err, httphead.ErrTooLarge):
		h.httpError(http.StatusRequestHeaderFieldsTooLarge,
			fmt.Sprintf("request head over %v", lim.MaxHeaderBytes), nil)
		err = errHeadTooLarge
	case errors.Is(err, httphead.ErrTooManyFields):
		h.httpError(http.StatusRequestHeaderFieldsTooLarge,
			fmt.Sprintf("more than %d header fields", lim.MaxHeaders), nil)
		err = errTooManyHeaders
	case errors.Is(err, httphead.ErrVersion):
		h.httpError(http.StatusHTTPVersionNotSupported, "ferry speaks HTTP/1.x", nil)
	case errors.As(err, &se):
		h.httpError(http.StatusBadRequest, se.Msg, nil)
	case n == 0 && !isQuietEnd(err):
		h.httpError(http.StatusBadRequest, "malformed request", nil)
	}
	h.debugHandshake("http", err)
}

// isQuietEnd reports read errors that end a connection without an answer.
func isQuietEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed)
}

// serveCONNECT opens a tunnel to the request's authority.
func (h *conn) serveCONNECT(req *http.Request) {
	target := req.RequestURI
	if host, port, err := net.SplitHostPort(target); err != nil || port == "" || host == "" {
		h.httpError(http.StatusBadRequest, "CONNECT needs host:port", nil)
		h.l.log.Debug().Str("client", h.c.RemoteAddr().String()).Str("target", target).Msg("http: bad CONNECT target")
		return
	}
	s := h.newSession("connect", target)
	s.Request = req
	h.tunnel(s, connectReplier{h})
}

type connectReplier struct{ h *conn }

// connectEstablished is CONNECT's success answer, as bytes once: a string
// written with io.WriteString would be copied per tunnel.
var connectEstablished = []byte("HTTP/1.1 200 Connection established\r\n\r\n")

func (r connectReplier) fail(s *plugins.Session, code plugins.Code, err error) {
	s.Status = code.HTTPStatus()
	r.h.httpError(s.Status, code.String(), err)
}

func (r connectReplier) ok(s *plugins.Session, _ net.Addr) error {
	s.Status = http.StatusOK
	_, err := r.h.c.Write(connectEstablished)
	return err
}

// httpError answers with an error and marks the connection to close
// gently: the client may still be sending a body ferry will not read.
func (h *conn) httpError(status int, msg string, cause error) {
	h.linger = true
	writeHTTPError(answerWriter{h}, status, msg, cause, h.l.chain.Realm(), h.headReq)
}

// answerWriter writes answers of ferry's own (an error, a plugin's
// refusal) to the client. An exchange clears the connection's deadlines,
// so each write is a rolling one (writeRolling), as a response's are: a
// client that reads slowly gets the whole answer, one that reads nothing
// is let go after idle_timeout (handshake_timeout when that is off)
// instead of holding the connection for good.
type answerWriter struct{ h *conn }

func (w answerWriter) Write(p []byte) (int, error) {
	n, err := writeRolling(w.h.c, p, w.h.l.boundedIdle())
	if isTimeout(err) {
		resetStalled(w.h.c)
	}
	return n, err
}

// resetStalled ends a client connection whose write timed out: the
// client stopped reading, so what ferry still has queued for it can
// never go. An orderly close would leave that in the kernel, which
// probes the client's closed window for minutes before it gives the
// socket up; a reset frees it at once (nginx's
// reset_timedout_connection).
func resetStalled(c net.Conn) { relay.Abort(c) }

// writeRolling writes p to c under a write deadline d from each attempt,
// renewed while bytes go: a peer that reads slowly gets all of p, one
// that takes nothing for d fails the write with a timeout. (A TLS
// connection cannot go on after a timed-out write: there the first
// timeout ends it.)
func writeRolling(c net.Conn, p []byte, d time.Duration) (int, error) {
	total := 0
	for {
		c.SetWriteDeadline(time.Now().Add(d))
		n, err := c.Write(p[total:])
		total += n
		if err == nil || n == 0 || !isTimeout(err) {
			return total, err
		}
	}
}

// writeHTTPError answers with status and a short text body, and asks the
// client to close: after an error ferry does not trust what follows.
// A HEAD request's answer has no body (RFC 9110 section 9.3.2).
func writeHTTPError(w io.Writer, status int, msg string, cause error, realm string, head bool) {
	body := errorBody(status, msg, cause)
	var extra string
	if status == http.StatusProxyAuthRequired {
		extra = "Proxy-Authenticate: " + proxyChallenge(realm) + "\r\n"
	}
	if head {
		fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n",
			status, http.StatusText(status), extra, len(body))
		return
	}
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), extra, len(body), body)
}

// errorBody is the text of an error answer: the status and msg, or the
// message of the plugin rejection that caused it.
func errorBody(status int, msg string, cause error) string {
	if re := (*plugins.RejectError)(nil); errors.As(cause, &re) && re.Msg != "" {
		msg = re.Msg
	}
	return fmt.Sprintf("%d %s: %s\n", status, http.StatusText(status), msg)
}

// proxyChallenge is the Proxy-Authenticate value of a 407.
func proxyChallenge(realm string) string { return "Basic realm=" + strconv.Quote(realm) }

// httpLink holds a plain HTTP session's two connections, so hooks can
// inject bytes and both writers share the byte counts.
type httpLink struct {
	client, upConn net.Conn
	upMu, downMu   sync.Mutex
	up, down       atomic.Int64
	// upStopped ends writes upstream for good (see stopUpstream).
	upStopped atomic.Bool
}

// setUpstream points the link at a new upstream connection (a retry).
func (l *httpLink) setUpstream(c net.Conn) {
	l.upMu.Lock()
	l.upConn = c
	l.upMu.Unlock()
}

// stopUpstream ends the current write upstream and every later one: the
// request body is abandoned. Like rollingConn.stop, the flag is checked
// after each write's deadline is set, so one of the two ends the write.
func (l *httpLink) stopUpstream() {
	l.upStopped.Store(true)
	l.upConn.SetWriteDeadline(time.Unix(1, 0))
}

// resumeUpstream undoes stopUpstream once no write is under way.
func (l *httpLink) resumeUpstream() {
	l.upStopped.Store(false)
	l.upConn.SetWriteDeadline(time.Time{})
}

func (l *httpLink) SendUpstream(p []byte) error {
	return lockedWrite(&l.upMu, l.upConn, p, &l.up)
}

func (l *httpLink) SendClient(p []byte) error {
	return lockedWrite(&l.downMu, l.client, p, &l.down)
}

func lockedWrite(mu *sync.Mutex, c net.Conn, p []byte, n *atomic.Int64) error {
	mu.Lock()
	defer mu.Unlock()
	m, err := c.Write(p)
	n.Add(int64(m))
	return err
}

// hookWriter passes what net/http writes through one direction's data
// hooks, then to the connection.
type hookWriter struct {
	s     *plugins.Session
	link  *httpLink
	dir   plugins.Direction
	chain *plugins.Chain
	idle  time.Duration
	// vec and bufs carry writeVec's pair.
	vec  [2][]byte
	bufs net.Buffers
}

func (w *hookWriter) Write(p []byte) (int, error) {
	out := p
	var err error
	if w.chain.HasData(w.dir) {
		// With an error, out is empty or what a Meter kept before it
		// cut the stream: that still goes.
		out, err = w.chain.Data(w.s, w.dir, p)
	}
	if len(out) > 0 {
		if werr := w.send(out, nil); werr != nil {
			return 0, werr
		}
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeVec writes head, when not nil, and p with one writev, for a
// direction no data hook sees (the hooks take one chunk at a time).
func (w *hookWriter) writeVec(head, p []byte) error {
	if head == nil {
		return w.send(p, nil)
	}
	return w.send(head, p)
}

// send writes a, then b when not nil (one writev), to the direction's
// connection under its lock, renewing the write deadline, and counts
// what went. The pair is held in w, not in a net.Buffers of its own,
// which would be an allocation a write.
func (w *hookWriter) send(a, b []byte) error {
	mu, n := w.lane()
	mu.Lock()
	defer mu.Unlock()
	dst := w.dst()
	w.renew(dst)
	if w.stopped() {
		return errStopped
	}
	w.vec = [2][]byte{a, b}
	w.bufs = w.vec[:]
	if b == nil {
		w.bufs = w.vec[:1]
	}
	var err error
	for {
		var k int64
		if len(w.bufs) == 1 {
			var wn int
			wn, err = dst.Write(w.bufs[0])
			k, w.bufs[0] = int64(wn), w.bufs[0][wn:]
		} else {
			k, err = w.bufs.WriteTo(dst) // consumes what it wrote
		}
		n.Add(k)
		// A write the deadline cut after some bytes went is renewed:
		// the peer reads slowly, it is not idle, and one write may
		// carry max_buffer_size bytes. Each round must move bytes.
		if err == nil || k == 0 || !isTimeout(err) || w.stopped() {
			break
		}
		w.renew(dst)
	}
	w.vec, w.bufs = [2][]byte{}, nil
	return err
}

// splice moves n bytes from src, read through rc, to the direction's
// connection through a kernel pipe (relay.SpliceN), under the same lock,
// write deadline, stop and count as send: for a body no data hook sees.
func (w *hookWriter) splice(src net.Conn, rc *rollingConn, n int64) error {
	mu, count := w.lane()
	mu.Lock()
	defer mu.Unlock()
	dst := w.dst()
	rerr, werr := relay.SpliceN(dst, src, n, relay.SpliceHooks{
		BeforeRead: func() error {
			rc.waiting.Store(true)
			return rc.renew()
		},
		BeforeWrite: func() error {
			rc.waiting.Store(false)
			w.renew(dst)
			if w.stopped() {
				return errStopped
			}
			return nil
		},
		Moved: func(m int) {
			count.Add(int64(m))
			rc.counted(m)
		},
	})
	if werr != nil {
		return &httphead.WriteError{Err: werr}
	}
	return rerr
}

// lane is the direction's write lock and its byte count.
func (w *hookWriter) lane() (*sync.Mutex, *atomic.Int64) {
	if w.dir == plugins.Up {
		return &w.link.upMu, &w.link.up
	}
	return &w.link.downMu, &w.link.down
}

// dst is the direction's connection. Read it under the lane's lock: a
// retry points the link at a new upstream.
func (w *hookWriter) dst() net.Conn {
	if w.dir == plugins.Up {
		return w.link.upConn
	}
	return w.link.client
}

// stopped reports whether stopUpstream ended the direction's writes
// (only the upload's can be ended so).
func (w *hookWriter) stopped() bool {
	return w.dir == plugins.Up && w.link.upStopped.Load()
}

// renew sets dst's write deadline idle from now, when there is one.
func (w *hookWriter) renew(dst net.Conn) {
	if w.idle > 0 {
		dst.SetWriteDeadline(time.Now().Add(w.idle))
	}
}

// end releases what the direction's hooks held back (ReadEnder,
// WriteEnder) once the message is written.
func (w *hookWriter) end() error {
	if !w.chain.HasData(w.dir) {
		return nil
	}
	rest, err := w.chain.End(w.s, w.dir)
	if len(rest) > 0 {
		send := w.link.SendClient
		if w.dir == plugins.Up {
			send = w.link.SendUpstream
		}
		if serr := send(rest); serr != nil {
			return serr
		}
	}
	return err
}

// rollingConn renews the read deadline before every read while d > 0, so
// a transfer that keeps moving never times out and a stalled one does
// after d. It counts what it read, which tells a request that failed
// before its response began apart from one that failed during it.
type rollingConn struct {
	net.Conn
	d atomic.Int64 // time.Duration
	n atomic.Int64 // bytes read
	// last is when the last read returned, Unix nanoseconds.
	last atomic.Int64
	// stopped ends reads for good: another goroutine wants the reader
	// off the connection.
	stopped atomic.Bool
	// err is the last read's error. bufio hands a parser the bytes read
	// before a timeout as if they were a whole line, so the parser's
	// error can hide the timeout that cut the line short.
	err error
	// alive, when set, counts the bytes of the same exchange moving the
	// other way (the request body going up while this reads the
	// response, the response going down while this reads the body), and
	// mark is its count when the read's deadline was set. A read that
	// times out while they moved is renewed, not failed: idle_timeout is
	// a time with no byte either way, and many origins answer an upload
	// only once they have all of it. An atomic pointer: the exchange that
	// sets it may end while its body's reader still runs.
	alive atomic.Pointer[atomic.Int64]
	mark  int64
	// waiting is set while a read waits on the connection, and stays
	// set after one that returned nothing (a stall): whether a request
	// body's sender waits on its client or on its origin decides whose
	// stall an answer that never came was (exchange.clientStalled).
	waiting atomic.Bool
}

// errHeadTooLarge ends a connection whose request head exceeds [limits]
// max_header_bytes; errTooManyHeaders one with over max_headers fields.
var (
	errHeadTooLarge   = errors.New("request head too large")
	errTooManyHeaders = errors.New("too many header fields")
)

// errStopped is a read cut short by rollingConn.stop.
var errStopped = errors.New("read stopped")

func (c *rollingConn) Read(p []byte) (int, error) {
	for {
		if err := c.renew(); err != nil {
			return 0, err
		}
		c.waiting.Store(true)
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.waiting.Store(false)
		}
		c.counted(n)
		if n == 0 && c.otherWayMoved(err) {
			continue
		}
		c.err = err
		return n, err
	}
}

// otherWayMoved reports whether err is the rolling deadline's timeout
// while alive's bytes moved: not a stall, so the read goes on. A read
// that stop ended is never renewed.
func (c *rollingConn) otherWayMoved(err error) bool {
	a := c.alive.Load()
	return a != nil && isTimeout(err) && !c.stopped.Load() && a.Load() != c.mark
}

// renew readies the connection for a read: it renews the rolling
// deadline, and says errStopped once stop was called. The flag is
// checked after the deadline is renewed: stop sets it before its own
// deadline, so one of the two always ends the read.
func (c *rollingConn) renew() error {
	if d := time.Duration(c.d.Load()); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	if a := c.alive.Load(); a != nil {
		c.mark = a.Load()
	}
	if c.stopped.Load() {
		return errStopped
	}
	return nil
}

// counted records n bytes read, by Read or around it (a splice).
func (c *rollingConn) counted(n int) {
	c.n.Add(int64(n))
	c.last.Store(time.Now().UnixNano())
}

// sinceRead is the time since the last read returned.
func (c *rollingConn) sinceRead() time.Duration {
	return time.Duration(time.Now().UnixNano() - c.last.Load())
}

// stop ends the current read and every later one.
func (c *rollingConn) stop() {
	c.stopped.Store(true)
	c.Conn.SetReadDeadline(time.Unix(1, 0))
}

// resume undoes stop once the reader it was meant for has finished.
func (c *rollingConn) resume(d time.Duration) {
	c.stopped.Store(false)
	c.setWait(d)
	if d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(d))
	}
}

// setWait sets the rolling read timeout; zero means none.
func (c *rollingConn) setWait(d time.Duration) {
	c.d.Store(int64(d))
	if d <= 0 {
		c.Conn.SetReadDeadline(time.Time{})
	}
}

// proxyBasicAuth returns the credentials of a Proxy-Authorization: Basic
// header.
func proxyBasicAuth(req *http.Request) (user, pass string, ok bool) {
	v := req.Header.Get("Proxy-Authorization")
	scheme, cred, found := strings.Cut(v, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(raw), ":")
	return user, pass, ok
}
