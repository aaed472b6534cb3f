package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	_ "ferry/plugins/all"
	"ferry/test/testkit"
)

// testPlugin is a configurable plugin for server tests.
type testPlugin struct {
	name    string
	reject  *plugins.RejectError
	rewrite string
	// upstream, when set, is chosen in OnConnect.
	upstream string
	panicOn  string // OnRead panics on chunks containing this
	upper    bool   // OnWrite upper-cases data
	mu       sync.Mutex
	closed   []plugins.Stats
}

func (p *testPlugin) Name() string { return p.name }

func (p *testPlugin) OnConnect(_ context.Context, s *plugins.Session) error {
	if p.reject != nil {
		return p.reject
	}
	if p.rewrite != "" {
		s.Target = p.rewrite
	}
	if p.upstream != "" {
		s.Upstream = p.upstream
	}
	return nil
}

func (p *testPlugin) OnRead(s *plugins.Session, b []byte) ([]byte, error) {
	if p.panicOn != "" && bytes.Contains(b, []byte(p.panicOn)) {
		panic("test plugin asked to panic")
	}
	return b, nil
}

func (p *testPlugin) OnWrite(s *plugins.Session, b []byte) ([]byte, error) {
	if p.upper {
		return bytes.ToUpper(b), nil
	}
	return b, nil
}

func (p *testPlugin) OnClose(s *plugins.Session, st plugins.Stats) {
	p.mu.Lock()
	p.closed = append(p.closed, st)
	p.mu.Unlock()
}

func (p *testPlugin) closes() []plugins.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]plugins.Stats(nil), p.closed...)
}

// testInstances lets a test hand a prepared instance to the factory.
var (
	testInstMu sync.Mutex
	testInst   = map[string]*testPlugin{}
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "servertest",
		Description: "server tests only",
		New: func(env plugins.Env) (plugins.Plugin, error) {
			testInstMu.Lock()
			defer testInstMu.Unlock()
			p, ok := testInst[env.Name]
			if !ok {
				return nil, fmt.Errorf("no test instance %q", env.Name)
			}
			return p, nil
		},
	})
}

type fixture struct {
	srv  *Server
	addr string
	logs *syncBuffer
	obs  *recObserver
}

// recObserver counts Handshake outcomes.
type recObserver struct {
	nopObserver
	mu sync.Mutex
	hs map[string]int // "protocol/outcome"
}

func (o *recObserver) Handshake(protocol, outcome string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.hs == nil {
		o.hs = map[string]int{}
	}
	o.hs[protocol+"/"+outcome]++
}

func (o *recObserver) handshakes(protocol, outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hs[protocol+"/"+outcome]
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// start runs a server from TOML on a free loopback port. Instances of the
// "servertest" type named in insts are registered for this test.
func start(t testing.TB, toml string, insts ...*testPlugin) *fixture {
	t.Helper()
	testInstMu.Lock()
	for _, p := range insts {
		testInst[p.name] = p
	}
	testInstMu.Unlock()
	t.Cleanup(func() {
		testInstMu.Lock()
		for _, p := range insts {
			delete(testInst, p.name)
		}
		testInstMu.Unlock()
	})
	cfg, err := config.Parse(t.Name()+".toml", []byte(toml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	srv, err := New(cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	obs := &recObserver{}
	srv.SetObserver(obs)
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { srv.Shutdown(time.Second) })
	return &fixture{srv: srv, addr: srv.Addrs()[0].String(), logs: logs, obs: obs}
}

const basicConfig = `
[defaults]
handshake_timeout = "500ms"
dial_timeout = "1s"
[[listener]]
name = "t"
listen = "127.0.0.1:0"
plugins = ["log"]
[[plugin]]
name = "log"
`

// echoServer and echoCheck forward to testkit for upstreams_test.go,
// which moves to relay/upstream with the dialers; drop them when it has.

// httpServer serves "<host> <path>" for any request.
func httpServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" || r.Header.Get("Proxy-Connection") != "" {
			http.Error(w, "proxy header leaked", 500)
			return
		}
		if u := r.Header.Get("X-Ferry-User"); r.URL.Path == "/ok" && u != "alice" {
			http.Error(w, "bad X-Ferry-User", 500)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d", r.Host, r.URL.RequestURI(), len(body))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func socks5Request(host string, port uint16, cmd byte) []byte {
	b := []byte{5, 1, 0, 5, cmd, 0}
	if ip := net.ParseIP(host); ip != nil {
		if ip4 := ip.To4(); ip4 != nil {
			b = append(b, 1)
			b = append(b, ip4...)
		} else {
			b = append(b, 4)
			b = append(b, ip.To16()...)
		}
	} else {
		b = append(b, 3, byte(len(host)))
		b = append(b, host...)
	}
	return binary.BigEndian.AppendUint16(b, port)
}

func splitPort(t *testing.T, addr string) (string, uint16) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var p uint16
	fmt.Sscan(port, &p)
	return host, p
}

// readSOCKS5Reply reads the method choice and the reply, returning REP.
func readSOCKS5Reply(t *testing.T, c net.Conn) byte {
	t.Helper()
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("read method: %v", err)
	}
	if b != [2]byte{5, 0} {
		t.Fatalf("method reply: got %x, want 0500", b)
	}
	rep, _ := readBindReply(t, c)
	return rep
}

