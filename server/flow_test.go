package server

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"ferry/plugins"
	"ferry/plugins/mitm"
	"ferry/test/testkit"
)

// flowHooks tags requests and responses, blocks /blocked with an
// answer, rewrites HTML bodies and records every session it sees end.
type flowHooks struct {
	name    string
	mu      sync.Mutex
	done    []*plugins.Session
	reasons []plugins.CloseReason // each closed session's, as done
	stats   []plugins.Stats       // likewise
}

func (p *flowHooks) Name() string { return p.name }
func (p *flowHooks) OnHTTPRequest(s *plugins.Session, r *http.Request) error {
	if r.URL.Path == "/blocked" {
		return plugins.Block(http.StatusForbidden, "blocked by test\n", "test block")
	}
	r.Header.Set("X-Flow-Req", r.URL.String())
	return nil
}
func (p *flowHooks) OnHTTPResponse(_ *plugins.Session, _ *http.Request, resp *http.Response) error {
	resp.Header.Set("X-Flow-Resp", "seen")
	return nil
}
func (p *flowHooks) WantsHTTPBody(_ *plugins.Session, m *plugins.HTTPMessage) bool {
	return m.ContentType() == "text/html"
}
func (p *flowHooks) OnHTTPBody(_ *plugins.Session, _ *plugins.HTTPMessage, b []byte) ([]byte, error) {
	return bytes.ReplaceAll(b, []byte("Hello"), []byte("Howdy")), nil
}
func (p *flowHooks) StreamHTTPBody(_ *plugins.Session, m *plugins.HTTPMessage, body io.Reader) io.Reader {
	if m.Dir == plugins.Down && m.Request.URL.Path == "/upper" {
		return upperReader{body}
	}
	return body
}

type upperReader struct{ r io.Reader }

func (u upperReader) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	copy(p[:n], bytes.ToUpper(p[:n]))
	return n, err
}

func (p *flowHooks) OnClose(s *plugins.Session, st plugins.Stats) {
	p.mu.Lock()
	p.done = append(p.done, s)
	p.reasons = append(p.reasons, st.Reason)
	p.stats = append(p.stats, st)
	p.mu.Unlock()
}

// statsOf returns the Stats of the ended flow whose request path is
// path, and whether one ended.
func (p *flowHooks) statsOf(path string) (plugins.Stats, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, s := range p.done {
		if s.Parent != "" && s.Request != nil && s.Request.URL.Path == path {
			return p.stats[i], true
		}
	}
	return plugins.Stats{}, false
}

// closedWith reports whether a flow session ended for reason r.
func (p *flowHooks) closedWith(r plugins.CloseReason) bool {
	return p.endedWith(r, func(s *plugins.Session) bool { return s.Parent != "" })
}

// tunnelClosedWith reports whether a tunnel's session ended for reason r.
func (p *flowHooks) tunnelClosedWith(r plugins.CloseReason) bool {
	return p.endedWith(r, func(s *plugins.Session) bool { return s.Parent == "" })
}

func (p *flowHooks) endedWith(r plugins.CloseReason, which func(*plugins.Session) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, s := range p.done {
		if which(s) && p.reasons[i] == r {
			return true
		}
	}
	return false
}

func (p *flowHooks) flows() []*plugins.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*plugins.Session
	for _, s := range p.done {
		if s.Parent != "" && s.Protocol == "http" {
			out = append(out, s)
		}
	}
	return out
}

var flowInst sync.Map // name -> *flowHooks

func init() {
	plugins.Register(plugins.Registration{
		Type: "flowtest", Description: "server tests only",
		New: func(env plugins.Env) (plugins.Plugin, error) {
			p, _ := flowInst.LoadOrStore(env.Name, &flowHooks{name: env.Name})
			return p.(*flowHooks), nil
		},
	})
}

// flowOrigin is an HTTPS origin for name.test speaking h2 and
// http/1.1; it echoes the X-Flow-Req field and serves gzip HTML.
func flowOrigin(t testing.TB, dir string) (addr, caFile string) {
	caFile, certFile, keyFile := testkit.WritePKI(t, dir, "name.test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Saw", r.Header.Get("X-Flow-Req"))
		switch r.URL.Path {
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		case "/upgrade":
			upgradeEcho(w)
			return
		case "/upgrade-count":
			upgradeCount(w)
			return
		case "/sum":
			h := sha256.New()
			io.Copy(h, r.Body)
			fmt.Fprintf(w, "%x", h.Sum(nil))
			return
		}
		if r.URL.Path == "/huge" { // more than the sockets between hold
			w.Write(bytes.Repeat([]byte("x"), 32<<20))
			return
		}
		if r.URL.Path == "/64k" {
			w.Write(bytes.Repeat([]byte("x"), 64<<10))
			return
		}
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close") // the origin ends its connection
		}
		if r.URL.Path == "/gz" {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			fmt.Fprint(zw, "<p>Hello from the origin</p>")
			zw.Close()
			return
		}
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), caFile
}

