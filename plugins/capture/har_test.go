package capture

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/httpbody"
	"ferry/plugins/pkg/units"
)

// The HAR file as a consumer reads it: the spec's names, declared here
// apart from the writer's types so that a misspelt tag shows.
type harDoc struct {
	Log struct {
		Version string `json:"version"`
		Creator struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"creator"`
		Entries []harDocEntry `json:"entries"`
	} `json:"log"`
}

type harDocEntry struct {
	StartedDateTime string `json:"startedDateTime"`
	Time            float64
	Request         struct {
		Method      string
		URL         string `json:"url"`
		HTTPVersion string `json:"httpVersion"`
		Headers     []harNV
		QueryString []harNV `json:"queryString"`
		Cookies     []harCookie
		HeadersSize int64 `json:"headersSize"`
		BodySize    int64 `json:"bodySize"`
		PostData    *struct {
			MimeType string `json:"mimeType"`
			Text     string
			Params   []harNV
			Comment  string
			Encoding string `json:"_encoding"`
		} `json:"postData"`
	}
	Response struct {
		Status      int
		StatusText  string `json:"statusText"`
		HTTPVersion string `json:"httpVersion"`
		Headers     []harNV
		Cookies     []harCookie
		Content     struct {
			Size        int64
			Compression int64
			MimeType    string `json:"mimeType"`
			Text        string
			Encoding    string
			Comment     string
		}
		RedirectURL string `json:"redirectURL"`
		HeadersSize int64  `json:"headersSize"`
		BodySize    int64  `json:"bodySize"`
		Comment     string
	}
	Cache           *struct{}
	Timings         map[string]float64
	ServerIPAddress string `json:"serverIPAddress"`
	Connection      string
	Ferry           struct {
		Session, Parent, User, Listener, Intercepted, Reason string
		BytesUp                                              int64 `json:"bytes_up"`
		BytesDown                                            int64 `json:"bytes_down"`
	} `json:"_ferry"`
}

func readHar(t *testing.T, path string) harDoc {
	t.Helper()
	raw := mustRead(t, path)
	var doc harDoc
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s is not JSON: %v\n%.300s", path, err, raw)
	}
	if dec.More() {
		t.Fatalf("%s: more after the document", path)
	}
	if doc.Log.Version != "1.2" || doc.Log.Creator.Name != "ferry" || doc.Log.Creator.Version == "" {
		t.Fatalf("log: version %q creator %+v; want 1.2, ferry", doc.Log.Version, doc.Log.Creator)
	}
	return doc
}

// startHar starts an instance with a HAR file (and cfg's other settings).
func startHar(t *testing.T, cfg Config) (p *Plugin, path string, stop func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "flows.har")
	cfg.Har = path
	p, stop = startCapture(t, cfg)
	return p, path, stop
}

// exchange is one flow as the hooks see it.
type exchange struct {
	s        *plugins.Session
	req      *http.Request
	reqBody  []byte // decoded; nil: none
	resp     *http.Response
	respBody []byte // decoded
	stats    plugins.Stats
}

// run drives an exchange through p's hooks in the order ferry calls
// them, then OnClose, and reports what WantsHTTPBody said.
func (ex *exchange) run(t *testing.T, p *Plugin) (wantUp, wantDown bool) {
	t.Helper()
	s := ex.s
	if err := p.OnHTTPRequest(s, ex.req); err != nil {
		t.Fatal(err)
	}
	if ex.reqBody != nil {
		m := &plugins.HTTPMessage{Dir: plugins.Up, Request: ex.req}
		if wantUp = p.WantsHTTPBody(s, m); wantUp {
			out, err := p.OnHTTPBody(s, m, ex.reqBody)
			if err != nil || !bytes.Equal(out, ex.reqBody) {
				t.Fatalf("OnHTTPBody: got %q, %v; want the body unchanged", out, err)
			}
		}
	}
	if ex.resp != nil {
		if err := p.OnHTTPResponse(s, ex.req, ex.resp); err != nil {
			t.Fatal(err)
		}
		m := &plugins.HTTPMessage{Dir: plugins.Down, Request: ex.req, Response: ex.resp}
		if ex.respBody != nil {
			if wantDown = p.WantsHTTPBody(s, m); wantDown {
				p.OnHTTPBody(s, m, ex.respBody)
			}
		}
	}
	p.OnClose(s, ex.stats)
	return wantUp, wantDown
}

func flowSession(id string) *plugins.Session {
	return &plugins.Session{ID: id, Listener: "main", Protocol: "http", Target: "example.com:80", Log: zerolog.Nop()}
}

func newRequest(t *testing.T, method, rawURL string, h http.Header, bodyLen int64) *http.Request {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	if h == nil {
		h = http.Header{}
	}
	return &http.Request{Method: method, URL: u, Host: u.Host, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, ContentLength: bodyLen}
}

func newResponse(status int, h http.Header, bodyLen int64) *http.Response {
	if h == nil {
		h = http.Header{}
	}
	return &http.Response{StatusCode: status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h, ContentLength: bodyLen}
}

// sampleFlows are flows of every kind an entry describes: plain and
// intercepted, gzip, binary, over har_max_body (4KiB), streamed, refused
// before and after the response, HEAD, a form. Their checks are in
// TestHarEntries.
func sampleFlows(t *testing.T) []*exchange {
	t.Helper()
	start := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	gz, err := httpbody.Encode("gzip", samplePage)
	if err != nil {
		t.Fatal(err)
	}
	plain := flowSession("c1")
	plain.User = "alice"
	plain.UpstreamAddr = net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:192.0.2.7]:80"))
	get := newRequest(t, "GET", "http://example.com/a?x=1&y=a%20b&flag", http.Header{"Cookie": {"sid=abc; theme=dark"}, "Accept": {"text/html"}}, 0)
	getResp := newResponse(200, http.Header{
		"Content-Type": {"text/html; charset=utf-8"}, "Content-Encoding": {"gzip"},
		"Content-Length": {fmt.Sprint(len(gz))}, "Set-Cookie": {"sid=new; Path=/; HttpOnly; Secure; Expires=Wed, 09 Jun 2027 10:18:14 GMT"},
	}, int64(len(gz)))

	flowS := flowSession("f7")
	flowS.Parent, flowS.Intercepted, flowS.User = "t3", "example.com", "bob"
	post := newRequest(t, "POST", "https://example.com/api/items", http.Header{"Content-Type": {"application/json"}}, int64(len(sampleJSON)))
	post.Proto, post.ProtoMajor, post.ProtoMinor = "HTTP/2.0", 2, 0
	postResp := newResponse(201, http.Header{"Content-Type": {"application/json"}}, -1)
	postResp.Proto = "HTTP/2.0"

	exchanges := []*exchange{
		{s: plain, req: get, resp: getResp, respBody: samplePage,
			stats: plugins.Stats{Start: start, Duration: 250 * time.Millisecond, Reason: plugins.ReasonClientClosed, Up: 120, Down: 900}},
		{s: flowS, req: post, reqBody: sampleJSON, resp: postResp, respBody: []byte(`{"id":42}`),
			stats: plugins.Stats{Start: start.Add(time.Second), Duration: 10 * time.Millisecond}},
		{s: flowSession("c2"), req: newRequest(t, "GET", "http://example.com/logo.png", nil, 0),
			resp: newResponse(200, http.Header{"Content-Type": {"image/png"}}, int64(len(samplePNG))), respBody: samplePNG},
		{s: flowSession("c3"), req: newRequest(t, "GET", "http://example.com/big.txt", nil, 0),
			resp: newResponse(200, http.Header{"Content-Type": {"text/plain"}}, -1), respBody: bytes.Repeat([]byte("x"), 5<<10)},
		{s: flowSession("c4"), req: newRequest(t, "GET", "http://example.com/dl.bin", nil, 0),
			resp: newResponse(200, http.Header{"Content-Type": {"application/octet-stream"}}, -1), respBody: []byte("zz")},
		{s: flowSession("c5"), req: newRequest(t, "GET", "http://example.com/admin", nil, 0),
			stats: plugins.Stats{Reason: plugins.ReasonRejected, Err: errors.New("acl: denied")}},
		{s: flowSession("c6"), req: newRequest(t, "HEAD", "http://example.com/old", nil, 0),
			resp: newResponse(301, http.Header{"Location": {"http://example.com/new"}, "Content-Length": {"120"}}, 120)},
		{s: flowSession("c8"), req: newRequest(t, "GET", "http://example.com/secret", nil, 0),
			resp: newResponse(200, http.Header{"Content-Type": {"text/plain"}}, 0), stats: plugins.Stats{Reason: plugins.ReasonRejected}},
		{s: flowSession("c7"), req: newRequest(t, "POST", "http://example.com/form", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, 11),
			reqBody: []byte("a=1&b=x+y%21"), resp: newResponse(204, nil, 0)},
	}
	exchanges[5].s.Status = http.StatusForbidden
	exchanges[7].s.Status = http.StatusForbidden // a response hook after capture refused it
	return exchanges
}

var (
	samplePage = []byte(strings.Repeat("<p>hello</p>", 100))
	sampleJSON = []byte(`{"name":"ferry","n":1}`)
	samplePNG  = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
)

// writeSample runs the sample flows into a new HAR file and returns its
// path.
func writeSample(t *testing.T) string {
	t.Helper()
	p, path, stop := startHar(t, Config{HarMaxBody: size(4 << 10)})
	for _, ex := range sampleFlows(t) {
		wantUp, wantDown := ex.run(t, p)
		if ex.s.ID == "c4" && wantDown {
			t.Error("c4: a streaming binary body of unknown length was asked for")
		}
		if ex.s.ID == "f7" && (!wantUp || !wantDown) {
			t.Errorf("f7: WantsHTTPBody %v %v, want both", wantUp, wantDown)
		}
	}
	stop()
	return path
}

func TestHarEntries(t *testing.T) {
	path := writeSample(t)

	if !bytes.Contains(mustRead(t, path), []byte("<p>hello</p>")) {
		t.Error("HTML is escaped in the file: it should read as it is")
	}
	doc := readHar(t, path)
	if len(doc.Log.Entries) != 9 {
		t.Fatalf("got %d entries, want 9", len(doc.Log.Entries))
	}
	es := doc.Log.Entries
	checkPlainGet(t, es[0])
	checkIntercepted(t, es[1])
	checkBodies(t, es[2:5])
	checkNoResponse(t, es[5])
	checkHeadAndForm(t, es[6], es[8])
	if rs := es[7].Response; rs.Status != 200 || rs.Comment != "the client got 403 from ferry instead: rejected" {
		t.Errorf("refused response: status %d comment %q", rs.Status, rs.Comment)
	}
	for i, e := range es {
		if e.Cache == nil || e.Request.HeadersSize != -1 || e.Response.HeadersSize != -1 {
			t.Errorf("entry %d: cache %v headersSize %d/%d; want {} and -1", i, e.Cache, e.Request.HeadersSize, e.Response.HeadersSize)
		}
		for _, k := range []string{"send", "wait", "receive"} {
			if v, ok := e.Timings[k]; !ok || v < 0 {
				t.Errorf("entry %d: timings.%s = %v (present %v), want >= 0", i, k, v, ok)
			}
		}
		if sum := e.Timings["send"] + e.Timings["wait"] + e.Timings["receive"]; fmt.Sprintf("%.3f", sum) != fmt.Sprintf("%.3f", e.Time) {
			t.Errorf("entry %d: time %v, timings sum to %v", i, e.Time, sum)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.StartedDateTime); err != nil {
			t.Errorf("entry %d: startedDateTime: %v", i, err)
		}
	}
}

func checkPlainGet(t *testing.T, e harDocEntry) {
	t.Helper()
	page := samplePage
	gz, _ := httpbody.Encode("gzip", page)
	wire := len(gz)
	if e.StartedDateTime != "2026-12-05T08:00:00.000Z" || e.Time != 250 {
		t.Errorf("started %s time %v, want 2026-12-05T08:00:00.000Z and 250", e.StartedDateTime, e.Time)
	}
	rq := e.Request
	if rq.Method != "GET" || rq.URL != "http://example.com/a?x=1&y=a%20b&flag" || rq.HTTPVersion != "HTTP/1.1" || rq.BodySize != 0 || rq.PostData != nil {
		t.Errorf("request %+v", rq)
	}
	wantQ := []harNV{{"x", "1"}, {"y", "a b"}, {"flag", ""}}
	if fmt.Sprint(rq.QueryString) != fmt.Sprint(wantQ) {
		t.Errorf("queryString %v, want %v", rq.QueryString, wantQ)
	}
	if fmt.Sprint(rq.Cookies) != fmt.Sprint([]harCookie{{Name: "sid", Value: "abc"}, {Name: "theme", Value: "dark"}}) {
		t.Errorf("request cookies %+v", rq.Cookies)
	}
	if len(rq.Headers) == 0 || rq.Headers[0] != (harNV{"Host", "example.com"}) {
		t.Errorf("request headers %v, want Host first", rq.Headers)
	}
	rs := e.Response
	c := rs.Content
	if rs.Status != 200 || rs.StatusText != "OK" || rs.BodySize != int64(wire) || c.Size != int64(len(page)) ||
		c.Compression != int64(len(page)-wire) || c.Text != string(page) || c.Encoding != "" || c.MimeType != "text/html; charset=utf-8" {
		t.Errorf("response %+v", rs)
	}
	if len(rs.Cookies) != 1 || !rs.Cookies[0].HTTPOnly || !rs.Cookies[0].Secure || rs.Cookies[0].Path != "/" || rs.Cookies[0].Expires != "2027-06-09T10:18:14.000Z" {
		t.Errorf("response cookies %+v", rs.Cookies)
	}
	if e.ServerIPAddress != "192.0.2.7" || e.Connection != "c1" {
		t.Errorf("serverIPAddress %q connection %q, want 192.0.2.7 c1", e.ServerIPAddress, e.Connection)
	}
	f := e.Ferry
	if f.Session != "c1" || f.User != "alice" || f.Parent != "" || f.Reason != plugins.ReasonClientClosed.String() || f.BytesUp != 120 || f.BytesDown != 900 {
		t.Errorf("_ferry %+v", f)
	}
}

func checkIntercepted(t *testing.T, e harDocEntry) {
	t.Helper()
	body := sampleJSON
	rq := e.Request
	if rq.URL != "https://example.com/api/items" || rq.HTTPVersion != "HTTP/2.0" || rq.BodySize != int64(len(body)) {
		t.Errorf("request %+v", rq)
	}
	for _, h := range rq.Headers {
		if h.Name == "Host" {
			t.Errorf("HTTP/2 request lists a Host header")
		}
	}
	if pd := rq.PostData; pd == nil || pd.MimeType != "application/json" || pd.Text != string(body) || pd.Encoding != "" {
		t.Errorf("postData %+v", rq.PostData)
	}
	if rs := e.Response; rs.Status != 201 || rs.HTTPVersion != "HTTP/2.0" || rs.BodySize != -1 || rs.Content.Text != `{"id":42}` || rs.Content.Size != 9 {
		t.Errorf("response %+v", rs)
	}
	if e.Connection != "t3" || e.Ferry.Session != "f7" || e.Ferry.Parent != "t3" || e.Ferry.Intercepted != "example.com" || e.Ferry.User != "bob" {
		t.Errorf("connection %q _ferry %+v", e.Connection, e.Ferry)
	}
	if e.Time != 10 {
		t.Errorf("time %v, want 10", e.Time)
	}
}

func checkBodies(t *testing.T, es []harDocEntry) {
	t.Helper()
	png := samplePNG
	c := es[0].Response.Content
	if got, _ := base64.StdEncoding.DecodeString(c.Text); c.Encoding != "base64" || !bytes.Equal(got, png) || c.Size != int64(len(png)) {
		t.Errorf("binary content %+v", c)
	}
	c = es[1].Response.Content
	if c.Text != "" || c.Size != 5<<10 || !strings.Contains(c.Comment, "over har_max_body (4KiB)") {
		t.Errorf("over har_max_body: content %+v", c)
	}
	c = es[2].Response.Content
	if c.Text != "" || !strings.Contains(c.Comment, "streamed") || es[2].Response.BodySize != -1 {
		t.Errorf("streamed: content %+v bodySize %d", c, es[2].Response.BodySize)
	}
}

func checkNoResponse(t *testing.T, e harDocEntry) {
	t.Helper()
	rs := e.Response
	if rs.Status != 403 || rs.StatusText != "Forbidden" || !strings.Contains(rs.Comment, "acl: denied") || rs.Content.MimeType == "" {
		t.Errorf("refused: response %+v", rs)
	}
	if e.Ferry.Reason != plugins.ReasonRejected.String() {
		t.Errorf("refused: _ferry %+v", e.Ferry)
	}
}

func checkHeadAndForm(t *testing.T, head, form harDocEntry) {
	t.Helper()
	if rs := head.Response; rs.Status != 301 || rs.BodySize != 0 || rs.RedirectURL != "http://example.com/new" || rs.Content.Comment != "" {
		t.Errorf("HEAD: response %+v", rs)
	}
	pd := form.Request.PostData
	want := []harNV{{"a", "1"}, {"b", "x y!"}}
	if pd == nil || pd.Text != "a=1&b=x+y%21" || fmt.Sprint(pd.Params) != fmt.Sprint(want) {
		t.Errorf("form: postData %+v, want params %v", pd, want)
	}
	if form.Response.Status != 204 || form.Response.BodySize != 0 {
		t.Errorf("form: response %+v", form.Response)
	}
}

// TestHarWantsBody: bodies are asked for only when they can be recorded
// without buffering a download.
func TestHarWantsBody(t *testing.T) {
	tests := []struct {
		name   string
		max    units.Size
		ctype  string
		length string // Content-Length; "" none
		field  int64
		want   bool
	}{
		{"small declared", units.KiB, "application/octet-stream", "1000", 1000, true},
		{"declared over", units.KiB, "text/html", "2000", 2000, false},
		{"declared by field", units.KiB, "image/png", "", 100, true},
		{"unknown text", units.KiB, "text/html; charset=utf-8", "", -1, true},
		{"unknown json", units.KiB, "application/problem+json", "", -1, true},
		{"unknown javascript", units.KiB, "application/javascript", "", -1, true},
		{"unknown xml", units.KiB, "application/atom+xml", "", -1, true},
		{"unknown form", units.KiB, "application/x-www-form-urlencoded", "", -1, true},
		{"unknown binary", units.KiB, "video/mp4", "", -1, false},
		{"unknown, no type", units.KiB, "", "", -1, false},
		{"har_max_body 0", 0, "text/html", "10", 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _, _ := startHar(t, Config{HarMaxBody: &tt.max})
			h := http.Header{}
			if tt.ctype != "" {
				h.Set("Content-Type", tt.ctype)
			}
			if tt.length != "" {
				h.Set("Content-Length", tt.length)
			}
			req := newRequest(t, "GET", "http://example.com/", nil, 0)
			m := &plugins.HTTPMessage{Dir: plugins.Down, Request: req, Response: newResponse(200, h, tt.field)}
			if got := p.WantsHTTPBody(flowSession("w1"), m); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestHarHooksByConfig: an instance without a pcapng file hooks no data
// (the splice path stays), one without a HAR file asks for no body.
func TestHarHooksByConfig(t *testing.T) {
	dir := t.TempDir()
	harOnly, _ := startCapture(t, Config{Har: filepath.Join(dir, "a.har")})
	if ds := plugins.DataDirectionsOf(harOnly); ds != plugins.NoData {
		t.Errorf("har only: data directions %v, want none", ds)
	}
	pcapOnly, _ := startCapture(t, Config{File: filepath.Join(dir, "a.pcapng")})
	if ds := plugins.DataDirectionsOf(pcapOnly); ds != plugins.BothData {
		t.Errorf("pcapng only: data directions %v, want both", ds)
	}
	m := &plugins.HTTPMessage{Dir: plugins.Down, Request: newRequest(t, "GET", "http://x/", nil, 0),
		Response: newResponse(200, http.Header{"Content-Type": {"text/html"}}, 10)}
	if pcapOnly.WantsHTTPBody(flowSession("h1"), m) {
		t.Error("pcapng only: WantsHTTPBody said yes")
	}
	s := flowSession("h2")
	ex := &exchange{s: s, req: m.Request, resp: m.Response}
	ex.run(t, pcapOnly)
	if s.Value(flowKey{pcapOnly}) != nil {
		t.Error("pcapng only: the HTTP hooks kept state")
	}
}

// TestHarFlowNotInPcapng: an intercepted flow's session ends without
// data of its own; the pcapng file gets no connection for it.
func TestHarFlowNotInPcapng(t *testing.T) {
	dir := t.TempDir()
	p, stop := startCapture(t, Config{File: filepath.Join(dir, "c.pcapng"), Har: filepath.Join(dir, "c.har")})
	s := flowSession("f1")
	s.Parent, s.Intercepted = "t1", "example.com"
	ex := &exchange{s: s, req: newRequest(t, "GET", "https://example.com/", nil, 0), resp: newResponse(204, nil, 0),
		stats: plugins.Stats{Reason: plugins.ReasonClientClosed}}
	ex.run(t, p)
	stop()
	if n := len(readCapture(t, filepath.Join(dir, "c.pcapng")).packets); n != 0 {
		t.Errorf("pcapng: %d packets, want none", n)
	}
	if n := len(readHar(t, filepath.Join(dir, "c.har")).Log.Entries); n != 1 {
		t.Errorf("HAR: %d entries, want 1", n)
	}
}

// TestHarNotHTTP: tunnels and SOCKS channels are no HAR entries.
func TestHarNotHTTP(t *testing.T) {
	p, path, stop := startHar(t, Config{})
	p.OnClose(session("t1", "127.0.0.1:1", "example.com:443"), plugins.Stats{Reason: plugins.ReasonClientClosed})
	s := flowSession("h1")
	s.Request = nil
	p.OnClose(s, plugins.Stats{})
	stop()
	if n := len(readHar(t, path).Log.Entries); n != 0 {
		t.Errorf("got %d entries, want none", n)
	}
}

// addFlows runs n simple flows through p, ids prefixed.
func addFlows(t *testing.T, p *Plugin, prefix string, n int) {
	t.Helper()
	for i := range n {
		ex := &exchange{s: flowSession(fmt.Sprintf("%s-%d", prefix, i)),
			req:  newRequest(t, "GET", fmt.Sprintf("http://example.com/%s/%d", prefix, i), nil, 0),
			resp: newResponse(200, http.Header{"Content-Type": {"text/plain"}}, 5), respBody: []byte("hello")}
		ex.run(t, p)
	}
}

// TestHarValidAfterEveryEntry: the file is a whole HAR document after
// each entry, and with many flows ending at once no entry is lost.
func TestHarValidAfterEveryEntry(t *testing.T) {
	p, path, stop := startHar(t, Config{})
	if n := len(readHar(t, path).Log.Entries); n != 0 {
		t.Fatalf("new file: %d entries", n)
	}
	for i := range 3 {
		addFlows(t, p, fmt.Sprint("seq", i), 1)
		if n := len(readHar(t, path).Log.Entries); n != i+1 {
			t.Fatalf("after %d flows: %d entries", i+1, n)
		}
	}
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { addFlows(t, p, fmt.Sprint("w", w), each) })
	}
	wg.Wait()
	stop()
	doc := readHar(t, path)
	seen := map[string]bool{}
	for _, e := range doc.Log.Entries {
		seen[e.Ferry.Session] = true
	}
	if want := 3 + workers*each; len(doc.Log.Entries) != want || len(seen) != want {
		t.Fatalf("got %d entries (%d sessions), want %d", len(doc.Log.Entries), len(seen), want)
	}
}

// TestHarReopen: a HAR file ferry wrote goes on with its entries after a
// restart, and an old and a new configuration (a reload) writing one
// file at once keep it whole; other files are refused untouched.
func TestHarReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flows.har")
	a, stopA := startCapture(t, Config{Har: path})
	addFlows(t, a, "first", 2)
	stopA()
	a, stopA = startCapture(t, Config{Har: path})
	b, stopB := startCapture(t, Config{Har: path}) // the reload's new services
	var wg sync.WaitGroup
	wg.Go(func() { addFlows(t, a, "old", 40) })
	wg.Go(func() { addFlows(t, b, "new", 40) })
	wg.Wait()
	stopA()
	stopB()
	if n := len(readHar(t, path).Log.Entries); n != 82 {
		t.Fatalf("got %d entries, want 82", n)
	}

	for _, junk := range []string{"precious notes\n", `{"log":{"version":"1.2","creator":{"name":"ferry","version":"x"},"entries":[`} {
		other := filepath.Join(dir, "other.har")
		os.WriteFile(other, []byte(junk), 0o644)
		svcs := plugins.NewServices()
		if _, err := New(newEnv("c", svcs, Config{Har: other})); err != nil {
			t.Fatal(err)
		}
		err := svcs.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "not a HAR file that ferry writes") {
			t.Fatalf("%q: Start got %v, want a refusal", junk, err)
		}
		if got := string(mustRead(t, other)); got != junk {
			t.Fatalf("a refused file was changed to %q", got)
		}
	}
}

func TestHarRotation(t *testing.T) {
	const rotateSize = 4 << 10
	for _, keep := range []int{2, 0} {
		t.Run(fmt.Sprint("keep ", keep), func(t *testing.T) {
			p, path, stop := startHar(t, Config{RotateSize: size(rotateSize), RotateKeep: &keep})
			addFlows(t, p, "r", 30) // about 1KiB each
			stop()
			total := 0
			for i := 0; i <= keep; i++ {
				name := path
				if i > 0 {
					name = fmt.Sprintf("%s.%d", path, i)
				}
				fi, err := os.Stat(name)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > rotateSize {
					t.Errorf("%s: %d bytes, over rotate_size", name, fi.Size())
				}
				n := len(readHar(t, name).Log.Entries)
				if n == 0 {
					t.Errorf("%s: no entries", name)
				}
				total += n
			}
			if _, err := os.Stat(fmt.Sprintf("%s.%d", path, keep+1)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("file %d past rotate_keep: %v", keep+1, err)
			}
			if last := readHar(t, path).Log.Entries; last[len(last)-1].Ferry.Session != "r-29" {
				t.Errorf("newest file ends with %s, want r-29", last[len(last)-1].Ferry.Session)
			}
			if keep > 0 && total >= 30 {
				t.Errorf("%d entries kept in %d files; rotation dropped none", total, keep+1)
			}
		})
	}
}

// TestHarWriteError: a HAR file that cannot be written stops the HAR
// capture with one error line; Stop reports it.
func TestHarWriteError(t *testing.T) {
	var logBuf bytes.Buffer
	h := &harService{path: filepath.Join(t.TempDir(), "x.har"), version: "t", log: zerolog.New(&logBuf)}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := &Plugin{name: "capture", har: h, harMax: 1 << 10}
	h.mu.Lock()
	h.f.Close() // the disk goes away
	h.mu.Unlock()
	addFlows(t, p, "e", 3)
	err := h.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "write HAR file") {
		t.Errorf("Stop: got %v, want the write error", err)
	}
	if n := strings.Count(logBuf.String(), "HAR capture stopped"); n != 1 {
		t.Errorf("got %d error lines, want 1:\n%s", n, logBuf.String())
	}
}

// TestSharedHarFile: instances naming one HAR file share it; a path is
// not a pcapng file of one instance and the HAR file of another.
func TestSharedHarFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.har")
	svcs := plugins.NewServices()
	a, err := New(newEnv("a", svcs, Config{Har: path}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(newEnv("b", svcs, Config{Har: path, HarMaxBody: size(10)}))
	if err != nil || a.(*Plugin).har != b.(*Plugin).har {
		t.Fatalf("same HAR file: %v, shared %v", err, err == nil && a.(*Plugin).har == b.(*Plugin).har)
	}
	if _, err := New(newEnv("c", svcs, Config{File: path})); err == nil || !strings.HasPrefix(err.Error(), "file: ") {
		t.Errorf("pcapng on a HAR file: got %v", err)
	}
	if _, err := New(newEnv("d", svcs, Config{File: filepath.Join(dir, "p")})); err != nil {
		t.Fatal(err)
	}
	if _, err := New(newEnv("e", svcs, Config{Har: filepath.Join(dir, "p")})); err == nil || !strings.HasPrefix(err.Error(), "har: ") {
		t.Errorf("HAR on a pcapng file: got %v", err)
	}
	if _, err := New(newEnv("f", svcs, Config{Har: path, RotateSize: size(units.MiB)})); err == nil || !strings.Contains(err.Error(), "rotates it differently") {
		t.Errorf("other rotation: got %v", err)
	}
}

// FuzzHarEntry: whatever a request and response carry (query strings,
// cookies, header values, bodies of any bytes and type), the entry is
// valid JSON that reads back.
func FuzzHarEntry(f *testing.F) {
	f.Add("a=1&b=%zz&&=x", "sid=1; bad", "text/html; charset=\"x", []byte("<p>\xff\xfe</p>"), "k=v; Path=/; Expires=x")
	f.Add("", "", "application/x-www-form-urlencoded", []byte("a=%&b=\x00"), "")
	f.Fuzz(func(t *testing.T, query, cookie, ctype string, body []byte, setCookie string) {
		if len(body) > 4096 {
			return
		}
		p := &Plugin{name: "capture", harMax: 1 << 10}
		p.har = &harService{} // not started: entries are built, not written
		req := &http.Request{Method: "POST", URL: &url.URL{Scheme: "http", Host: "x", Path: "/", RawQuery: query},
			Proto: "HTTP/1.1", ProtoMajor: 1, Header: http.Header{"Cookie": {cookie}, "Content-Type": {ctype}, "X": {string(body)}}, ContentLength: -1}
		resp := newResponse(200, http.Header{"Content-Type": {ctype}, "Set-Cookie": {setCookie}}, -1)
		ex := &exchange{s: flowSession("z"), req: req, reqBody: body, resp: resp, respBody: body}
		ex.run(t, p)
		e := p.harEntryOf(ex.s, plugins.Stats{})
		var got harDocEntry
		if err := json.Unmarshal(e, &got); err != nil {
			t.Fatalf("entry is not JSON: %v\n%s", err, e)
		}
		if got.Request.URL == "" || got.Response.Status != 200 {
			t.Fatalf("entry %s", e)
		}
	})
}

// BenchmarkHarFlow is one small flow's hooks, its entry built and
// appended to the file.
func BenchmarkHarFlow(b *testing.B) {
	t := &testing.T{}
	path := filepath.Join(b.TempDir(), "b.har")
	svcs := plugins.NewServices()
	pl, err := New(newEnv("capture", svcs, Config{Har: path}))
	if err != nil {
		b.Fatal(err)
	}
	if err := svcs.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer svcs.Stop(context.Background())
	p := pl.(*Plugin)
	body := []byte(strings.Repeat("<p>hello</p>", 85)) // about 1KiB
	b.ReportAllocs()
	for b.Loop() {
		ex := &exchange{s: flowSession("b"), req: newRequest(t, "GET", "http://example.com/a?x=1", http.Header{"Accept": {"*/*"}}, 0),
			resp: newResponse(200, http.Header{"Content-Type": {"text/html"}, "Content-Length": {"1020"}}, 1020), respBody: body}
		ex.run(t, p)
	}
}
