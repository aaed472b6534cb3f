package server

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"ferry/plugins"
	"ferry/server/httphead"
)

// The head passed to the client is the origin's, minus hop-by-hop
// fields, plus what an OnHTTPResponse hook changed on the view; its
// edits to framing and hop-by-hop fields are ignored.
func TestResponseOutEdits(t *testing.T) {
	const in = "HTTP/1.1 200 OK\r\nserver:  nginx \r\nConnection: X-Hop\r\nX-Hop: 1\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 3\r\nx-last: z\r\n\r\n"
	const kept = "server:  nginx \r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 3\r\nx-last: z\r\n"
	tests := []struct {
		name string
		o    responseOut
		edit func(http.Header)
		want string
	}{
		{name: "untouched", edit: func(http.Header) {},
			want: "HTTP/1.1 200 OK\r\n" + kept + "\r\n"},
		{name: "changed where it was, added last", edit: func(h http.Header) {
			h.Set("Set-Cookie", "c=3")
			h.Add("X-Proxy", "ferry")
		}, want: "HTTP/1.1 200 OK\r\nserver:  nginx \r\nSet-Cookie: c=3\r\nContent-Length: 3\r\nx-last: z\r\nX-Proxy: ferry\r\n\r\n"},
		{name: "removed", edit: func(h http.Header) { h.Del("Server") },
			want: "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 3\r\nx-last: z\r\n\r\n"},
		{name: "framing and hop-by-hop edits ignored", edit: func(h http.Header) {
			h.Set("Content-Length", "99")
			h.Set("Transfer-Encoding", "chunked")
			h.Set("Connection", "close")
			h.Set("Keep-Alive", "timeout=1")
			h.Set("X-Hop", "2")
		}, want: "HTTP/1.1 200 OK\r\n" + kept + "\r\n"},
		{name: "removed framing restored", edit: func(h http.Header) { h.Del("Content-Length") },
			want: "HTTP/1.1 200 OK\r\n" + kept + "\r\n"},
		{name: "field splitting refused", edit: func(h http.Header) {
			h.Set("X-Evil", "a\r\nInjected: 1")
			h["Bad Name"] = []string{"x"}
		}, want: "HTTP/1.1 200 OK\r\n" + kept + "\r\n"},
		{name: "ferry's Connection after the edits", o: responseOut{conn: "close"}, edit: func(h http.Header) { h.Set("X-Last", "y") },
			want: "HTTP/1.1 200 OK\r\nserver:  nginx \r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 3\r\nx-last: y\r\nConnection: close\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hd, err := httphead.ReadResponse(bufio.NewReader(strings.NewReader(in)), httphead.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			o := tt.o
			o.hd = hd
			o.fr, _ = httphead.ResponseFraming(hd, "GET")
			resp := responseView(&o, nil)
			if resp.StatusCode != 200 || resp.ContentLength != 3 || resp.Header.Get("X-Hop") != "" {
				t.Fatalf("view: %d, length %d, X-Hop %q", resp.StatusCode, resp.ContentLength, resp.Header.Get("X-Hop"))
			}
			cl := slices.Clone(resp.Header["Content-Length"])
			tt.edit(resp.Header)
			guardFields(hd, resp.Header, cl, nil)
			o.hdr = resp.Header
			if got := string(o.append(nil)); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// respGate tags every response, refuses those to /blocked and panics on
// those to /boom.
type respGate struct{ name string }

func (g *respGate) Name() string { return g.name }
func (g *respGate) OnHTTPResponse(_ *plugins.Session, req *http.Request, resp *http.Response) error {
	switch req.URL.Path {
	case "/blocked":
		return plugins.Reject(plugins.CodeForbidden, "response denied")
	case "/boom":
		panic("boom")
	}
	resp.Header.Set("X-Resp", fmt.Sprintf("%d %s", resp.StatusCode, req.Method))
	resp.Header.Del("Date")
	return nil
}

var _ plugins.HTTPResponder = (*respGate)(nil)

func init() {
	plugins.Register(plugins.Registration{
		Type: "respgate", Description: "server tests only",
		New: func(env plugins.Env) (plugins.Plugin, error) { return &respGate{name: env.Name}, nil },
	})
}

func TestHTTPResponseHook(t *testing.T) {
	web := httpServer(t)
	f := start(t, `
[[listener]]
listen = "127.0.0.1:0"
plugins = ["respgate", "log"]
[[plugin]]
name = "respgate"
[[plugin]]
name = "log"
`)
	c := dial(t, f.addr)
	br := bufio.NewReader(c)
	roundTrip := func(method, path, body string) (*http.Response, string) {
		t.Helper()
		fmt.Fprintf(c, "%s http://%s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", method, web, path, web, len(body), body)
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := roundTrip("GET", "/a", "")
	if resp.StatusCode != 200 || resp.Header.Get("X-Resp") != "200 GET" || resp.Header.Get("Date") != "" || body != web+" /a 0" {
		t.Fatalf("GET: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, _ = roundTrip("HEAD", "/a", "")
	if resp.StatusCode != 200 || resp.Header.Get("X-Resp") != "200 HEAD" {
		t.Fatalf("HEAD: %d %v", resp.StatusCode, resp.Header)
	}
	// A blocked response, with a request body, leaves the client
	// connection open for the next request.
	resp, body = roundTrip("POST", "/blocked", "xyz")
	if resp.StatusCode != 403 || resp.Close || !strings.Contains(body, "response denied") {
		t.Fatalf("blocked: %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
	resp, body = roundTrip("GET", "/b", "")
	if resp.StatusCode != 200 || body != web+" /b 0" {
		t.Fatalf("after blocked: %d %q", resp.StatusCode, body)
	}
	// A panic is a plugin error: 502, and the connection ends.
	resp, _ = roundTrip("GET", "/boom", "")
	if resp.StatusCode != 502 || !resp.Close {
		t.Fatalf("panic: %d close=%v", resp.StatusCode, resp.Close)
	}
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"reason":"plugin error"`) })
}

// Absolute-URI requests over HTTP/2 run the same hooks: edits reach the
// client, a rejection answers with its code and the connection serves
// the next stream.
func TestHTTPResponseHookH2(t *testing.T) {
	web := httpServer(t)
	f := start(t, `
[[listener]]
listen = "127.0.0.1:0"
h2c = true
plugins = ["respgate", "log"]
[[plugin]]
name = "respgate"
[[plugin]]
name = "log"
`)
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(dial(t, f.addr))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		u, _ := url.Parse("http://" + web + path)
		resp, err := cc.RoundTrip(&http.Request{Method: "GET", URL: u, Host: web, Header: http.Header{}})
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if resp, body := get("/blocked"); resp.StatusCode != 403 || !strings.Contains(body, "response denied") {
		t.Fatalf("blocked: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get("/boom"); resp.StatusCode != 502 {
		t.Fatalf("panic: %d", resp.StatusCode)
	}
	// The Date the hook removed is back: net/http's HTTP/2 server adds
	// one to every response that has none.
	resp, body := get("/a")
	if resp.StatusCode != 200 || resp.Header.Get("X-Resp") != "200 GET" || body != web+" /a 0" {
		t.Fatalf("GET: %d %v %q", resp.StatusCode, resp.Header, body)
	}
}
