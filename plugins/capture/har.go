package capture

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"ferry/plugins"
	"ferry/plugins/pkg/units"
)

// The types below are the HAR 1.2 objects an entry is made of
// (http://www.softwareishard.com/blog/har-12-spec/), with the fields
// ferry can fill. Custom fields start with "_", as the spec asks.

type harEntry struct {
	StartedDateTime string      `json:"startedDateTime"`
	Time            float64     `json:"time"`
	Request         harRequest  `json:"request"`
	Response        harResponse `json:"response"`
	Cache           struct{}    `json:"cache"`
	Timings         harTimings  `json:"timings"`
	ServerIPAddress string      `json:"serverIPAddress,omitempty"`
	Connection      string      `json:"connection,omitempty"`
	Ferry           harFerry    `json:"_ferry"`
}

type harRequest struct {
	Method      string       `json:"method"`
	URL         string       `json:"url"`
	HTTPVersion string       `json:"httpVersion"`
	Cookies     []harCookie  `json:"cookies"`
	Headers     []harNV      `json:"headers"`
	QueryString []harNV      `json:"queryString"`
	PostData    *harPostData `json:"postData,omitempty"`
	HeadersSize int64        `json:"headersSize"`
	BodySize    int64        `json:"bodySize"`
}

type harResponse struct {
	Status      int         `json:"status"`
	StatusText  string      `json:"statusText"`
	HTTPVersion string      `json:"httpVersion"`
	Cookies     []harCookie `json:"cookies"`
	Headers     []harNV     `json:"headers"`
	Content     harContent  `json:"content"`
	RedirectURL string      `json:"redirectURL"`
	HeadersSize int64       `json:"headersSize"`
	BodySize    int64       `json:"bodySize"`
	Comment     string      `json:"comment,omitempty"`
}

type harNV struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type harCookie struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Path     string `json:"path,omitempty"`
	Domain   string `json:"domain,omitempty"`
	Expires  string `json:"expires,omitempty"`
	HTTPOnly bool   `json:"httpOnly,omitempty"`
	Secure   bool   `json:"secure,omitempty"`
}

type harPostData struct {
	MimeType string  `json:"mimeType"`
	Params   []harNV `json:"params"`
	Text     string  `json:"text"`
	Comment  string  `json:"comment,omitempty"`
	// Encoding is "base64" for a body that is not UTF-8 text; HAR 1.2
	// has no such field for requests, so it is a custom one.
	Encoding string `json:"_encoding,omitempty"`
}

type harContent struct {
	Size        int64  `json:"size"`
	Compression int64  `json:"compression,omitempty"`
	MimeType    string `json:"mimeType"`
	Text        string `json:"text,omitempty"`
	Encoding    string `json:"encoding,omitempty"`
	Comment     string `json:"comment,omitempty"`
}

type harTimings struct {
	Blocked float64 `json:"blocked"`
	DNS     float64 `json:"dns"`
	Connect float64 `json:"connect"`
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
	SSL     float64 `json:"ssl"`
}

// harFerry is the entry's custom "_ferry" object: which channel the flow
// was and how it ended.
type harFerry struct {
	Session     string `json:"session"`
	Parent      string `json:"parent,omitempty"`
	User        string `json:"user,omitempty"`
	Listener    string `json:"listener,omitempty"`
	Intercepted string `json:"intercepted,omitempty"`
	Reason      string `json:"reason"`
	Error       string `json:"error,omitempty"`
	BytesUp     int64  `json:"bytes_up"`
	BytesDown   int64  `json:"bytes_down"`
}

// maxFormBody bounds the form bodies whose fields an entry lists
// apart as params: a megabyte of "a&a&..." would make half a million.
const maxFormBody = 64 << 10

