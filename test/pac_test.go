//go:build linux

package test

import (
	"context"
	"encoding/json"
	"ferry/test/testkit"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pacConfig is debugConfig with the pac table given (its keys); extra
// follows the [[plugin]].
func pacConfig(pac, extra string) func(addr string) string {
	return debugConfig("\n[listener.pac]\n"+pac, extra)
}

// fetch sends method path to addr as an origin-form request (the form a
// browser uses to fetch a PAC file) and returns the response and body.
func fetch(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: logTimeout, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(b)
}

// TestPACServed: a listener with a pac table answers GET and HEAD
// /proxy.pac with the file; other origin-form requests keep their 400;
// the admin service serves the file without its token.
func TestPACServed(t *testing.T) {
	adminAddr := freeAddr(t)
	f := startFerry(t, pacConfig(`direct = ["*.internal"]`,
		fmt.Sprintf("\n[admin]\nlisten = %q\ntoken = \"s3cret\"\n", adminAddr)), nil)
	base := "http://" + f.addr
	resp, body := fetch(t, "GET", base+"/proxy.pac")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
		t.Fatalf("GET /proxy.pac: %s, Content-Type %q; want 200 application/x-ns-proxy-autoconfig", resp.Status, resp.Header.Get("Content-Type"))
	}
	if want := `return "PROXY ` + f.addr + `";`; !strings.Contains(body, want) || !strings.Contains(body, `"*.internal"`) {
		t.Errorf("PAC file lacks %s or the direct pattern:\n%s", want, body)
	}
	if resp, b := fetch(t, "HEAD", base+"/proxy.pac"); resp.StatusCode != 200 || b != "" || resp.ContentLength != int64(len(body)) {
		t.Errorf("HEAD /proxy.pac: %s with %d body bytes, Content-Length %d; want 200, none, %d", resp.Status, len(b), resp.ContentLength, len(body))
	}
	for _, r := range []struct{ method, path string }{{"GET", "/other"}, {"POST", "/proxy.pac"}, {"GET", "/proxy.pac/x"}} {
		if resp, _ := fetch(t, r.method, base+r.path); resp.StatusCode != 400 {
			t.Errorf("%s %s: %s, want 400 as for any origin-form request", r.method, r.path, resp.Status)
		}
	}
	// The admin service: no token, any Host.
	resp, abody := fetch(t, "GET", "http://"+adminAddr+"/proxy.pac")
	if resp.StatusCode != 200 || abody != body {
		t.Errorf("admin /proxy.pac: %s\n%s\nwant 200 and the listener's file", resp.Status, abody)
	}
	if resp, _ := fetch(t, "GET", "http://"+adminAddr+"/proxy.pac?listener=nope"); resp.StatusCode != 404 {
		t.Errorf("admin /proxy.pac?listener=nope: %s, want 404", resp.Status)
	}
	if resp, _ := fetch(t, "GET", "http://"+adminAddr+"/channels"); resp.StatusCode != 401 {
		t.Errorf("admin /channels without the token: %s, want 401 still", resp.Status)
	}
	if n := len(f.lines("access", nil)); n != 0 {
		t.Errorf("PAC requests wrote %d access lines, want none: they open no channel", n)
	}
}

// TestPACOffStays400: without a pac table, /proxy.pac is an origin-form
// request like any other: 400.
func TestPACOffStays400(t *testing.T) {
	f := startFerry(t, withJSON(""), nil)
	if resp, _ := fetch(t, "GET", "http://"+f.addr+"/proxy.pac"); resp.StatusCode != 400 {
		t.Errorf("GET /proxy.pac without pac: %s, want 400", resp.Status)
	}
}

