package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ferry/plugins"
	"ferry/relay/upstream"
	"ferry/server/httphead"
)

// errCutShort is a response that broke off after its head was sent.
var errCutShort = errors.New("response cut short")

// forwardedFields are request fields httputil.ReverseProxy drops in its
// Rewrite mode; ferry forwards them as the client sent them, as it does
// for HTTP/1.1.
var forwardedFields = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// h2Forward is one absolute-URI request on an HTTP/2 stream: plain
// proxying to the origin over HTTP/1.1 on a connection of its own,
// which closes with the response. The request and response heads are
// net/http's, the hop-by-hop rules httputil.ReverseProxy's (RFC 9110
// section 7.6.1).
type h2Forward struct {
	sub *conn
	s   *plugins.Session
	st  *plugins.Stats

	mu      sync.Mutex
	dialErr error
	up      *upstreamConn
}

// forward serves a request that is not a CONNECT.
func (hc *h2Conn) forward(w http.ResponseWriter, r *http.Request) {
	h := hc.h
	if r.TLS != nil {
		// :scheme https over TLS: the client asks ferry to speak TLS to
		// the origin, which it does not (RFC 9113 section 8.3.1).
		h2Error(w, http.StatusBadRequest, "ferry forwards http:// URLs; tunnel https:// with CONNECT", nil, "")
		return
	}
	if r.Host == "" {
		h2Error(w, http.StatusBadRequest, "ferry is a proxy: send the origin in :authority", nil, "")
		return
	}
	if h.l.chain.HasData(plugins.Up) || h.l.chain.HasData(plugins.Down) {
		// The data hooks see HTTP/1 bytes; passing requests by them
		// unseen would be worse than refusing.
		h2Error(w, http.StatusNotImplemented, "this listener's plugins read plain HTTP as HTTP/1.1: send it over HTTP/1.1", nil, "")
		return
	}
	r.URL.Scheme, r.URL.Host = "http", r.Host
	sub := hc.sub(h.c)
	s := sub.newSession("http", defaultPort(r.Host, "80"))
	s.Parent = hc.id
	s.Request = r
	fw := &h2Forward{sub: sub, s: s, st: &plugins.Stats{Start: sub.start}}
	defer fw.finish()
	if err := fw.prepare(r); err != nil {
		fw.refuse(w, r, err, h.l.chain.Realm())
		return
	}
	if err := fw.hookRequestBody(r); err != nil {
		if errors.As(err, new(*bodyReadError)) {
			// The client's body broke off: a reset stream hears nothing.
			s.Status = http.StatusBadRequest
			h2Error(w, s.Status, "request body broke off", nil, "")
			fw.st.Reason, fw.st.Err = plugins.ReasonClientReset, err
			return
		}
		fw.refuse(w, r, err, "")
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			for _, k := range forwardedFields {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
		},
		Transport:      fw.transport(),
		ModifyResponse: fw.response,
		ErrorHandler:   fw.fail,
		ErrorLog:       log.New(debugWriter{h.l}, "", 0),
	}
	rp.ServeHTTP(newStallGuard(w, h.l.boundedIdle()), r)
	if fw.st.Reason == plugins.ReasonUnknown {
		fw.st.Reason = plugins.ReasonCompleted
	}
}

// prepare runs OnConnect (with the routes) and OnHTTPRequest. The
// plugins see the request as it will be forwarded: without the fields
// addressed to ferry (Proxy-Authorization and the other Proxy-* ones),
// as for HTTP/1.1.
func (fw *h2Forward) prepare(r *http.Request) error {
	if err := fw.sub.admit(r.Context(), fw.s); err != nil {
		return err
	}
	for k := range r.Header {
		if len(k) > 6 && strings.EqualFold(k[:6], "Proxy-") {
			delete(r.Header, k)
		}
	}
	return fw.sub.l.chain.HTTPRequest(fw.s, r)
}

func (fw *h2Forward) transport() *http.Transport {
	l := fw.sub.l
	return &http.Transport{
		DialContext:            fw.dial,
		DisableKeepAlives:      true,
		DisableCompression:     true, // the client's Accept-Encoding is its own
		MaxResponseHeaderBytes: int64(l.gen.cfg.Limits.MaxResponseHeaderBytes),
		ResponseHeaderTimeout:  l.set.IdleTimeout,
	}
}