func TestSOCKS5(t *testing.T) {
	echo := testkit.EchoServer(t)
	_, echoPort := splitPort(t, echo)
	refused := testkit.ClosedAddr(t)
	_, refusedPort := splitPort(t, refused)
	f := start(t, basicConfig)

	tests := []struct {
		name    string
		req     []byte
		wantRep byte
	}{
		{"ipv4", socks5Request("127.0.0.1", echoPort, 1), 0x00},
		{"domain", socks5Request("localhost", echoPort, 1), 0x00},
		{"refused", socks5Request("127.0.0.1", refusedPort, 1), 0x05},
		{"bind not supported", socks5Request("127.0.0.1", echoPort, 2), 0x07},
		{"bad address type", []byte{5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4, 0, 80}, 0x08},
		{"unresolvable", socks5Request("no-such-host.invalid", 80, 1), 0x04},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, f.addr)
			c.Write(tt.req)
			if got := readSOCKS5Reply(t, c); got != tt.wantRep {
				t.Fatalf("REP: got %#x, want %#x", got, tt.wantRep)
			}
			if tt.wantRep == 0 {
				testkit.EchoCheck(t, c)
			}
		})
	}
}

func TestSOCKS5IPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	f := start(t, strings.Replace(basicConfig, `listen = "127.0.0.1:0"`, `listen = "[::1]:0"`, 1))
	echo := testkit.EchoServerOn(t, "[::1]:0")
	_, port := splitPort(t, echo)
	c := dial(t, f.addr)
	c.Write(socks5Request("::1", port, 1))
	if got := readSOCKS5Reply(t, c); got != 0 {
		t.Fatalf("REP: got %#x, want 0", got)
	}
	testkit.EchoCheck(t, c)
}

func TestSOCKS5NoAcceptableMethod(t *testing.T) {
	f := start(t, basicConfig)
	c := dial(t, f.addr)
	c.Write([]byte{5, 1, 2}) // username/password only
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatal(err)
	}
	if b != [2]byte{5, 0xFF} {
		t.Fatalf("got %x, want 05ff", b)
	}
	if _, err := c.Read(b[:]); err != io.EOF {
		t.Fatalf("after 0xFF: got %v, want EOF", err)
	}
}

func TestSOCKS4(t *testing.T) {
	echo := testkit.EchoServer(t)
	_, port := splitPort(t, echo)
	refused := testkit.ClosedAddr(t)
	_, refusedPort := splitPort(t, refused)
	f := start(t, basicConfig)
	req4 := func(ip [4]byte, port uint16, cmd byte, host string) []byte {
		b := []byte{4, cmd}
		b = binary.BigEndian.AppendUint16(b, port)
		b = append(b, ip[:]...)
		b = append(b, "user\x00"...)
		if host != "" {
			b = append(b, host+"\x00"...)
		}
		return b
	}
	tests := []struct {
		name string
		req  []byte
		want byte
	}{
		{"socks4", req4([4]byte{127, 0, 0, 1}, port, 1, ""), 0x5A},
		{"socks4a", req4([4]byte{0, 0, 0, 1}, port, 1, "localhost"), 0x5A},
		{"refused", req4([4]byte{127, 0, 0, 1}, refusedPort, 1, ""), 0x5B},
		{"bind", req4([4]byte{127, 0, 0, 1}, port, 2, ""), 0x5B},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, f.addr)
			c.Write(tt.req)
			var r [8]byte
			if _, err := io.ReadFull(c, r[:]); err != nil {
				t.Fatal(err)
			}
			if r[0] != 0 || r[1] != tt.want {
				t.Fatalf("reply: got %x, want 00%x", r[:2], tt.want)
			}
			if tt.want == 0x5A {
				testkit.EchoCheck(t, c)
			}
		})
	}
}

