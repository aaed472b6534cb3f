package replace

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/httpbody"
)

// TestBodyRulesLeaveSplice: DataDirections counts stream rules only, so
// an instance with body rules alone hooks no data and keeps the kernel
// splice path; WantsHTTPBody counts body rules only.
func TestBodyRulesLeaveSplice(t *testing.T) {
	tests := []struct {
		name      string
		table     string
		wantData  plugins.Directions
		wantUp    bool // wants a request body
		wantDown  bool // wants a response body
		wantChain bool
	}{
		{"body only", `rule = [{scope = "body", direction = "both", find = "a"}]`, plugins.NoData, true, true, true},
		{"body down, stream up", `rule = [{scope = "body", direction = "down", find = "a"}, {direction = "up", find = "b"}]`, plugins.UpData, false, true, true},
		{"stream only", `rule = [{scope = "stream", direction = "both", find = "a"}]`, plugins.BothData, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(decodeEnv(t, tt.table))
			if err != nil {
				t.Fatal(err)
			}
			if got := plugins.DataDirectionsOf(p); got != tt.wantData {
				t.Fatalf("data directions: got %v, want %v", got, tt.wantData)
			}
			s := newSession("http", nil)
			for _, c := range []struct {
				dir  plugins.Direction
				want bool
			}{{up, tt.wantUp}, {down, tt.wantDown}} {
				m := message(c.dir, "text/plain")
				if got := p.(plugins.HTTPBodyHook).WantsHTTPBody(s, m); got != c.want {
					t.Fatalf("WantsHTTPBody(%v): got %v, want %v", c.dir, got, c.want)
				}
			}
			if got := plugins.NewChain([]plugins.Plugin{p}).HasHTTPBodyHooks(); got != tt.wantChain {
				t.Fatalf("HasHTTPBodyHooks: got %v, want %v", got, tt.wantChain)
			}
		})
	}
}

// message is an HTTP message of direction d with a Content-Type.
func message(d plugins.Direction, contentType string) *plugins.HTTPMessage {
	req := &http.Request{Method: "POST", URL: &url.URL{Scheme: "https", Host: "example.com", Path: "/"}, Header: http.Header{}}
	m := &plugins.HTTPMessage{Dir: d, Request: req}
	h := req.Header
	if d == down {
		m.Response = &http.Response{StatusCode: 200, Header: http.Header{}, Request: req}
		h = m.Response.Header
	}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return m
}