// dial reaches the session's target (which the plugins may have
// rewritten), whatever the URL says, as HTTP/1.1 requests do.
func (fw *h2Forward) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, info, err := fw.sub.dialTarget(ctx, fw.s, false)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if err != nil {
		fw.dialErr = err
		return nil, err
	}
	up := newUpstreamConn(c, info, fw.sub.l.set.IdleTimeout)
	up.recording, up.recMax = true, fw.headLimits().MaxBytes
	fw.up = up
	return up, nil
}

// response notes the status and drops the fields the origin's
// Connection field named: net/http drops a Connection field that says
// "close" before httputil.ReverseProxy can read the other names in it
// (RFC 9110 section 7.6.1), so they are read from the head as it came.
func (fw *h2Forward) response(resp *http.Response) error {
	fw.s.Status = resp.StatusCode
	fw.mu.Lock()
	up := fw.up
	fw.mu.Unlock()
	if up == nil {
		return nil
	}
	for _, name := range connectionTokens(up.stopRecording(), fw.headLimits()) {
		resp.Header.Del(name)
	}
	return fw.hookResponse(resp)
}

// hookResponse runs the OnHTTPResponse hooks, as for HTTP/1.1, on the
// response httputil.ReverseProxy will copy, then the body hooks. An
// error goes to fail, which answers it; the origin connection is not
// kept anyway.
func (fw *h2Forward) hookResponse(resp *http.Response) error {
	chain := fw.sub.l.chain
	if resp.StatusCode < 200 {
		return nil
	}
	if chain.HasHTTPResponders() {
		if err := runResponseHooks(chain, fw.s, resp, nil); err != nil {
			return err
		}
	}
	if err := fw.hookResponseBody(resp); err != nil {
		return &errRefused{err: err}
	}
	return nil
}

// hookRequestBody runs the body hooks and streamers on the request body
// before it goes to the origin. net/http has removed the HTTP/2 framing
// and answers an "Expect: 100-continue" itself when the body is first
// read.
func (fw *h2Forward) hookRequestBody(r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	m := &plugins.HTTPMessage{Dir: plugins.Up, Request: r}
	return fw.hookBodyOf(m, &r.Body, &r.ContentLength, &r.TransferEncoding)
}

// hookResponseBody runs the body hooks and streamers on the response
// body; net/http's Transport has removed the chunked framing, and
// ReverseProxy sends the Content-Length hookBody sets (none for a body a
// streamer replaced).
func (fw *h2Forward) hookResponseBody(resp *http.Response) error {
	if !responseHasBody(resp) || resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	m := &plugins.HTTPMessage{Dir: plugins.Down, Request: fw.s.Request, Response: resp}
	return fw.hookBodyOf(m, &resp.Body, &resp.ContentLength, &resp.TransferEncoding)
}

// hookBodyOf runs the body hooks, then the streamers, on m's body and
// leaves what to send in body, length and te.
func (fw *h2Forward) hookBodyOf(m *plugins.HTTPMessage, body *io.ReadCloser, length *int64, te *[]string) error {
	chain := fw.sub.l.chain
	b, hooked, n, err := hookReadCloser(chain, fw.s, m, *body, fw.bodyLimit())
	*body = b
	if err != nil {
		return err
	}
	if hooked {
		*length, *te = n, nil
	}
	*body = streamReadCloser(chain, fw.s, m, *body, length)
	return nil
}

func (fw *h2Forward) bodyLimit() int64 { return int64(fw.sub.l.gen.cfg.Limits.MaxBufferedBodyBytes) }

// refuse answers a request a plugin refused or failed on: with its
// answer (plugins.AnswerOf) when the error carries one, else with
// ferry's text for the error's code.
func (fw *h2Forward) refuse(w http.ResponseWriter, r *http.Request, err error, realm string) {
	fw.st.Reason, fw.st.Err = reasonFor(err), err
	if a := answerOf(err); a != nil {
		fw.s.Status = a.Status
		writeAnswer(w, a, r.Method == http.MethodHead)
		return
	}
	code := plugins.CodeOf(err)
	fw.s.Status = code.HTTPStatus()
	h2Error(w, fw.s.Status, code.String(), err, realm)
}

