package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"ferry/plugins"
)

// flow is one request and its response inside an intercepted tunnel: a
// session of its own, proxied by httputil.ReverseProxy (hop-by-hop
// fields per RFC 9110 section 7.6.1, interim responses, trailers,
// upgrades) through the tunnel's transport.
type flow struct {
	ft *flowTunnel
	s  *plugins.Session
	st plugins.Stats
	// reqErr is a request hook's refusal, which RoundTrip returns so that
	// the error handler answers it.
	reqErr error
	// up and down count body bytes: the request's toward the target, the
	// response's toward the client.
	up, down atomic.Int64
	// watch ends the flow (cancel) when neither body moved for the idle
	// timeout; timedOut says it did.
	watch    *time.Timer
	idle     time.Duration
	cancel   context.CancelFunc
	timedOut atomic.Bool
}

// ServeHTTP serves one request of the tunnel as a flow.
func (ft *flowTunnel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ft.flows.Add(1)
	defer ft.flows.Done()
	fl := &flow{ft: ft, s: ft.newSession(), idle: ft.l.boundedIdle()}
	fl.st.Start = time.Now()
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), flowKey{}, fl))
	fl.cancel = cancel
	if r.ProtoMajor == 2 {
		w = newStallGuard(w, fl.idle) // HTTP/1.1: flowClient.writeIdle
	}
	fl.watch = time.AfterFunc(fl.idle, func() { fl.timedOut.Store(true); cancel() })
	defer fl.finish()
	defer cancel()
	defer fl.watch.Stop()
	r = r.WithContext(ctx)
	fl.s.BindContext(ctx)
	ft.rp.ServeHTTP(w, r)
	if fl.st.Reason == plugins.ReasonUnknown {
		fl.st.Reason = plugins.ReasonCompleted
		if fl.timedOut.Load() { // an upgraded stream went silent
			fl.st.Reason = plugins.ReasonIdleTimeout
			ft.upgradeIdle.Store(true)
		}
	}
}

// flowKey holds a request's *flow in its context, where the tunnel's
// one ReverseProxy finds it.
type flowKey struct{}

func flowOf(r *http.Request) *flow { return r.Context().Value(flowKey{}).(*flow) }

// reverseProxy is the tunnel's proxy for all its flows: each callback
// finds its flow in the request's context.
func (ft *flowTunnel) reverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        func(pr *httputil.ProxyRequest) { flowOf(pr.In).rewrite(pr) },
		Transport:      ft,
		ModifyResponse: func(resp *http.Response) error { return flowOf(resp.Request).response(resp) },
		ErrorHandler:   func(w http.ResponseWriter, r *http.Request, err error) { flowOf(r).fail(w, r, err) },
		ErrorLog:       log.New(debugWriter{ft.l}, "", 0),
		BufferPool:     flowBuffers{},
	}
}

// flowBuffers recycles the 32 KiB buffers httputil.ReverseProxy copies
// bodies through, which it would otherwise allocate (and clear) for
// every response.
type flowBuffers struct{}

var flowBufPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (flowBuffers) Get() []byte { return flowBufPool.Get().(*[32 << 10]byte)[:] }

func (flowBuffers) Put(b []byte) {
	if cap(b) == 32<<10 {
		flowBufPool.Put((*[32 << 10]byte)(b[:32<<10]))
	}
}

// newSession is a flow's session: the tunnel's client, user, target and
// upstream, its own id, the tunnel as parent.
func (ft *flowTunnel) newSession() *plugins.Session {
	t, id := ft.tun, ft.l.srv.nextID()
	s := &plugins.Session{
		ID: id, Parent: t.ID, Listener: t.Listener,
		Client: t.Client, Peer: t.Peer, ProxyHeader: t.ProxyHeader,
		Protocol: "http", Target: t.Target, User: t.User, Groups: t.Groups,
		Upstream: t.Upstream, UpstreamPath: t.UpstreamPath, UpstreamAddr: t.UpstreamAddr, SourceAddr: t.SourceAddr,
		Intercepted: t.Intercepted,
	}
	s.Log = ft.l.log.Hook(idHook{s})
	return s
}

