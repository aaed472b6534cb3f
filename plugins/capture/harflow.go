package capture

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"ferry/plugins"
)

// flowKey keys an instance's HAR record of a flow in the session.
type flowKey struct{ p *Plugin }

// flow is what the HTTP hooks saw of one request and its response, kept
// until OnClose writes the entry.
type flow struct {
	mu     sync.Mutex
	req    *http.Request
	reqAt  time.Time
	resp   *http.Response
	respAt time.Time
	bodies [2]seenBody // by plugins.Direction
}

// seenBody is what the body hooks saw of one message body.
type seenBody struct {
	wanted bool   // WantsHTTPBody said yes
	seen   bool   // OnHTTPBody ran
	size   int    // decoded size, when seen
	data   []byte // a copy, when seen and at most har_max_body
}

func (p *Plugin) flow(s *plugins.Session) *flow {
	if f, ok := s.Value(flowKey{p}).(*flow); ok {
		return f
	}
	return s.LoadOrStore(flowKey{p}, &flow{}).(*flow)
}

// OnHTTPRequest implements plugins.HTTPRequester: it notes the request
// and when it was ready to go upstream.
func (p *Plugin) OnHTTPRequest(s *plugins.Session, req *http.Request) error {
	if p.har == nil {
		return nil
	}
	f := p.flow(s)
	f.mu.Lock()
	f.req, f.reqAt = req, time.Now()
	f.mu.Unlock()
	return nil
}

// OnHTTPResponse implements plugins.HTTPResponder: it notes the response
// head and when it came.
func (p *Plugin) OnHTTPResponse(s *plugins.Session, req *http.Request, resp *http.Response) error {
	if p.har == nil {
		return nil
	}
	f := p.flow(s)
	f.mu.Lock()
	f.resp, f.respAt = resp, time.Now()
	if f.req == nil {
		f.req = req
	}
	f.mu.Unlock()
	return nil
}

// WantsHTTPBody implements plugins.HTTPBodyHook. Asking for a body makes
// ferry buffer it, so the HAR capture asks only for bodies it can record
// and that cannot be large downloads: a declared length of at most
// har_max_body, or an unknown length of a textual type (a chunked HTML
// page or API answer). ferry's max_buffered_body_bytes bounds the rest.
func (p *Plugin) WantsHTTPBody(s *plugins.Session, m *plugins.HTTPMessage) bool {
	if p.har == nil || p.harMax == 0 {
		return false
	}
	n := declaredLength(m.Header(), contentLengthField(m))
	want := (n > 0 && n <= p.harMax) || (n < 0 && textual(m.ContentType()))
	if want {
		f := p.flow(s)
		f.mu.Lock()
		f.bodies[m.Dir].wanted = true
		f.mu.Unlock()
	}
	return want
}

// OnHTTPBody implements plugins.HTTPBodyHook: it keeps a copy of the
// decoded body, at most har_max_body, and passes the body on unchanged.
func (p *Plugin) OnHTTPBody(s *plugins.Session, m *plugins.HTTPMessage, body []byte) ([]byte, error) {
	f := p.flow(s)
	f.mu.Lock()
	defer f.mu.Unlock()
	b := &f.bodies[m.Dir]
	b.seen, b.size, b.data = true, len(body), nil
	if int64(len(body)) <= p.harMax {
		b.data = append([]byte{}, body...)
	}
	return body, nil
}

// contentLengthField is the ContentLength field of m's request or
// response.
func contentLengthField(m *plugins.HTTPMessage) int64 {
	switch {
	case m.Dir == plugins.Down && m.Response != nil:
		return m.Response.ContentLength
	case m.Dir == plugins.Up && m.Request != nil:
		return m.Request.ContentLength
	}
	return -1
}

// declaredLength is a message's body length as its header declares it,
// or field (Request.ContentLength or Response.ContentLength) when the
// header has none, or -1 when neither says.
func declaredLength(h http.Header, field int64) int64 {
	if v := h.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return n
		}
	}
	if field >= 0 {
		return field
	}
	return -1
}

// textual reports whether a media type (lower case, no parameters) is
// text a person reads in a HAR viewer: text/*, JSON, JavaScript, XML,
// HTML forms.
func textual(mt string) bool {
	if strings.HasPrefix(mt, "text/") {
		return true
	}
	switch mt {
	case "application/json", "application/javascript", "application/x-javascript",
		"application/ecmascript", "application/xml", "application/x-www-form-urlencoded",
		"application/graphql", "image/svg+xml":
		return true
	}
	return strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml")
}

// mediaTypeOf is the media type of a header's Content-Type, as
// HTTPMessage.ContentType reads it.
func mediaTypeOf(h http.Header) string {
	m := plugins.HTTPMessage{Dir: plugins.Up, Request: &http.Request{Header: h}}
	return m.ContentType()
}
