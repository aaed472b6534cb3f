package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"ferry/plugins"
)

// streamHook streams bodies: under /up it upper-cases them, under /cut
// it fails after the first read, anywhere else it only watches (returns
// the body itself).
type streamHook struct{ name string }

func (p *streamHook) Name() string { return p.name }

func (p *streamHook) StreamHTTPBody(_ *plugins.Session, m *plugins.HTTPMessage, body io.Reader) io.Reader {
	switch path := m.Request.URL.Path; {
	case strings.HasPrefix(path, "/up"):
		return upperReader{body} // flow_test.go's
	case strings.HasPrefix(path, "/cut"):
		return &cutReader{r: body}
	}
	return body
}

// cutReader passes one read on, then fails.
type cutReader struct {
	r    io.Reader
	read bool
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.read {
		return 0, errors.New("streamer gave up")
	}
	c.read = true
	return c.r.Read(p)
}

var _ plugins.HTTPBodyStreamer = (*streamHook)(nil)

func init() {
	plugins.Register(plugins.Registration{
		Type: "streamhook", Description: "server tests only",
		New: func(env plugins.Env) (plugins.Plugin, error) { return &streamHook{name: env.Name}, nil },
	})
}

// streamOrigin answers every path with its text, at /up/chunked and
// /chunked in two chunks, and echoes request bodies with their framing.
func streamOrigin(t *testing.T) string {
	return rawOriginFunc(t, func(req *http.Request, body []byte) string {
		if req.Method == "POST" {
			b := fmt.Sprintf("%s te=%v cl=%d", body, req.TransferEncoding, req.ContentLength)
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		}
		if strings.HasSuffix(req.URL.Path, "/chunked") {
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6;x=1\r\nhello \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"
	})
}

// Streamers on plain HTTP/1.1: a changed body goes chunked (or
// close-delimited to HTTP/1.0), one only watched goes byte for byte,
// a reader's failure resets the client; uploads alike.
func TestBodyStreamerHTTP1(t *testing.T) {
	origin := streamOrigin(t)
	f := start(t, `
[[listener]]
listen = "127.0.0.1:0"
plugins = ["sh", "log"]
[[plugin]]
name = "sh"
type = "streamhook"
[[plugin]]
name = "log"
`)
	p := newProxyClient(t, f.addr)
	for _, path := range []string{"/up", "/up/chunked"} {
		resp, b := p.do("GET", origin, path, "", "")
		if string(b) != "HELLO WORLD" || resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 || resp.Close {
			t.Fatalf("%s: %q length %d coding %v close %v", path, b, resp.ContentLength, resp.TransferEncoding, resp.Close)
		}
	}
	// Watched only: the origin's framing, extensions and trailers.
	fmt.Fprintf(p.c, "GET http://%s/chunked HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
	if head, err := readTestHead(p); err != nil || !strings.Contains(head, "Transfer-Encoding: chunked") {
		t.Fatalf("watched: head %q %v", head, err)
	}
	const wire = "6;x=1\r\nhello \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n"
	got := make([]byte, len(wire))
	if _, err := io.ReadFull(p.br, got); err != nil || string(got) != wire {
		t.Fatalf("watched: body %q %v", got, err)
	}
	// Uploads: changed, the origin gets them chunked (and the answer
	// is upper-cased too).
	if _, b := p.do("POST", origin, "/up", "", "say hello"); string(b) != "SAY HELLO TE=[CHUNKED] CL=-1" {
		t.Fatalf("upload: origin got %q", b)
	}
	if _, b := p.do("POST", origin, "/watch", "Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"); string(b) != "abc te=[chunked] cl=-1" {
		t.Fatalf("watched upload: origin got %q", b)
	}
	// HTTP/1.0: close-delimited.
	p = newProxyClient(t, f.addr)
	fmt.Fprintf(p.c, "GET http://%s/up HTTP/1.0\r\n\r\n", origin)
	if b, _ := io.ReadAll(p.br); !strings.HasSuffix(string(b), "\r\n\r\nHELLO WORLD") || strings.Contains(string(b), "Transfer-Encoding") {
		t.Fatalf("HTTP/1.0: %q", b)
	}
	// A reader that fails cuts the body: the client sees no clean end.
	p = newProxyClient(t, f.addr)
	fmt.Fprintf(p.c, "GET http://%s/cut/chunked HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a cut body read to a clean end")
	}
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), "streamer gave up") })
}

// Streamers after the body hooks, and over HTTP/2.
func TestBodyStreamerAfterHooksAndH2(t *testing.T) {
	origin := streamOrigin(t)
	g := start(t, fmt.Sprintf(`
[[listener]]
listen = "127.0.0.1:0"
h2c = true
plugins = ["bh%s", "sh"]
[[plugin]]
name = "bh%s"
type = "bodyhook"
[[plugin]]
name = "sh"
type = "streamhook"
`, t.Name(), t.Name()))
	p := newProxyClient(t, g.addr)
	// The body hook makes "HELLO world", the streamer "HELLO WORLD".
	if _, b := p.do("GET", origin, "/up/x", "", ""); string(b) != "HELLO WORLD" {
		t.Fatalf("HTTP/1.1: %q", b)
	}
	if _, b := p.do("POST", origin, "/up", "", "hello"); string(b) != "HELLO TE=[CHUNKED] CL=-1" {
		t.Fatalf("HTTP/1.1 upload: %q", b)
	}
	cc, err := (&http2.Transport{AllowHTTP: true}).NewClientConn(dial(t, g.addr))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ method, path, body, want string }{
		{"GET", "/up/chunked", "", "HELLO WORLD"},
		{"GET", "/watch", "", "HELLO world"},
		{"POST", "/up", "hello", "HELLO TE=[CHUNKED] CL=-1"},
	} {
		u, _ := url.Parse("http://" + origin + tt.path)
		req := &http.Request{Method: tt.method, URL: u, Host: origin, Header: http.Header{}}
		if tt.body != "" {
			req.Body, req.ContentLength = io.NopCloser(strings.NewReader(tt.body)), int64(len(tt.body))
		}
		resp, err := cc.RoundTrip(req)
		if err != nil {
			t.Fatalf("h2 %s: %v", tt.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != tt.want {
			t.Errorf("h2 %s %s: got %q, want %q", tt.method, tt.path, b, tt.want)
		}
	}
}