// pacHarness evaluates a PAC file in node with the browser functions it
// calls stubbed: shExpMatch, isInNet, dnsResolve and, in "ex" mode (as in
// Chromium), dnsResolveEx and isInNetEx. argv: file, mode, hosts (name
// to "addr;addr") and cases ([url, host] pairs) as JSON; it prints the
// answers as a JSON array.
const pacHarness = `
const fs = require("fs");
const [file, mode, hostsJSON, casesJSON] = process.argv.slice(1); // node -e puts the arguments after "--" at 1
const hosts = JSON.parse(hostsJSON);
function shExpMatch(s, p) {
	const re = p.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
	return new RegExp("^" + re + "$").test(s);
}
function ip4(a) { return a.split(".").reduce((x, o) => x * 256 + Number(o), 0); }
function dnsResolve(h) {
	const r = hosts[h];
	return r ? (r.split(";").find(a => a.indexOf(":") < 0) || null) : null;
}
function isInNet(h, pat, mask) {
	if (!/^[0-9.]+$/.test(h)) { h = dnsResolve(h); if (!h) return false; }
	return ((ip4(h) & ip4(mask)) >>> 0) === ((ip4(pat) & ip4(mask)) >>> 0);
}
function ip6(a) {
	const [h, t] = a.split("::");
	const hp = h ? h.split(":") : [];
	const tp = t === undefined ? [] : (t ? t.split(":") : []);
	const mid = t === undefined ? [] : Array(8 - hp.length - tp.length).fill("0");
	return [...hp, ...mid, ...tp].reduce((x, g) => x * 65536n + BigInt(parseInt(g, 16)), 0n);
}
const ex = {
	dnsResolveEx: h => hosts[h] || "",
	isInNetEx: (ip, cidr) => {
		const [p, b] = cidr.split("/");
		if (ip.indexOf(":") < 0) return false;
		const sh = 128n - BigInt(b);
		return (ip6(ip) >> sh) === (ip6(p) >> sh);
	},
};
if (mode === "ex") { globalThis.dnsResolveEx = ex.dnsResolveEx; globalThis.isInNetEx = ex.isInNetEx; }
eval(fs.readFileSync(file, "utf8"));
console.log(JSON.stringify(JSON.parse(casesJSON).map(([u, h]) => FindProxyForURL(u, h))));
`

// TestPACDecisions evaluates the PAC file ferry serves in a JavaScript
// engine (node) and checks its answer for each kind of rule, with and
// without the IPv6 extensions Chromium has.
func TestPACDecisions(t *testing.T) {
	node := testkit.NeedBin(t, "node")
	f := startFerry(t, pacConfig(`direct = ["localhost", "*.internal", ".corp.example", "DB?.lan"]
direct_networks = ["10.0.0.0/8", "192.168.1.0/24", "fd00::/8"]
proxies = ["HTTPS proxy.example:443", "PROXY proxy.example:3128"]
fallback_direct = true`, ""), nil)
	_, pac := fetch(t, "GET", "http://"+f.addr+"/proxy.pac")
	file := filepath.Join(t.TempDir(), "proxy.pac")
	if err := os.WriteFile(file, []byte(pac), 0o644); err != nil {
		t.Fatal(err)
	}
	hosts := map[string]string{"printer.office": "192.168.1.20", "web.example": "93.184.216.34",
		"v6only.example": "fd00::7", "dual.example": "93.184.216.34;fd00::8"}
	const proxy = "HTTPS proxy.example:443; PROXY proxy.example:3128; DIRECT"
	tests := []struct {
		host     string
		ex, base string // answers with and without dnsResolveEx and isInNetEx
	}{
		{"localhost", "DIRECT", "DIRECT"},
		{"a.b.internal", "DIRECT", "DIRECT"},
		{"internal", proxy, proxy},
		{"corp.example", "DIRECT", "DIRECT"},
		{"www.CORP.example", "DIRECT", "DIRECT"},
		{"notcorp.example", proxy, proxy},
		{"db1.lan", "DIRECT", "DIRECT"},
		{"db12.lan", proxy, proxy},
		{"10.1.2.3", "DIRECT", "DIRECT"},
		{"11.1.2.3", proxy, proxy},
		{"printer.office", "DIRECT", "DIRECT"},
		{"web.example", proxy, proxy},
		{"unknown.example", proxy, proxy},
		{"[fd00::5]", "DIRECT", proxy},
		{"fd00::5", "DIRECT", proxy},
		{"fe80::1", proxy, proxy},
		{"v6only.example", "DIRECT", proxy},
		{"dual.example", "DIRECT", proxy},
	}
	var cases [][2]string
	for _, tt := range tests {
		cases = append(cases, [2]string{"http://" + tt.host + "/path?q=1", tt.host})
	}
	hj, _ := json.Marshal(hosts)
	cj, _ := json.Marshal(cases)
	for _, mode := range []string{"ex", "base"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, node, "-e", pacHarness, "--", file, mode, string(hj), string(cj)).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("node (%s): %v\n%s\nPAC:\n%s", mode, err, out, pac)
		}
		var got []string
		if err := json.Unmarshal(out, &got); err != nil || len(got) != len(tests) {
			t.Fatalf("node (%s) printed %s (%v)", mode, out, err)
		}
		for i, tt := range tests {
			want := tt.ex
			if mode == "base" {
				want = tt.base
			}
			if got[i] != want {
				t.Errorf("%s (%s): FindProxyForURL = %q, want %q", tt.host, mode, got[i], want)
			}
		}
	}
}

