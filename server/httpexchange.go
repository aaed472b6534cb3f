package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"ferry/config"
	"ferry/plugins"
	"ferry/relay"
	"ferry/server/httphead"
)

// continueWait is how long a request with "Expect: 100-continue" waits
// for the origin's interim answer before its body goes anyway (RFC 9110
// section 10.1.1; curl waits one second too).
const continueWait = time.Second

// exchange is one plain HTTP request and its response. The request body,
// when there is one, is sent by its own goroutine while the response is
// read, so an origin's early answer reaches the client while the body
// still arrives.
type exchange struct {
	f *httpForwarder
	s *plugins.Session
	// ctx is the session's context while the exchange runs.
	ctx requestCtx
	// st is the exchange's access-log figures, held in the exchange
	// rather than allocated apart.
	st plugins.Stats
	// link, upW and downW are held in the exchange rather than
	// allocated apart: three allocations fewer a request.
	link httpLink
	out  requestOut
	// resp is the final response as it goes to the client.
	resp responseOut
	head []byte
	// upW and downW pass bytes through the data hooks.
	upW, downW hookWriter
	expect     bool
	// clientClose: the client connection ends after this exchange.
	clientClose bool
	// body carries the body sender's result; nil until it starts.
	body chan error
	// bodyErr is the sender's result once received; bodyRead is set
	// when the whole body was read from the client.
	bodyErr  error
	bodyWait bool
	bodyRead atomic.Bool
	// gathered: the body hooks had the request body whole (see
	// gatherRequest), and whole is what to send of it; streaming: it
	// was over the limit, and its sender writes the head too.
	gathered, streaming bool
	whole               []byte
	// upDirty: a streamer stopped reading the response body before its
	// end, so the upstream connection is not at the next response.
	upDirty bool
	// pumpR: the streamers' request body, read from pumpSrc, which
	// sendPumped sends; clientDirty: they left some of it unread.
	pumpR       io.Reader
	pumpSrc     *httphead.BodyReader
	clientDirty atomic.Bool
}

// prepare runs the OnHTTPRequest hooks on the view and builds the head
// to forward.
func (ex *exchange) prepare() error {
	h, hd, req := ex.f.h, ex.out.hd, ex.out.req
	ex.out.upgrade = hd.AtLeast11() && hasConnToken(hd, "upgrade") && req.Header.Get("Upgrade") != ""
	stripHopByHop(hd, req.Header, ex.out.upgrade)
	ex.out.origURL = *req.URL
	if err := h.l.chain.HTTPRequest(ex.s, req); err != nil {
		return err
	}
	ex.head = ex.out.append(make([]byte, 0, hd.Size()+64))
	ex.expect = hd.AtLeast11() && ex.out.fr.Kind != httphead.None && listHas(req.Header.Get("Expect"), "100-continue")
	ex.clientClose = req.Close || ex.out.fr.Ambiguous
	idle := h.l.set.IdleTimeout
	ex.upW = hookWriter{s: ex.s, link: &ex.link, dir: plugins.Up, chain: h.l.chain, idle: idle}
	ex.downW = hookWriter{s: ex.s, link: &ex.link, dir: plugins.Down, chain: h.l.chain, idle: idle}
	return nil
}

func (ex *exchange) headLimits() httphead.Limits {
	lim := &ex.f.h.l.gen.cfg.Limits
	return httphead.Limits{MaxBytes: int(lim.MaxResponseHeaderBytes), MaxFields: lim.MaxHeaders}
}

// run sends the request and passes the response on; it reports whether
// the client connection may carry another request.
func (ex *exchange) run(reused bool) bool {
	resp, respStarted, err := ex.roundTrip(reused)
	if err != nil {
		ex.fail(err, respStarted)
		return false
	}
	return ex.respond(resp)
}