func TestHTTPConnect(t *testing.T) {
	echo := testkit.EchoServer(t)
	f := start(t, basicConfig)
	tests := []struct {
		name, target string
		wantStatus   int
	}{
		{"ok", echo, 200},
		{"refused", testkit.ClosedAddr(t), 502},
		{"no port", "127.0.0.1", 400},
		{"unresolvable", "no-such-host.invalid:80", 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, f.addr)
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tt.target, tt.target)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus == 200 {
				c.Write([]byte("ping"))
				got := make([]byte, 4)
				if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
					t.Fatalf("echo: got %q, %v", got, err)
				}
			}
		})
	}
}

// TestHTTPConnectPipelined sends data right behind the CONNECT head, as
// TLS clients with false start do: it must reach the target.
func TestHTTPConnectPipelined(t *testing.T) {
	echo := testkit.EchoServer(t)
	f := start(t, basicConfig)
	c := dial(t, f.addr)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\nearly bytes", echo)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	got := make([]byte, len("early bytes"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "early bytes" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestHTTPForwardKeepAliveAcrossHosts(t *testing.T) {
	a, b := httpServer(t), httpServer(t)
	f := start(t, basicConfig)
	c := dial(t, f.addr)
	br := bufio.NewReader(c)
	for i, target := range []string{a, a, b, a} {
		body := strings.Repeat("x", i)
		fmt.Fprintf(c, "POST http://%s/p%d?q=1 HTTP/1.1\r\nHost: %s\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nContent-Length: %d\r\n\r\n%s",
			target, i, target, len(body), body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		want := fmt.Sprintf("%s /p%d?q=1 %d", target, i, i)
		if resp.StatusCode != 200 || string(got) != want {
			t.Fatalf("request %d: got %d %q, want 200 %q", i, resp.StatusCode, got, want)
		}
	}
	// One access line per request.
	waitFor(t, func() bool { return strings.Count(f.logs.String(), `"message":"access"`) == 4 })
}

func TestHTTPErrors(t *testing.T) {
	f := start(t, basicConfig)
	tests := []struct {
		name, req  string
		wantStatus int
	}{
		{"origin form", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"https scheme", "GET https://127.0.0.1/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"garbage", "HELLO\r\n\r\n", 400},
		{"head too large", "GET http://127.0.0.1/ HTTP/1.1\r\nX: " + strings.Repeat("a", 2<<20) + "\r\n\r\n", 431},
		{"refused", "GET http://" + testkit.ClosedAddr(t) + "/ HTTP/1.1\r\nHost: a\r\n\r\n", 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, f.addr)
			io.WriteString(c, tt.req)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
		})
	}
}

// TestDialTimeoutMaps checks the timeout mapping with a dialer that never
// connects: 504 for HTTP, 0x06 for SOCKS5.
func TestDialTimeoutMaps(t *testing.T) {
	f := start(t, strings.Replace(basicConfig, `dial_timeout = "1s"`, `dial_timeout = "100ms"`, 1))
	hang := dialFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	f.srv.dialHook.Store(&hang)
	c := dial(t, f.addr)
	io.WriteString(c, "CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 504 {
		t.Fatalf("CONNECT: got %v %v, want 504", resp, err)
	}
	c = dial(t, f.addr)
	c.Write(socks5Request("127.0.0.1", 9, 1))
	if got := readSOCKS5Reply(t, c); got != 0x06 {
		t.Fatalf("SOCKS5 REP: got %#x, want 0x06", got)
	}
}