// rewrite makes the outgoing request: the full URL, the fields
// httputil.ReverseProxy's Rewrite mode drops put back (ferry forwards
// what the client sent), then the request and body hooks.
func (fl *flow) rewrite(pr *httputil.ProxyRequest) {
	keepForwarded(pr)
	out := pr.Out
	out.URL.Scheme, out.URL.Host = fl.ft.scheme, pr.In.Host
	out.Host = pr.In.Host
	fl.s.Request = out
	chain := fl.ft.l.chain
	if err := chain.HTTPRequest(fl.s, out); err != nil {
		fl.reqErr = err
		return
	}
	if out.Body == nil || out.Body == http.NoBody {
		return
	}
	m := &plugins.HTTPMessage{Dir: plugins.Up, Request: out}
	if chain.HasHTTPBodyHooks() && out.ContentLength != 0 {
		body, hooked, n, err := hookReadCloser(chain, fl.s, m, out.Body, fl.limit())
		out.Body = body
		if err != nil {
			fl.reqErr = err
			return
		}
		if hooked {
			out.ContentLength = n
		}
	}
	out.Body = streamReadCloser(chain, fl.s, m, out.Body, &out.ContentLength)
	out.Body = &flowBody{ReadCloser: out.Body, fl: fl, n: &fl.up}
}

// limit is what a body hook may make ferry buffer.
func (fl *flow) limit() int64 { return int64(fl.ft.l.gen.cfg.Limits.MaxBufferedBodyBytes) }

// keepForwarded puts back the Forwarded and X-Forwarded-* fields that
// httputil.ReverseProxy's Rewrite mode removes.
func keepForwarded(pr *httputil.ProxyRequest) {
	for _, k := range forwardedFields {
		if v, ok := pr.In.Header[k]; ok {
			pr.Out.Header[k] = v
		}
	}
}

// RoundTrip implements http.RoundTripper: a request a hook refused goes
// to the error handler, any other to the tunnel's transport.
func (ft *flowTunnel) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := flowOf(req).reqErr; err != nil {
		return nil, err
	}
	return ft.tr.RoundTrip(req)
}

// response runs the response and body hooks on the target's answer.
// Upgrades (101) pass untouched: their bytes then go through the
// tunnel's data hooks only.
func (fl *flow) response(resp *http.Response) error {
	fl.s.Status = resp.StatusCode
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The upgraded stream ends with either side, or once neither has
		// sent for the idle timeout: the watch ends the request's
		// context, on which ReverseProxy closes the target's side.
		fl.alive()
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			resp.Body = &upgradedBody{ReadWriteCloser: rwc, fl: fl}
		}
		return nil
	}
	chain := fl.ft.l.chain
	if chain.HasHTTPResponders() {
		// As on the plain HTTP path, the hooks see no body (the body
		// hooks are for that), so one cannot consume it unseen.
		body := resp.Body
		resp.Body = nil
		err := runResponseHooks(chain, fl.s, resp, nil)
		resp.Body = body
		if err != nil {
			return err
		}
	}
	if responseHasBody(resp) {
		m := &plugins.HTTPMessage{Dir: plugins.Down, Request: resp.Request, Response: resp}
		if chain.HasHTTPBodyHooks() {
			body, hooked, n, err := hookReadCloser(chain, fl.s, m, resp.Body, fl.limit())
			resp.Body = body
			if err != nil {
				return err
			}
			if hooked {
				resp.ContentLength = n
			}
		}
		resp.Body = streamReadCloser(chain, fl.s, m, resp.Body, &resp.ContentLength)
	}
	resp.Body = &flowBody{ReadCloser: resp.Body, fl: fl, n: &fl.down}
	return nil
}

// responseHasBody reports whether a response carries content (RFC 9110
// section 6.4.1): not a HEAD answer, 1xx, 204 or 304.
func responseHasBody(resp *http.Response) bool {
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		return false
	}
	switch {
	case resp.StatusCode < 200, resp.StatusCode == http.StatusNoContent, resp.StatusCode == http.StatusNotModified:
		return false
	}
	return resp.ContentLength != 0
}

