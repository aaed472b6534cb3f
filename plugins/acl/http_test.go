package acl

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"ferry/plugins"
)

// flow is a request of an intercepted tunnel as ferry builds it: its own
// session, Parent the tunnel's id, Request with the full URL.
func flow(t testing.TB, method, rawURL string, header ...string) (*plugins.Session, *http.Request) {
	t.Helper()
	r := plainRequest(t, method, rawURL, header...)
	s := &plugins.Session{ID: "f1", Parent: "t1", Protocol: "http", Listener: "main", Log: zerolog.Nop(),
		Intercepted: r.URL.Hostname(), Target: net.JoinHostPort(r.URL.Hostname(), "443"), Request: r}
	s.Client = net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.50:40000"))
	return s, r
}

// plainRequest builds a request the way ferry's server parses one: the
// request target (which keeps its spelling in RawPath) on an absolute
// URL. header lists "Name: value" fields.
func plainRequest(t testing.TB, method, rawURL string, header ...string) *http.Request {
	t.Helper()
	scheme, rest, _ := strings.Cut(rawURL, "://")
	host, target := rest, "/"
	if i := strings.IndexAny(rest, "/\\"); i >= 0 {
		host, target = rest[:i], rest[i:]
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("parse %q: %v", target, err)
	}
	u.Scheme, u.Host = scheme, host
	r := &http.Request{Method: method, URL: u, Host: host, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	for _, h := range header {
		name, value, _ := strings.Cut(h, ":")
		r.Header.Add(name, strings.TrimSpace(value))
	}
	return r
}

// plainSession is a plain http:// request's session at OnConnect.
func plainSession(t *testing.T, method, rawURL string, header ...string) *plugins.Session {
	t.Helper()
	s, r := flow(t, method, rawURL, header...)
	s.Parent, s.Intercepted, s.Target = "", "", net.JoinHostPort(r.URL.Hostname(), "80")
	return s
}

// TestPathNormalisation is an attacker's table against a deny on /admin/:
// every spelling an origin reads as a path under /admin/ is refused.
func TestPathNormalisation(t *testing.T) {
	p := newACL(t, `default = "allow"
[[plugin.rule]]
action = "deny"
path = ["/admin/"]
`)
	tests := []struct {
		name, path, want string
	}{
		{"as written", "/admin/", "deny"},
		{"below", "/admin/users?id=1", "deny"},
		{"case differs: another path", "/Admin/", "allow"},
		{"double slash", "//admin/", "deny"},
		{"inner double slash", "/admin//x", "deny"},
		{"encoded letter", "/%61dmin/", "deny"},
		{"encoded lower hex", "/%61%64%6d%69%6e/", "deny"},
		{"dotdot back in", "/admin/../admin/", "deny"},
		{"dotdot from elsewhere", "/x/../admin/", "deny"},
		{"encoded dotdot", "/x/%2e%2e/admin/", "deny"},
		{"dot segment", "/./admin/./x", "deny"},
		{"encoded slash", "/admin%2Fsecret", "deny"},
		{"encoded backslash", "/admin%5csecret", "deny"},
		{"backslash", "/admin\\secret", "deny"},
		{"dotdot above root", "/../admin/", "deny"},
		{"no trailing slash", "/admin", "allow"},
		{"longer name", "/administrator/", "allow"},
		{"other path", "/public/", "allow"},
		{"dotdot out", "/admin/../public/", "allow"},
		{"double encoded", "/admin%252F", "allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, r := flow(t, "GET", "https://example.com"+tt.path)
			if got := outcome(t, p.OnHTTPRequest(s, r)); got != tt.want {
				t.Errorf("%s: got %s, want %s", tt.path, got, tt.want)
			}
			ps := plainSession(t, "GET", "http://example.com"+tt.path)
			if got := outcome(t, p.OnConnect(context.Background(), ps)); got != tt.want {
				t.Errorf("plain %s at OnConnect: got %s, want %s", tt.path, got, tt.want)
			}
		})
	}
}

