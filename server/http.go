package server

import (
	"bufio"
	"context"
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

	"ferry/plugins"
	"ferry/relay"
)

// serveHTTP serves one client connection of HTTP proxy requests: a CONNECT
// turns it into a tunnel; absolute-form requests are forwarded one by one,
// each as its own session, with the client connection kept alive between
// them and the upstream connection reused while the target stays the same.
func (h *conn) serveHTTP() {
	fw := &httpForwarder{h: h}
	defer fw.closeUpstream()
	for n := 0; ; n++ {
		if n > 0 && !fw.waitNextRequest() {
			return
		}
		lim := &h.l.gen.cfg.Limits
		// What the reader already holds counts against the limit too.
		h.rc.budget = max(int64(lim.MaxHeaderBytes)-int64(h.br.Buffered()), 0)
		req, err := http.ReadRequest(h.br)
		h.rc.budget = -1
		if err != nil && errors.Is(h.rc.err, os.ErrDeadlineExceeded) {
			// The handshake timed out mid-line: no answer, as for any
			// handshake timeout (the deadline has passed anyway).
			h.debugHandshake("http", h.rc.err)
			return
		}
		if err == nil && headerFields(req.Header) > lim.MaxHeaders {
			h.httpError(http.StatusRequestHeaderFieldsTooLarge,
				fmt.Sprintf("more than %d header fields", lim.MaxHeaders), nil)
			h.debugHandshake("http", errTooManyHeaders)
			return
		}
		if err != nil {
			switch {
			case errors.Is(err, errHeadTooLarge):
				h.httpError(http.StatusRequestHeaderFieldsTooLarge,
					fmt.Sprintf("request head over %v", lim.MaxHeaderBytes), nil)
			case n == 0 && !isQuietEnd(err):
				h.httpError(http.StatusBadRequest, "malformed request", nil)
			}
			h.debugHandshake("http", err)
			return
		}
		if req.Method == http.MethodConnect {
			h.serveCONNECT(req)
			return
		}
		if !fw.forward(req) {
			return
		}
	}
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
	writeHTTPError(h.c, status, msg, cause, h.l.chain.Realm())
}

// writeHTTPError answers with status and a short text body, and asks the
// client to close: after an error ferry does not trust what follows.
func writeHTTPError(w io.Writer, status int, msg string, cause error, realm string) {
	body := fmt.Sprintf("%d %s: %s\n", status, http.StatusText(status), msg)
	if re := (*plugins.RejectError)(nil); errors.As(cause, &re) && re.Msg != "" {
		body = fmt.Sprintf("%d %s: %s\n", status, http.StatusText(status), re.Msg)
	}
	var extra string
	if status == http.StatusProxyAuthRequired {
		extra = "Proxy-Authenticate: Basic realm=" + strconv.Quote(realm) + "\r\n"
	}
	fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), extra, len(body), body)
}

// httpForwarder forwards plain HTTP requests of one client connection.
type httpForwarder struct {
	h *conn
	// The kept-alive upstream connection and what it reaches.
	up       net.Conn
	upBr     *bufio.Reader
	upTarget string
	upVia    string
	upUser   string
	upInfo   *relay.DialInfo
}

func (f *httpForwarder) closeUpstream() {
	if f.up != nil {
		f.up.Close()
		f.upInfo.Release()
		f.h.l.putReader(f.upBr)
		f.up, f.upBr, f.upInfo = nil, nil, nil
	}
}

// waitNextRequest waits for the next request on a kept-alive client
// connection: at most idle_timeout, and not past the start of a shutdown.
func (f *httpForwarder) waitNextRequest() bool {
	h := f.h
	if h.l.srv.drainCtx.Err() != nil {
		return false
	}
	wait := h.l.set.IdleTimeout
	if wait <= 0 {
		wait = h.l.set.HandshakeTimeout
	}
	h.c.SetReadDeadline(time.Now().Add(wait))
	stop := context.AfterFunc(h.l.srv.drainCtx, func() { h.c.SetReadDeadline(time.Now()) })
	_, err := h.br.Peek(1)
	stopped := stop()
	if err != nil || !stopped {
		return false
	}
	// The request head then gets handshake_timeout, like the first one.
	h.c.SetDeadline(time.Now().Add(h.l.set.HandshakeTimeout))
	return true
}

