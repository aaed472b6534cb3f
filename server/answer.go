package server

import (
	"net/http"
	"slices"
	"strconv"

	"ferry/plugins"
)

// answerOf returns the HTTP answer a plugin's error carries
// (plugins.AnswerOf), as a copy ferry may change, with its status
// settled: a status that is not a final one (200 to 599) becomes the
// error's code's (plugins.HTTPAnswer: 0 means the code's). Nil when err
// carries none.
func answerOf(err error) *plugins.HTTPAnswer {
	a := plugins.AnswerOf(err)
	if a == nil {
		return nil
	}
	out := *a
	if out.Status < 200 || out.Status > 599 {
		out.Status = plugins.CodeOf(err).HTTPStatus()
	}
	out.Header = answerHeader(a.Header)
	return &out
}

// answerHeader is the header fields of an answer as ferry sends them:
// the plugin's, without the framing fields (ferry sets Content-Length),
// hop-by-hop ones and those that are not valid field syntax, which would
// split the head.
func answerHeader(h http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	guardFields(nil, out, nil, nil)
	return out
}

// answerHasBody reports whether a response with this status carries a
// body, and so a Content-Length (RFC 9110 sections 8.6, 15.3.5, 15.4.5).
func answerHasBody(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// appendAnswer writes a (as answerOf returns it) as an HTTP/1.1
// response; keep leaves out "Connection: close". A HEAD request's answer
// has the body's Content-Length and no body (RFC 9110 section 9.3.2).
func appendAnswer(dst []byte, a *plugins.HTTPAnswer, head, keep bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(a.Status), 10)
	dst = append(append(dst, ' '), http.StatusText(a.Status)...)
	dst = append(dst, '\r', '\n')
	keys := make([]string, 0, len(a.Header))
	for k := range a.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range a.Header[k] {
			dst = appendField(dst, k, v)
		}
	}
	body := answerHasBody(a.Status)
	if body {
		dst = appendField(dst, "Content-Length", strconv.Itoa(len(a.Body)))
	}
	if !keep {
		dst = append(dst, "Connection: close\r\n"...)
	}
	dst = append(dst, '\r', '\n')
	if body && !head {
		dst = append(dst, a.Body...)
	}
	return dst
}

// writeAnswer writes a plugin's answer to w: on the HTTP/2 paths, and
// for any server that answers through net/http. a is best as answerOf
// returns it (status settled, fields sanitized); a status that is still
// not a final one is sent as 403, Block's code's: net/http panics on
// some, and a 1xx would not end the exchange.
func writeAnswer(w http.ResponseWriter, a *plugins.HTTPAnswer, head bool) {
	status := a.Status
	if status < 200 || status > 599 {
		status = http.StatusForbidden
	}
	hdr := w.Header()
	for k, vs := range answerHeader(a.Header) {
		hdr[k] = vs
	}
	body := answerHasBody(status)
	if body {
		hdr.Set("Content-Length", strconv.Itoa(len(a.Body)))
	}
	w.WriteHeader(status)
	if body && !head {
		w.Write(a.Body)
	}
}