func TestPluginRejectAndRewrite(t *testing.T) {
	echo := testkit.EchoServer(t)
	deny := &testPlugin{name: "deny", reject: &plugins.RejectError{Code: plugins.CodeForbidden, Msg: "no"}}
	rw := &testPlugin{name: "rw", rewrite: echo}
	conf := `
[[listener]]
name = "deny"
listen = "127.0.0.1:0"
plugins = ["deny"]
[[listener]]
name = "rw"
listen = "127.0.0.1:0"
plugins = ["rw"]
[[plugin]]
name = "deny"
type = "servertest"
[[plugin]]
name = "rw"
type = "servertest"
`
	f := start(t, conf, deny, rw)
	denyAddr, rwAddr := f.srv.Addrs()[0].String(), f.srv.Addrs()[1].String()

	c := dial(t, denyAddr)
	io.WriteString(c, "CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("HTTP reject: got %v %v, want 403", resp, err)
	}
	c = dial(t, denyAddr)
	c.Write(socks5Request("127.0.0.1", 9, 1))
	if got := readSOCKS5Reply(t, c); got != 0x02 {
		t.Fatalf("SOCKS5 reject: got %#x, want 0x02", got)
	}
	waitFor(t, func() bool { return len(deny.closes()) == 2 })
	for _, st := range deny.closes() {
		if st.Reason != plugins.ReasonRejected {
			t.Errorf("close reason: got %v, want rejected", st.Reason)
		}
	}

	// The rewrite plugin sends a request for a closed port to the echo server.
	c = dial(t, rwAddr)
	c.Write(socks5Request("127.0.0.1", 9, 1))
	if got := readSOCKS5Reply(t, c); got != 0 {
		t.Fatalf("rewrite: REP %#x", got)
	}
	testkit.EchoCheck(t, c)
}

func TestPluginDataHooks(t *testing.T) {
	echo := testkit.EchoServer(t)
	up := &testPlugin{name: "upper", upper: true}
	f := start(t, `
[[listener]]
listen = "127.0.0.1:0"
plugins = ["upper", "hex"]
[[plugin]]
name = "upper"
type = "servertest"
[[plugin]]
name = "hex"
type = "hexdump"
max_bytes = "8B"
`, up)
	c := dial(t, f.addr)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\n", echo)
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v", err)
	}
	io.WriteString(c, "shout")
	got := make([]byte, 5)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "SHOUT" {
		t.Fatalf("got %q %v, want SHOUT", got, err)
	}
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), "hexdump") })
}

// TestPluginPanicEndsOnlyItsChannel: a panic in OnRead closes that channel,
// logged with the plugin's name; a concurrent channel keeps working.
func TestPluginPanicEndsOnlyItsChannel(t *testing.T) {
	echo := testkit.EchoServer(t)
	p := &testPlugin{name: "boom", panicOn: "PANIC"}
	f := start(t, `
[[listener]]
listen = "127.0.0.1:0"
plugins = ["boom"]
[[plugin]]
name = "boom"
type = "servertest"
`, p)
	_, port := splitPort(t, echo)
	good, bad := dial(t, f.addr), dial(t, f.addr)
	for _, c := range []net.Conn{good, bad} {
		c.Write(socks5Request("127.0.0.1", port, 1))
		if rep := readSOCKS5Reply(t, c); rep != 0 {
			t.Fatalf("REP %#x", rep)
		}
	}
	testkit.EchoCheck(t, good)
	bad.Write([]byte("PANIC now"))
	if _, err := io.ReadAll(bad); err != nil {
		t.Fatalf("bad channel: got %v, want a clean close", err)
	}
	testkit.EchoCheck(t, good)
	waitFor(t, func() bool {
		return strings.Contains(f.logs.String(), `"plugin":"boom"`) && strings.Contains(f.logs.String(), "panic")
	})
	var sawPluginError bool
	for _, st := range p.closes() {
		sawPluginError = sawPluginError || st.Reason == plugins.ReasonPluginError
	}
	if !sawPluginError {
		t.Fatalf("no channel closed with reason plugin error: %+v", p.closes())
	}
}

// TestHandshakeTimeouts: garbage, a half-written SOCKS greeting and a
// silent client are closed within handshake_timeout, and every goroutine
// they caused is gone afterwards.
func TestHandshakeTimeouts(t *testing.T) {
	f := start(t, basicConfig) // handshake_timeout 500ms
	waitFor(t, func() bool { return f.srv.Stats().Active == 0 })
	base := runtime.NumGoroutine()
	tests := []struct {
		name string
		send []byte
	}{
		{"silent", nil},
		{"half socks5 greeting", []byte{5, 3, 0}},
		{"half socks5 request", []byte{5, 1, 0, 5, 1, 0, 3, 20, 'a'}},
		{"half socks4", []byte{4, 1, 0, 80}},
		{"half http head", []byte("GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n")},
		{"garbage", []byte{0xde, 0xad, 0xbe, 0xef, 0, 1, 2}},
	}
	var wg sync.WaitGroup
	for _, tt := range tests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			start := time.Now()
			c.Write(tt.send)
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = io.ReadAll(c)
			took := time.Since(start)
			if err != nil {
				t.Errorf("%s: read: %v (ferry did not close)", tt.name, err)
			}
			if took > 1500*time.Millisecond {
				t.Errorf("%s: closed after %v, want within handshake_timeout (500ms) plus slack", tt.name, took)
			}
		}()
	}
	wg.Wait()
	waitFor(t, func() bool { return f.srv.Stats().Active == 0 && runtime.NumGoroutine() <= base })
}

