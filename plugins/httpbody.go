package plugins

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"runtime/debug"
	"strings"
)

// HTTPMessage is the HTTP message whose body an HTTPBodyHook sees.
type HTTPMessage struct {
	// Dir is Up for a request body, Down for a response body.
	Dir Direction
	// Request is the request as the HTTPRequesters left it; for an
	// intercepted flow its URL is the full https:// one.
	Request *http.Request
	// Response is the response as the HTTPResponders left it; nil for a
	// request body.
	Response *http.Response
}

// Header is the message's header: the request's or the response's.
func (m *HTTPMessage) Header() http.Header {
	if m.Dir == Down && m.Response != nil {
		return m.Response.Header
	}
	if m.Request != nil {
		return m.Request.Header
	}
	return nil
}

// ContentType is the message's media type, lower case and without
// parameters ("text/html"), or "" when it has none or an unreadable one.
func (m *HTTPMessage) ContentType() string {
	h := m.Header()
	if h == nil {
		return ""
	}
	v := h.Get("Content-Type")
	if v == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		// A bare "text/html;" or similar: the part before ';' still names it.
		mt, _, _ = strings.Cut(v, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	return mt
}

// HTTPBodyHook sees whole HTTP message bodies, decoded, when it asks for
// them, on plain HTTP and on intercepted flows alike. Bodies no hook
// asks for stream through without being buffered.
//
// WantsHTTPBody is asked once per message with a body, after the head
// hooks (OnHTTPRequest for requests, OnHTTPResponse for responses). When
// some hook says yes, ferry reads the whole body, at most the
// max_buffered_body_bytes limit, removes its Content-Encoding (gzip,
// deflate, br, zstd; decoded size bounded by the same limit), and calls
// OnHTTPBody of every hook that asked, in config order, each with what
// the previous one returned. The result is encoded again as the message
// said and sent with a Content-Length. A body over the limit, or in an
// encoding ferry does not know, is sent unchanged without calling
// OnHTTPBody (and logged at debug).
//
// OnHTTPBody returns the body to send (body itself to keep it); body is
// valid only during the call. It may change m's header fields except the
// framing ones (Content-Length, Transfer-Encoding), which ferry sets. An
// error blocks the message like OnHTTPRequest's or OnHTTPResponse's: a
// *RejectError chooses the client's answer.
type HTTPBodyHook interface {
	WantsHTTPBody(s *Session, m *HTTPMessage) bool
	OnHTTPBody(s *Session, m *HTTPMessage, body []byte) ([]byte, error)
}

// HTTPAnswer is an HTTP response of a plugin's choosing, which a
// *RejectError may carry: an HTTP client (plain or inside an intercepted
// tunnel) gets it instead of ferry's own error text.
type HTTPAnswer struct {
	// Status is the status code; 0 means the RejectError's code's.
	Status int
	// Header is sent as given, with Content-Length set by ferry.
	Header http.Header
	// Body is the response body.
	Body []byte
}

// Block returns an error for HTTP hooks that refuses a request or
// response with the given status, a text/plain body and msg for the log.
func Block(status int, body, msg string) error {
	return &RejectError{
		Code: CodeForbidden,
		Msg:  msg,
		Answer: &HTTPAnswer{
			Status: status,
			Header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
			Body:   []byte(body),
		},
	}
}

// AnswerOf returns the HTTPAnswer err carries, or nil.
func AnswerOf(err error) *HTTPAnswer {
	if re, ok := asReject(err); ok {
		return re.Answer
	}
	return nil
}

// HasHTTPBodyHooks reports whether some plugin may want message bodies.
func (c *Chain) HasHTTPBodyHooks() bool { return c != nil && len(c.httpBodies) > 0 }

// WantsHTTPBody reports which body hooks want m's body: nil when none
// does. A panic in a hook counts as "no".
func (c *Chain) WantsHTTPBody(s *Session, m *HTTPMessage) []Plugin {
	if c == nil {
		return nil
	}
	var out []Plugin
	for _, p := range c.httpBodies {
		if callWantsBody(p, s, m) {
			out = append(out, p)
		}
	}
	return out
}

func callWantsBody(p Plugin, s *Session, m *HTTPMessage) (yes bool) {
	defer func() {
		if recover() != nil {
			yes = false
		}
	}()
	return p.(HTTPBodyHook).WantsHTTPBody(s, m)
}

// HTTPBody runs the OnHTTPBody hooks of ps (what WantsHTTPBody returned)
// on a decoded body, in order; the first error stops them.
func (c *Chain) HTTPBody(s *Session, m *HTTPMessage, ps []Plugin, body []byte) ([]byte, error) {
	for _, p := range ps {
		out, err := callHTTPBody(p, s, m, body)
		if err != nil {
			return nil, err
		}
		body = out
	}
	return body, nil
}

func callHTTPBody(p Plugin, s *Session, m *HTTPMessage, body []byte) (out []byte, err error) {
	defer recoverHook(p, "OnHTTPBody", &err)
	out, e := p.(HTTPBodyHook).OnHTTPBody(s, m, body)
	if e != nil {
		return nil, &HookError{Plugin: p.Name(), Hook: "OnHTTPBody", Err: e}
	}
	return out, nil
}

// HTTPBodyStreamer sees HTTP message bodies as they stream, without
// ferry buffering them: to count, hash or scan a download, or rewrite it
// on the fly. StreamHTTPBody is called once per message with a body,
// after the body hooks, with the body as it will be sent (its
// Content-Encoding not removed) and returns the reader to send it from:
// body itself to only watch it (a reader that reads through body and
// passes every byte on unchanged, or body as it is), or a reader of
// other bytes. When a hook returns a reader that is not body, the length
// is no longer known: ferry drops Content-Length and sends the message
// chunked (HTTP/1.1; close-delimited to an HTTP/1.0 client) or as HTTP/2
// DATA frames. An error from the reader ends the message (the client's
// connection or stream is reset: the head is already sent). Hooks run in
// config order, each reading what the one before returns.
type HTTPBodyStreamer interface {
	StreamHTTPBody(s *Session, m *HTTPMessage, body io.Reader) io.Reader
}

// HasHTTPBodyStreamers reports whether some plugin streams bodies.
func (c *Chain) HasHTTPBodyStreamers() bool { return c != nil && len(c.httpStreams) > 0 }

// StreamHTTPBody passes body through the HTTPBodyStreamers and reports
// whether the reader it returns is another than body (the length is
// then unknown). A panic in a hook, or in its reader, is an error of
// the stream.
func (c *Chain) StreamHTTPBody(s *Session, m *HTTPMessage, body io.Reader) (io.Reader, bool) {
	if c == nil {
		return body, false
	}
	r := body
	for _, p := range c.httpStreams {
		r = callStreamBody(p, s, m, r)
	}
	return r, r != body
}

func callStreamBody(p Plugin, s *Session, m *HTTPMessage, body io.Reader) (out io.Reader) {
	defer func() {
		if v := recover(); v != nil {
			out = errReader{err: &HookError{Plugin: p.Name(), Hook: "StreamHTTPBody", Err: fmt.Errorf("panic: %v", v), Stack: debug.Stack()}}
		}
	}()
	out = p.(HTTPBodyStreamer).StreamHTTPBody(s, m, body)
	if out == nil || out == body {
		return body
	}
	return &guardedReader{r: out, p: p}
}

// guardedReader turns a panic in a plugin's reader into its error.
type guardedReader struct {
	r io.Reader
	p Plugin
}

func (g *guardedReader) Read(b []byte) (n int, err error) {
	defer func() {
		if v := recover(); v != nil {
			n, err = 0, &HookError{Plugin: g.p.Name(), Hook: "StreamHTTPBody", Err: fmt.Errorf("panic in reader: %v", v), Stack: debug.Stack()}
		}
	}()
	return g.r.Read(b)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