func (fw *h2Forward) headLimits() httphead.Limits {
	lim := &fw.sub.l.gen.cfg.Limits
	return httphead.Limits{MaxBytes: int(lim.MaxResponseHeaderBytes), MaxFields: lim.MaxHeaders}
}

// connectionTokens returns what the Connection fields of the final
// response head in b name.
func connectionTokens(b []byte, lim httphead.Limits) []string {
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		hd, err := httphead.ReadResponse(br, lim)
		if err != nil {
			return nil
		}
		if hd.Status < 200 && hd.Status != http.StatusSwitchingProtocols {
			continue // interim
		}
		var out []string
		for i := range hd.Len() {
			if strings.EqualFold(hd.Name(i), "Connection") {
				for tok := range strings.SplitSeq(hd.Value(i), ",") {
					if tok = strings.TrimSpace(tok); tok != "" {
						out = append(out, tok)
					}
				}
			}
		}
		return out
	}
}

// fail answers a request that got no response: the dial's code, 504 for
// an origin that timed out, 502 for another failure.
func (fw *h2Forward) fail(w http.ResponseWriter, r *http.Request, err error) {
	fw.mu.Lock()
	dialErr := fw.dialErr
	fw.mu.Unlock()
	st, s := fw.st, fw.s
	var he *plugins.HookError
	if rf := refusal(err); rf != nil {
		if !errors.As(rf.err, new(*bodyReadError)) {
			fw.refuse(w, r, rf.err, "")
			return
		}
		err = rf.err // the origin's body broke off: an upstream failure
	}
	switch {
	case errors.As(err, &he):
		// An OnHTTPResponse hook blocked the response.
		fw.refuse(w, r, err, "")
		return
	case dialErr != nil:
		code := failCode(dialErr)
		s.Status = code.HTTPStatus()
		h2Error(w, s.Status, code.String(), dialErr, "")
		st.Reason, st.Err = reasonFor(dialErr), dialErr
		return
	case r.Context().Err() != nil:
		st.Reason, st.Err = plugins.ReasonClientReset, err
		return
	}
	answerFailure(w, s, st, err, "upstream")
}

// finish counts the bytes and ends the session, also when the response
// broke off mid-body (ReverseProxy then panics to reset the stream).
func (fw *h2Forward) finish() {
	v := recover()
	fw.mu.Lock()
	if up := fw.up; up != nil {
		fw.st.Up, fw.st.Down = up.written.Load(), up.n.Load()
	}
	fw.mu.Unlock()
	if v != nil && fw.st.Err == nil {
		fw.st.Reason, fw.st.Err = plugins.ReasonUpstreamClosed, errCutShort
	}
	fw.sub.l.finish(fw.s, fw.st)
	if v != nil {
		panic(v)
	}
}

// upstreamConn is a forwarded request's connection to the origin: reads
// time out after idle_timeout without a byte, both ways are counted, and
// closing it releases its dial. It keeps what it reads first, up to
// recordMax bytes, until the response head has been looked at.
type upstreamConn struct {
	rollingConn
	written atomic.Int64
	info    *upstream.DialInfo
	once    sync.Once

	recMu     sync.Mutex
	rec       []byte
	recMax    int
	recording bool
}

// newUpstreamConn wraps c, whose dial info is released on Close. Its
// reads time out after idle without a byte either way: a stalled target
// times out, but not while a request body still goes to it (the answer
// is read while the body is written).
func newUpstreamConn(c net.Conn, info *upstream.DialInfo, idle time.Duration) *upstreamConn {
	up := &upstreamConn{info: info}
	up.Conn = c
	up.d.Store(int64(idle))
	up.alive.Store(&up.written)
	return up
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	n, err := c.rollingConn.Read(p)
	c.recMu.Lock()
	if c.recording {
		c.rec = append(c.rec, p[:min(n, c.recMax-len(c.rec))]...)
		c.recording = len(c.rec) < c.recMax
	}
	c.recMu.Unlock()
	return n, err
}

// stopRecording returns what was read so far and ends the recording.
func (c *upstreamConn) stopRecording() []byte {
	c.recMu.Lock()
	defer c.recMu.Unlock()
	c.recording = false
	b := c.rec
	c.rec = nil
	return b
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

func (c *upstreamConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.info.Release)
	return err
}
