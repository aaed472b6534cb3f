package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"

	"ferry/plugins"
	"ferry/relay"
	"ferry/server/httphead"
)

// respond passes the final response to the client, head then body as
// framed, and reports whether the client connection may carry another
// request. Longer than most: it is the one place where the framing of
// both sides decides which connections survive the exchange.
func (ex *exchange) respond(resp *httphead.Head) bool {
	h, st := ex.f.h, &ex.st
	rfr, err := httphead.ResponseFraming(resp, ex.out.req.Method)
	upgrade := resp.Status == http.StatusSwitchingProtocols && ex.out.upgrade
	if err == nil && resp.Status == http.StatusSwitchingProtocols && !upgrade {
		err = errors.New("101 Switching Protocols to a request that did not ask to upgrade")
	}
	if err != nil {
		// RFC 9112 section 6.3 item 5: discard the response, close the
		// connection to the server, answer 502.
		ex.fail(err, true)
		return false
	}
	ex.s.Status = resp.Status
	client11 := ex.out.hd.AtLeast11()
	ex.resp = responseOut{hd: resp, fr: rfr, upgrade: upgrade, client10: !client11,
		dechunk: rfr.Kind == httphead.Chunked && !client11}
	o := &ex.resp
	// 1xx answers, 101 included, are not final responses to hook.
	if h.l.chain.HasHTTPResponders() && resp.Status >= 200 {
		if herr := ex.hookResponse(o); herr != nil {
			return ex.blocked(herr)
		}
	}
	clientClose := ex.clientClose || rfr.Kind == httphead.Close || o.dechunk || h.l.srv.drainCtx.Err() != nil
	upClose := !keepAlive(resp) || rfr.Kind == httphead.Close || rfr.Ambiguous
	if ex.body == nil && ex.out.fr.Kind != httphead.None {
		clientClose, upClose = true, true // an early answer: the body stays unread
	}
	if ex.bodyPending() {
		// An answer before the body went whole: if it ends first,
		// finishBody stops the body and the client connection cannot
		// carry another request. The close is said now, in the head
		// (RFC 9112 section 9.6), or the client's next request would
		// meet it. A body that ends first costs the connection's reuse.
		clientClose = true
	}
	switch {
	case clientClose:
		o.conn = "close"
	case !client11:
		o.conn = "keep-alive"
	}
	err = ex.sendResponse(o, rfr, upgrade)
	if refused := refusal(err); refused != nil {
		return ex.blocked(refused.err)
	}
	// A streamed body may end with the connection it came on or goes to.
	clientClose, upClose = clientClose || o.conn == "close", upClose || ex.upDirty
	if !ex.finishBody() || ex.clientDirty.Load() {
		clientClose, upClose = true, true
		h.linger = true
	}
	if err != nil {
		ex.responseFailed(err)
		return false
	}
	if upgrade {
		ex.f.upgradeTunnel(ex.s, st, &ex.link)
		return false
	}
	st.Reason = plugins.ReasonCompleted
	if upClose {
		ex.f.closeUpstream()
	}
	return !clientClose
}

// sendResponse passes the response on as the listener's plugins want
// it: through the body streamers, the body hooks, or byte for byte.
func (ex *exchange) sendResponse(o *responseOut, rfr httphead.Framing, upgrade bool) error {
	switch m, ps := ex.responseBodyHooks(o, rfr); {
	case m != nil && ex.f.h.l.chain.HasHTTPBodyStreamers():
		return ex.writeStreamed(o, rfr, m, ps)
	case ps != nil:
		return ex.writeWhole(o, rfr, m, ps)
	}
	return ex.writeResponse(o, rfr, upgrade)
}

// writeResponse writes o's head and, unless the response has no body or
// is an upgrade, copies the body as rfr frames it. Errors writing to the
// client come back as *clientError.
func (ex *exchange) writeResponse(o *responseOut, rfr httphead.Framing, upgrade bool) error {
	h := ex.f.h
	if rfr.Kind == httphead.Length && !upgrade && !h.l.chain.HasData(plugins.Down) {
		return ex.writeDirect(o, rfr.Length)
	}
	bw := h.l.getWriter(&ex.downW)
	defer h.l.putWriter(bw)
	bufp := h.l.buffers.Get()
	defer h.l.buffers.Put(bufp)
	if _, err := bw.Write(o.append((*bufp)[:0])); err != nil {
		return &clientError{err: err}
	}
	if rfr.Kind != httphead.None && !upgrade {
		c := httphead.Copier{Buf: *bufp, Dechunk: o.dechunk, Limits: ex.headLimits(), Flush: bw}
		if err := c.Copy(bw, ex.f.upBr, rfr); err != nil {
			return err
		}
	}
	return ex.endResponse(bw)
}