// forward serves one plain HTTP request and reports whether the client
// connection may carry another.
func (f *httpForwarder) forward(req *http.Request) (keepAlive bool) {
	h := f.h
	if !req.URL.IsAbs() || req.URL.Scheme != "http" || req.URL.Host == "" {
		h.httpError(http.StatusBadRequest, "ferry is a proxy: send an absolute http:// URL, or CONNECT", nil)
		return false
	}
	target := req.URL.Host
	if _, port, err := net.SplitHostPort(target); err != nil || port == "" {
		target = net.JoinHostPort(strings.Trim(req.URL.Hostname(), "[]"), "80")
	}
	s := h.newSession("http", target)
	s.Request = req
	// The request's context ends with its exchange.
	reqCtx, cancel := context.WithCancel(h.l.srv.hardCtx)
	s.BindContext(reqCtx)
	st := plugins.Stats{Start: time.Now()}
	defer func() { cancel(); h.l.finish(s, &st) }()

	// Hooks of this request's session see its bytes; the body is read as
	// it is sent, so a slow body is bounded by the rolling idle deadline.
	up, reused, code, err := f.upstreamFor(s)
	h.l.srv.obs.Handshake(s.Protocol, handshakeOutcome(err))
	if err != nil {
		s.Status = code.HTTPStatus()
		h.httpError(s.Status, code.String(), err)
		st.Reason, st.Err = reasonFor(err), err
		return false
	}
	link := &httpLink{client: h.c, upConn: up}
	s.Attach(link)
	defer s.Attach(nil)

	upgrade := prepareOutgoing(req.Header)
	if err := h.l.chain.HTTPRequest(s, req); err != nil {
		code := plugins.CodeOf(err)
		s.Status = code.HTTPStatus()
		h.httpError(s.Status, code.String(), err)
		st.Reason, st.Err = reasonFor(err), err
		return false
	}
	if req.Header.Get("Expect") == "100-continue" {
		// Answer it here: ferry forwards the body as soon as it comes.
		req.Header.Del("Expect")
		io.WriteString(h.c, "HTTP/1.1 100 Continue\r\n\r\n")
	}
	h.c.SetDeadline(time.Time{})
	idle := h.l.set.IdleTimeout
	h.rc.d.Store(int64(idle)) // the body streams under the idle timeout
	defer h.rc.d.Store(0)

	upW := &hookWriter{s: s, link: link, toUpstream: true, chain: h.l.chain, idle: idle}
	resp, err := f.roundTrip(req, upW, reused)
	if err != nil {
		code := relay.DialCode(err)
		var he *plugins.HookError
		if errors.As(err, &he) {
			st.Reason = plugins.ReasonPluginError
		} else {
			st.Reason = plugins.ReasonUpstreamClosed
		}
		st.Err = fmt.Errorf("request to %s: %w", s.Target, err)
		s.Status = code.HTTPStatus()
		h.httpError(s.Status, code.String(), nil)
		st.Up, st.Down = link.up.Load(), link.down.Load()
		f.closeUpstream()
		return false
	}
	defer resp.Body.Close()
	s.Status = resp.StatusCode

	upstreamCloses := resp.Close
	prepareOutgoing(resp.Header)
	clientCloses := req.Close || h.l.srv.drainCtx.Err() != nil
	if !req.ProtoAtLeast(1, 1) {
		// An HTTP/1.0 client cannot read chunked framing: send the body
		// raw and delimit it by closing.
		if resp.ContentLength < 0 {
			resp.TransferEncoding = nil
			clientCloses = true
		}
	} else if resp.ContentLength < 0 && !isChunked(resp.TransferEncoding) && bodyAllowed(req, resp) {
		clientCloses = true
	}
	resp.Close = clientCloses

	downW := &hookWriter{s: s, link: link, chain: h.l.chain, idle: idle}
	bw := h.l.getWriter(downW)
	defer h.l.putWriter(bw)
	if resp.StatusCode == http.StatusSwitchingProtocols && upgrade != "" {
		resp.Header.Set("Connection", "Upgrade")
		resp.Header.Set("Upgrade", upgrade)
		resp.Body = http.NoBody
	}
	err = resp.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = downW.end()
	}
	st.Up, st.Down = link.up.Load(), link.down.Load()
	if err != nil {
		var he *plugins.HookError
		if errors.As(err, &he) {
			st.Reason = plugins.ReasonPluginError
		} else {
			st.Reason = plugins.ReasonClientClosed
		}
		st.Err = fmt.Errorf("response to client: %w", err)
		return false
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		f.upgradeTunnel(s, &st, link)
		return false
	}
	st.Reason = plugins.ReasonCompleted
	if upstreamCloses {
		resp.Body.Close() // before its reader goes back to the pool
		f.closeUpstream()
	}
	return !clientCloses
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
	h.l.putReader(f.upBr)
	f.up, f.upBr, f.upInfo = nil, nil, nil // the channel owns and closes it now
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

