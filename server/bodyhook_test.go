package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ferry/plugins"
	"ferry/plugins/pkg/httpbody"
)

// bodyHook wants every body except those of paths under /skip, and
// upper-cases "hello" in them. It refuses, with an answer of its own,
// response bodies of /deny, request bodies that say "forbidden" (or
// "huge answer", with a body of hugeAnswer bytes) and the request head
// of /req-answer. It counts its calls per path.
type bodyHook struct {
	name  string
	mu    sync.Mutex
	wants map[string]int
	calls map[string]int
}

func (b *bodyHook) Name() string { return b.name }

func (b *bodyHook) WantsHTTPBody(_ *plugins.Session, m *plugins.HTTPMessage) bool {
	b.count(b.wants, m)
	return !strings.HasPrefix(m.Request.URL.Path, "/skip")
}

func (b *bodyHook) OnHTTPBody(_ *plugins.Session, m *plugins.HTTPMessage, body []byte) ([]byte, error) {
	b.count(b.calls, m)
	switch {
	case m.Dir == plugins.Down && m.Request.URL.Path == "/deny":
		return nil, plugins.Block(http.StatusForbidden, "denied by body\n", "response body denied")
	case m.Dir == plugins.Up && bytes.Contains(body, []byte("huge answer")):
		return nil, plugins.Block(http.StatusForbidden, strings.Repeat("x", hugeAnswer), "huge answer")
	case m.Dir == plugins.Up && bytes.Contains(body, []byte("forbidden")):
		return nil, plugins.Block(http.StatusForbidden, "upload denied\n", "request body denied")
	}
	m.Header().Set("X-Body-Hook", m.Dir.String())
	if m.Request.URL.Path == "/inject" {
		// Edits ferry does not take: framing, hop-by-hop, split fields.
		m.Header().Set("X-Evil", "a\r\nInjected: 1")
		m.Header().Set("Content-Length", "999")
		m.Header().Set("Transfer-Encoding", "chunked")
		m.Header().Set("Connection", "close")
	}
	return bytes.ReplaceAll(body, []byte("hello"), []byte("HELLO")), nil
}

func (b *bodyHook) OnHTTPRequest(_ *plugins.Session, req *http.Request) error {
	if req.URL.Path == "/req-answer" {
		return plugins.Block(http.StatusUnavailableForLegalReasons, "not here\n", "request denied")
	}
	return nil
}

func (b *bodyHook) count(m map[string]int, msg *plugins.HTTPMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m[msg.Dir.String()+" "+msg.Request.URL.Path]++
}

// called reports how often OnHTTPBody ran for a direction ("up" or
// "down") and path.
func (b *bodyHook) called(dir, path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[dir+" "+path]
}

func (b *bodyHook) asked(dir, path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.wants[dir+" "+path]
}

// hugeAnswer is more than a client's socket and ferry's can hold.
const hugeAnswer = 32 << 20

var (
	_ plugins.HTTPBodyHook  = (*bodyHook)(nil)
	_ plugins.HTTPRequester = (*bodyHook)(nil)
)

var (
	bodyHookMu   sync.Mutex
	bodyHookInst = map[string]*bodyHook{}
)

func init() {
	plugins.Register(plugins.Registration{
		Type: "bodyhook", Description: "server tests only",
		New: func(env plugins.Env) (plugins.Plugin, error) {
			b := &bodyHook{name: env.Name, wants: map[string]int{}, calls: map[string]int{}}
			bodyHookMu.Lock()
			bodyHookInst[env.Name] = b
			bodyHookMu.Unlock()
			return b, nil
		},
	})
}

// startBodyHook runs ferry with the bodyhook plugin under a name of the
// test's own, then the log plugin and the servertest ones in after, and
// extra TOML (a [limits] table, listener keys).
func startBodyHook(t *testing.T, limits, listener string, after ...*testPlugin) (*fixture, *bodyHook) {
	t.Helper()
	name := "bh" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	list, tables := fmt.Sprintf("%q, \"log\"", name), ""
	for _, p := range after {
		list += fmt.Sprintf(", %q", p.name)
		tables += fmt.Sprintf("[[plugin]]\nname = %q\ntype = \"servertest\"\n", p.name)
	}
	f := start(t, fmt.Sprintf(`
%s
[[listener]]
listen = "127.0.0.1:0"
%s
plugins = [%s]
[[plugin]]
name = %q
type = "bodyhook"
[[plugin]]
name = "log"
%s`, limits, listener, list, name, tables), after...)
	bodyHookMu.Lock()
	b := bodyHookInst[name]
	bodyHookMu.Unlock()
	return f, b
}