func TestMaxConnections(t *testing.T) {
	echo := testkit.EchoServer(t)
	f := start(t, `
[[listener]]
listen = "127.0.0.1:0"
max_connections = 1
protocols = ["tcp"]
target = "`+echo+`"
`)
	first := dial(t, f.addr)
	testkit.EchoCheck(t, first)
	second := dial(t, f.addr)
	second.Write([]byte("x"))
	if _, err := io.ReadAll(second); err != nil {
		t.Logf("second: %v", err) // a reset is as good as EOF
	}
	if got := f.srv.Stats().RefusedOverLimit; got != 1 {
		t.Fatalf("refused: got %d, want 1", got)
	}
	testkit.EchoCheck(t, first)
	first.Close()
	waitFor(t, func() bool { return f.srv.Stats().Active == 0 })
	testkit.EchoCheck(t, dial(t, f.addr))
}

// TestHalfClose: a client that sends, then shuts its write side, still
// receives everything the target sends after that.
func TestHalfClose(t *testing.T) {
	echo := testkit.EchoServer(t)
	f := start(t, basicConfig)
	c := dial(t, f.addr)
	_, port := splitPort(t, echo)
	c.Write(socks5Request("127.0.0.1", port, 1))
	readSOCKS5Reply(t, c)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes back, want %d identical", len(got), len(payload))
	}
}

func TestIdleTimeout(t *testing.T) {
	echo := testkit.EchoServer(t)
	for _, hooked := range []bool{false, true} {
		t.Run(fmt.Sprintf("hooked=%v", hooked), func(t *testing.T) {
			plug := `plugins = ["log"]`
			if hooked {
				plug = `plugins = ["log", "hex"]`
			}
			f := start(t, `
[defaults]
idle_timeout = "1s"
[[listener]]
listen = "127.0.0.1:0"
protocols = ["tcp"]
target = "`+echo+`"
`+plug+`
[[plugin]]
name = "hex"
type = "hexdump"
[[plugin]]
name = "log"
`)
			c := dial(t, f.addr)
			defer func() {
				if t.Failed() {
					t.Log(f.logs.String())
				}
			}()
			// Activity keeps it open past the timeout...
			for range 5 {
				time.Sleep(200 * time.Millisecond)
				testkit.EchoCheck(t, c)
			}
			// ...silence closes it.
			start := time.Now()
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("read: %v", err)
			}
			if d := time.Since(start); d < 900*time.Millisecond || d > 4*time.Second {
				t.Fatalf("closed after %v idle, want about 1s", d)
			}
		})
	}
}

func TestShutdownDrains(t *testing.T) {
	echo := testkit.EchoServer(t)
	f := start(t, basicConfig)
	_, port := splitPort(t, echo)
	c := dial(t, f.addr)
	c.Write(socks5Request("127.0.0.1", port, 1))
	readSOCKS5Reply(t, c)

	done := make(chan ShutdownSummary)
	go func() { done <- f.srv.Shutdown(5 * time.Second) }()
	// New connections are refused at once...
	waitFor(t, func() bool {
		nc, err := net.Dial("tcp", f.addr)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	// ...while the live channel works until its client ends it.
	testkit.EchoCheck(t, c)
	c.(*net.TCPConn).CloseWrite()
	io.ReadAll(c)
	select {
	case sum := <-done:
		if sum.Forced != 0 || sum.Drained < 1 { // a probe dial racing the close may count too
			t.Fatalf("summary: got %+v, want at least 1 drained, 0 forced", sum)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("shutdown did not finish after the last channel ended")
	}
}

func TestShutdownForcesAfterDrain(t *testing.T) {
	echo := testkit.EchoServer(t)
	f := start(t, basicConfig)
	_, port := splitPort(t, echo)
	c := dial(t, f.addr)
	c.Write(socks5Request("127.0.0.1", port, 1))
	readSOCKS5Reply(t, c)
	sum := f.srv.Shutdown(200 * time.Millisecond)
	if sum.Forced != 1 {
		t.Fatalf("summary: got %+v, want 1 forced", sum)
	}
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("read after forced close: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
