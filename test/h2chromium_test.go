//go:build linux

package test

import (
	"context"
	"ferry/test/testkit"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// httpsOrigin starts an HTTPS server on 127.0.0.1 with the PKI's
// certificate, HTTP/1.1 only: Chromium opens a connection (so a tunnel)
// per request it runs at once, instead of multiplexing one.
func httpsOrigin(t *testing.T, pki tlsListener, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = pki.ServerTLS()
	srv.EnableHTTP2 = false
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// scriptHandler answers a script that appends mark and the path to the
// page.
func scriptHandler(mark string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprintf(w, "document.body.insertAdjacentText('beforeend', %q);\n", "["+mark+r.URL.Path+"]")
	}
}

// TestH2Chromium loads an HTTPS page with scripts from three origins in
// headless Chromium through ferry as an HTTPS proxy. Chromium speaks
// HTTP/2 to the proxy (ALPN h2) and opens each tunnel as a CONNECT stream:
// ferry's access log shows the tunnels to all three origins under one
// parent connection.
func TestH2Chromium(t *testing.T) {
	t.Parallel()
	chromium := testkit.NeedBin(t, "chromium")
	pki := newTLSListener(t)
	b := httpsOrigin(t, pki, scriptHandler("b"))
	c := httpsOrigin(t, pki, scriptHandler("c"))
	page := fmt.Sprintf(`<!doctype html><html><head><title>h2 proxy</title></head><body>page
<script src="/s1.js"></script><script src="/s2.js"></script>
<script src="https://%s/b.js"></script><script src="https://%s/c.js"></script>
</body></html>`, b, c)
	a := httpsOrigin(t, pki, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			scriptHandler("a")(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, page)
	})
	f := startFerry(t, pki.config("", []string{"chromium-guard", "log"}, "[[plugin]]\nname = \"log\"\n"+chromiumACL), nil)
	dom := runChromium(t, chromium, f.addr, pki.cert, "https://"+a+"/")
	defer noLookups(t, f)
	for _, mark := range []string{"[a/s1.js]", "[a/s2.js]", "[b/b.js]", "[c/c.js]"} {
		if !strings.Contains(dom, mark) {
			t.Errorf("page lacks %s: the script did not load through ferry; DOM:\n%s", mark, dom)
		}
	}
	// Every tunnel is a CONNECT stream of an HTTP/2 connection; the
	// three origins' tunnels share one.
	byParent := map[string]map[string]bool{}
	for _, target := range []string{a, b, c} {
		for _, l := range accessLines(t, f, target, 1) {
			p := l.str("parent")
			if p == "" || l.str("proto") != "connect" {
				t.Errorf("tunnel to %s: want a CONNECT stream with a parent, got %v", target, l)
			}
			if byParent[p] == nil {
				byParent[p] = map[string]bool{}
			}
			byParent[p][target] = true
		}
	}
	shared := false
	for _, targets := range byParent {
		shared = shared || len(targets) == 3
	}
	if !shared {
		t.Errorf("no HTTP/2 connection carried the tunnels to all three origins: %v", byParent)
	}
	t.Logf("tunnels by parent connection: %v", byParent)
}

// runChromium loads url in headless Chromium through proxyAddr as an
// HTTPS proxy, trusting the key of the PEM certificate in certFile (the
// listener's and the test origins'), and returns the DOM after the load.
func runChromium(t *testing.T, chromium, proxyAddr, certFile, url string) string {
	t.Helper()
	return headlessDOM(t, chromium, nil, "--ignore-certificate-errors-spki-list="+spkiHash(t, certFile),
		"--proxy-server=https://"+proxyAddr, "--proxy-bypass-list=<-loopback>", url)
}

// chromiumACL is an acl for a ferry that headless Chromium uses, whose
// test targets are IP addresses: Chromium's own requests (Google's
// update, time and account services) name hosts, which it refuses by
// name, before any lookup, so the machine's resolver is never asked.
const chromiumACL = `
[[plugin]]
name = "chromium-guard"
type = "acl"
default = "allow"
[[plugin.rule]]
action = "deny"
domain = [".com", ".net", ".org", ".io"]
`

// noLookups fails the test when ferry looked a name up for Chromium:
// the acl must have refused every name it sent before a lookup.
func noLookups(t *testing.T, f *proc) {
	t.Helper()
	for _, l := range f.logLines() {
		if strings.Contains(l.str("error"), "lookup") {
			t.Errorf("ferry looked a name up for Chromium: %v", l)
		}
	}
}

// chromiumResolverRules lets Chromium resolve loopback names only:
// localhost and the machine's name (which TestPACChromium uses, and
// which /etc/hosts maps to loopback).
func chromiumResolverRules() string {
	rules := "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
	if host, err := os.Hostname(); err == nil && host != "" {
		rules += ", EXCLUDE " + host
	}
	return rules
}

// headlessDOM runs headless Chromium with args (its proxy flags and the
// URL last) and env added to the test's environment, and returns the DOM
// after the load. The flags keep it off the internet; it gets a fresh
// profile.
func headlessDOM(t *testing.T, chromium string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
		"--disable-quic", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--user-data-dir=" + t.TempDir(), "--dump-dom",
		// Names Chromium resolves itself (DIRECT, or its own services)
		// never reach the machine's resolver: tests stay on loopback.
		"--host-resolver-rules=" + chromiumResolverRules()}, args...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v; stderr:\n%s", err, stderr.String())
	}
	return string(out)
}