// flowConn is one client connection through ferry to the origin,
// intercepted: CONNECT to the origin's address, TLS as name.test.
type flowConn struct {
	tc *tls.Conn
	h2 *http2.ClientConn
	br *bufio.Reader
}

func (fc *flowConn) do(t testing.TB, req *http.Request) (*http.Response, string) {
	t.Helper()
	var resp *http.Response
	var err error
	if fc.h2 != nil {
		resp, err = fc.h2.RoundTrip(req)
	} else {
		if err = req.Write(fc.tc); err == nil {
			resp, err = http.ReadResponse(fc.br, req)
		}
	}
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

type flowEnv struct {
	f      *fixture
	hooks  *flowHooks
	origin string
	roots  *x509.CertPool
}

func (e *flowEnv) dial(t testing.TB, h2 bool) *flowConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testkit.DialCONNECT(ctx, e.f.addr, e.origin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	proto := "http/1.1"
	if h2 {
		proto = "h2"
	}
	tc := tls.Client(c, &tls.Config{ServerName: "name.test", RootCAs: e.roots, NextProtos: []string{proto}})
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("TLS through ferry: %v\n%s", err, e.f.logs.String())
	}
	if got := tc.ConnectionState().NegotiatedProtocol; got != proto {
		t.Fatalf("ALPN %q, want %q", got, proto)
	}
	fc := &flowConn{tc: tc, br: bufio.NewReader(tc)}
	if h2 {
		if fc.h2, err = (&http2.Transport{}).NewClientConn(tc); err != nil {
			t.Fatal(err)
		}
	}
	return fc
}

func newFlowEnv(t testing.TB, extra string) *flowEnv {
	dir := t.TempDir()
	origin, originCA := flowOrigin(t, dir)
	certPEM, keyPEM, err := mitm.NewCA("ferry test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caCert, caKey := filepath.Join(dir, "mitm-ca.pem"), filepath.Join(dir, "mitm-ca-key.pem")
	os.WriteFile(caCert, certPEM, 0o600)
	os.WriteFile(caKey, keyPEM, 0o600)
	name := strings.NewReplacer("/", "-", "=", "-").Replace(t.Name())
	f := start(t, fmt.Sprintf(`
[defaults]
idle_timeout = "5s"
[[listener]]
listen = "127.0.0.1:0"
allow_local_destinations = true
plugins = ["mitm", %q]
%s
[[plugin]]
name = "mitm"
ca_cert = %q
ca_key = %q
intercept = ["name.test", "localhost"]
upstream_ca_file = %q
[[plugin]]
name = %q
type = "flowtest"
`, name, extra, caCert, caKey, originCA, name))
	v, _ := flowInst.Load(name)
	t.Cleanup(func() { flowInst.Delete(name) })
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	return &flowEnv{f: f, hooks: v.(*flowHooks), origin: origin, roots: roots}
}

func TestFlows(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			e := newFlowEnv(t, "")
			fc := e.dial(t, h2)
			base := "https://name.test"
			req, _ := http.NewRequest("GET", base+"/a?x=1", nil)
			resp, body := fc.do(t, req)
			wantProto := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]
			if resp.StatusCode != 200 || body != wantProto+" /a" {
				t.Fatalf("GET /a: %d %q, want 200 %q", resp.StatusCode, body, wantProto+" /a")
			}
			if got := resp.Header.Get("X-Saw"); got != base+"/a?x=1" {
				t.Errorf("the origin saw X-Flow-Req %q, want the full URL", got)
			}
			if resp.Header.Get("X-Flow-Resp") != "seen" {
				t.Errorf("response fields %v: want X-Flow-Resp from OnHTTPResponse", resp.Header)
			}
			req, _ = http.NewRequest("GET", base+"/blocked", nil)
			resp, body = fc.do(t, req)
			if resp.StatusCode != 403 || body != "blocked by test\n" {
				t.Fatalf("GET /blocked: %d %q, want the plugin's 403", resp.StatusCode, body)
			}
			req, _ = http.NewRequest("GET", base+"/gz", nil)
			req.Header.Set("Accept-Encoding", "gzip")
			resp, body = fc.do(t, req)
			zr, err := gzip.NewReader(strings.NewReader(body))
			if err != nil {
				t.Fatalf("GET /gz: %v (fields %v)", err, resp.Header)
			}
			plain, _ := io.ReadAll(zr)
			if string(plain) != "<p>Howdy from the origin</p>" {
				t.Fatalf("GET /gz decoded to %q, want the body hook's rewrite", plain)
			}
			req, _ = http.NewRequest("GET", base+"/upper", nil)
			resp, body = fc.do(t, req)
			if body != strings.ToUpper(wantProto)+" /UPPER" || resp.ContentLength != -1 {
				t.Fatalf("GET /upper: %q (length %d), want the streamer's rewrite without a length", body, resp.ContentLength)
			}
			// All four on one connection, each its own session.
			waitFor(t, func() bool { return len(e.hooks.flows()) == 4 })
			parent := e.hooks.flows()[0].Parent
			for _, s := range e.hooks.flows() {
				if s.Parent != parent || s.Intercepted != "name.test" || !strings.HasPrefix(s.Request.URL.String(), base+"/") {
					t.Errorf("flow %s: parent %s mitm %q url %s", s.ID, s.Parent, s.Intercepted, s.Request.URL)
				}
			}
		})
	}
}

