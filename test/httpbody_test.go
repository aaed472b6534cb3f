//go:build linux

package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlainHTTPBodyRules: curl through ferry's plain http:// proxying to
// nginx with gzip on. replace's body rule rewrites a gzip HTML page
// (nginx sends it chunked), which arrives encoded again with a
// Content-Length; a page whose decoded size is over the limit, and an
// image no rule covers, arrive as nginx sent them.
func TestPlainHTTPBodyRules(t *testing.T) {
	needCurl(t)
	dir := t.TempDir()
	page := strings.Repeat("<p>Hello, world</p>\n", 200)
	big := strings.Repeat("<p>Hello, world</p>\n", 300<<10) // 6 MiB decoded, over 4 MiB
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0, 0xff, 'H', 'e', 'l', 'l', 'o'}, 300)...)
	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	// nginx's worker (user nobody) must reach the files.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	writeFile(t, filepath.Join(www, "page.html"), page)
	writeFile(t, filepath.Join(www, "big.html"), big)
	writeFile(t, filepath.Join(www, "logo.png"), string(png))
	origin := startNginx(t, fmt.Sprintf("        root %s;\n        gzip on;\n        gzip_min_length 1;\n", www))
	f := startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[limits]
max_buffered_body_bytes = "4MiB"

[[listener]]
listen = %q
plugins = ["rewrite"]

[[plugin]]
name = "rewrite"
type = "replace"

[[plugin.rule]]
scope = "body"
direction = "down"
content_type = ["text/html"]
find = "Hello"
replace = "Howdy"
`, addr)
	}, nil)
	headers := filepath.Join(dir, "headers")
	get := func(path string) (body, head string) {
		t.Helper()
		body = curl(t, "--http1.1", "--compressed", "-x", "http://"+f.addr, "-D", headers, "http://"+origin+path)
		return body, strings.ToLower(mustRead(t, headers))
	}
	body, head := get("/page.html")
	if want := strings.ReplaceAll(page, "Hello", "Howdy"); body != want {
		t.Fatalf("page: body %.60q..., want %.60q...", body, want)
	}
	if !strings.Contains(head, "content-encoding: gzip") || !strings.Contains(head, "content-length: ") || strings.Contains(head, "transfer-encoding") {
		t.Errorf("page: head\n%s\nwant gzip with a Content-Length", head)
	}
	if body, head = get("/big.html"); body != big || !strings.Contains(head, "transfer-encoding: chunked") {
		t.Errorf("big page: %d bytes, changed %v, head\n%s\nwant nginx's, chunked", len(body), body != big, head)
	}
	if body, _ = get("/logo.png"); body != string(png) {
		t.Errorf("image: %d bytes, want %d unchanged", len(body), len(png))
	}
}
