package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	_ "ferry/plugins/all"
	"ferry/server"
	"ferry/test/testkit"
)

// denyPlugin refuses targets on host "blocked.test".
type denyPlugin struct{ name string }

func (p denyPlugin) Name() string { return p.name }
func (p denyPlugin) OnConnect(_ context.Context, s *plugins.Session) error {
	if strings.HasPrefix(s.Target, "blocked.test:") {
		return plugins.Reject(plugins.CodeForbidden, "blocked by test")
	}
	return nil
}

func init() {
	plugins.Register(plugins.Registration{
		Type:        "admintest-deny",
		Description: "admin tests only",
		New:         func(env plugins.Env) (plugins.Plugin, error) { return denyPlugin{env.Name}, nil },
	})
}

const testConfig = `
[defaults]
handshake_timeout = "2s"
dial_timeout = "1s"
[[listener]]
name = "main"
listen = "127.0.0.1:0"
plugins = ["deny"]
[[plugin]]
name = "deny"
type = "admintest-deny"
`

type fixture struct {
	srv   *server.Server
	proxy string
	adm   *Admin
	web   *httptest.Server
}

// start runs a server from testConfig with an Admin observing it, served
// by httptest.
func start(t *testing.T, cfg config.Admin, reload func() error) *fixture {
	t.Helper()
	return startWith(t, testConfig, cfg, reload)
}

// startWith is start with another server config.
func startWith(t *testing.T, src string, cfg config.Admin, reload func() error) *fixture {
	t.Helper()
	c, err := config.Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(c, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	adm := New(srv, cfg, reload, zerolog.Nop())
	srv.SetObserver(adm)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(adm)
	t.Cleanup(func() {
		web.Close()
		srv.Shutdown(time.Second)
	})
	return &fixture{srv: srv, proxy: srv.Addrs()[0].String(), adm: adm, web: web}
}

// connect opens a CONNECT tunnel to target and returns it with the
// status line ferry answered.
func connect(t *testing.T, proxy, target string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, resp.StatusCode
}

func echo(c net.Conn, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo: got %q, want %q", buf, msg)
	}
	return nil
}

func (f *fixture) do(t *testing.T, method, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.web.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *fixture) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := f.do(t, "GET", "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: got %d, want 200", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs
}

// value returns the value of the sample of family name whose labels
// include want; -1 when there is none.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf, ok := mfs[name]
	if !ok {
		return -1
	}