// TestFlowRedial: an origin that closes its connection between requests
// does not end the client's: the next request goes on a new one.
func TestFlowRedial(t *testing.T) {
	e := newFlowEnv(t, "")
	fc := e.dial(t, false)
	req, _ := http.NewRequest("GET", "https://name.test/close", nil)
	if resp, body := fc.do(t, req); resp.StatusCode != 200 || body != "HTTP/1.1 /close" || resp.Close {
		t.Fatalf("first: %d %q", resp.StatusCode, body)
	}
	req, _ = http.NewRequest("GET", "https://name.test/two", nil)
	if resp, body := fc.do(t, req); resp.StatusCode != 200 || body != "HTTP/1.1 /two" {
		t.Fatalf("second: %d %q", resp.StatusCode, body)
	}
}

// upgradeEcho switches to an echo protocol: 101, then every byte back.
func upgradeEcho(w http.ResponseWriter) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	brw.Flush()
	io.Copy(c, brw)
}

// upgradeCount switches to a protocol that only listens: 101, then it
// counts lines until "end" and answers with the count.
func upgradeCount(w http.ResponseWriter) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: count\r\n\r\n")
	brw.Flush()
	for n := 0; ; n++ {
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		if line == "end\n" {
			fmt.Fprintf(c, "%d\n", n)
			return
		}
	}
}