// upstreamFor runs OnConnect and returns a connection to the session's
// target: the kept-alive one when it goes to the same place, else a new
// dial.
func (f *httpForwarder) upstreamFor(s *plugins.Session) (net.Conn, bool, plugins.Code, error) {
	if err := f.h.admit(f.h.l.srv.hardCtx, s); err != nil {
		return nil, false, plugins.CodeOf(err), err
	}
	if f.up != nil && f.upTarget == s.Target && f.upVia == s.Upstream && f.upUser == s.User {
		// A reused connection skips the dial, not the dial checks: rules
		// on destination addresses still see where it goes.
		if ta, ok := f.up.RemoteAddr().(*net.TCPAddr); ok && f.h.l.chain.HasDialCheckers() && f.upInfo.Chain() == "" {
			if err := f.h.l.chain.CheckDial(s, ta.AddrPort()); err != nil {
				return nil, false, plugins.CodeOf(err), err
			}
		}
		s.UpstreamAddr = f.up.RemoteAddr()
		s.UpstreamChain = f.upInfo.Chain()
		return f.up, true, 0, nil
	}
	f.closeUpstream()
	up, code, err := f.dial(s)
	return up, false, code, err
}

func (f *httpForwarder) dial(s *plugins.Session) (net.Conn, plugins.Code, error) {
	h := f.h
	up, info, code, err := h.dialTarget(h.l.srv.hardCtx, s)
	if err != nil {
		return nil, code, err
	}
	f.up, f.upInfo = up, info
	rc := &rollingConn{Conn: up, budget: -1}
	rc.d.Store(int64(h.l.set.IdleTimeout))
	f.upBr = h.l.getReader(rc)
	f.upTarget, f.upVia, f.upUser = s.Target, s.Upstream, s.User
	return up, 0, nil
}

// roundTrip writes req upstream and reads the final response, passing 1xx
// interim responses to the client. A request without a body that fails on
// a reused connection (the upstream closed it meanwhile) is retried once
// on a new one.
func (f *httpForwarder) roundTrip(req *http.Request, w *hookWriter, reused bool) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := f.tryRoundTrip(req, w)
		if err == nil {
			return resp, nil
		}
		var he *plugins.HookError
		hasBody := req.Body != nil && req.Body != http.NoBody
		if !reused || attempt > 0 || hasBody || errors.As(err, &he) {
			return nil, err
		}
		// Whatever the Readers still hold belongs to the failed attempt:
		// let them release it into nothing before the request is resent.
		if w.chain.HasReaders() {
			w.chain.ReadEnd(w.s)
		}
		f.closeUpstream()
		up, _, err := f.dial(w.s)
		if err != nil {
			return nil, err
		}
		w.link.upConn = up
		reused = false
	}
}