next:
	for _, m := range mf.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMetrics(t *testing.T) {
	f := start(t, config.Admin{}, nil)
	target := testkit.EchoServer(t)

	c, code := connect(t, f.proxy, target)
	if code != 200 {
		t.Fatalf("CONNECT: got %d, want 200", code)
	}
	if err := echo(c, "hello"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	blocked, code := connect(t, f.proxy, "blocked.test:80")
	if code != 403 {
		t.Fatalf("CONNECT blocked: got %d, want 403", code)
	}
	blocked.Close()
	waitFor(t, "both sessions to close", func() bool {
		mfs := f.scrape(t)
		return value(mfs, "ferry_channels_closed_total", map[string]string{"reason": "client_closed"}) == 1 &&
			value(mfs, "ferry_channels_closed_total", map[string]string{"reason": "rejected"}) == 1 &&
			value(mfs, "ferry_connections_active", map[string]string{"listener": "main"}) == 0
	})

	mfs := f.scrape(t)
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"accepted", "ferry_connections_accepted_total", map[string]string{"listener": "main"}, 2},
		{"active", "ferry_connections_active", map[string]string{"listener": "main"}, 0},
		{"bytes up", "ferry_bytes_total", map[string]string{"direction": "up"}, 5},
		{"bytes down", "ferry_bytes_total", map[string]string{"direction": "down"}, 5},
		{"handshake ok", "ferry_handshakes_total", map[string]string{"protocol": "connect", "outcome": "ok"}, 1},
		{"handshake rejected", "ferry_handshakes_total", map[string]string{"protocol": "connect", "outcome": "rejected"}, 1},
		{"plugin rejection", "ferry_plugin_rejections_total", map[string]string{"plugin": "deny", "code": "forbidden"}, 1},
		{"dials", "ferry_dial_duration_seconds", map[string]string{"upstream": "direct", "result": "ok"}, 1},
		{"reloads", "ferry_reloads_total", map[string]string{"result": "ok"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := value(mfs, tt.metric, tt.labels); got != tt.want {
				t.Fatalf("%s%v: got %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := mfs[name]; !ok {
			t.Errorf("%s: missing from /metrics", name)
		}
	}
}

func TestRefusedOverLimit(t *testing.T) {
	src := strings.Replace(testConfig, `plugins = ["deny"]`, "plugins = [\"deny\"]\nmax_connections = 1", 1)
	f := startWith(t, src, config.Admin{}, nil)

	hold, code := connect(t, f.proxy, testkit.EchoServer(t))
	if code != 200 {
		t.Fatalf("CONNECT: got %d, want 200", code)
	}
	defer hold.Close()
	second, err := net.Dial("tcp", f.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	waitFor(t, "a refusal", func() bool {
		return value(f.scrape(t), "ferry_connections_refused_total", map[string]string{"listener": "main", "reason": "max_connections"}) == 1
	})
	if got := value(f.scrape(t), "ferry_connections_active", map[string]string{"listener": "main"}); got != 1 {
		t.Fatalf("ferry_connections_active: got %v, want 1", got)
	}
}

func TestToken(t *testing.T) {
	f := start(t, config.Admin{Token: "s3cret"}, nil)
	tests := []struct {
		name, path, token string
		want              int
	}{
		{"healthz needs no token", "/healthz", "", 200},
		{"metrics without token", "/metrics", "", 401},
		{"metrics with wrong token", "/metrics", "nope", 401},
		{"metrics with token", "/metrics", "s3cret", 200},
		{"channels without token", "/channels", "", 401},
		{"readyz with token", "/readyz", "s3cret", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := f.do(t, "GET", tt.path, tt.token); got != tt.want {
				t.Fatalf("GET %s: got %d, want %d", tt.path, got, tt.want)
			}
		})
	}
	if got, _ := f.do(t, "DELETE", "/channels/x", ""); got != 401 {
		t.Fatalf("DELETE without token: got %d, want 401", got)
	}
}

func TestChannelsListAndClose(t *testing.T) {
	f := start(t, config.Admin{}, nil)
	target := testkit.EchoServer(t)
	a, _ := connect(t, f.proxy, target)
	b, _ := connect(t, f.proxy, target)
	for _, c := range []net.Conn{a, b} {
		if err := echo(c, "0123456789"); err != nil {
			t.Fatal(err)
		}
	}

	// Spliced tunnels count bytes the peer acknowledged: poll briefly.
	var chans []server.ChannelInfo
	var body string
	waitFor(t, "10 bytes each way on both channels", func() bool {
		var code int
		code, body = f.do(t, "GET", "/channels", "")
		if code != 200 {
			t.Fatalf("GET /channels: got %d, want 200", code)
		}
		chans = nil
		if err := json.Unmarshal([]byte(body), &chans); err != nil {
			t.Fatalf("decode /channels: %v\n%s", err, body)
		}
		for _, ci := range chans {
			if ci.Up != 10 || ci.Down != 10 {
				return false
			}
		}
		return len(chans) == 2
	})
	for _, ci := range chans {
		if ci.Listener != "main" || ci.Protocol != "connect" || ci.Target != target || ci.Upstream != "direct" || ci.Client == "" {
			t.Fatalf("channel: got %+v, want listener main, connect to %s, direct", ci, target)
		}
	}

	if code, _ := f.do(t, "DELETE", "/channels/nosuch", ""); code != 404 {
		t.Fatalf("DELETE unknown: got %d, want 404", code)
	}
	// Order chans as a, b by client address.
	if chans[0].Client != a.LocalAddr().String() {
		chans[0], chans[1] = chans[1], chans[0]
	}
	if chans[0].Client != a.LocalAddr().String() || chans[1].Client != b.LocalAddr().String() {
		t.Fatalf("channel clients: got %s and %s, want %s and %s", chans[0].Client, chans[1].Client, a.LocalAddr(), b.LocalAddr())
	}
	if code, body := f.do(t, "DELETE", "/channels/"+chans[0].ID, ""); code != 200 {
		t.Fatalf("DELETE: got %d, want 200: %s", code, body)
	}
	a.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := a.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("closed tunnel: read got %v, want EOF or reset", err)
	}
	if err := echo(b, "still here"); err != nil {
		t.Fatalf("other tunnel: %v", err)
	}
	waitFor(t, "admin close to be counted", func() bool {
		return value(f.scrape(t), "ferry_channels_closed_total", map[string]string{"reason": "closed_by_admin"}) == 1
	})
	if got := f.srv.Channels(); len(got) != 1 || got[0].ID != chans[1].ID {
		t.Fatalf("Channels after close: got %+v, want only %s", got, chans[1].ID)
	}
	if code, _ := f.do(t, "POST", "/channels/"+chans[1].ID+"/close", ""); code != 200 {
		t.Fatalf("POST close: got %d, want 200", code)
	}
	waitFor(t, "no channels", func() bool { return len(f.srv.Channels()) == 0 })
}

func TestReadyz(t *testing.T) {
	f := start(t, config.Admin{}, nil)
	if code, _ := f.do(t, "GET", "/readyz", ""); code != 200 {
		t.Fatalf("readyz while running: got %d, want 200", code)
	}
	f.srv.Shutdown(time.Second)
	if code, _ := f.do(t, "GET", "/readyz", ""); code != 503 {
		t.Fatalf("readyz after shutdown: got %d, want 503", code)
	}
	if code, _ := f.do(t, "GET", "/healthz", ""); code != 200 {
		t.Fatalf("healthz: got %d, want 200", code)
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.toml")
	var srvRef *server.Server
	var mu sync.Mutex
	reload := func() error {
		mu.Lock()
		defer mu.Unlock()
		cfg, err := config.Load(path)
		if err != nil {
			return err
		}
		return srvRef.Reload(cfg)
	}
	f := start(t, config.Admin{}, reload)
	srvRef = f.srv

	os.WriteFile(path, []byte("[[listener]]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n"), 0o600)
	code, body := f.do(t, "POST", "/reload", "")
	if code != 400 || !strings.Contains(body, "ferry.toml:3:1: listener[0].lisen: unknown key") {
		t.Fatalf("POST /reload with a bad file: got %d %q, want 400 with the position", code, body)
	}
	os.WriteFile(path, []byte(testConfig), 0o600)
	if code, body := f.do(t, "POST", "/reload", ""); code != 200 || strings.TrimSpace(body) != "reloaded" {
		t.Fatalf("POST /reload: got %d %q, want 200 reloaded", code, body)
	}
	mfs := f.scrape(t)
	if got := value(mfs, "ferry_reloads_total", map[string]string{"result": "error"}); got != 1 {
		t.Fatalf("reloads error: got %v, want 1", got)
	}
	if got := value(mfs, "ferry_reloads_total", map[string]string{"result": "ok"}); got != 1 {
		t.Fatalf("reloads ok: got %v, want 1", got)
	}
	if code, _ := f.do(t, "GET", "/reload", ""); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /reload: got %d, want 405", code)
	}
}

func TestPprof(t *testing.T) {
	off := start(t, config.Admin{}, nil)
	if code, _ := off.do(t, "GET", "/debug/pprof/", ""); code != 404 {
		t.Fatalf("pprof off: got %d, want 404", code)
	}
	on := start(t, config.Admin{Pprof: true}, nil)
	if code, _ := on.do(t, "GET", "/debug/pprof/cmdline", ""); code != 200 {
		t.Fatalf("pprof on: got %d, want 200", code)
	}
}

func TestServeShutdown(t *testing.T) {
	f := start(t, config.Admin{}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.adm.Serve(ln) }()
	waitFor(t, "serving", func() bool {
		resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if err := f.adm.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: got %v, want nil after Shutdown", err)
	}
}

// TestUpstreamMetrics: a group member that fails a dial is marked down,
// which /metrics and /upstreams show; the group itself stays up.
func TestUpstreamMetrics(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	f := startWith(t, testConfig+`
[[upstream]]
name = "dead"
url = "socks5://`+deadAddr+`"
[[upstream]]
name = "pool"
members = ["dead", "direct-member"]
[[upstream]]
name = "direct-member"
url = "direct"
[[route]]
upstream = "pool"
`, config.Admin{}, nil)
	up := func(name string) float64 {
		return value(f.scrape(t), "ferry_upstream_up", map[string]string{"upstream": name})
	}
	if up("dead") != 1 || up("pool") != 1 {
		t.Fatalf("before any dial: dead %v, pool %v; want both up (1)", up("dead"), up("pool"))
	}
	c, code := connect(t, f.proxy, testkit.EchoServer(t))
	if code != 200 {
		t.Fatalf("CONNECT through the group: got %d, want 200 (the second member)", code)
	}
	if up("dead") != 0 || up("pool") != 1 || up("direct-member") != 1 {
		t.Errorf("after the failover: dead %v, pool %v, direct-member %v; want 0, 1, 1", up("dead"), up("pool"), up("direct-member"))
	}
	if got := value(f.scrape(t), "ferry_upstream_active_connections", map[string]string{"upstream": "direct-member"}); got != 1 {
		t.Errorf("active connections through direct-member: got %v, want 1", got)
	}
	code, body := f.do(t, "GET", "/upstreams", "")
	if code != 200 || !strings.Contains(body, `"name": "dead",
    "up": false`) {
		t.Errorf("GET /upstreams: %d %s", code, body)
	}
	c.Close()
	waitFor(t, "the connection released", func() bool {
		return value(f.scrape(t), "ferry_upstream_active_connections", map[string]string{"upstream": "direct-member"}) == 0
	})
}

// countPlugin counts the sessions it sees, as plugins.Counter.
type countPlugin struct {
	name string
	n    *atomic.Uint64
}

func (p countPlugin) Name() string { return p.name }
func (p countPlugin) OnConnect(context.Context, *plugins.Session) error {
	p.n.Add(1)
	return nil
}
func (p countPlugin) Counters() map[string]uint64 { return map[string]uint64{"seen": p.n.Load()} }

func init() {
	plugins.Register(plugins.Registration{
		Type:        "admintest-count",
		Description: "admin tests only",
		New:         func(env plugins.Env) (plugins.Plugin, error) { return countPlugin{env.Name, new(atomic.Uint64)}, nil },
	})
}

// A plugin's own counters reach /metrics as ferry_plugin_events_total.
func TestPluginEvents(t *testing.T) {
	f := startWith(t, strings.Replace(testConfig, `plugins = ["deny"]`, `plugins = ["counter", "deny"]
[[plugin]]
name = "counter"
type = "admintest-count"`, 1), config.Admin{}, nil)
	for range 3 {
		c, _ := connect(t, f.proxy, "blocked.test:80")
		c.Close()
	}
	want := map[string]string{"plugin": "counter", "event": "seen"}
	if got := value(f.scrape(t), "ferry_plugin_events_total", want); got != 3 {
		t.Errorf("ferry_plugin_events_total%v = %v, want 3", want, got)
	}
}

// TestShutdownRace: Shutdown may run on another goroutine while Serve
// starts, or before it (a ferry told to stop right after it started):
// Serve then returns nil at once instead of serving on.
func TestShutdownRace(t *testing.T) {
	for _, first := range []string{"serve", "shutdown"} {
		t.Run(first, func(t *testing.T) {
			f := start(t, config.Admin{}, nil)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			serve := func() { done <- f.adm.Serve(ln) }
			if first == "serve" {
				go serve()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := f.adm.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if first == "shutdown" {
				go serve()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Serve: %v, want nil after Shutdown", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Serve still running 5s after Shutdown")
			}
		})
	}
}