// TestFlowUpgradeIdle: an upgraded flow (bytes after a 101) is timed by
// idle_timeout as a tunnel is. Bytes one way only (the client talks, the
// origin listens) keep it, however long the origin is silent; with no
// byte either way it ends, where it once was held until a side closed.
func TestFlowUpgradeIdle(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := newFlowEnv(t, fmt.Sprintf("idle_timeout = %q", idle))
	upgrade := func(path, proto string) *flowConn {
		fc := e.dial(t, false)
		fmt.Fprintf(fc.tc, "GET %s HTTP/1.1\r\nHost: name.test\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", path, proto)
		resp, err := http.ReadResponse(fc.br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		return fc
	}

	fc := upgrade("/upgrade-count", "count")
	n, sent := 0, int64(0)
	for start := time.Now(); time.Since(start) < 4*idle; n++ {
		k, err := fmt.Fprintf(fc.tc, "line %d\n", n)
		if err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		sent += int64(k)
		time.Sleep(idle / 3)
	}
	k, _ := fmt.Fprint(fc.tc, "end\n")
	sent += int64(k)
	fc.tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := fc.br.ReadString('\n')
	if want := fmt.Sprintf("%d\n", n); got != want {
		t.Fatalf("origin's count after %d lines over %v: %q, %v; want %q", n, 4*idle, got, err, want)
	}
	// What went after the 101 is the flow's: up what the client sent,
	// down the count.
	fc.tc.Close()
	waitFor(t, func() bool {
		st, ok := e.hooks.statsOf("/upgrade-count")
		return ok && st.Up == sent && st.Down == int64(len(got))
	})

	// The watch is renewed at the 101, after the request went: time from
	// before it, or a silence cut right at idle_timeout looks early.
	quiet := time.Now()
	fc = upgrade("/upgrade", "echo")
	fc.tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := fc.br.ReadByte(); err != io.EOF {
		t.Fatalf("silent upgraded flow: read %q, %v; want EOF after idle_timeout", b, err)
	}
	if took := time.Since(quiet); took < idle {
		t.Errorf("silent upgraded flow ended after %v, before idle_timeout %v", took, idle)
	}
	// The upgraded flow owned the tunnel's connection: ferry's watch
	// ended the tunnel too, not its client.
	waitFor(t, func() bool {
		return e.hooks.closedWith(plugins.ReasonIdleTimeout) && e.hooks.tunnelClosedWith(plugins.ReasonIdleTimeout)
	})
}

// TestFlowSlowUpload: an upload slower in total than idle_timeout but
// never silent for it reaches the origin whole, on the tunnel's first
// connection to the target and on one made again after the target
// closed that one (the first request asks the origin to close).
func TestFlowSlowUpload(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := newFlowEnv(t, fmt.Sprintf("idle_timeout = %q", idle))
	fc := e.dial(t, false)
	for i, path := range []string{"/sum", "/close", "/sum"} {
		if path == "/close" {
			req, _ := http.NewRequest("GET", "https://name.test/close", nil)
			fc.do(t, req)
			continue
		}
		const pieces = 12 // one every idle/3: four idle periods in all
		fmt.Fprintf(fc.tc, "POST %s HTTP/1.1\r\nHost: name.test\r\nContent-Length: %d\r\n\r\n", path, pieces*10)
		for k := range pieces {
			fmt.Fprintf(fc.tc, "piece %03d\n", k)
			time.Sleep(idle / 3)
		}
		fc.tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(fc.br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		h := sha256.New()
		for k := range pieces {
			fmt.Fprintf(h, "piece %03d\n", k)
		}
		if want := fmt.Sprintf("%x", h.Sum(nil)); resp.StatusCode != 200 || string(got) != want {
			t.Fatalf("request %d: %d %q, want 200 and the body's hash %s", i, resp.StatusCode, got, want)
		}
	}
}

func TestFlowUpgrade(t *testing.T) {
	e := newFlowEnv(t, "")
	fc := e.dial(t, false)
	fmt.Fprint(fc.tc, "GET /upgrade HTTP/1.1\r\nHost: name.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(fc.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(fc.tc, "ping through the upgrade")
	got := make([]byte, len("ping through the upgrade"))
	fc.tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(fc.br, got); err != nil || string(got) != "ping through the upgrade" {
		t.Fatalf("echo after 101: %q %v", got, err)
	}
}

func TestFlowBounds(t *testing.T) {
	e := newFlowEnv(t, "max_streams_per_connection = 3\nidle_timeout = \"1s\"")
	t.Run("streams per connection", func(t *testing.T) {
		fc := e.dial(t, true)
		req, _ := http.NewRequest("GET", "https://name.test/", nil)
		fc.do(t, req)
		if got := fc.h2.State().MaxConcurrentStreams; got != 3 {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want 3", got)
		}
	})
	t.Run("header size", func(t *testing.T) {
		for _, h2 := range []bool{false, true} {
			fc := e.dial(t, h2)
			req, _ := http.NewRequest("GET", "https://name.test/", nil)
			req.Header.Set("X-Big", strings.Repeat("x", 70<<10))
			var resp *http.Response
			var err error
			if h2 {
				resp, err = fc.h2.RoundTrip(req)
			} else if err = req.Write(fc.tc); err == nil {
				resp, err = http.ReadResponse(fc.br, req)
			}
			if err == nil && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("h2=%v: a 70 KiB header got %d, want 431 or a refused stream", h2, resp.StatusCode)
			}
		}
	})
	t.Run("idle flow", func(t *testing.T) {
		fc := e.dial(t, true)
		req, _ := http.NewRequest("GET", "https://name.test/slow", nil)
		start := time.Now()
		resp, _ := fc.do(t, req)
		if resp.StatusCode != http.StatusGatewayTimeout || time.Since(start) > 2500*time.Millisecond {
			t.Errorf("a silent origin: %d after %v, want 504 after the 1s idle timeout", resp.StatusCode, time.Since(start))
		}
	})
}

// TestFlowPlaintext: plain HTTP/1 inside a CONNECT tunnel to a name in
// scope is served as flows with http:// URLs.
func TestFlowPlaintext(t *testing.T) {
	e := newFlowEnv(t, "")
	origin := httpServer(t)
	_, port, _ := net.SplitHostPort(origin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testkit.DialCONNECT(ctx, e.f.addr, "localhost:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, path := range []string{"/one", "/blocked"} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost:%s\r\n\r\n", path, port)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want := map[string]int{"/one": 200, "/blocked": 403}[path]
		if resp.StatusCode != want || resp.Header.Get("X-Flow-Resp") != "seen" && want == 200 {
			t.Errorf("GET %s in a plaintext tunnel: %d %v", path, resp.StatusCode, resp.Header)
		}
	}
	waitFor(t, func() bool { return len(e.hooks.flows()) == 2 })
	if u := e.hooks.flows()[0].Request.URL.String(); u != "http://localhost:"+port+"/one" {
		t.Errorf("flow URL %q", u)
	}
}

// TestFlowShutdown: idle intercepted connections end when a shutdown
// starts (keep-alive off for HTTP/1.1, GOAWAY for HTTP/2) rather than
// hold the drain to its end.
func TestFlowShutdown(t *testing.T) {
	e := newFlowEnv(t, "")
	for _, h2 := range []bool{false, true} {
		fc := e.dial(t, h2)
		req, _ := http.NewRequest("GET", "https://name.test/", nil)
		fc.do(t, req)
		if h2 {
			// A client closes an HTTP/2 connection with no streams left
			// after GOAWAY, as browsers and curl do.
			go func() {
				for !fc.h2.State().Closing {
					time.Sleep(10 * time.Millisecond)
				}
				fc.tc.Close()
			}()
		}
	}
	start := time.Now()
	sum := e.f.srv.Shutdown(5 * time.Second)
	if sum.Forced != 0 || time.Since(start) > 3*time.Second {
		t.Fatalf("shutdown with idle intercepted connections: %+v after %v", sum, time.Since(start))
	}
}

// BenchmarkFlow is for profiles of the flow path (the origin and the
// client run in the same process, so its times are no ratio to quote):
// go test -run X -bench Flow -cpuprofile cpu.out ./server/
// flowBenchPath is the object BenchmarkFlow asks for: FLOW_BENCH_PATH,
// or a small one. /64k is 64 KiB.
var flowBenchPath = cmp.Or(os.Getenv("FLOW_BENCH_PATH"), "/x")

func BenchmarkFlow(b *testing.B) {
	for _, h2 := range []bool{false, true} {
		b.Run(fmt.Sprintf("h2=%v", h2), func(b *testing.B) {
			e := newFlowEnv(b, "")
			fc := e.dial(b, h2)
			b.ReportAllocs()
			w0 := writeSyscalls()
			b.ResetTimer()
			for range b.N {
				req, _ := http.NewRequest("GET", "https://name.test"+flowBenchPath, nil)
				if resp, _ := fc.do(b, req); resp.StatusCode != 200 {
					b.Fatal(resp.Status)
				}
			}
			b.ReportMetric(float64(writeSyscalls()-w0)/float64(b.N), "writes/op")
		})
	}
}

// writeSyscalls is the process's write system calls so far (all three
// parties of BenchmarkFlow), from /proc/self/io; 0 where there is none.
func writeSyscalls() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// TestFlowClientNotReading: an intercepted client that asks for a large
// answer and reads none of it does not hold the flow: after idle_timeout
// without a byte moving, the flow ends. Over HTTP/1.1 the answer's write
// to the client is what stops (writeRolling); over HTTP/2 the stream's
// flow control stops it first.
func TestFlowClientNotReading(t *testing.T) {
	const idle = 300 * time.Millisecond
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			e := newFlowEnv(t, fmt.Sprintf("idle_timeout = %q", idle))
			fc := e.dial(t, h2)
			if h2 {
				req, _ := http.NewRequest("GET", "https://name.test/huge", nil)
				resp, err := fc.h2.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
			} else {
				fmt.Fprint(fc.tc, "GET /huge HTTP/1.1\r\nHost: name.test\r\n\r\n")
			}
			waitFor(t, func() bool {
				_, ok := e.hooks.statsOf("/huge")
				return ok
			})
		})
	}
}