// roundTrip sends the request and reads the final response head, passing
// interim ones on. A request that fails on a reused connection before any
// byte of the response came is sent again on a new one when that is safe
// (RFC 9110 section 9.2.2): an idempotent method, or a body not yet read
// from the client, so the origin cannot have acted on it.
func (ex *exchange) roundTrip(reused bool) (*httphead.Head, bool, error) {
	for attempt := 0; ; attempt++ {
		start := ex.f.upRC.n.Load()
		resp, err := ex.attempt()
		if err == nil {
			return resp, true, nil
		}
		started := ex.f.upRC.n.Load() > start
		if !reused || attempt > 0 || started || !ex.retryable(err) {
			return nil, started, err
		}
		// Whatever the Readers still hold belongs to the failed attempt.
		if ex.upW.chain.HasData(plugins.Up) {
			ex.upW.chain.End(ex.s, plugins.Up)
		}
		ex.f.closeUpstream()
		up, _, err := ex.f.dial(ex.s)
		if err != nil {
			return nil, false, err
		}
		ex.link.setUpstream(up)
		reused = false
	}
}

func (ex *exchange) retryable(err error) bool {
	var he *plugins.HookError
	var ce *clientError
	if ex.body != nil || errors.As(err, &he) || errors.As(err, &ce) {
		return false
	}
	if idempotent(ex.out.req.Method) {
		return true
	}
	return ex.out.fr.Kind != httphead.None && !ex.gathered
}

// idempotent reports whether a request of method may be sent again
// after a failure (RFC 9110 section 9.2.2).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

func (ex *exchange) attempt() (*httphead.Head, error) {
	// The response's wait does not time out while the body still moves.
	ex.f.upRC.alive.Store(&ex.link.up)
	if ex.streaming {
		return ex.readFinal()
	}
	if n, ok := ex.bufferedBody(); ok {
		return ex.sendBuffered(n)
	}
	if _, err := ex.upW.Write(ex.head); err != nil {
		return nil, err
	}
	if ex.out.fr.Kind == httphead.None {
		if err := ex.upW.end(); err != nil {
			return nil, err
		}
		return ex.readFinal()
	}
	if ex.expect {
		resp, err := ex.awaitContinue()
		if err != nil || resp != nil {
			return resp, err
		}
	}
	ex.body = make(chan error, 1)
	switch {
	case ex.gathered:
		go ex.sendWhole(ex.f.upRC)
	case ex.pumpR != nil:
		go ex.sendPumped(ex.f.upRC)
	default:
		go ex.sendBody(ex.f.upRC)
	}
	return ex.readFinal()
}

// bufferedBody reports whether the request body is sent by
// sendBuffered, and its length: a Content-Length body the client reader
// already holds whole (a small POST sent with its head, as most are),
// which no data hook sees and no Expect: 100-continue holds back.
func (ex *exchange) bufferedBody() (int, bool) {
	fr, h := ex.out.fr, ex.f.h
	if fr.Kind != httphead.Length || fr.Length > int64(h.br.Buffered()) ||
		ex.expect || ex.gathered || ex.pumpR != nil || h.l.chain.HasData(plugins.Up) {
		return 0, false
	}
	return int(fr.Length), true
}

// sendBuffered sends the head and the n-byte body bufferedBody found with
// one writev, on this goroutine, where sendBody would take a goroutine
// and a write more, then reads the answer. The body leaves the client
// reader only once it went: a failed write leaves the request as it was
// before any of it was sent, for roundTrip to send again when it may.
func (ex *exchange) sendBuffered(n int) (*httphead.Head, error) {
	h := ex.f.h
	body, _ := h.br.Peek(n)
	if err := ex.upW.writeVec(ex.head, body); err != nil {
		return nil, err
	}
	h.br.Discard(n)
	ex.body = make(chan error, 1)
	ex.bodySent(ex.f.upRC, nil)
	return ex.readFinal()
}

// readFinal reads response heads until the final one, passing interim
// (1xx) responses to the client.
func (ex *exchange) readFinal() (*httphead.Head, error) {
	for {
		resp, err := httphead.ReadResponse(ex.f.upBr, ex.headLimits())
		if err != nil {
			return nil, err
		}
		if resp.Status >= 200 || resp.Status == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if err := ex.interim(resp); err != nil {
			return nil, err
		}
	}
}

// interim passes a 1xx response on, except to an HTTP/1.0 client, which
// cannot take one (RFC 9110 section 15.2).
func (ex *exchange) interim(resp *httphead.Head) error {
	if !ex.out.hd.AtLeast11() {
		return nil
	}
	o := responseOut{hd: resp, interim: true}
	if _, err := ex.downW.Write(o.append(nil)); err != nil {
		return &clientError{err: err}
	}
	return nil
}

