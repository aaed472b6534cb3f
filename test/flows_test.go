//go:build linux

package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// Intercepted HTTPS as HTTP flows (issue 18), end to end: a real nginx
// (TLS, HTTP/2, gzip) behind ferry's mitm plugin, with acl, headers,
// replace, capture (HAR) and log working on each request inside the
// intercepted tunnels; curl, a Go client and headless Chromium as the
// clients.

// flowsOrigin is nginx serving testdata/flows over TLS (HTTP/2 and
// HTTP/1.1) as localhost, with a certificate from a test CA.
type flowsOrigin struct {
	base   string // https://localhost:PORT
	port   string
	caFile string // the test CA ferry trusts for the origin
	log    string // nginx's access log, in the flows format
}

// flowsLogFormat logs what the tests check at the origin: the request,
// the X-Debug field the headers plugin sets, and the gzip ratio (a
// number when nginx compressed the response, "-" when not).
const flowsLogFormat = `log_format flows '$request_method $request_uri $server_protocol ` +
	`$status xdebug=$http_x_debug gzip=$gzip_ratio';`

// startFlowsOrigin runs the origin. nginx keeps an idle keep-alive
// connection one second (TestFlows's keep-alive case outlives it); it
// compresses text/html (gz.html is 17 KiB of it) and serves one PNG for
// every /img/N.png.
func startFlowsOrigin(t *testing.T) flowsOrigin {
	t.Helper()
	site := flowsSite(t)
	caFile, certFile, keyFile := testkit.WritePKI(t, site)
	addr, dir := runNginx(t, nginxSite{
		http: flowsLogFormat + `
    types { text/html html; text/css css; application/javascript js; image/png png; }
    default_type text/plain;
    gzip on;
    gzip_min_length 1024;`,
		log:    "flows",
		listen: "ssl http2",
		server: fmt.Sprintf(`        ssl_certificate %s;
        ssl_certificate_key %s;
        root %s/www;
        keepalive_timeout 1s;
        location /img/ { rewrite ^ /pixel.png break; }`, certFile, keyFile, site),
	})
	_, port, _ := net.SplitHostPort(addr)
	return flowsOrigin{base: "https://localhost:" + port, port: port, caFile: caFile, log: filepath.Join(dir, "access.log")}
}

