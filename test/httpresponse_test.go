//go:build linux

package test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestHTTPResponseHeaders: curl through the real binary to an origin
// whose response bytes the test wrote; the headers plugin's response
// rules add and remove fields, and every other byte of the response
// reaches curl as the origin sent it. Blocking by an OnHTTPResponse hook
// is covered in package server (TestHTTPResponseHook): no compiled-in
// plugin blocks responses yet.
func TestHTTPResponseHeaders(t *testing.T) {
	t.Parallel()
	needCurl(t)
	const answer = "HTTP/1.1 200 OK\r\nserver:  origin/1 \r\nX-Keep: a\r\nx-keep: b\r\nX-Drop: gone\r\nContent-Length: 5\r\n\r\nhello"
	origin, heads := recordingOrigin(t, answer)
	f := startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[[listener]]
listen = %q
plugins = ["headers"]
[[plugin]]
name = "headers"
[plugin.response]
remove = ["x-drop"]
add = { "X-Added" = "yes" }
`, addr)
	}, nil)
	const want = "HTTP/1.1 200 OK\r\nserver:  origin/1 \r\nX-Keep: a\r\nx-keep: b\r\nContent-Length: 5\r\nX-Added: yes\r\n\r\nhello"
	url := "http://" + origin.Addr + "/r"
	// Two URLs in one curl run share the client connection: the hook runs
	// on each response of a kept-alive connection.
	got := curl(t, "-i", "-x", "http://"+f.addr, url, url)
	if got != want+want {
		t.Fatalf("curl got:\n%q\nwant twice:\n%q", got, want)
	}
	for range 2 {
		if h := nextHead(t, heads); !strings.HasPrefix(h, "GET /r HTTP/1.1\r\n") {
			t.Fatalf("origin got %q", h)
		}
	}
	// A HEAD answer goes through the hook too; its Content-Length stays.
	got = curl(t, "-I", "-x", "http://"+f.addr, url)
	if got != strings.TrimSuffix(want, "hello") {
		t.Fatalf("HEAD: curl got:\n%q", got)
	}
}

// TestHTTPResponseHeadersH2: an absolute-URI request over HTTP/2 goes
// through the same response rules.
func TestHTTPResponseHeadersH2(t *testing.T) {
	t.Parallel()
	origin, _ := recordingOrigin(t, "HTTP/1.1 200 OK\r\nX-Keep: a\r\nX-Drop: gone\r\nContent-Length: 5\r\n\r\nhello")
	f := startFerry(t, h2cConfig("", []string{"headers"}, `[[plugin]]
name = "headers"
[plugin.response]
remove = ["x-drop"]
set = { "Content-Length" = "99" }
add = { "X-Added" = "yes" }
`), nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h2Get(ctx, cc, "http://"+origin.Addr+"/r", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	h := resp.Header
	if err != nil || string(b) != "hello" || h.Get("X-Added") != "yes" || h.Get("X-Drop") != "" || h.Get("X-Keep") != "a" || resp.ContentLength != 5 {
		t.Fatalf("got %d %v %q %v", resp.StatusCode, h, b, err)
	}
}