// awaitContinue waits up to continueWait for the origin's answer to
// "Expect: 100-continue": a 100 lets the body go; a final answer is
// returned and the body never sent; silence lets the body go too.
func (ex *exchange) awaitContinue() (*httphead.Head, error) {
	rc := ex.f.upRC
	deadline := time.Now().Add(continueWait)
	defer rc.setWait(ex.f.h.l.set.IdleTimeout)
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, nil
		}
		rc.setWait(wait)
		if _, err := ex.f.upBr.Peek(1); err != nil {
			if isTimeout(err) {
				return nil, nil
			}
			return nil, err
		}
		rc.setWait(ex.f.h.l.set.IdleTimeout)
		resp, err := httphead.ReadResponse(ex.f.upBr, ex.headLimits())
		if err != nil {
			return nil, err
		}
		if resp.Status >= 200 || resp.Status == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if err := ex.interim(resp); err != nil || resp.Status == http.StatusContinue {
			return nil, err
		}
	}
}

// sendBody copies the request body from the client to the upstream. When
// the client side fails, it stops the response read: no answer can come
// to a request that never ended.
func (ex *exchange) sendBody(up *rollingConn) {
	if n, ok := ex.spliceableBody(); ok {
		ex.bodySent(up, ex.spliceRequest(n))
		return
	}
	ex.bodySent(up, ex.copyBody(&ex.upW))
}

// copyBody copies the request body as framed from the client to dst.
func (ex *exchange) copyBody(dst io.Writer) error {
	h := ex.f.h
	bufp := h.l.buffers.Get()
	defer h.l.buffers.Put(bufp)
	c := httphead.Copier{Buf: *bufp, Limits: ex.requestLimits()}
	return c.Copy(dst, h.br, ex.out.fr)
}

// spliceableBody reports whether the request body is sent by
// spliceRequest, and its length: a Content-Length body over buffer_size
// that no data hook reads, between two connections SpliceN can join.
func (ex *exchange) spliceableBody() (int64, bool) {
	h, fr := ex.f.h, ex.out.fr
	if fr.Kind != httphead.Length || fr.Length <= int64(h.l.set.BufferSize) || h.l.chain.HasData(plugins.Up) {
		return 0, false
	}
	ex.link.upMu.Lock()
	defer ex.link.upMu.Unlock()
	return fr.Length, relay.CanSplice(ex.link.upConn, h.c)
}

// spliceRequest sends a request body of n bytes as spliceBody sends a
// response's: what the client reader holds goes first, from its buffer,
// and the rest moves from the client's socket to the origin's in the
// kernel, leaving what the client sent past the body (a pipelined
// request) in the socket. An upload costs no copy through user space.
// The client's read deadline rolls, the origin's write deadline is
// renewed per chunk, and stop and stopUpstream end it, as they end
// copyBody's reads and writes.
func (ex *exchange) spliceRequest(n int64) error {
	h := ex.f.h
	if k := min(int64(h.br.Buffered()), n); k > 0 {
		p, _ := h.br.Peek(int(k))
		if err := ex.upW.send(p, nil); err != nil {
			return &httphead.WriteError{Err: err}
		}
		h.br.Discard(int(k))
		n -= k
	}
	return ex.upW.splice(h.c, h.rc, n)
}

// bodySent reports the body sender's result, err from copying the body.
func (ex *exchange) bodySent(up *rollingConn, err error) {
	if err == nil {
		ex.bodyRead.Store(true)
		err = ex.upW.end()
	}
	var we *httphead.WriteError
	if err != nil && !errors.As(err, &we) {
		up.stop()
	}
	ex.body <- err
}

// requestLimits bound a request body's chunk lines and trailers, as the
// request head's limits do.
func (ex *exchange) requestLimits() httphead.Limits {
	lim := &ex.f.h.l.gen.cfg.Limits
	return httphead.Limits{MaxBytes: int(lim.MaxHeaderBytes), MaxFields: lim.MaxHeaders}
}