// TestPACChromium: Chromium set up with --proxy-pac-url pointing at
// ferry fetches one origin through ferry (its access line shows it) and
// another DIRECT, as a PAC rule says (no access line). The proxied
// origin is named by the machine's host name, which /etc/hosts maps to
// loopback for ferry to resolve (Chromium sends loopback names and
// addresses DIRECT whatever the PAC file says); the direct one,
// direct.test, is mapped to 127.0.0.1 inside Chromium.
func TestPACChromium(t *testing.T) {
	chromium := testkit.NeedBin(t, "chromium")
	host := loopbackHostname(t)
	proxied := originServing(t, "through-ferry")
	direct := originServing(t, "went-direct")
	f := startFerry(t, pacConfig(`direct = ["*.test"]`, ""), nil)

	proxiedURL := "http://" + host + ":" + proxied.port + "/"
	directURL := "http://direct.test:" + direct.port + "/"
	for _, c := range []struct{ url, want string }{{proxiedURL, "through-ferry"}, {directURL, "went-direct"}} {
		if dom := chromiumDump(t, chromium, "http://"+f.addr+"/proxy.pac", c.url); !strings.Contains(dom, c.want) {
			t.Fatalf("chromium loaded %s as:\n%s\nwant the page saying %s", c.url, dom, c.want)
		}
	}
	acc := f.waitLine(t, "access", byTarget(host+":"+proxied.port))
	if st, _ := acc.num("status"); acc.str("url") != proxiedURL || st != 200 {
		t.Errorf("access line %v, want GET %s answered 200", acc, proxiedURL)
	}
	if n := len(f.lines("access", byTarget("direct.test:"+direct.port))); n != 0 {
		t.Errorf("%d access lines for the DIRECT origin, want none", n)
	}
	if direct.hits() == 0 || proxied.hits() == 0 {
		t.Errorf("origins served %d (proxied) and %d (direct) requests, want both some", proxied.hits(), direct.hits())
	}
}

// loopbackHostname returns the machine's host name when it resolves to
// loopback addresses only (from /etc/hosts, as Debian and Docker write
// it); otherwise the test is skipped, or fails under CI=true, since it
// needs a name Chromium does not treat as loopback but ferry resolves to
// one.
func loopbackHostname(t *testing.T) string {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		testkit.Unmet(t, "no host name: %v", err)
	}
	addrs, err := net.LookupHost(host)
	if err != nil || len(addrs) == 0 {
		testkit.Unmet(t, "host name %q does not resolve (%v): add it to /etc/hosts as 127.0.1.1", host, err)
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip == nil || !ip.IsLoopback() {
			testkit.Unmet(t, "host name %q resolves to %s, not loopback: the test stays on loopback", host, a)
		}
	}
	return host
}

// origin is a loopback web server with one page.
type origin struct {
	port string
	n    atomic.Int64
}

func (o *origin) hits() int64 { return o.n.Load() }

