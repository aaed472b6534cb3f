package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"

	"ferry/plugins"
	"ferry/server/httphead"
)

// Body hooks on plain HTTP/1.1 (plugins.HTTPBodyHook). A body some hook
// wants is read as framed into memory, at most [limits]
// max_buffered_body_bytes counting the chunk framing, while the head
// waits. If it fits, the hooks see it de-chunked and decoded; a body
// they changed goes on with a Content-Length instead of the sender's
// framing (RFC 9112 section 6: Transfer-Encoding: chunked and its
// trailers are dropped), one they kept goes on as it came, byte for
// byte, trailers and all. A body that does not fit spills: the head as
// it would have been, what was held, then the rest as it streams, so
// memory stays bounded whatever the body's size. A body nobody wants
// never meets any of this.

// spillWriter holds what is written, up to limit bytes. The write that
// would pass limit spills: spill is called (it writes the head that
// goes before the body), then what was held and every later write go to
// dst.
type spillWriter struct {
	limit int
	// size, when not zero, is the body's declared size: buf grows to
	// no more. buf grows as bytes come, so a peer that declares a size
	// and sends nothing makes ferry reserve nothing.
	size    int
	buf     []byte
	dst     io.Writer
	spill   func() error
	spilled bool
}

func (w *spillWriter) Write(p []byte) (int, error) {
	if w.spilled {
		return w.dst.Write(p)
	}
	if len(w.buf)+len(p) <= w.limit {
		w.buf = appendCapped(w.buf, p, w.growLimit())
		return len(p), nil
	}
	w.spilled = true
	err := w.spill()
	if err == nil && len(w.buf) > 0 {
		_, err = w.dst.Write(w.buf)
	}
	w.buf = nil
	if err != nil {
		return 0, err
	}
	return w.dst.Write(p)
}

func (w *spillWriter) growLimit() int {
	if w.size > 0 {
		return min(w.size, w.limit)
	}
	return w.limit
}

// appendCapped appends p to b, growing b's capacity to at most limit,
// so that a held body never reserves more than the limit allows.
func appendCapped(b, p []byte, limit int) []byte {
	if need := len(b) + len(p); need > cap(b) {
		nb := make([]byte, len(b), min(max(2*cap(b), need, 4096), max(limit, need)))
		copy(nb, b)
		b = nb
	}
	return append(b, p...)
}

// dechunk returns the data of a whole chunked body that was read as
// framed (and so already checked), without framing and trailers.
func dechunk(wire []byte, lim httphead.Limits) ([]byte, error) {
	out := bytes.NewBuffer(make([]byte, 0, len(wire)))
	c := httphead.Copier{Buf: make([]byte, 4096), Dechunk: true, Limits: lim}
	err := c.Copy(out, bufio.NewReaderSize(bytes.NewReader(wire), 4096), httphead.Framing{Kind: httphead.Chunked})
	return out.Bytes(), err
}

func (ex *exchange) bodyLimit() int64 { return int64(ex.f.h.l.gen.cfg.Limits.MaxBufferedBodyBytes) }

// continueLine is ferry's own 100 (Continue): see gatherRequest.
var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// gatherRequest runs the body hooks on the request body when some hook
// wants it, before anything goes upstream. It reports whether the
// exchange goes on; when not, the client was answered (or left) and
// keep says whether its connection carries another request.
//
// A client that sent "Expect: 100-continue" gets ferry's own 100, and
// the origin is not asked (RFC 9110 section 10.1.1 lets a proxy answer
// the expectation): the hooks must see the body before the origin does,
// and forwarding requests with Expect unseen would let any client walk
// past them. The origin's chance to refuse before the upload is lost;
// only for requests some hook wants the body of.
func (ex *exchange) gatherRequest() (goOn, keep bool) {
	h, req := ex.f.h, ex.out.req
	if ex.out.fr.Kind == httphead.None || ex.out.upgrade {
		return true, false
	}
	if h.l.chain.HasHTTPBodyStreamers() {
		return ex.streamRequest()
	}
	m := &plugins.HTTPMessage{Dir: plugins.Up, Request: req}
	ps := bodyHooksFor(h.l.chain, ex.s, m, ex.bodyLimit())
	if ps == nil {
		return true, false
	}
	if !ex.continueHere() {
		return false, false
	}
	spilled, whole := make(chan struct{}, 1), make(chan error, 1)
	sw := &spillWriter{limit: int(ex.bodyLimit()), dst: &ex.upW}
	if ex.out.fr.Kind == httphead.Length {
		sw.size = int(ex.out.fr.Length)
	}
	sw.spill = func() error {
		_, err := ex.upW.Write(ex.head)
		spilled <- struct{}{}
		return err
	}
	ex.body = make(chan error, 1)
	go ex.gatherBody(ex.f.upRC, sw, whole)
	select {
	case <-spilled:
		ex.s.Log.Debug().Int64("limit", ex.bodyLimit()).Msg("body hook skipped: body over max_buffered_body_bytes")
		ex.streaming = true
		return true, false
	case err := <-whole:
		ex.body = nil
		if err != nil {
			ex.bodyErr, ex.bodyWait = err, true
			ex.fail(err, false)
			return false, false
		}
		return ex.hookRequestBody(m, ps, sw.buf)
	}
}