// writeDirect is writeResponse for a Content-Length body that no data
// hook reads: each piece the origin sent goes to the client from the
// upstream reader's own buffer, the first together with the head in one
// writev. Through a write buffer, each byte would be copied once more in
// user space: for a 64 KiB object, one 64 KiB copy a request. The head
// goes alone when no body byte is there yet, so a slow body does not
// hold it back. What is left of a body larger than buffer_size, once
// the reader's buffer is empty, is spliced (spliceBody).
func (ex *exchange) writeDirect(o *responseOut, n int64) error {
	h, br := ex.f.h, ex.f.upBr
	bufp := h.l.buffers.Get()
	defer h.l.buffers.Put(bufp)
	head := o.append((*bufp)[:0])
	for n > 0 {
		if br.Buffered() == 0 {
			if head != nil {
				if err := ex.downW.writeVec(head, nil); err != nil {
					return &clientError{err: err}
				}
				head = nil
			}
			if n > int64(len(*bufp)) && relay.CanSplice(ex.link.client, ex.f.upRC.Conn) {
				return ex.spliceBody(n)
			}
			// Peek fills the reader's buffer with what the socket has,
			// past this body too: the rest stays for the next response.
			if _, err := br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		p, _ := br.Peek(int(min(int64(br.Buffered()), n)))
		br.Discard(len(p)) // p stays valid until the next read
		n -= int64(len(p))
		if head != nil && len(p) <= smallBody && len(p) <= cap(head)-len(head) {
			// A small body costs less copied behind the head than
			// as a second iovec.
			head, p = append(head, p...), nil
		}
		if err := ex.downW.writeVec(head, p); err != nil {
			return &httphead.WriteError{Err: err}
		}
		head = nil
	}
	return nil
}

// spliceBody moves the last n bytes of a response body from the origin
// to the client in the kernel, as a tunnel's bytes go: for a large
// download, no copy through user space. The origin's read deadline
// rolls and the client's write deadline is renewed per chunk, as the
// reads and writes of smaller bodies do, and stop still ends it.
func (ex *exchange) spliceBody(n int64) error {
	return ex.downW.splice(ex.f.upRC.Conn, ex.f.upRC, n)
}

// smallBody is the size up to which writeDirect copies a body behind
// its head rather than hand the kernel two pieces.
const smallBody = 4 << 10

// endResponse sends what bw holds and what the data hooks held back.
func (ex *exchange) endResponse(bw *bufio.Writer) error {
	if err := bw.Flush(); err != nil {
		return &clientError{err: err}
	}
	if err := ex.downW.end(); err != nil {
		return &clientError{err: err}
	}
	return nil
}

// responseFailed ends an exchange whose response broke off: a reset on
// one side resets the other, so a cut body never looks complete.
func (ex *exchange) responseFailed(err error) {
	st := &ex.st
	var we *httphead.WriteError
	var ce *clientError
	var he *plugins.HookError
	var ns *errNotSent
	var cut *errStreamCut
	switch cerr := ex.bodyFailure(); {
	case cerr != nil:
		// The request body failed first; the response's end was its
		// consequence (bodySent stopped the response's read).
		ex.clientFailed(fmt.Errorf("request body: %w", cerr))
	case errors.As(err, &ns):
		ex.fail(ns.err, true)
	case errors.As(err, &cut):
		ex.streamCut(cut.err)
	case errors.Is(err, plugins.ErrClose):
		// A data hook ended the channel (a spent quota): the plugin's
		// orderly close, as on a tunnel, not the client's doing.
		st.Reason, st.Err = plugins.ReasonPluginClosed, nil
		ex.f.endUpstream(false)
	case errors.As(err, &he):
		st.Reason, st.Err = plugins.ReasonPluginError, fmt.Errorf("response to client: %w", err)
		ex.f.endUpstream(false)
	case errors.As(err, &we), errors.As(err, &ce):
		ex.clientFailed(fmt.Errorf("response to client: %w", err))
	default:
		st.Reason = upstreamReason(err)
		if relay.IsReset(err) {
			relay.Abort(ex.f.h.c)
		}
		msg := describeUpstream(err, true, 0)
		st.Err = fmt.Errorf("response from %s: %w", ex.s.Target, &upstreamError{msg: msg, err: err})
		ex.f.endUpstream(relay.IsReset(err))
	}
}