func TestWantsHTTPBodyByType(t *testing.T) {
	tests := []struct {
		name  string
		types string // TOML array
		dir   plugins.Direction
		ctype string
		want  bool
	}{
		{"any type", `[]`, down, "image/png", true},
		{"any type, none given", `[]`, down, "", true},
		{"exact", `["text/html"]`, down, "text/html; charset=utf-8", true},
		{"exact, case", `["Text/HTML"]`, down, "TEXT/html", true},
		{"exact, other", `["text/html"]`, down, "text/plain", false},
		{"wildcard", `["text/*"]`, down, "text/css", true},
		{"wildcard, other type", `["text/*"]`, down, "application/json", false},
		{"wildcard is not a prefix of the type", `["text/*"]`, down, "textual/x", false},
		{"list", `["application/json", "text/*"]`, down, "application/json", true},
		{"star star", `["*/*"]`, down, "", true},
		{"none given, list set", `["text/html"]`, down, "", false},
		{"other direction", `["text/html"]`, up, "text/html", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(decodeEnv(t, `rule = [{scope = "body", direction = "down", find = "a", content_type = `+tt.types+`}]`))
			if err != nil {
				t.Fatal(err)
			}
			got := p.(plugins.HTTPBodyHook).WantsHTTPBody(newSession("http", nil), message(tt.dir, tt.ctype))
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOnHTTPBody(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		dir   plugins.Direction
		ctype string
		in    string
		want  string
	}{
		{"literal", []Rule{{Scope: "body", Direction: "down", Find: "Hello", Replace: "Howdy"}}, down, "text/html", "<p>Hello, Hello</p>", "<p>Howdy, Howdy</p>"},
		{"regexp submatch", []Rule{{Scope: "body", Direction: "up", Regexp: `"token":"[^"]*"`, Replace: `"token":"x"`}}, up, "application/json", `{"token":"s3cr3t","a":1}`, `{"token":"x","a":1}`},
		{"regexp named", []Rule{{Scope: "body", Direction: "both", Regexp: `(?P<k>\w+)=1`, Replace: `${k}=2`}}, up, "application/x-www-form-urlencoded", `a=1&b=1`, `a=2&b=2`},
		{"anchors", []Rule{{Scope: "body", Direction: "down", Regexp: `(?m)^Hello$`, Replace: "Bye"}}, down, "text/plain", "Hello\nHello there\nHello", "Bye\nHello there\nBye"},
		{"word boundary", []Rule{{Scope: "body", Direction: "down", Regexp: `\bcat\b`, Replace: "dog"}}, down, "text/plain", "cat concat cat.", "dog concat dog."},
		{"in order", []Rule{
			{Scope: "body", Direction: "down", Find: "a", Replace: "b"},
			{Scope: "body", Direction: "down", Find: "b", Replace: "c"},
		}, down, "text/plain", "ab", "cc"},
		{"type per rule", []Rule{
			{Scope: "body", Direction: "down", Find: "a", Replace: "H", ContentType: []string{"text/html"}},
			{Scope: "body", Direction: "down", Find: "a", Replace: "J", ContentType: []string{"application/json"}},
		}, down, "application/json", "aa", "JJ"},
		{"stream rules not applied", []Rule{
			{Direction: "down", Find: "a", Replace: "s"},
			{Scope: "body", Direction: "down", Find: "b", Replace: "B"},
		}, down, "text/plain", "ab", "aB"},
		{"other direction's rules not applied", []Rule{
			{Scope: "body", Direction: "up", Find: "a", Replace: "u"},
			{Scope: "body", Direction: "down", Find: "b", Replace: "d"},
		}, down, "text/plain", "ab", "ad"},
		{"no match", []Rule{{Scope: "body", Direction: "down", Find: "zz"}}, down, "text/plain", "abc", "abc"},
		{"delete", []Rule{{Scope: "body", Direction: "down", Find: "<script>x</script>"}}, down, "text/html", "a<script>x</script>b", "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPlugin(t, 0, tt.rules...)
			in := []byte(tt.in)
			got, err := p.OnHTTPBody(newSession("http", nil), message(tt.dir, tt.ctype), in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if string(in) != tt.in {
				t.Fatalf("the input was changed to %q", in)
			}
		})
	}
}

// TestBodyRuleMatchesStream: a body rule finds what a stream rule finds
// in the same bytes sent as one stream.
func TestBodyRuleMatchesStream(t *testing.T) {
	body := strings.Repeat("User-Agent: curl/8\r\nfoo foobar caf\u00e9 ", 50)
	for _, r := range []Rule{
		{Regexp: `User-Agent: [^\r\n]*`, Replace: "UA: <$0>"},
		{Regexp: `foo|foobar`, Replace: "[$0]"},
		{Regexp: `[^a-z\s]+`, Replace: "#"},
		{Find: "foo", Replace: "bar"},
	} {
		st := newTestStream(t, 1<<20, r)
		want := runChunks(t, st, 0, splitEvery(body, 7))
		r.Scope, r.Direction = "body", "down"
		p := testPlugin(t, 0, r)
		got, _ := p.OnHTTPBody(newSession("http", nil), message(down, ""), []byte(body))
		if string(got) != want {
			t.Fatalf("rule %+v: body got %q, stream %q", r, got, want)
		}
	}
}

// TestBodyGrowthBound: a body rule that would blow the body up leaves it
// unchanged and says so.
func TestBodyGrowthBound(t *testing.T) {
	var logs bytes.Buffer
	s := newSession("http", nil)
	s.Log = zerolog.New(&logs)
	p := testPlugin(t, 0, Rule{Scope: "body", Direction: "down", Find: "a", Replace: strings.Repeat("x", 64)})
	in := bytes.Repeat([]byte("a"), 64<<10) // 64KiB -> 4MiB, over 2*64KiB+1MiB
	got, err := p.OnHTTPBody(s, message(down, "text/plain"), in)
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("got %d bytes, %v; want the body unchanged", len(got), err)
	}
	if !strings.Contains(logs.String(), "body left unchanged") {
		t.Fatalf("log %q does not say why", logs.String())
	}
	small := bytes.Repeat([]byte("a"), 1<<10) // 1KiB -> 64KiB: within
	if got, _ := p.OnHTTPBody(s, message(down, "text/plain"), small); len(got) != 64<<10 {
		t.Fatalf("got %d bytes, want %d", len(got), 64<<10)
	}
}

// TestBodyRuleGzip: what ferry does around the hook (decode, hook,
// encode) turns a gzip body into the rewritten one, gzip again.
func TestBodyRuleGzip(t *testing.T) {
	page := []byte(strings.Repeat("<p>Hello, world</p>\n", 1000))
	raw, err := httpbody.Encode("gzip", page)
	if err != nil {
		t.Fatal(err)
	}
	m := message(down, "text/html; charset=utf-8")
	m.Response.Header.Set("Content-Encoding", "gzip")
	p := testPlugin(t, 0, Rule{Scope: "body", Direction: "down", Find: "Hello", Replace: "Howdy", ContentType: []string{"text/*"}})
	if !p.WantsHTTPBody(newSession("http", nil), m) {
		t.Fatal("WantsHTTPBody: got false, want true")
	}
	plain, err := httpbody.Decode("gzip", raw, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.OnHTTPBody(newSession("http", nil), m, plain)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := httpbody.Encode("gzip", out)
	if err != nil {
		t.Fatal(err)
	}
	back, err := httpbody.Decode("gzip", enc, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.ReplaceAll(string(page), "Hello", "Howdy"); string(back) != want {
		t.Fatalf("got %.40q..., want %.40q...", back, want)
	}
}

// BenchmarkBodyRule rewrites a 1MiB HTML body with a literal and a
// regexp body rule.
func BenchmarkBodyRule(b *testing.B) {
	body := bytes.Repeat([]byte("<p>Hello, world: token=abc123</p>\n"), (1<<20)/34)
	for _, r := range []Rule{
		{Scope: "body", Direction: "down", Find: "Hello", Replace: "Howdy"},
		{Scope: "body", Direction: "down", Regexp: `token=[0-9a-z]+`, Replace: "token=X"},
	} {
		b.Run(r.Find+r.Regexp, func(b *testing.B) {
			p, err := newPlugin("b", Config{Rules: []Rule{r}})
			if err != nil {
				b.Fatal(err)
			}
			s, m := newSession("http", nil), message(down, "text/html")
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				p.OnHTTPBody(s, m, body)
			}
		})
	}
}
