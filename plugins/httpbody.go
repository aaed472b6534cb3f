package plugins

import (
	"mime"
	"net/http"
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