// finishBody waits for the body sender and reports whether the whole
// body went upstream. A sender still reading from the client once the
// response is complete (the origin answered early) is stopped: the rest
// of the body is never read, so neither connection can carry another
// request.
func (ex *exchange) finishBody() bool {
	if ex.body == nil {
		return ex.out.fr.Kind == httphead.None || ex.gathered
	}
	if ex.gathered && !ex.bodyWait {
		return ex.finishWhole()
	}
	if !ex.bodyWait {
		if !ex.bodyRead.Load() {
			select {
			case ex.bodyErr = <-ex.body:
				ex.bodyWait = true
				return ex.bodyErr == nil
			default:
			}
			ex.f.h.rc.stop()
			ex.link.stopUpstream()
			ex.bodyErr = abandoned(<-ex.body)
			ex.bodyWait = true
			if ex.bodyErr == nil && ex.bodyRead.Load() {
				// The sender had read the whole body and only not yet
				// said so: both connections go on as they were.
				ex.f.h.rc.resume(ex.f.h.l.set.IdleTimeout)
				ex.link.resumeUpstream()
				return true
			}
			return false
		}
		ex.bodyErr = <-ex.body
		ex.bodyWait = true
		return ex.bodyErr == nil && ex.bodyRead.Load()
	}
	return ex.bodyErr == nil
}

// bodyPending reports, once the answer's head has come, whether the
// request body's sender is still at work: it waits on the client for
// more, or has not reported within bodyReportWait (it is blocked writing
// to an origin that answered early and reads no more, say). A sender
// that had sent the whole body and only not yet said so reports within
// that wait, and its result is kept for finishBody.
func (ex *exchange) bodyPending() bool {
	if ex.body == nil || ex.bodyWait || len(ex.body) > 0 {
		return false
	}
	if ex.waitsOnClient() {
		return true
	}
	t := time.NewTimer(bodyReportWait)
	defer t.Stop()
	select {
	case ex.bodyErr = <-ex.body:
		ex.bodyWait = true
		return false
	case <-t.C:
		return true
	}
}

// bodyReportWait bounds bodyPending's wait: a few scheduler slices, and
// what an early answer to a body still being written is held back.
const bodyReportWait = 20 * time.Millisecond

// finishWhole is finishBody for a body the hooks had whole: one still
// being written once the response is complete (the origin answered
// early and may read no more) is abandoned rather than waited for until
// the idle timeout, and the upstream connection cannot carry another
// request.
func (ex *exchange) finishWhole() bool {
	select {
	case ex.bodyErr = <-ex.body:
	default:
		ex.link.stopUpstream()
		ex.bodyErr = <-ex.body
		if ex.bodyErr == nil {
			ex.link.resumeUpstream() // it had just ended
		}
	}
	ex.bodyWait = true
	return ex.bodyErr == nil
}

// clientError is a failure writing to the client.
type clientError struct{ err error }