// TestHTTPConditions checks method, scheme, header and path_regexp, each
// rule alone against requests of intercepted tunnels.
func TestHTTPConditions(t *testing.T) {
	tests := []struct {
		name, rule  string
		method, url string
		header      []string
		want        string
	}{
		{"method listed", `method = ["POST", "PUT"]`, "POST", "https://example.com/upload", nil, "deny"},
		{"method not listed", `method = ["POST", "PUT"]`, "GET", "https://example.com/upload", nil, "allow"},
		{"method case-sensitive", `method = ["POST"]`, "post", "https://example.com/", nil, "allow"},
		{"method and path", `method = ["POST"]
path = ["/upload"]`, "POST", "https://example.com/upload/x", nil, "deny"},
		{"method and other path", `method = ["POST"]
path = ["/upload"]`, "POST", "https://example.com/form", nil, "allow"},
		{"scheme https", `scheme = ["https"]`, "GET", "https://example.com/", nil, "deny"},
		{"scheme http", `scheme = ["https"]`, "GET", "http://example.com/", nil, "allow"},
		{"header present", `header = ["x-debug"]`, "GET", "https://example.com/", []string{"X-Debug: 1"}, "deny"},
		{"header present empty", `header = ["X-Debug"]`, "GET", "https://example.com/", []string{"X-Debug:"}, "deny"},
		{"header Host", `header = ["host"]`, "GET", "https://example.com/", nil, "deny"},
		{"header absent", `header = ["X-Debug"]`, "GET", "https://example.com/", []string{"X-Other: 1"}, "allow"},
		{"regexp on path", `path_regexp = ['^/api/v[0-9]+/admin']`, "GET", "https://example.com/api/v2/admin/x", nil, "deny"},
		{"regexp on cleaned path", `path_regexp = ['^/api/v[0-9]+/admin']`, "GET", "https://example.com/api//v2/x/../%61dmin", nil, "deny"},
		{"regexp with query", `path_regexp = ['\?(.*&)?debug=1(&|$)']`, "GET", "https://example.com/x?a=2&debug=1", nil, "deny"},
		{"regexp query absent", `path_regexp = ['\?']`, "GET", "https://example.com/x", nil, "allow"},
		{"regexp no match", `path_regexp = ['^/api/']`, "GET", "https://example.com/web/api/", nil, "allow"},
		{"regexp case-insensitive", `path_regexp = ['(?i)^/admin/']`, "GET", "https://example.com/ADMIN/", nil, "deny"},
		{"http and host", `domain = ["example.com"]
path = ["/a"]`, "GET", "https://other.example/a", nil, "allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newACL(t, "default = \"allow\"\n[[plugin.rule]]\naction = \"deny\"\n"+tt.rule+"\n")
			s, r := flow(t, tt.method, tt.url, tt.header...)
			if got := outcome(t, p.OnHTTPRequest(s, r)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestHTTPRulesSkipTunnels: a tunnel's connection (CONNECT, SOCKS, tcp,
// a UDP association) has no HTTP request, so no HTTP condition matches
// it, neither for a deny nor for an allow.
func TestHTTPRulesSkipTunnels(t *testing.T) {
	deny := newACL(t, `default = "allow"
rule = [
  { action = "deny", path = ["/"] },
  { action = "deny", method = ["CONNECT"] },
  { action = "deny", scheme = ["http", "https"] },
  { action = "deny", header = ["Host", "User-Agent"] },
  { action = "deny", path_regexp = [""] },
]`)
	allow := newACL(t, `default = "deny"
rule = [ { action = "allow", path = ["/"] } ]`)
	connectReq := &http.Request{Method: "CONNECT", URL: &url.URL{Host: "example.com:443"}, Host: "example.com:443",
		Header: http.Header{"User-Agent": {"curl"}}}
	for _, proto := range []string{"connect", "socks5", "socks4", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			s := req{target: "example.com:443"}.session()
			s.Protocol = proto
			if proto == "connect" {
				s.Request = connectReq
			}
			if got := connect(t, deny, s); got != "allow" {
				t.Errorf("deny on HTTP conditions: got %s, want allow", got)
			}
			if got := connect(t, allow, s); got != "deny" {
				t.Errorf("allow on HTTP conditions: got %s, want deny (the default)", got)
			}
		})
	}
	t.Run("udp association", func(t *testing.T) {
		s := req{target: "0.0.0.0:0"}.session()
		s.Protocol = plugins.ProtocolSOCKS5UDP
		if err := deny.OnConnect(context.Background(), s); err != nil {
			t.Errorf("association refused by HTTP rules: %v", err)
		}
		if err := deny.OnDestination(s, "example.com:53", netip.MustParseAddrPort("192.0.2.1:53")); err != nil {
			t.Errorf("destination refused by HTTP rules: %v", err)
		}
	})
}

// TestPlainHTTPAtConnect: a plain http:// request is decided at
// OnConnect, with its HTTP conditions and the two-phase dest logic, and
// OnHTTPRequest does not decide (or log) it again.
func TestPlainHTTPAtConnect(t *testing.T) {
	p := newACL(t, `default = "allow"
rule = [
  { action = "deny", path = ["/admin/"] },
  { action = "allow", path = ["/internal/"], dest = ["10.0.0.0/8"] },
  { action = "deny", dest = ["10.0.0.0/8"] },
]`)
	tests := []struct {
		name, url, connect string
		dial               map[string]string
	}{
		{name: "path denied before any dial", url: "http://example.com/admin/x", connect: "deny"},
		{name: "other path waits for the address", url: "http://example.com/", connect: "pending",
			dial: map[string]string{"10.1.1.1": "deny", "192.0.2.1": "allow"}},
		{name: "path and dest allow", url: "http://intranet.example/internal/a", connect: "pending",
			dial: map[string]string{"10.1.1.1": "allow", "192.0.2.1": "allow"}},
		{name: "path and dest on a literal", url: "http://10.1.1.1/internal/a", connect: "allow"},
		{name: "literal other path", url: "http://10.1.1.1/x", connect: "deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			s := plainSession(t, "GET", tt.url)
			s.Log = zerolog.New(&buf)
			if got := connect(t, p, s); got != tt.connect {
				t.Fatalf("OnConnect: got %s, want %s", got, tt.connect)
			}
			for addr, want := range tt.dial {
				ap := netip.AddrPortFrom(netip.MustParseAddr(addr), 80)
				if got := outcome(t, p.OnDial(s, ap)); got != want {
					t.Errorf("OnDial(%s): got %s, want %s", ap, got, want)
				}
			}
			before := buf.Len()
			if err := p.OnHTTPRequest(s, s.Request); err != nil {
				t.Errorf("OnHTTPRequest after OnConnect: %v", err)
			}
			if buf.Len() != before {
				t.Errorf("OnHTTPRequest decided again: %s", buf.String()[before:])
			}
		})
	}
	t.Run("changed after OnConnect", func(t *testing.T) {
		s := plainSession(t, "GET", "http://192.0.2.1/ok")
		if err := p.OnConnect(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		s.Request.URL.Path = "/admin/" // a plugin before acl rewrote it
		if got := outcome(t, p.OnHTTPRequest(s, s.Request)); got != "deny" {
			t.Errorf("rewritten request: got %s, want deny", got)
		}
	})
}

// TestFlowDest: a flow's rules with a dest condition are decided on the
// address the tunnel's direct connection went to; through an upstream
// proxy it is unknown and a verdict that waits for it allows.
func TestFlowDest(t *testing.T) {
	p := newACL(t, `default = "allow"
rule = [ { action = "deny", dest = ["10.0.0.0/8"], path = ["/admin/"] } ]`)
	tests := []struct {
		name, addr, via, want string
	}{
		{"direct inside", "10.1.1.1:443", "", "deny"},
		{"direct outside", "192.0.2.1:443", "", "allow"},
		{"through an upstream proxy", "10.9.9.9:3128", "corp", "allow"},
		{"address unknown", "", "", "allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, r := flow(t, "GET", "https://intranet.example/admin/")
			if tt.addr != "" {
				s.UpstreamAddr = net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.addr))
			}
			s.UpstreamPath = tt.via
			if got := outcome(t, p.OnHTTPRequest(s, r)); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// TestDenyAnswer checks the answer an HTTP client gets: deny_status and
// deny_body, or 403 and the text naming the rule; the log line and the
// error keep saying which rule refused.
func TestDenyAnswer(t *testing.T) {
	tests := []struct {
		name, conf string
		status     int
		body       string
	}{
		{"default", "", http.StatusForbidden, "blocked by acl: rule[1]\n"},
		{"chosen", "deny_status = 451\ndeny_body = \"not here\\n\"\n", 451, "not here\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newACL(t, tt.conf+`default = "allow"
rule = [
  { action = "allow", path = ["/admin/public/"] },
  { action = "deny", path = ["/admin/"] },
]`)
			s, r := flow(t, "GET", "https://example.com/admin/x")
			err := p.OnHTTPRequest(s, r)
			checkAnswer(t, err, tt.status, tt.body)
			ps := plainSession(t, "GET", "http://example.com/admin/x")
			checkAnswer(t, p.OnConnect(context.Background(), ps), tt.status, tt.body)
		})
	}
	t.Run("tunnel keeps its refusal", func(t *testing.T) {
		p := newACL(t, `default = "deny"`)
		err := p.OnConnect(context.Background(), req{target: "example.com:443"}.session())
		if a := plugins.AnswerOf(err); a != nil || plugins.CodeOf(err) != plugins.CodeForbidden {
			t.Errorf("CONNECT refusal: answer %+v, code %v; want none, forbidden", a, plugins.CodeOf(err))
		}
	})
}

func checkAnswer(t *testing.T, err error, status int, body string) {
	t.Helper()
	a := plugins.AnswerOf(err)
	if a == nil {
		t.Fatalf("error %v carries no answer", err)
	}
	if a.Status != status || string(a.Body) != body {
		t.Errorf("answer %d %q, want %d %q", a.Status, a.Body, status, body)
	}
	if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text/plain", ct)
	}
	if plugins.CodeOf(err) != plugins.CodeForbidden || !strings.Contains(err.Error(), "acl: denied by rule[1]") {
		t.Errorf("error %q (code %v), want forbidden, acl: denied by rule[1]", err, plugins.CodeOf(err))
	}
}

// BenchmarkOnHTTPRequest is the cost per intercepted request of five
// rules, the last deciding: a clean path and one that needs cleaning.
func BenchmarkOnHTTPRequest(b *testing.B) {
	p := newACL(b, `default = "allow"
rule = [
  { action = "deny", domain = [".ads.example"] },
  { action = "deny", method = ["DELETE"] },
  { action = "deny", header = ["X-Debug"] },
  { action = "deny", path_regexp = ['^/api/v[0-9]+/internal'] },
  { action = "allow", path = ["/static/"] },
]`)
	for _, path := range []string{"/static/app.js?v=3", "/static//x/../%61pp.js"} {
		b.Run(path, func(b *testing.B) {
			s, r := flow(b, "GET", "https://example.com"+path, "User-Agent: bench", "Accept: */*")
			b.ReportAllocs()
			for b.Loop() {
				if err := p.OnHTTPRequest(s, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