// fail answers a request that got no response to pass on: a plugin's
// answer or refusal, a timeout, or the target's failure.
func (fl *flow) fail(w http.ResponseWriter, r *http.Request, err error) {
	s, st := fl.s, &fl.st
	w = countingWriter{ResponseWriter: w, n: &fl.down} // the answer is what the client got
	head := r.Method == http.MethodHead
	var he *plugins.HookError
	switch a := answerOf(err); {
	case a != nil:
		writeAnswer(w, a, head)
		s.Status = a.Status
		st.Reason, st.Err = reasonFor(err), err
		return
	case errors.As(err, &he), errors.As(err, new(*plugins.RejectError)):
		code := plugins.CodeOf(err)
		s.Status = code.HTTPStatus()
		h2Error(w, s.Status, code.String(), err, "")
		st.Reason, st.Err = reasonFor(err), err
		return
	case fl.timedOut.Load():
		s.Status = http.StatusGatewayTimeout
		h2Error(w, s.Status, "no bytes either way for the idle timeout", nil, "")
		st.Reason, st.Err = plugins.ReasonIdleTimeout, err
		return
	case r.Context().Err() != nil:
		st.Reason, st.Err = plugins.ReasonClientReset, err
		return
	}
	answerFailure(w, s, st, err, "target")
}

// answerFailure answers a request whose far end (what: "upstream",
// "target") failed before a response came: 504 for a timeout, else 502.
func answerFailure(w http.ResponseWriter, s *plugins.Session, st *plugins.Stats, err error, what string) {
	msg := what + " failed before answering"
	s.Status = http.StatusBadGateway
	if isTimeout(err) {
		s.Status, msg = http.StatusGatewayTimeout, what+" timed out"
	}
	h2Error(w, s.Status, msg, nil, "")
	st.Reason, st.Err = plugins.ReasonUpstreamClosed, fmt.Errorf("request to %s: %w", s.Target, err)
}

// finish ends the flow's session, also when the response broke off
// mid-body (httputil.ReverseProxy then panics to abort the stream or
// connection, which is passed on).
func (fl *flow) finish() {
	v := recover()
	fl.st.Up, fl.st.Down = fl.up.Load(), fl.down.Load()
	if v != nil && fl.st.Err == nil {
		fl.st.Reason, fl.st.Err = plugins.ReasonUpstreamClosed, errCutShort
		if fl.timedOut.Load() {
			fl.st.Reason = plugins.ReasonIdleTimeout
		}
	}
	fl.ft.l.finish(fl.s, &fl.st)
	if v != nil {
		panic(v)
	}
}

// flowBody counts a body's bytes and keeps its flow alive while they
// move.
type flowBody struct {
	io.ReadCloser
	fl *flow
	n  *atomic.Int64
}

func (b *flowBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.n.Add(int64(n))
		b.fl.alive()
	}
	return n, err
}

// alive renews the flow's idle watch: a byte moved.
func (fl *flow) alive() { fl.watch.Reset(fl.idle) }

// upgradedBody is the target's side of an upgraded stream (what follows
// a 101): bytes either way keep its flow alive, and are its flow's body
// bytes, read from the target down and written to it up.
type upgradedBody struct {
	io.ReadWriteCloser
	fl *flow
}

func (b *upgradedBody) Read(p []byte) (int, error) {
	n, err := b.ReadWriteCloser.Read(p)
	if n > 0 {
		b.fl.down.Add(int64(n))
		b.fl.alive()
	}
	return n, err
}

func (b *upgradedBody) Write(p []byte) (int, error) {
	n, err := b.ReadWriteCloser.Write(p)
	if n > 0 {
		b.fl.up.Add(int64(n))
		b.fl.alive()
	}
	return n, err
}

// countingWriter counts the body bytes written through it.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// readCloser reads from Reader and closes Closer.
type readCloser struct {
	io.Reader
	io.Closer
}
