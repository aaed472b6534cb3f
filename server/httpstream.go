package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"

	"ferry/plugins"
	"ferry/relay"
	"ferry/server/httphead"
)

// Body streamers on plain HTTP/1.1 (plugins.HTTPBodyStreamer). A
// streamer gets the body without its framing, after the body hooks, and
// returns the reader to send from. When it returns the body itself and
// nothing read from it, the body goes on as it came, byte for byte;
// else it goes with a Content-Length when that is still known (the body
// hooks' result), chunked when not, or close-delimited to an HTTP/1.0
// client.

// errStreamCut is a body that broke off, at its source or in a
// streamer's reader, after its head was sent: the client connection is
// reset, so the cut cannot pass for the body's end.
type errStreamCut struct{ err error }

func (e *errStreamCut) Error() string { return "body cut short: " + e.err.Error() }
func (e *errStreamCut) Unwrap() error { return e.err }

// countingReader counts what was read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// writeStreamed is writeResponse for a response the streamers see, and
// the body hooks too when ps wants it.
func (ex *exchange) writeStreamed(o *responseOut, rfr httphead.Framing, m *plugins.HTTPMessage, ps []plugins.Plugin) error {
	chain := ex.f.h.l.chain
	src := httphead.NewBodyReader(ex.f.upBr, rfr, ex.headLimits())
	read := &countingReader{r: src}
	var body io.Reader = read
	length, hooked := int64(-1), false
	if rfr.Kind == httphead.Length {
		length = rfr.Length
	}
	if ps != nil {
		hdr := m.Response.Header
		cl, te := hdr["Content-Length"], hdr["Transfer-Encoding"]
		hb, err := hookBody(chain, ex.s, m, body, ex.bodyLimit())
		if rerr := (*bodyReadError)(nil); errors.As(err, &rerr) {
			return &errNotSent{err: rerr.err}
		} else if err != nil {
			return &errRefused{err: err}
		}
		guardFields(o.hd, hdr, cl, te)
		o.hdr = hdr
		body, hooked = hb.stream, hb.hooked
		if hooked {
			body, length = bytes.NewReader(hb.body), int64(len(hb.body))
		}
	}
	r, changed := chain.StreamHTTPBody(ex.s, m, body)
	if !changed && !hooked && read.n == 0 {
		return ex.writeResponse(o, rfr, false)
	}
	if changed {
		length = -1
	}
	o.reframe, o.length = true, int(length)
	if length < 0 && o.client10 {
		o.conn = "close"
	}
	err := ex.copyStreamed(o, r)
	ex.upDirty = !src.Done()
	return err
}

// copyStreamed writes o's head and the body from r, as o frames it,
// flushing after each read so that the body streams.
func (ex *exchange) copyStreamed(o *responseOut, r io.Reader) error {
	h := ex.f.h
	bw := h.l.getWriter(&ex.downW)
	defer h.l.putWriter(bw)
	bufp := h.l.buffers.Get()
	defer h.l.buffers.Put(bufp)
	if _, err := bw.Write(o.append((*bufp)[:0])); err != nil {
		return &clientError{err: err}
	}
	var w io.Writer = bw
	var cw io.WriteCloser
	if o.length < 0 && !o.client10 {
		cw = httputil.NewChunkedWriter(bw)
		w = cw
	}
	sent, rerr, werr := pump(w, bw.Flush, r, *bufp)
	switch {
	case werr != nil:
		return &clientError{err: werr}
	case rerr != nil:
		return &errStreamCut{err: rerr}
	}
	if o.length >= 0 && sent != int64(o.length) {
		return &errStreamCut{err: fmt.Errorf("%d bytes of %d", sent, o.length)}
	}
	if cw != nil {
		cw.Close()
		bw.WriteString("\r\n") // no trailers
	}
	return ex.endResponse(bw)
}