func (e *clientError) Error() string { return "to client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

func sizeString(n int) string { return config.Size(n).String() }

// bodyFailure is the answer to a request whose body the client broke
// off or framed badly, or nil when the client side did not fail.
func (ex *exchange) bodyFailure() error {
	var we *httphead.WriteError
	if ex.bodyErr == nil || ex.bodyErr == errAbandoned || errors.As(ex.bodyErr, &we) {
		return nil
	}
	return ex.bodyErr
}

// errAbandoned is the request body's error once finishBody stopped its
// sender: the body was given up because the response ended or failed,
// which is not the client's failure.
var errAbandoned = errors.New("request body abandoned")

// abandoned is err, the sender's error after finishBody stopped it, with
// the errors the stop itself causes (a stopped read or write, the past
// deadline that ended one under way) made errAbandoned.
func abandoned(err error) error {
	if errors.Is(err, errStopped) || isTimeout(err) {
		return errAbandoned
	}
	return err
}

// errBodyStalled is a request body whose client sent none of the rest
// for idle_timeout while the origin waited for it.
var errBodyStalled = fmt.Errorf("client sent no more for idle_timeout: %w", os.ErrDeadlineExceeded)

// clientStalled reports whether err, the answer's wait running out, is
// the client's stall: the body's sender still waits on the client for
// more, which the origin may rightly want before it answers. The body's
// own read and the answer's read roll the same idle_timeout, so which
// of the two runs out first is chance; where the sender waits is not.
// One blocked writing to the origin, or done, leaves it the origin's.
// Call it before finishBody, which stops the sender.
func (ex *exchange) clientStalled(err error) bool {
	return isTimeout(err) && ex.waitsOnClient()
}

// waitsOnClient reports whether the body's sender, still at work, waits
// on the client for more of the body.
func (ex *exchange) waitsOnClient() bool {
	return ex.body != nil && !ex.bodyWait && !ex.bodyRead.Load() && ex.f.h.rc.waiting.Load()
}

// upstreamReason is why an exchange ended whose upstream side failed
// with err: idle_timeout passed with no byte either way, the origin
// reset the connection, or it closed it (or sent what cannot be passed
// on).
func upstreamReason(err error) plugins.CloseReason {
	switch {
	case isTimeout(err):
		return plugins.ReasonIdleTimeout
	case relay.IsReset(err):
		return plugins.ReasonUpstreamReset
	}
	return plugins.ReasonUpstreamClosed
}

// fail ends an exchange that got no final response head: the client is
// told why in words unless its own side failed first.
func (ex *exchange) fail(err error, respStarted bool) {
	h, st := ex.f.h, &ex.st
	stalled := ex.clientStalled(err)
	ex.finishBody()
	var he *plugins.HookError
	var ce *clientError
	cerr := ex.bodyFailure()
	if cerr == nil && stalled {
		cerr = errBodyStalled
	}
	switch {
	case cerr != nil && errors.Is(cerr, httphead.ErrChunk):
		ex.s.Status = http.StatusBadRequest
		h.httpError(ex.s.Status, "malformed chunked request body", nil)
		st.Reason, st.Err = plugins.ReasonError, fmt.Errorf("request body: %w", cerr)
		ex.f.endUpstream(true)
		return
	case cerr != nil && isTimeout(cerr):
		// The body stalled for idle_timeout: the client is told so
		// (RFC 9110 section 15.5.9), and the origin never gets an end.
		ex.s.Status = http.StatusRequestTimeout
		h.httpError(ex.s.Status, "request body timed out", nil)
		st.Reason, st.Err = plugins.ReasonIdleTimeout, fmt.Errorf("request body: %w", cerr)
		ex.f.endUpstream(true)
		return
	case cerr != nil:
		ex.clientFailed(fmt.Errorf("request body: %w", cerr))
		return
	case errors.As(err, &he):
		ex.s.Status = http.StatusBadGateway
		h.httpError(ex.s.Status, "plugin error", nil)
		st.Reason, st.Err = plugins.ReasonPluginError, err
		ex.f.endUpstream(false)
		return
	case errors.As(err, &ce):
		ex.clientFailed(err)
		return
	}
	msg := describeUpstream(err, respStarted, int(h.l.gen.cfg.Limits.MaxResponseHeaderBytes))
	ex.s.Status = http.StatusBadGateway
	if isTimeout(err) {
		ex.s.Status = http.StatusGatewayTimeout
	}
	h.httpError(ex.s.Status, msg, nil)
	st.Reason = upstreamReason(err)
	st.Err = fmt.Errorf("request to %s: %w", ex.s.Target, &upstreamError{msg: msg, err: err})
	ex.f.endUpstream(false)
}

// clientFailed ends an exchange whose client went away or reset: the
// upstream is reset too when the client reset, so the origin does not
// take a cut message for a whole one.
func (ex *exchange) clientFailed(err error) {
	ex.st.Reason, ex.st.Err = plugins.ReasonClientClosed, err
	var we *httphead.WriteError
	var ce *clientError
	switch {
	case relay.IsReset(err):
		ex.st.Reason = plugins.ReasonClientReset
		relay.Abort(ex.f.h.c)
	case isTimeout(err):
		ex.st.Reason = plugins.ReasonIdleTimeout
		if errors.As(err, &we) || errors.As(err, &ce) {
			// The response's write timed out: the client stopped reading.
			resetStalled(ex.f.h.c)
		}
	}
	ex.f.endUpstream(true)
}