// continueHere answers the client's "Expect: 100-continue" for the
// origin, which is not asked (see gatherRequest), and reports whether
// the client is still there.
func (ex *exchange) continueHere() bool {
	if !ex.expect {
		return true
	}
	if _, err := ex.downW.Write(continueLine); err != nil {
		ex.clientFailed(&clientError{err: err})
		return false
	}
	ex.expect = false
	ex.out.req.Header.Del("Expect")
	ex.head = ex.out.append(ex.head[:0])
	return true
}

// gatherBody reads the request body into sw. A body that fits is
// handed to whole; one that spilled is sent on to its end, as sendBody
// sends bodies nobody wants.
func (ex *exchange) gatherBody(up *rollingConn, sw *spillWriter, whole chan<- error) {
	err := ex.copyBody(sw)
	if !sw.spilled {
		whole <- err
		return
	}
	ex.bodySent(up, err)
}

// hookRequestBody runs the hooks on a request body read whole, as
// framed in wire, and leaves what to send in ex.whole and ex.head.
func (ex *exchange) hookRequestBody(m *plugins.HTTPMessage, ps []plugins.Plugin, wire []byte) (goOn, keep bool) {
	h, req := ex.f.h, ex.out.req
	data := wire
	if ex.out.fr.Kind == httphead.Chunked {
		var err error
		if data, err = dechunk(wire, ex.requestLimits()); err != nil {
			ex.bodyErr, ex.bodyWait = err, true
			ex.fail(err, false)
			return false, false
		}
	}
	cl, te := slices.Clone(req.Header["Content-Length"]), slices.Clone(req.Header["Transfer-Encoding"])
	out, changed, err := hookWhole(h.l.chain, ex.s, m, ps, data, ex.bodyLimit())
	if err != nil {
		return false, ex.refused(err, true)
	}
	guardFields(ex.out.hd, req.Header, cl, te)
	ex.gathered, ex.whole = true, wire
	if changed {
		ex.whole = out
		ex.out.reframe, ex.out.length = true, len(out)
		// The view says what goes: for the log and OnClose.
		req.ContentLength, req.TransferEncoding = int64(len(out)), nil
		req.Header.Del("Transfer-Encoding")
		req.Header.Set("Content-Length", strconv.Itoa(len(out)))
	}
	ex.head = ex.out.append(ex.head[:0])
	return true, false
}

// sendWhole sends a request body the hooks had whole.
func (ex *exchange) sendWhole(up *rollingConn) {
	ex.bodyRead.Store(true)
	var err error
	if _, werr := ex.upW.Write(ex.whole); werr != nil {
		err = &httphead.WriteError{Err: werr}
	}
	ex.bodySent(up, err)
}

// refused answers a request an OnHTTPRequest or OnHTTPBody hook refused
// or failed on: with the plugin's answer when the error carries one
// (plugins.AnswerOf), the client connection staying open when the
// request was read whole; else as before the answers came, with ferry's
// text for the error's code, and the connection ends. It reports
// whether the connection stays.
func (ex *exchange) refused(err error, whole bool) bool {
	h := ex.f.h
	ex.st.Reason, ex.st.Err = reasonFor(err), err
	a := answerOf(err)
	if a == nil {
		code := plugins.CodeOf(err)
		ex.s.Status = code.HTTPStatus()
		h.httpError(ex.s.Status, code.String(), err)
		return false
	}
	ex.s.Status = a.Status
	keep := whole && keepAlive(ex.out.hd) && !ex.out.fr.Ambiguous && ex.out.hd.AtLeast11() && h.l.srv.drainCtx.Err() == nil
	if _, werr := (answerWriter{h}).Write(appendAnswer(nil, a, h.headReq, keep)); werr != nil {
		keep = false
	}
	if !keep {
		h.linger = true
	}
	return keep
}