// harTimeLayout is ISO 8601 with milliseconds and the zone, as HAR wants.
const harTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// harEntryOf builds the entry of an HTTP session that ended: nil when s
// is not an HTTP request (a tunnel, SOCKS, a session without request).
func (p *Plugin) harEntryOf(s *plugins.Session, stats plugins.Stats) []byte {
	if s.Protocol != "http" {
		return nil
	}
	f, _ := s.Value(flowKey{p}).(*flow)
	if f == nil {
		f = &flow{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	req := f.req
	if req == nil {
		req = s.Request
	}
	if req == nil || req.URL == nil {
		return nil
	}
	e := harEntry{
		Request:    p.harRequest(req, &f.bodies[plugins.Up]),
		Response:   p.harResponse(s, f, req, stats),
		Connection: s.ID,
		Ferry:      ferryFields(s, stats),
	}
	if s.Parent != "" {
		e.Connection = s.Parent
	}
	e.StartedDateTime, e.Time, e.Timings = harTimes(f, stats)
	e.ServerIPAddress = serverIP(s)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)              // HTML bodies stay readable and do not grow sixfold
	if err := enc.Encode(e); err != nil { // not expected: every field is a plain value
		s.Log.Debug().Err(err).Msg("capture: HAR entry not encoded")
		return nil
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

func ferryFields(s *plugins.Session, stats plugins.Stats) harFerry {
	fe := harFerry{
		Session: s.ID, Parent: s.Parent, User: s.User, Listener: s.Listener,
		Intercepted: s.Intercepted, Reason: stats.Reason.String(),
		BytesUp: stats.Up, BytesDown: stats.Down,
	}
	if stats.Err != nil {
		fe.Error = stats.Err.Error()
	}
	return fe
}

// harTimes returns when the flow started, how long it took in
// milliseconds and its timings: wait is from the start to the response
// head, receive from there to the end. ferry does not time the sending
// of the request apart (send is 0) nor the dial (-1).
func harTimes(f *flow, stats plugins.Stats) (string, float64, harTimings) {
	start := stats.Start
	if start.IsZero() {
		start = f.reqAt
	}
	total := stats.Duration
	if start.IsZero() {
		start = time.Now().Add(-total)
	}
	wait := total
	if !f.respAt.IsZero() {
		wait = min(max(f.respAt.Sub(start), 0), total)
	}
	t := harTimings{Blocked: -1, DNS: -1, Connect: -1, SSL: -1, Wait: ms(wait), Receive: ms(total - wait)}
	return start.Format(harTimeLayout), t.Wait + t.Receive, t
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// serverIP is the address ferry connected to for a direct dial; empty
// through an upstream proxy or when unknown.
func serverIP(s *plugins.Session) string {
	if s.UpstreamPath != "" {
		return ""
	}
	ta, ok := s.UpstreamAddr.(*net.TCPAddr)
	if !ok || ta == nil {
		return ""
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return ""
	}
	return ip.Unmap().WithZone("").String()
}

func (p *Plugin) harRequest(req *http.Request, b *seenBody) harRequest {
	r := harRequest{
		Method:      req.Method,
		URL:         requestURL(req),
		HTTPVersion: protoOr(req.Proto, "HTTP/1.1"),
		Cookies:     []harCookie{},
		Headers:     harHeaders(req.Header),
		QueryString: pairs(req.URL.RawQuery),
		HeadersSize: -1,
		BodySize:    declaredLength(req.Header, req.ContentLength),
	}
	if req.Host != "" && req.Header.Get("Host") == "" && req.ProtoMajor < 2 {
		r.Headers = append([]harNV{{"Host", req.Host}}, r.Headers...)
	}
	for _, c := range req.Cookies() {
		r.Cookies = append(r.Cookies, harCookie{Name: c.Name, Value: c.Value})
	}
	if r.BodySize < 0 && b.seen && req.Header.Get("Content-Encoding") == "" {
		r.BodySize = int64(b.size)
	}
	if r.BodySize != 0 || b.seen {
		r.PostData = p.postData(req.Header, b)
	}
	return r
}

// requestURL is the request's full URL: absolute already for plain
// proxying and intercepted flows.
func requestURL(req *http.Request) string {
	if req.URL.IsAbs() {
		return req.URL.String()
	}
	u := *req.URL
	u.Scheme, u.Host = "http", req.Host
	return u.String()
}

func protoOr(proto, def string) string {
	if proto == "" {
		return def
	}
	return proto
}

func (p *Plugin) postData(h http.Header, b *seenBody) *harPostData {
	pd := &harPostData{MimeType: h.Get("Content-Type"), Params: []harNV{}}
	if b.data == nil {
		pd.Comment = p.notRecorded(b)
		return pd
	}
	mt := mediaTypeOf(h)
	pd.Text, pd.Encoding = bodyText(b.data, mt)
	if mt == "application/x-www-form-urlencoded" && pd.Encoding == "" && len(pd.Text) <= maxFormBody {
		pd.Params = pairs(pd.Text)
	}
	return pd
}

func (p *Plugin) harResponse(s *plugins.Session, f *flow, req *http.Request, stats plugins.Stats) harResponse {
	resp := f.resp
	r := harResponse{
		Status:      s.Status,
		HTTPVersion: protoOr(req.Proto, "HTTP/1.1"),
		Cookies:     []harCookie{},
		Headers:     []harNV{},
		HeadersSize: -1,
		BodySize:    -1,
	}
	if resp == nil {
		// Refused by a plugin, the dial failed, or the origin sent no
		// response: ferry answered, or nobody did.
		r.StatusText = http.StatusText(r.Status)
		r.Content = harContent{MimeType: "x-unknown"}
		r.Comment = "no response from the origin: " + stats.Reason.String()
		if stats.Err != nil {
			r.Comment += ": " + stats.Err.Error()
		}
		return r
	}
	r.Status, r.StatusText = resp.StatusCode, http.StatusText(resp.StatusCode)
	if s.Status != 0 && s.Status != resp.StatusCode {
		// A later hook refused the response: this is the origin's.
		r.Comment = fmt.Sprintf("the client got %d from ferry instead: %v", s.Status, stats.Reason)
	}
	r.HTTPVersion = protoOr(resp.Proto, r.HTTPVersion)
	r.Headers = harHeaders(resp.Header)
	r.RedirectURL = resp.Header.Get("Location")
	for _, c := range resp.Cookies() {
		r.Cookies = append(r.Cookies, responseCookie(c))
	}
	r.BodySize = declaredLength(resp.Header, resp.ContentLength)
	if bodiless(req.Method, resp.StatusCode) {
		r.BodySize = 0
	}
	r.Content = p.content(resp.Header, &f.bodies[plugins.Down], r.BodySize)
	return r
}

// bodiless reports whether a response has no body whatever its header
// says.
func bodiless(method string, status int) bool {
	return method == http.MethodHead || status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
}

func responseCookie(c *http.Cookie) harCookie {
	hc := harCookie{Name: c.Name, Value: c.Value, Path: c.Path, Domain: c.Domain, HTTPOnly: c.HttpOnly, Secure: c.Secure}
	if !c.Expires.IsZero() {
		hc.Expires = c.Expires.UTC().Format(harTimeLayout)
	}
	return hc
}

// content is a response's content object: the decoded body's size and,
// when it was recorded, its text. bodySize is the body as it went over
// the wire, -1 if unknown.
func (p *Plugin) content(h http.Header, b *seenBody, bodySize int64) harContent {
	c := harContent{MimeType: h.Get("Content-Type"), Size: max(bodySize, 0)}
	if c.MimeType == "" {
		c.MimeType = "x-unknown"
	}
	if b.seen {
		c.Size = int64(b.size)
		if bodySize >= 0 && h.Get("Content-Encoding") != "" {
			c.Compression = c.Size - bodySize
		}
	}
	if b.data == nil {
		if bodySize != 0 {
			c.Comment = p.notRecorded(b)
		}
		return c
	}
	c.Text, c.Encoding = bodyText(b.data, mediaTypeOf(h))
	return c
}

// notRecorded says why a body's text is not in the entry.
func (p *Plugin) notRecorded(b *seenBody) string {
	limit := units.Size(p.harMax)
	switch {
	case b.seen:
		return fmt.Sprintf("body not recorded: %d bytes decoded, over har_max_body (%v)", b.size, limit)
	case b.wanted:
		return "body not recorded: over [limits] max_buffered_body_bytes, or in an encoding ferry does not decode"
	case p.harMax == 0:
		return "body not recorded: har_max_body is 0"
	}
	return fmt.Sprintf("body not recorded: streamed, its length over har_max_body (%v) or unknown for a type that is not text", limit)
}

// bodyText is a body as HAR text: as it is when it is UTF-8 of a
// textual type, else base64 with encoding "base64".
func bodyText(b []byte, mt string) (text, encoding string) {
	if textual(mt) && utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// harHeaders lists a header's fields by name, values in their order.
// Go's header map has lost the order of the names; sorting makes entries
// stable.
func harHeaders(h http.Header) []harNV {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]harNV, 0, len(names))
	for _, k := range names {
		for _, v := range h[k] {
			out = append(out, harNV{k, v})
		}
	}
	return out
}

// pairs splits a query string or a form body into its name/value pairs,
// in order, unescaped where they unescape (kept as they are where not).
func pairs(q string) []harNV {
	out := []harNV{}
	for part := range strings.SplitSeq(q, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		out = append(out, harNV{unescape(k), unescape(v)})
	}
	return out
}

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}