// bodyOrigin serves the bodies the tests need; "hello world" in each
// coding under its name.
func bodyOrigin(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	const text = "hello world"
	for _, enc := range []string{"gzip", "br", "zstd", "deflate", "gzip, br"} {
		body, err := httpbody.Encode(enc, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		mux.HandleFunc("/"+strings.ReplaceAll(enc, ", ", "-"), func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", enc)
			w.Write(body)
		})
	}
	plain := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, text) }
	mux.HandleFunc("/identity", plain)
	mux.HandleFunc("/deny", plain)
	mux.HandleFunc("/skip/identity", plain)
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "world")
	})
	mux.HandleFunc("/unknown", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "x-custom")
		io.WriteString(w, text)
	})
	mux.HandleFunc("/304", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) })
	mux.HandleFunc("/inject", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s injected=%q evil=%q close=%v length=%d", b, r.Header["Injected"], r.Header["X-Evil"], r.Close, r.ContentLength)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got", fmt.Sprintf("te=%v cl=%d", r.TransferEncoding, r.ContentLength))
		w.Write(b)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// proxyClient sends requests through ferry on one connection.
type proxyClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func newProxyClient(t *testing.T, addr string) *proxyClient {
	c := dial(t, addr)
	return &proxyClient{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends method path to origin with extra header lines and body, and
// returns the response with its body read.
func (p *proxyClient) do(method, origin, path, extra, body string) (*http.Response, []byte) {
	p.t.Helper()
	fmt.Fprintf(p.c, "%s http://%s%s HTTP/1.1\r\nHost: %s\r\n%s", method, origin, path, origin, extra)
	if !strings.Contains(extra, "Transfer-Encoding") && body != "" {
		fmt.Fprintf(p.c, "Content-Length: %d\r\n", len(body))
	}
	io.WriteString(p.c, "\r\n"+body)
	resp, err := http.ReadResponse(p.br, &http.Request{Method: method})
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return resp, b
}

// A body a hook changed reaches the client in its own coding, with a
// Content-Length for its new size, whatever framing the origin chose.
func TestBodyHookResponseRewrite(t *testing.T) {
	origin := bodyOrigin(t)
	f, hook := startBodyHook(t, "", "")
	p := newProxyClient(t, f.addr)
	tests := []struct{ path, enc string }{
		{"/identity", ""},
		{"/chunked", ""},
		{"/gzip", "gzip"},
		{"/br", "br"},
		{"/zstd", "zstd"},
		{"/deflate", "deflate"},
		{"/gzip-br", "gzip, br"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, raw := p.do("GET", origin, tt.path, "", "")
			if resp.StatusCode != 200 || resp.Close {
				t.Fatalf("got %d close=%v, want 200 kept open", resp.StatusCode, resp.Close)
			}
			if resp.ContentLength != int64(len(raw)) || len(resp.TransferEncoding) != 0 {
				t.Errorf("framing: Content-Length %d, Transfer-Encoding %v for %d bytes", resp.ContentLength, resp.TransferEncoding, len(raw))
			}
			if got := resp.Header.Get("Content-Encoding"); got != tt.enc {
				t.Errorf("Content-Encoding: got %q, want %q", got, tt.enc)
			}
			plain, err := httpbody.Decode(tt.enc, raw, 1<<20)
			if err != nil || string(plain) != "HELLO world" {
				t.Errorf("body: got %q %v, want %q", plain, err, "HELLO world")
			}
			if resp.Header.Get("X-Body-Hook") != "down" {
				t.Errorf("the hook's header edit is missing: %v", resp.Header)
			}
			if n := hook.called("down", tt.path); n != 1 {
				t.Errorf("OnHTTPBody calls: got %d, want 1", n)
			}
		})
	}
}

// A request body a hook changed goes upstream with a Content-Length,
// also when the client sent it chunked or with "Expect: 100-continue"
// (which ferry then answers itself).
func TestBodyHookRequestRewrite(t *testing.T) {
	origin := bodyOrigin(t)
	f, _ := startBodyHook(t, "", "")
	p := newProxyClient(t, f.addr)
	resp, b := p.do("POST", origin, "/echo", "", "say hello")
	if string(b) != "say HELLO" || resp.Header.Get("X-Got") != "te=[] cl=9" {
		t.Fatalf("Content-Length body: got %q %q", b, resp.Header.Get("X-Got"))
	}
	resp, b = p.do("POST", origin, "/echo", "Transfer-Encoding: chunked\r\n", "3\r\nsay\r\n6\r\n hello\r\n0\r\nX-T: 1\r\n\r\n")
	if string(b) != "say HELLO" || resp.Header.Get("X-Got") != "te=[] cl=9" {
		t.Fatalf("chunked body: got %q %q", b, resp.Header.Get("X-Got"))
	}
	// Expect: the client waits for ferry's 100 before it sends the body.
	fmt.Fprintf(p.c, "POST http://%s/echo HTTP/1.1\r\nHost: %s\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", origin, origin)
	line, err := p.br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim: got %q %v", line, err)
	}
	p.br.ReadString('\n')
	io.WriteString(p.c, "hello")
	resp, err = http.ReadResponse(p.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if string(b) != "HELLO" {
		t.Fatalf("after 100: got %q", b)
	}
	// A refused upload gets the plugin's answer; the connection stays.
	resp, b = p.do("POST", origin, "/echo", "", "forbidden words")
	if resp.StatusCode != 403 || string(b) != "upload denied\n" || resp.Close {
		t.Fatalf("refused upload: %d close=%v %q", resp.StatusCode, resp.Close, b)
	}
	if resp, b = p.do("GET", origin, "/identity", "", ""); string(b) != "HELLO world" {
		t.Fatalf("after refusal: %d %q", resp.StatusCode, b)
	}
}

// A body hook's edits to framing and hop-by-hop fields are ignored, and
// values that would split the head are dropped, both ways.
func TestBodyHookFieldGuard(t *testing.T) {
	origin := bodyOrigin(t)
	f, _ := startBodyHook(t, "", "")
	p := newProxyClient(t, f.addr)
	resp, b := p.do("POST", origin, "/inject", "", "hello")
	const want = `HELLO injected=[] evil=[] close=false length=5`
	if string(b) != want || resp.Header["Injected"] != nil || resp.Header["X-Evil"] != nil || resp.Close {
		t.Fatalf("got %q %v close=%v, want %q", b, resp.Header, resp.Close, want)
	}
	if resp.ContentLength != int64(len(want)) || resp.TransferEncoding != nil {
		t.Fatalf("framing: length %d, coding %v", resp.ContentLength, resp.TransferEncoding)
	}
}

// Answers of a plugin's choosing, from OnHTTPRequest and OnHTTPBody,
// replace ferry's text; the client connection stays open.
func TestBodyHookAnswer(t *testing.T) {
	origin := bodyOrigin(t)
	f, _ := startBodyHook(t, "", "")
	p := newProxyClient(t, f.addr)
	tests := []struct {
		method, path string
		status       int
		body         string
		length       int64
	}{
		{"GET", "/deny", 403, "denied by body\n", 15},
		{"GET", "/req-answer", 451, "not here\n", 9},
		{"HEAD", "/req-answer", 451, "", 9},
		{"GET", "/identity", 200, "HELLO world", 11},
	}
	for _, tt := range tests {
		resp, b := p.do(tt.method, origin, tt.path, "", "")
		if resp.StatusCode != tt.status || string(b) != tt.body || resp.Close {
			t.Fatalf("%s %s: got %d %q close=%v, want %d %q", tt.method, tt.path, resp.StatusCode, b, resp.Close, tt.status, tt.body)
		}
		if resp.ContentLength != tt.length || tt.status != 200 && resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Fatalf("%s %s: header %v, length %d", tt.method, tt.path, resp.Header, resp.ContentLength)
		}
	}
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"status":451`) })
	// A request head refused before its body was read: the answer, and
	// the connection ends, the body unread.
	resp, b := p.do("POST", origin, "/req-answer", "", "some body")
	if resp.StatusCode != 451 || string(b) != "not here\n" || !resp.Close {
		t.Fatalf("refused head with a body: %d %q close=%v", resp.StatusCode, b, resp.Close)
	}
}

// HEAD answers, 304s and bodies no hook wants never reach OnHTTPBody; a
// body in a coding ferry does not know passes unchanged.
func TestBodyHookSkipped(t *testing.T) {
	origin := bodyOrigin(t)
	f, hook := startBodyHook(t, "", "")
	p := newProxyClient(t, f.addr)
	if resp, _ := p.do("HEAD", origin, "/identity", "", ""); resp.StatusCode != 200 || resp.ContentLength != 11 {
		t.Fatalf("HEAD: %d %d", resp.StatusCode, resp.ContentLength)
	}
	if resp, _ := p.do("GET", origin, "/304", "", ""); resp.StatusCode != 304 {
		t.Fatalf("304: %d", resp.StatusCode)
	}
	if _, b := p.do("GET", origin, "/unknown", "", ""); string(b) != "hello world" {
		t.Fatalf("unknown coding: got %q", b)
	}
	if _, b := p.do("GET", origin, "/skip/identity", "", ""); string(b) != "hello world" {
		t.Fatalf("not wanted: got %q", b)
	}
	for _, path := range []string{"/identity", "/304", "/unknown", "/skip/identity"} {
		if n := hook.called("down", path); n != 0 {
			t.Errorf("%s: OnHTTPBody ran %d times", path, n)
		}
	}
	if n := hook.asked("down", "/identity") + hook.asked("down", "/304"); n != 0 {
		t.Errorf("WantsHTTPBody asked %d times for HEAD and 304", n)
	}
}

// Framings the client or origin chose that a Content-Length replaces:
// a body delimited by the origin's close, and a chunked one to an
// HTTP/1.0 client. The data hooks see what goes on the wire, the
// hooked body included.
func TestBodyHookReframe(t *testing.T) {
	origin := rawOrigin(t, map[string]string{
		"/close":   "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello there",
		"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	})
	f, _ := startBodyHook(t, "", "")
	p := newProxyClient(t, f.addr)
	resp, b := p.do("GET", origin, "/close", "", "")
	if string(b) != "HELLO there" || resp.ContentLength != 11 {
		t.Fatalf("close-delimited: %q length %d", b, resp.ContentLength)
	}
	p = newProxyClient(t, f.addr)
	fmt.Fprintf(p.c, "GET http://%s/chunked HTTP/1.0\r\n\r\n", origin)
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ = io.ReadAll(resp.Body); string(b) != "HELLO" || resp.ContentLength != 5 {
		t.Fatalf("HTTP/1.0 client: %q length %d", b, resp.ContentLength)
	}

	g, _ := startBodyHook(t, "", "", &testPlugin{name: "upper", upper: true})
	p = newProxyClient(t, g.addr)
	// The body hook's header, upper-cased by the data hook after it.
	resp, b = p.do("GET", origin, "/chunked", "", "")
	if string(b) != "HELLO" || resp.ContentLength != 5 || resp.Header.Get("X-Body-Hook") != "DOWN" {
		t.Fatalf("with a data hook: %q length %d", b, resp.ContentLength)
	}
}

// TestAnswerToClientNotReading: an answer of ferry's own (here a
// plugin's refusal of an upload, 32 MiB) to a client that reads nothing
// does not hold the connection for good once the exchange has cleared
// its deadlines: the write stops after idle_timeout without progress,
// and the exchange ends and is logged.
func TestAnswerToClientNotReading(t *testing.T) {
	f, _ := startBodyHook(t, "[defaults]\nidle_timeout = \"500ms\"\n", "")
	var conns atomic.Int32
	origin := hashOrigin(t, &conns, nil)
	c := dial(t, f.addr)
	const body = "huge answer"
	post := fmt.Sprintf("POST http://%s/up HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", origin, origin, len(body), body)

	// Read slowly, the whole answer takes several idle_timeouts: it is
	// not cut while it moves.
	slow := dial(t, f.addr)
	slow.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(slow, post)
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("slow reader: %v, %v; want the 403", resp, err)
	}
	got, buf := 0, make([]byte, 256<<10)
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		n, err := io.ReadFull(resp.Body, buf)
		got += n
		if err != nil {
			if got != hugeAnswer {
				t.Fatalf("slow reader got %d of %d bytes in %v: %v", got, hugeAnswer, time.Since(start), err)
			}
			break
		}
	}

	io.WriteString(c, post)
	// Two access lines: the slow reader's, then this one's.
	waitFor(t, func() bool { return strings.Count(f.logs.String(), `"message":"access"`) >= 2 })
}