// responseBodyHooks returns the message the body hooks and streamers
// are to see, nil when there are none or the response has no body (HEAD,
// 1xx, 204, 304) or is an upgrade, and the body hooks that want it.
func (ex *exchange) responseBodyHooks(o *responseOut, rfr httphead.Framing) (*plugins.HTTPMessage, []plugins.Plugin) {
	chain := ex.f.h.l.chain
	if !chain.HasHTTPBodyHooks() && !chain.HasHTTPBodyStreamers() || rfr.Kind == httphead.None || o.upgrade || o.hd.Status < 200 {
		return nil, nil
	}
	if o.view == nil {
		o.view = responseView(o, ex.out.req)
	}
	m := &plugins.HTTPMessage{Dir: plugins.Down, Request: ex.out.req, Response: o.view}
	return m, bodyHooksFor(chain, ex.s, m, ex.bodyLimit())
}

// errNotSent marks a failure reading a response body the hooks were to
// see before any of it reached the client, which can still be told.
type errNotSent struct{ err error }

func (e *errNotSent) Error() string { return e.err.Error() }
func (e *errNotSent) Unwrap() error { return e.err }

// flushFunc makes a func a Copier's Flush.
type flushFunc func() error

func (f flushFunc) Flush() error { return f() }

// errRefused is a body hook's refusal of a response: blocked answers.
type errRefused struct{ err error }

func (e *errRefused) Error() string { return e.err.Error() }
func (e *errRefused) Unwrap() error { return e.err }

// refusal returns the errRefused in err's chain, or nil. It looks only
// when err is not nil: errors.As's target escapes, an allocation on
// every exchange that would otherwise be spent on success.
func refusal(err error) *errRefused {
	if err == nil {
		return nil
	}
	var rf *errRefused
	if errors.As(err, &rf) {
		return rf
	}
	return nil
}

// writeWhole is writeResponse for a response some body hook wants: the
// body is read whole before the head goes, or spills (see spillWriter).
func (ex *exchange) writeWhole(o *responseOut, rfr httphead.Framing, m *plugins.HTTPMessage, ps []plugins.Plugin) error {
	h := ex.f.h
	bw := h.l.getWriter(&ex.downW)
	defer h.l.putWriter(bw)
	bufp := h.l.buffers.Get()
	defer h.l.buffers.Put(bufp)
	sw := &spillWriter{limit: int(ex.bodyLimit()), dst: bw}
	sw.spill = func() error {
		ex.s.Log.Debug().Int64("limit", ex.bodyLimit()).Msg("body hook skipped: body over max_buffered_body_bytes")
		_, err := bw.Write(o.append(nil))
		return err
	}
	if rfr.Kind == httphead.Length {
		sw.size = int(rfr.Length)
	}
	c := httphead.Copier{Buf: *bufp, Dechunk: o.dechunk, Limits: ex.headLimits(), Flush: flushFunc(func() error {
		if sw.spilled {
			return bw.Flush()
		}
		return nil
	})}
	err := c.Copy(sw, ex.f.upBr, rfr)
	if !sw.spilled {
		if err != nil {
			return &errNotSent{err: err}
		}
		body, err := ex.hookResponseBody(o, rfr, m, ps, sw.buf)
		if err != nil {
			return &errRefused{err: err}
		}
		if _, err := bw.Write(o.append((*bufp)[:0])); err != nil {
			return &clientError{err: err}
		}
		if _, err := bw.Write(body); err != nil {
			return &clientError{err: err}
		}
	} else if err != nil {
		return err
	}
	return ex.endResponse(bw)
}

// hookResponseBody runs the hooks on a response body read whole, as it
// is to go to the client in wire, and returns what to send; o takes the
// hooks' header edits and, for a changed body, ferry's Content-Length.
func (ex *exchange) hookResponseBody(o *responseOut, rfr httphead.Framing, m *plugins.HTTPMessage, ps []plugins.Plugin, wire []byte) ([]byte, error) {
	data := wire
	if rfr.Kind == httphead.Chunked && !o.dechunk {
		var err error
		if data, err = dechunk(wire, ex.headLimits()); err != nil {
			return nil, err
		}
	}
	hdr := m.Response.Header
	cl, te := slices.Clone(hdr["Content-Length"]), slices.Clone(hdr["Transfer-Encoding"])
	out, changed, err := hookWhole(ex.f.h.l.chain, ex.s, m, ps, data, ex.bodyLimit())
	if err != nil {
		return nil, err
	}
	guardFields(o.hd, hdr, cl, te)
	o.hdr = hdr
	if !changed {
		return wire, nil
	}
	o.reframe, o.length = true, len(out)
	return out, nil
}