func (f *httpForwarder) tryRoundTrip(req *http.Request, w *hookWriter) (*http.Response, error) {
	bw := f.h.l.getWriter(w)
	defer f.h.l.putWriter(bw)
	if err := req.Write(bw); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := w.end(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(f.upBr, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		// 1xx interim: relay and read on. 100 was answered already.
		if resp.StatusCode != http.StatusContinue {
			if err := resp.Write(f.h.c); err != nil {
				return nil, err
			}
		}
	}
}

// hopHeaders are per-connection headers a proxy must not forward (RFC 9110
// section 7.6.1), plus the proxy's own credentials.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// prepareOutgoing strips hop-by-hop headers in place and returns the
// Upgrade protocol when the message asked to upgrade, which survives.
func prepareOutgoing(hdr http.Header) (upgrade string) {
	for _, v := range hdr.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			name = strings.TrimSpace(name)
			if strings.EqualFold(name, "upgrade") {
				upgrade = hdr.Get("Upgrade")
				continue
			}
			if name != "" {
				hdr.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		hdr.Del(name)
	}
	if _, ok := hdr["User-Agent"]; !ok {
		// Stop net/http from adding its own User-Agent.
		hdr["User-Agent"] = []string{""}
	}
	if upgrade != "" {
		hdr.Set("Connection", "Upgrade")
		hdr.Set("Upgrade", upgrade)
	}
	return upgrade
}

func isChunked(te []string) bool {
	return len(te) > 0 && te[0] == "chunked"
}

// bodyAllowed reports whether the response carries a body on the wire.
func bodyAllowed(req *http.Request, resp *http.Response) bool {
	if req.Method == http.MethodHead {
		return false
	}
	c := resp.StatusCode
	return !(c >= 100 && c < 200 || c == http.StatusNoContent || c == http.StatusNotModified)
}

// httpLink holds a plain HTTP session's two connections, so hooks can
// inject bytes and both writers share the byte counts.
type httpLink struct {
	client, upConn net.Conn
	upMu, downMu   sync.Mutex
	up, down       atomic.Int64
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
// hooks, then to the connection. toUpstream picks the direction.
type hookWriter struct {
	s          *plugins.Session
	link       *httpLink
	toUpstream bool
	chain      *plugins.Chain
	idle       time.Duration
}

func (w *hookWriter) Write(p []byte) (int, error) {
	out := p
	var err error
	mu, dst, n := &w.link.downMu, w.link.client, &w.link.down
	if w.toUpstream {
		mu, dst, n = &w.link.upMu, w.link.upConn, &w.link.up
		if w.chain.HasReaders() {
			out, err = w.chain.Read(w.s, p)
		}
	} else if w.chain.HasWriters() {
		out, err = w.chain.Write(w.s, p)
	}
	if err != nil {
		return 0, err
	}
	if len(out) > 0 {
		mu.Lock()
		if w.idle > 0 {
			dst.SetWriteDeadline(time.Now().Add(w.idle))
		}
		m, err := dst.Write(out)
		mu.Unlock()
		n.Add(int64(m))
		if err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// end releases what the direction's hooks held back (ReadEnder,
// WriteEnder) once the message is written.
func (w *hookWriter) end() error {
	var rest []byte
	var err error
	if w.toUpstream {
		if !w.chain.HasReaders() {
			return nil
		}
		rest, err = w.chain.ReadEnd(w.s)
	} else {
		if !w.chain.HasWriters() {
			return nil
		}
		rest, err = w.chain.WriteEnd(w.s)
	}
	if err != nil || len(rest) == 0 {
		return err
	}
	if w.toUpstream {
		return w.link.SendUpstream(rest)
	}
	return w.link.SendClient(rest)
}

// rollingConn renews the read deadline before every read while d > 0, so
// a transfer that keeps moving never times out and a stalled one does
// after d. While budget is armed, reads beyond it fail: that bounds what
// a client can make ferry buffer for one request head.
type rollingConn struct {
	net.Conn
	d      atomic.Int64 // time.Duration
	budget int64        // bytes left to read; < 0: unlimited
	// err is the last read's error. bufio hands a parser the bytes read
	// before a timeout as if they were a whole line, so the parser's
	// error can hide the timeout that cut the line short.
	err error
}

// errHeadTooLarge ends a connection whose request head exceeds [limits]
// max_header_bytes; errTooManyHeaders one with over max_headers fields.
var (
	errHeadTooLarge   = errors.New("request head too large")
	errTooManyHeaders = errors.New("too many header fields")
)

// headerFields counts header lines: a repeated name counts each time.
func headerFields(h http.Header) int {
	n := 0
	for _, v := range h {
		n += len(v)
	}
	return n
}

func (c *rollingConn) Read(p []byte) (int, error) {
	if d := time.Duration(c.d.Load()); d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	if c.budget >= 0 {
		if c.budget == 0 {
			return 0, errHeadTooLarge
		}
		if int64(len(p)) > c.budget {
			p = p[:c.budget]
		}
		n, err := c.Conn.Read(p)
		c.budget -= int64(n)
		c.err = err
		return n, err
	}
	n, err := c.Conn.Read(p)
	c.err = err
	return n, err
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