// flowsSite copies testdata/flows to SITE/www in a directory nginx's
// workers (nobody, when the test runs as root) can read, which a test's
// temporary directory (mode 0700) is not, and returns SITE.
func flowsSite(t *testing.T) string {
	t.Helper()
	site := worldReadableDir(t)
	if err := os.CopyFS(filepath.Join(site, "www"), os.DirFS("testdata/flows")); err != nil {
		t.Fatalf("copy the site: %v", err)
	}
	err := filepath.WalkDir(site, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
	return site
}

// originLines waits until nginx's access log has a line containing each
// of want and returns the log.
func (o flowsOrigin) originLines(t *testing.T, want ...string) string {
	t.Helper()
	var log string
	deadline := time.Now().Add(logTimeout)
	for {
		log = readLog(o.log)
		if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(log, w) }) {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx's access log lacks one of %q:\n%s", want, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flowsFerry is ferry intercepting localhost with every plugin of the
// flow design, its access log in a file and its HAR in another.
type flowsFerry struct {
	*proc
	ca, access, har string
}

// flowsMaxStreams is the listener's bound on concurrent HTTP/2 streams,
// which holds on intercepted connections too.
const flowsMaxStreams = 8

func startFlowsFerry(t *testing.T, originCA string) flowsFerry {
	t.Helper()
	dir := t.TempDir()
	caCert, caKey := initFerryCA(t, dir)
	f := flowsFerry{ca: caCert, access: filepath.Join(dir, "access.log"), har: filepath.Join(dir, "flows.har")}
	f.proc = startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"

[[listener]]
name = "flows"
listen = %q
protocols = ["http"]
allow_local_destinations = true
max_streams_per_connection = %d
plugins = ["acl", "mitm", "headers", "replace", "capture", "log"]

[[plugin]]
name = "acl"
# Only the origin's name: Chromium's own requests to Google's services
# are refused before any lookup, so nothing leaves loopback.
default = "deny"
deny_body = "blocked\n"
[[plugin.rule]]
action = "deny"
path = ["/admin/"]
[[plugin.rule]]
action = "allow"
domain = ["localhost"]

[[plugin]]
name = "mitm"
ca_cert = %q
ca_key = %q
intercept = ["localhost"]
upstream_ca_file = %q
http = true

[[plugin]]
name = "headers"
[[plugin.rule]]
host = ["localhost"]
path = ["/"]
set = { "X-Debug" = "1" }
response = { set = { "X-Flow" = "seen" } }

[[plugin]]
name = "replace"
[[plugin.rule]]
scope = "body"
direction = "down"
content_type = ["text/html"]
find = "Hello"
replace = "Howdy"

[[plugin]]
name = "capture"
har = %q

[[plugin]]
name = "log"
file = %q
`, addr, flowsMaxStreams, f.ca, caKey, originCA, f.har, f.access)
	}, nil)
	return f
}

// accessLog parses the JSON lines of the log plugin's file.
func (f flowsFerry) accessLog() []logLine { return parseLogLines(readLog(f.access)) }

// waitAccess waits until the access log has n lines passing match and
// returns them.
func (f flowsFerry) waitAccess(t *testing.T, n int, match func(logLine) bool) []logLine {
	t.Helper()
	var got []logLine
	deadline := time.Now().Add(logTimeout)
	for {
		got = got[:0]
		for _, l := range f.accessLog() {
			if match(l) {
				got = append(got, l)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d matching access lines, want %d; the access log:\n%s", len(got), n, readLog(f.access))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// flowURL matches the access lines of the flows (proto http) for url.
func flowURL(url string) func(logLine) bool {
	return func(l logLine) bool { return l.str("proto") == "http" && l.str("url") == url }
}

// checkFlow checks one flow's access line: its status, an intercepted
// tunnel as parent, that tunnel's own (connect) line with its id.
func (f flowsFerry) checkFlow(t *testing.T, l logLine, status int64) {
	t.Helper()
	if got, _ := l.num("status"); got != status {
		t.Errorf("flow %s: status %d, want %d: %v", l.str("url"), got, status, l)
	}
	if l.str("method") != "GET" || l.str("mitm") != "localhost" || l.str("parent") == "" {
		t.Errorf("flow line %v: want method GET, mitm localhost and the tunnel as parent", l)
		return
	}
	f.waitAccess(t, 1, func(c logLine) bool {
		return c.str("proto") == "connect" && c.str("id") == l.str("parent") && c.str("mitm") == "localhost"
	})
}

// curlVia runs curl through ferry, trusting ferry's CA.
func (f flowsFerry) curlVia(t *testing.T, args ...string) string {
	t.Helper()
	return curl(t, append([]string{"-x", "http://" + f.addr, "--cacert", f.ca}, args...)...)
}

// harEntry is what TestFlows reads of a HAR entry.
type harEntry struct {
	Request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	} `json:"request"`
	Response struct {
		Status int `json:"status"`
	} `json:"response"`
}

// readHAR parses the HAR file and checks its version.
func readHAR(t *testing.T, file string) []harEntry {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("the HAR file: %v", err)
	}
	var har struct {
		Log struct {
			Version string     `json:"version"`
			Entries []harEntry `json:"entries"`
		} `json:"log"`
	}
	if err := json.Unmarshal(b, &har); err != nil {
		t.Fatalf("the HAR file is no JSON: %v\n%.2000s", err, b)
	}
	if har.Log.Version != "1.2" {
		t.Errorf("HAR log.version %q, want 1.2", har.Log.Version)
	}
	return har.Log.Entries
}

// TestFlows: requests inside intercepted tunnels are flows of their own,
// which the HTTP plugins act on and the log and capture record, over
// HTTP/2 and HTTP/1.1; the listener's HTTP/2 stream bound holds on the
// intercepted connection.
func TestFlows(t *testing.T) {
	needCurl(t)
	o := startFlowsOrigin(t)
	f := startFlowsFerry(t, o.caFile)
	type made struct {
		url    string
		status int
	}
	var requests []made

	for _, proto := range []string{"--http2", "--http1.1"} {
		t.Run("headers and log "+proto, func(t *testing.T) {
			url := o.base + "/?via=" + strings.TrimPrefix(proto, "--")
			head := f.curlVia(t, proto, "-D", "-", "-o", "/dev/null", url)
			requests = append(requests, made{url, 200})
			if !strings.Contains(strings.ToLower(head), "x-flow: seen") {
				t.Errorf("response head lacks X-Flow: seen (headers' response rule):\n%s", head)
			}
			o.originLines(t, "GET /?via="+strings.TrimPrefix(proto, "--")+" ")
			if line := grepLine(readLog(o.log), "/?via="+strings.TrimPrefix(proto, "--")); !strings.Contains(line, "xdebug=1 ") {
				t.Errorf("nginx got no X-Debug: 1 (headers' request rule): %q", line)
			}
			lines := f.waitAccess(t, 1, flowURL(url))
			if len(lines) != 1 {
				t.Errorf("%d access lines for %s, want one: %v", len(lines), url, lines)
			}
			f.checkFlow(t, lines[0], 200)
		})
	}

	t.Run("acl on one HTTP/2 connection", func(t *testing.T) {
		dir := t.TempDir()
		denied, public := o.base+"/admin/secret", o.base+"/public/x"
		out := f.curlVia(t, "--http2", "-w", "%{http_code} %{num_connects} %{http_version}\n",
			"-o", filepath.Join(dir, "denied"), denied, "-o", filepath.Join(dir, "public"), public)
		requests = append(requests, made{denied, 403}, made{public, 200})
		if want := "403 1 2\n200 0 2\n"; out != want {
			t.Errorf("curl -w (status, connections opened, HTTP version) = %q, want %q: the deny must not cost the connection", out, want)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "denied")); string(b) != "blocked\n" {
			t.Errorf("denied body %q, want the acl's deny_body", b)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "public")); string(b) != "public x\n" {
			t.Errorf("public body %q, want the file", b)
		}
		d := f.waitAccess(t, 1, flowURL(denied))[0]
		p := f.waitAccess(t, 1, flowURL(public))[0]
		f.checkFlow(t, d, 403)
		f.checkFlow(t, p, 200)
		if n, _ := p.num("down"); n != int64(len("public x\n")) {
			t.Errorf("flow %s: down %d, want the body's %d bytes", public, n, len("public x\n"))
		}
		if n, _ := d.num("down"); n != int64(len("blocked\n")) {
			t.Errorf("flow %s: down %d, want the answer's %d bytes", denied, n, len("blocked\n"))
		}
		if d.str("parent") != p.str("parent") {
			t.Errorf("the two flows have parents %q and %q, want the same tunnel", d.str("parent"), p.str("parent"))
		}
		if log := o.originLines(t, "GET /public/x "); strings.Contains(log, "/admin/") {
			t.Errorf("the denied request reached nginx:\n%s", log)
		}
	})

	for _, proto := range []string{"--http2", "--http1.1"} {
		t.Run("replace in a gzip body "+proto, func(t *testing.T) {
			url := o.base + "/gz.html?via=" + strings.TrimPrefix(proto, "--")
			body := f.curlVia(t, proto, "--compressed", url)
			requests = append(requests, made{url, 200})
			if !strings.Contains(body, "Howdy, line 199") || strings.Contains(body, "Hello") {
				t.Errorf("body (%d bytes) should have every Hello replaced by Howdy, to the last line:\n%.300s", len(body), body)
			}
			line := grepLine(o.originLines(t, "GET /gz.html?via="+strings.TrimPrefix(proto, "--")), "/gz.html?via="+strings.TrimPrefix(proto, "--"))
			if strings.Contains(line, "gzip=-") {
				t.Errorf("nginx did not compress gz.html, the test proves nothing: %q", line)
			}
			f.checkFlow(t, f.waitAccess(t, 1, flowURL(url))[0], 200)
		})
	}

	t.Run("keep-alive across the origin's idle close", func(t *testing.T) {
		urls := keepAliveAcross(t, f, o)
		for _, u := range urls {
			requests = append(requests, made{u, 200})
		}
		a := f.waitAccess(t, 1, flowURL(urls[0]))[0]
		b := f.waitAccess(t, 1, flowURL(urls[1]))[0]
		if a.str("parent") != b.str("parent") {
			t.Errorf("the two requests have parents %q and %q, want one tunnel", a.str("parent"), b.str("parent"))
		}
	})

	t.Run("listener's stream bound on an intercepted connection", func(t *testing.T) {
		cc := newH2Client(t, f.dialIntercepted(t, o, "h2"))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		url := o.base + "/public/x?streams"
		if status, body := h2GetBody(t, ctx, cc, url); status != 200 || body != "public x\n" {
			t.Fatalf("GET %s: %d %q", url, status, body)
		}
		requests = append(requests, made{url, 200})
		if got := cc.State().MaxConcurrentStreams; got != flowsMaxStreams {
			t.Errorf("ferry's SETTINGS_MAX_CONCURRENT_STREAMS on the intercepted connection: %d, want the listener's %d", got, flowsMaxStreams)
		}
	})

	flows := f.waitAccess(t, len(requests), func(l logLine) bool { return l.str("proto") == "http" })
	if code := f.stop(t); code != 0 {
		t.Errorf("ferry exited %d", code)
	}
	t.Run("HAR lists every flow", func(t *testing.T) {
		entries := readHAR(t, f.har)
		if len(entries) != len(flows) {
			t.Errorf("HAR has %d entries, the access log %d flows", len(entries), len(flows))
		}
		for _, r := range requests {
			if !slices.ContainsFunc(entries, func(e harEntry) bool {
				return e.Request.Method == "GET" && e.Request.URL == r.url && e.Response.Status == r.status
			}) {
				t.Errorf("HAR lacks GET %s %d; entries: %+v", r.url, r.status, entries)
			}
		}
	})
}

// grepLine is the first line of log containing s.
func grepLine(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// dialIntercepted opens a CONNECT tunnel to the origin through ferry
// and TLS inside it, trusting ferry's CA, offering ALPN proto.
func (f flowsFerry) dialIntercepted(t *testing.T, o flowsOrigin, proto string) *tls.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := testkit.DialCONNECT(ctx, f.addr, "localhost:"+o.port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	deadlineAfter(c, 30*time.Second)
	pem, err := os.ReadFile(f.ca)
	roots := x509.NewCertPool()
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("read ferry's CA %s: %v", f.ca, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "localhost", RootCAs: roots, NextProtos: []string{proto}})
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS through ferry: %v", err)
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		t.Fatalf("ALPN %q through ferry, want %q", got, proto)
	}
	return tc
}

// keepAliveAcross sends two HTTP/1.1 requests on one client connection
// through an intercepted tunnel, 2 s apart: nginx (keepalive_timeout 1s)
// closes ferry's connection to it in between, and the second request
// must still be answered. It returns the two URLs.
func keepAliveAcross(t *testing.T, f flowsFerry, o flowsOrigin) []string {
	t.Helper()
	tc := f.dialIntercepted(t, o, "http/1.1")
	br := bufio.NewReader(tc)
	var urls []string
	for i := 1; i <= 2; i++ {
		if i == 2 {
			time.Sleep(2 * time.Second)
		}
		path := fmt.Sprintf("/public/x?ka=%d", i)
		fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: localhost:%s\r\n\r\n", path, o.port)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the kept-alive connection: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "public x\n" {
			t.Fatalf("request %d: %s %q %v, want 200 and the file", i, resp.Status, body, err)
		}
		urls = append(urls, o.base+path)
	}
	return urls
}

// TestFlowsChromium loads a page of 20 subresources (16 images, 2 style
// sheets, 2 scripts) in headless Chromium through ferry intercepting
// its HTTP/2 connection: the page renders whole (the scripts ran, every
// image decoded, the sheets applied), the replace plugin rewrote the
// page's text, and ferry logs 21 flows, one per request, under one
// tunnel.
//
// Chromium trusts ferry's CA through an NSS database in a temporary
// HOME (certutil, Debian libnss3-tools), as a user's browser would: the
// --ignore-certificate-errors-spki-list flag trusts a leaf's key, not a
// CA, and ferry signs a new leaf per name.
func TestFlowsChromium(t *testing.T) {
	chromium := testkit.NeedBin(t, "chromium")
	o := startFlowsOrigin(t)
	f := startFlowsFerry(t, o.caFile)
	home := nssHome(t, f.ca)
	url := o.base + "/"
	dom := headlessDOM(t, chromium, []string{"HOME=" + home},
		"--proxy-server=http://"+f.addr, "--proxy-bypass-list=<-loopback>", url)
	for _, want := range []string{"[a.js ran][b.js ran]", "loaded images=16 sheets=2", "Howdy from nginx"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q; DOM:\n%s", want, dom)
		}
	}
	// Chromium's own background requests (to Google's update and time
	// services) are refused by the acl, before any lookup: only the
	// origin's lines count.
	flows := f.waitAccess(t, 21, func(l logLine) bool {
		return l.str("proto") == "http" && strings.HasPrefix(l.str("url"), o.base+"/")
	})
	parents := map[string]int{}
	for _, l := range flows {
		if got, _ := l.num("status"); got != 200 || l.str("mitm") != "localhost" {
			t.Errorf("flow %v: want status 200, intercepted as localhost", l)
		}
		parents[l.str("parent")]++
	}
	if len(flows) != 21 || len(parents) != 1 {
		t.Errorf("%d flows under parents %v, want 21 flows in one intercepted HTTP/2 tunnel", len(flows), parents)
	}
	for _, l := range f.accessLog() {
		if strings.Contains(l.str("error"), "lookup") {
			t.Errorf("ferry looked a name up for Chromium: %v", l)
		}
	}
	if log := readLog(o.log); strings.Count(log, " HTTP/2.0 ") < 21 {
		t.Logf("nginx's log (not all over HTTP/2 upstream):\n%s", log)
	}
}

// nssHome makes a HOME whose NSS database (~/.pki/nssdb, where Chromium
// on Linux reads the user's certificates) trusts the PEM CA in caFile
// for TLS servers.
func nssHome(t *testing.T, caFile string) string {
	t.Helper()
	certutil := testkit.NeedBin(t, "certutil")
	home := t.TempDir()
	db := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-N", "-d", "sql:" + db, "--empty-password"},
		{"-A", "-d", "sql:" + db, "-n", "ferry test CA", "-t", "C,,", "-i", caFile},
	} {
		if out, err := exec.Command(certutil, args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %q: %v\n%s", args, err, out)
		}
	}
	return home
}