// originServing serves a page saying body on 127.0.0.1.
func originServing(t *testing.T, body string) *origin {
	t.Helper()
	o := &origin{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.n.Add(1)
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "<html><body>%s</body></html>", body)
	}))
	t.Cleanup(srv.Close)
	_, o.port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	return o
}

// chromiumDump loads url in headless Chromium configured by the PAC file
// at pacURL and returns the page's DOM. direct.test resolves to
// 127.0.0.1 inside Chromium. The flags keep it off the internet.
func chromiumDump(t *testing.T, chromium, pacURL, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--proxy-pac-url="+pacURL,
		"--host-resolver-rules=MAP direct.test 127.0.0.1", "--dump-dom", url)
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); !strings.HasSuffix(strings.ToLower(name), "_proxy") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", url, err, stderr.String())
	}
	return string(out)
}

// TestPACReload: a reload changes the file served; a reload with a
// hostile value is refused with its position and the file stays.
func TestPACReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ferry.toml")
	var addr string
	write := func(pac string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(pacConfig(pac, "")(addr)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := startFerry(t, nil, func(a string) []string {
		addr = a
		write(`direct = ["before.internal"]`)
		return []string{"-c", path}
	})
	write(`direct = ["after.internal"]`)
	f.send(t, syscall.SIGHUP)
	f.waitLine(t, "configuration reloaded", nil)
	if _, body := fetch(t, "GET", "http://"+f.addr+"/proxy.pac"); !strings.Contains(body, `"after.internal"`) || strings.Contains(body, "before") {
		t.Errorf("PAC after reload:\n%s\nwant after.internal only", body)
	}
	write(`direct = ["x\"); return \"DIRECT\"; (\""]`)
	f.send(t, syscall.SIGHUP)
	line := f.waitLine(t, "reload failed: the running configuration stays", nil)
	if e := line.str("error"); !strings.Contains(e, "listener[0].pac.direct[0]: invalid host pattern") {
		t.Errorf("reload error %q, want the bad pattern at its key", e)
	}
	if _, body := fetch(t, "GET", "http://"+f.addr+"/proxy.pac"); !strings.Contains(body, `"after.internal"`) {
		t.Errorf("PAC after a refused reload:\n%s\nwant it unchanged", body)
	}
}

// TestPACHostile: requests for the PAC file that try to inject into it
// or hold the connection: a hostile Host never reaches the file, a
// pipelined second request is not answered (the file's answer closes),
// a body is not waited for, and many fetches at once leave nothing
// behind (those past [limits] max_client_handshakes, 64 from one
// address, are refused at accept as any connection is).
func TestPACHostile(t *testing.T) {
	f := startFerry(t, pacConfig(`direct = ["*.internal"]`, ""), nil)
	raw := func(req string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", f.addr, logTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(logTimeout))
		c.Write([]byte(req))
		b, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		return string(b)
	}
	ans := raw("GET /proxy.pac HTTP/1.1\r\nHost: x\"); alert(1); (\"\r\n\r\nGET /proxy.pac HTTP/1.1\r\nHost: a\r\n\r\n")
	if strings.Count(ans, "HTTP/1.1 200") != 1 || strings.Contains(ans, "alert") {
		t.Errorf("hostile Host and a pipelined request got:\n%s\nwant one 200 without the Host", ans)
	}
	ans = raw("GET /proxy.pac HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\npartial")
	if !strings.HasPrefix(ans, "HTTP/1.1 200") {
		t.Errorf("a GET with an unsent body got:\n%s\nwant 200 at once", ans)
	}
	pid := f.cmd.Process.Pid
	before := fdCount(t, pid)
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: logTimeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
			if resp, err := c.Get("http://" + f.addr + "/proxy.pac"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() == 0 {
		t.Error("no fetch of 200 concurrent ones got the file")
	}
	deadline := time.Now().Add(logTimeout)
	for fdCount(t, pid) > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := fdCount(t, pid); n > before {
		t.Errorf("ferry holds %d descriptors after 200 PAC fetches, %d before", n, before)
	}
	t.Logf("%d of 200 concurrent fetches got the file", ok.Load())
}
