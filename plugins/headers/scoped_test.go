package headers

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"ferry/plugins"
)

const scopedConf = `set = { "X-Top" = "1" }
[[plugin.rule]]
host = ["api.example.com"]
set = { "X-Debug" = "1" }
[[plugin.rule]]
host = [".tracker.example"]
remove = ["Cookie"]
response = { remove = ["Set-Cookie"] }
[[plugin.rule]]
host = ["*.example.com"]
path = ["/v1/"]
add = { "X-Scope" = "v1" }
response = { set = { "X-Scope" = "v1" } }
[[plugin.rule]]
path = ["/private/"]
set = { "X-Debug" = "private" }
response = { add = { "Cache-Control" = "no-store" } }
`

// request builds a request as ferry hands it to the hooks: a plain
// http:// one, or a flow's with the full https:// URL.
func request(t *testing.T, rawURL string) *http.Request {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Request{Method: "GET", URL: u, Host: u.Host, ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Cookie": {"id=1"}, "X-Scope": {"client"}}}
}

func TestScopedRules(t *testing.T) {
	p := buildAny(t, scopedConf).(*ResponsePlugin)
	tests := []struct {
		name, url string
		req       map[string]string // "" means absent
		resp      map[string]string
	}{
		{name: "api host", url: "https://api.example.com/x",
			req:  map[string]string{"X-Top": "1", "X-Debug": "1", "Cookie": "id=1", "X-Scope": "client"},
			resp: map[string]string{"Set-Cookie": "s=1", "X-Scope": "", "Cache-Control": "max-age=1"}},
		{name: "host with port and case", url: "http://API.Example.com:8080/x",
			req: map[string]string{"X-Debug": "1"}},
		{name: "other host", url: "https://www.example.org/x",
			req:  map[string]string{"X-Top": "1", "X-Debug": "", "Cookie": "id=1"},
			resp: map[string]string{"Set-Cookie": "s=1"}},
		{name: "tracker apex", url: "https://tracker.example/p",
			req:  map[string]string{"Cookie": ""},
			resp: map[string]string{"Set-Cookie": ""}},
		{name: "tracker sub", url: "http://a.b.tracker.example/p",
			req:  map[string]string{"Cookie": ""},
			resp: map[string]string{"Set-Cookie": ""}},
		{name: "host and path: every matching rule in order", url: "https://api.example.com/v1/users",
			req:  map[string]string{"X-Debug": "1", "X-Scope": "client,v1"},
			resp: map[string]string{"X-Scope": "v1", "Set-Cookie": "s=1"}},
		{name: "path cleaned", url: "https://api.example.com//x/../v1/users",
			req: map[string]string{"X-Scope": "client,v1"}},
		{name: "path other host", url: "https://example.com/v1/users",
			req: map[string]string{"X-Scope": "client"}},
		{name: "path only, later rule wins set", url: "https://api.example.com/private/a",
			req:  map[string]string{"X-Debug": "private"},
			resp: map[string]string{"Cache-Control": "max-age=1,no-store"}},
		{name: "ip literal host", url: "http://[2001:db8::1]:80/private/",
			req: map[string]string{"X-Debug": "private"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &plugins.Session{Protocol: "http", Log: zerolog.Nop()}
			r := request(t, tt.url)
			if err := p.OnHTTPRequest(s, r); err != nil {
				t.Fatal(err)
			}
			checkHeader(t, "request", r.Header, tt.req)
			resp := &http.Response{StatusCode: 200, Header: http.Header{"Set-Cookie": {"s=1"}, "Cache-Control": {"max-age=1"}}}
			if err := p.OnHTTPResponse(s, r, resp); err != nil {
				t.Fatal(err)
			}
			checkHeader(t, "response", resp.Header, tt.resp)
		})
	}
}

// TestScopedResponseRemembered: a response gets the response edits of
// the rules its request matched when the request went through the hook,
// even when a later plugin rewrote its URL; a request the hook never saw
// is decided as it is.
func TestScopedResponseRemembered(t *testing.T) {
	p := buildAny(t, scopedConf).(*ResponsePlugin)
	s := &plugins.Session{Protocol: "http", Log: zerolog.Nop()}
	r := request(t, "https://tracker.example/")
	if err := p.OnHTTPRequest(s, r); err != nil {
		t.Fatal(err)
	}
	r.URL.Host, r.Host = "www.example.org", "www.example.org" // a later plugin's rewrite
	resp := &http.Response{Header: http.Header{"Set-Cookie": {"s=1"}}}
	p.OnHTTPResponse(s, r, resp)
	checkHeader(t, "response", resp.Header, map[string]string{"Set-Cookie": ""})

	s2 := &plugins.Session{Protocol: "http", Log: zerolog.Nop()}
	r2 := request(t, "https://www.example.org/")
	if err := p.OnHTTPRequest(s2, r2); err != nil {
		t.Fatal(err)
	}
	other := request(t, "https://tracker.example/") // not the request the hook saw
	resp = &http.Response{Header: http.Header{"Set-Cookie": {"s=1"}}}
	p.OnHTTPResponse(s2, other, resp)
	checkHeader(t, "response to an unseen request", resp.Header, map[string]string{"Set-Cookie": ""})
}

// TestScopedRequestOnly: rules without response edits add no response
// hook, as a plugin without response rules has none.
func TestScopedRequestOnly(t *testing.T) {
	p := buildAny(t, "[[plugin.rule]]\nhost = [\"api.example.com\"]\nset = { \"X-Debug\" = \"1\" }\n")
	if _, ok := p.(plugins.HTTPResponder); ok {
		t.Errorf("%T has a response hook, want none", p)
	}
}

func TestScopedConfigErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"bad host", "[[plugin.rule]]\nhost = [\"ok.example\", \"a..b\"]\nset = { \"X\" = \"1\" }\n",
			`plugin[0].rule[0].host[1]: invalid domain "a..b"`},
		{"ip host", "[[plugin.rule]]\nhost = [\"10.0.0.1\"]\nset = { \"X\" = \"1\" }\n",
			`plugin[0].rule[0].host[0]: invalid domain "10.0.0.1"`},
		{"bad path", "[[plugin.rule]]\npath = [\"v1/\"]\nset = { \"X\" = \"1\" }\n",
			`plugin[0].rule[0].path[0]: invalid path prefix "v1/": must start with "/"`},
		{"path not normal", "[[plugin.rule]]\npath = [\"/a//b\"]\nset = { \"X\" = \"1\" }\n",
			`plugin[0].rule[0].path[0]: path prefix "/a//b" is not in normal form: write "/a/b"`},
		{"bad name", "[[plugin.rule]]\nremove = [\"ok\", \"bad name\"]\n",
			`plugin[0].rule[0].remove[1]: "bad name" is not a valid header name`},
		{"bad response value", "[[plugin.rule]]\nhost = [\"a.example\"]\n[plugin.rule.response]\nset = { \"X\" = \"a\\nb\" }\n",
			`plugin[0].rule[0].response.set.X: value has characters not allowed`},
		{"no edits", "[[plugin.rule]]\nhost = [\"a.example\"]\n",
			`plugin[0].rule[0]: no edits`},
		{"unknown key", "[[plugin.rule]]\nhosts = [\"a.example\"]\n",
			`plugin[0].rule[0].hosts: unknown key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newPlugin(tt.body)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one with %q", err, tt.want)
			}
		})
	}
}

func checkHeader(t *testing.T, what string, h http.Header, want map[string]string) {
	t.Helper()
	for name, v := range want {
		if got := strings.Join(h.Values(name), ","); got != v {
			t.Errorf("%s %s = %q, want %q", what, name, got, v)
		}
	}
}
