//go:build linux

package test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ferry/test/testkit"
)

// flowBodiesFerry runs ferry with mitm, a replace instance with body
// rules and a capture instance writing a HAR file, trusting originCA.
func flowBodiesFerry(t *testing.T, dir, originCA, har string) (f *proc, ferryCA string) {
	t.Helper()
	caCert, caKey := initFerryCA(t, dir)
	f = startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"

[[listener]]
listen = %q
plugins = ["mitm", "rewrite", "flows", "log"]

[[plugin]]
name = "mitm"
ca_cert = %q
ca_key = %q
intercept = ["name.test"]
upstream_ca_file = %q

[[plugin]]
name = "rewrite"
type = "replace"

[[plugin.rule]]
scope = "body"
direction = "down"
content_type = ["text/html"]
find = "Hello"
replace = "Howdy"

[[plugin.rule]]
scope = "body"
direction = "up"
content_type = ["application/json"]
regexp = '"password":"[^"]*"'
replace = '"password":"***"'

[[plugin]]
name = "flows"
type = "capture"
har = %q

[[plugin]]
name = "log"
`, addr, caCert, caKey, originCA, har)
	}, nil)
	return f, caCert
}

// TestFlowBodiesHAR: through an intercepting listener to nginx (TLS,
// HTTP/2, gzip), curl over HTTP/1.1 and HTTP/2 gets gzip HTML whose text
// replace's body rule rewrote, decoded and encoded again; a binary body
// passes untouched; a JSON request body is rewritten; and capture's HAR
// file lists every request with the bodies as the hooks left them.
func TestFlowBodiesHAR(t *testing.T) {
	needCurl(t)
	dir := t.TempDir()
	page := strings.Repeat("<p>Hello, world</p>\n", 200)
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0, 0xff, 'H', 'e', 'l', 'l', 'o'}, 300)...)
	www := filepath.Join(dir, "www")
	os.MkdirAll(www, 0o755)
	// nginx's worker (user nobody) must reach the files.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	writeFile(t, filepath.Join(www, "page.html"), page)
	writeFile(t, filepath.Join(www, "logo.png"), string(png))
	originCA, cert, key := testkit.WritePKI(t, dir, "name.test")
	origin, _ := runNginx(t, nginxSite{listen: "ssl http2", server: fmt.Sprintf(`        ssl_certificate %s;
        ssl_certificate_key %s;
        root %s;
        gzip on;
        gzip_min_length 1;
`, cert, key, www)})
	_, port, _ := net.SplitHostPort(origin)
	har := filepath.Join(dir, "flows.har")
	f, ferryCA := flowBodiesFerry(t, dir, originCA, har)
	base := "https://name.test:" + port
	args := func(proto, path string, more ...string) []string {
		return append([]string{proto, "--proxy", "http://" + f.addr, "--cacert", ferryCA,
			"--connect-to", "name.test:" + port + ":127.0.0.1:" + port, base + path}, more...)
	}
	headers := filepath.Join(dir, "headers")
	for _, proto := range []string{"--http1.1", "--http2"} {
		got := curl(t, args(proto, "/page.html", "--compressed", "-D", headers)...)
		if want := strings.ReplaceAll(page, "Hello", "Howdy"); got != want {
			t.Fatalf("%s: body %.60q..., want %.60q...", proto, got, want)
		}
		if h := strings.ToLower(mustRead(t, headers)); !strings.Contains(h, "content-encoding: gzip") {
			t.Errorf("%s: the response lost its gzip encoding:\n%s", proto, h)
		}
	}
	if got := curl(t, args("--http2", "/logo.png")...); got != string(png) {
		t.Errorf("binary body changed: %d bytes, want %d", len(got), len(png))
	}
	curlExit(t, args("--http1.1", "/page.html", "-H", "Content-Type: application/json", "-d", `{"user":"a","password":"hunter2"}`)...)
	f.stop(t)
	checkFlowHAR(t, har, base, page, png)
}

// checkFlowHAR reads the HAR file as a consumer would and checks one
// entry per request, with the bodies the hooks left.
func checkFlowHAR(t *testing.T, har, base, page string, png []byte) {
	t.Helper()
	type nv struct{ Name, Value string }
	var doc struct {
		Log struct {
			Version string
			Entries []struct {
				Request struct {
					Method, URL, HTTPVersion string
					PostData                 *struct{ Text string }
				}
				Response struct {
					Status  int
					Headers []nv
					Content struct {
						Size           int64
						Text, Encoding string
					}
				}
				Connection string
				Ferry      struct{ Session, Parent, Intercepted string } `json:"_ferry"`
			}
		}
	}
	if err := json.Unmarshal([]byte(mustRead(t, har)), &doc); err != nil {
		t.Fatalf("HAR file: %v", err)
	}
	es := doc.Log.Entries
	if doc.Log.Version != "1.2" || len(es) != 4 {
		t.Fatalf("HAR version %q with %d entries, want 1.2 and 4", doc.Log.Version, len(es))
	}
	versions := map[string]bool{}
	for i, e := range es {
		c := e.Response.Content
		switch e.Request.URL {
		case base + "/page.html":
			if e.Request.Method == "POST" {
				if pd := e.Request.PostData; pd == nil || !strings.Contains(pd.Text, `"password":"***"`) {
					t.Errorf("entry %d: postData %+v, want the password masked", i, pd)
				}
				continue
			}
			versions[e.Request.HTTPVersion] = true
			if e.Response.Status != 200 || c.Text != strings.ReplaceAll(page, "Hello", "Howdy") || c.Size != int64(len(page)) {
				t.Errorf("entry %d: status %d, content size %d text %.40q...", i, e.Response.Status, c.Size, c.Text)
			}
		case base + "/logo.png":
			got, _ := base64.StdEncoding.DecodeString(c.Text)
			if c.Encoding != "base64" || !bytes.Equal(got, png) {
				t.Errorf("entry %d: png content encoding %q, %d bytes", i, c.Encoding, len(got))
			}
		default:
			t.Errorf("entry %d: URL %q", i, e.Request.URL)
		}
		if e.Ferry.Parent == "" || e.Connection != e.Ferry.Parent || e.Ferry.Intercepted != "name.test" {
			t.Errorf("entry %d: connection %q, _ferry %+v; want the tunnel as parent", i, e.Connection, e.Ferry)
		}
	}
	if !versions["HTTP/1.1"] || !versions["HTTP/2.0"] {
		t.Errorf("HTTP versions %v, want HTTP/1.1 and HTTP/2.0", versions)
	}
}
