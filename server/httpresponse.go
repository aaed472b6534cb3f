package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"

	"golang.org/x/net/http/httpguts"

	"ferry/plugins"
	"ferry/server/httphead"
)

// hookResponse runs the OnHTTPResponse hooks on a view of the response
// head that o will write, and leaves their edits in o.hdr.
func (ex *exchange) hookResponse(o *responseOut) error {
	resp := responseView(o, ex.out.req)
	if err := runResponseHooks(ex.f.h.l.chain, ex.s, resp, o.hd); err != nil {
		return err
	}
	o.hdr, o.view = resp.Header, resp
	return nil
}

// runResponseHooks runs the chain's OnHTTPResponse hooks on resp and
// undoes the edits ferry does not take (guardFields). The framing fields
// are ferry's: the body is copied as the origin framed it, so a plugin's
// Content-Length or Transfer-Encoding would make the client misread it
// (RFC 9112 section 6.3).
func runResponseHooks(chain *plugins.Chain, s *plugins.Session, resp *http.Response, hd *httphead.Head) error {
	cl := slices.Clone(resp.Header["Content-Length"])
	te := slices.Clone(resp.Header["Transfer-Encoding"])
	if err := chain.HTTPResponse(s, resp.Request, resp); err != nil {
		return err
	}
	guardFields(hd, resp.Header, cl, te)
	return nil
}

// responseView builds the *http.Response plugins see: the status and the
// fields o passes to the client, under canonical keys. The body is not
// read before the hooks, so Body is nil.
func responseView(o *responseOut, req *http.Request) *http.Response {
	hd := o.hd
	resp := &http.Response{
		Status: strconv.Itoa(hd.Status) + " " + hd.Reason(), StatusCode: hd.Status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, hd.Len()), Request: req, ContentLength: -1,
	}
	if !hd.AtLeast11() {
		resp.Proto, resp.ProtoMinor = "HTTP/1.0", 0
	}
	for i := range hd.Len() {
		if o.kept(i) {
			k := textproto.CanonicalMIMEHeaderKey(hd.Name(i))
			resp.Header[k] = append(resp.Header[k], hd.Value(i))
		}
	}
	switch o.fr.Kind {
	case httphead.Length:
		resp.ContentLength = o.fr.Length
	case httphead.Chunked:
		resp.TransferEncoding = []string{"chunked"}
	}
	return resp
}

// guardFields undoes the edits ferry does not take from a plugin: the
// framing fields go back to cl and te as received, hop-by-hop fields it
// added are dropped (RFC 9110 section 7.6.1: they are ferry's, for this
// connection only), and so are names and values that are not valid
// field syntax, which would otherwise split the head. hd is nil on the
// HTTP/2 path, where net/http already dropped what Connection named.
func guardFields(hd *httphead.Head, hdr http.Header, cl, te []string) {
	if hd == nil {
		hd = &httphead.Head{}
	}
	restore := func(k string, v []string) {
		if v == nil {
			delete(hdr, k)
		} else {
			hdr[k] = v
		}
	}
	restore("Content-Length", cl)
	restore("Transfer-Encoding", te)
	for k, vs := range hdr {
		if !httpguts.ValidHeaderFieldName(k) || hopByHop(hd, k, false) {
			delete(hdr, k)
			continue
		}
		if slices.ContainsFunc(vs, invalidValue) {
			hdr[k] = slices.DeleteFunc(slices.Clone(vs), invalidValue)
		}
	}
}

func invalidValue(v string) bool { return !httpguts.ValidHeaderFieldValue(v) }

// blocked answers instead of a response an OnHTTPResponse or OnHTTPBody
// hook refused: the plugin's answer when the error carries one
// (plugins.AnswerOf), else ferry's text. The origin's connection is
// closed (its body may be unread). The client's stays open when a
// *RejectError chose the answer and the request was read whole: the
// client did nothing wrong, and its next request is not the origin's
// fault either. Any other error is a 502 that ends it, as OnHTTPRequest
// errors do.
func (ex *exchange) blocked(err error) bool {
	h, st := ex.f.h, &ex.st
	bodyDone := ex.finishBody()
	ex.f.closeUpstream()
	status, msg := http.StatusBadGateway, "plugin error"
	var re *plugins.RejectError
	reject := errors.As(err, &re)
	if reject {
		status, msg = re.Code.HTTPStatus(), re.Code.String()
	}
	keep := reject && bodyDone && !ex.clientClose && ex.out.hd.AtLeast11() && h.l.srv.drainCtx.Err() == nil
	ex.s.Status = status
	st.Reason, st.Err = reasonFor(err), err
	var werr error
	if a := answerOf(err); a != nil {
		ex.s.Status = a.Status
		_, werr = (answerWriter{h}).Write(appendAnswer(nil, a, h.headReq, keep))
	} else {
		werr = writeBlocked(answerWriter{h}, status, msg, err, h.headReq, keep)
	}
	if werr != nil {
		keep = false
	}
	if !keep {
		h.linger = true
	}
	return keep
}

// writeBlocked writes a short text answer; keep leaves out
// "Connection: close". A HEAD request's answer has no body (RFC 9110
// section 9.3.2).
func writeBlocked(w io.Writer, status int, msg string, cause error, head, keep bool) error {
	body := errorBody(status, msg, cause)
	b := fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n",
		status, http.StatusText(status), len(body))
	if !keep {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, '\r', '\n')
	if !head {
		b = append(b, body...)
	}
	_, err := w.Write(b)
	return err
}