// pump copies r to w through buf, calling flush (if set) after each
// read so that the body streams.
func pump(w io.Writer, flush func() error, r io.Reader, buf []byte) (sent int64, rerr, werr error) {
	for {
		n, err := r.Read(buf)
		if n > 0 {
			sent += int64(n)
			if _, werr = w.Write(buf[:n]); werr == nil && flush != nil {
				werr = flush()
			}
			if werr != nil {
				return sent, nil, werr
			}
		}
		switch {
		case err == io.EOF:
			return sent, nil, nil
		case err != nil:
			return sent, err, nil
		}
	}
}

// streamRequest prepares a request body for the streamers, after the
// body hooks when some hook wants it too (which gatherRequest then does
// not do): ex.pumpR is what to send, framed as ex.out says. It reports
// whether the exchange goes on, as gatherRequest does.
func (ex *exchange) streamRequest() (goOn, keep bool) {
	h, req := ex.f.h, ex.out.req
	chain := h.l.chain
	if !chain.HasHTTPBodyStreamers() || ex.out.fr.Kind == httphead.None || ex.out.upgrade {
		return true, false
	}
	m := &plugins.HTTPMessage{Dir: plugins.Up, Request: req}
	src := httphead.NewBodyReader(h.br, ex.out.fr, ex.requestLimits())
	read := &countingReader{r: src}
	var body io.Reader = read
	length, hooked := int64(-1), false
	if ex.out.fr.Kind == httphead.Length {
		length = ex.out.fr.Length
	}
	if ps := bodyHooksFor(chain, ex.s, m, ex.bodyLimit()); ps != nil {
		if !ex.continueHere() {
			return false, false
		}
		cl, te := req.Header["Content-Length"], req.Header["Transfer-Encoding"]
		hb, err := hookBody(chain, ex.s, m, body, ex.bodyLimit())
		if rerr := (*bodyReadError)(nil); errors.As(err, &rerr) {
			ex.bodyErr, ex.bodyWait = rerr.err, true
			ex.fail(rerr.err, false)
			return false, false
		} else if err != nil {
			return false, ex.refused(err, true)
		}
		guardFields(ex.out.hd, req.Header, cl, te)
		body, hooked = hb.stream, hb.hooked
		if hooked {
			body, length = bytes.NewReader(hb.body), int64(len(hb.body))
		}
	}
	r, changed := chain.StreamHTTPBody(ex.s, m, body)
	if !changed && !hooked && read.n == 0 {
		return true, false
	}
	if changed {
		length = -1
	}
	ex.out.reframe, ex.out.length = true, int(length)
	ex.pumpR, ex.pumpSrc = r, src
	ex.head = ex.out.append(ex.head[:0])
	return true, false
}

// sendPumped sends a request body from what the streamers returned.
// One that left the client's body unread ends the client connection.
func (ex *exchange) sendPumped(up *rollingConn) {
	var w io.Writer = &ex.upW
	var cw io.WriteCloser
	if ex.out.length < 0 {
		cw = httputil.NewChunkedWriter(&ex.upW)
		w = cw
	}
	bufp := ex.f.h.l.buffers.Get()
	defer ex.f.h.l.buffers.Put(bufp)
	_, rerr, werr := pump(w, nil, ex.pumpR, *bufp)
	if werr == nil && rerr == nil && cw != nil {
		if werr = cw.Close(); werr == nil {
			_, werr = ex.upW.Write([]byte("\r\n"))
		}
	}
	err := rerr
	if werr != nil {
		err = &httphead.WriteError{Err: werr}
	}
	if err == nil && !ex.pumpSrc.Done() {
		ex.clientDirty.Store(true)
	}
	ex.bodySent(up, err)
}

// streamCut ends an exchange whose streamed body broke off after its
// head was sent: both connections are reset.
func (ex *exchange) streamCut(err error) {
	relay.Abort(ex.f.h.c)
	ex.f.endUpstream(true)
	ex.st.Reason = upstreamReason(err)
	if errors.As(err, new(*plugins.HookError)) {
		ex.st.Reason = plugins.ReasonPluginError
	}
	ex.st.Err = fmt.Errorf("response body: %w", err)
}
