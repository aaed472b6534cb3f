//go:build linux

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"ferry/test/testkit"
)

// TestH2CConnectTunnels opens tunnels as CONNECT streams of one h2c
// connection: each echoes, each gets its own access line, and the lines
// name the same parent connection.
func TestH2CConnectTunnels(t *testing.T) {
	t.Parallel()
	echo := testkit.EchoServer(t)
	f := startFerry(t, h2cConfig("", nil, ""), nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 3
	for range n {
		tun := mustH2Connect(t, ctx, cc, echo)
		testkit.EchoCheck(t, tun)
		// The client's END_STREAM half-closes the target, which still
		// answers, then closes: that ends the stream.
		const last = "sent with END_STREAM"
		io.WriteString(tun, last)
		tun.CloseWrite()
		if b, err := io.ReadAll(tun); err != nil || string(b) != last {
			t.Errorf("after END_STREAM: read %q, %v; want %q, then EOF", b, err, last)
		}
	}
	lines := accessLines(t, f, echo, n)
	parent := lines[0].str("parent")
	if parent == "" {
		t.Fatalf("access line has no parent: %v", lines[0])
	}
	ids := map[string]bool{}
	for _, l := range lines {
		if l.str("parent") != parent || l.str("proto") != "connect" {
			t.Errorf("access line: got parent %q proto %q, want %q connect: %v", l.str("parent"), l.str("proto"), parent, l)
		}
		if n, _ := l.num("status"); n != http.StatusOK {
			t.Errorf("access status = %d, want 200: %v", n, l)
		}
		ids[l.str("id")] = true
	}
	if len(ids) != n || ids[parent] {
		t.Errorf("stream ids %v: want %d distinct ids, none the parent's %q", ids, n, parent)
	}
}

// TestH2CConnectErrors checks the answers to tunnels that cannot open: a
// closed port (502), a parent proxy that never answers (504 within
// dial_timeout), a destination the acl plugin denies (403), a missing
// port (400), and that the connection carries on after each.
func TestH2CConnectErrors(t *testing.T) {
	t.Parallel()
	echo := testkit.EchoServer(t)
	closed := testkit.ClosedAddr(t)
	_, denyPort, _ := net.SplitHostPort(testkit.EchoServer(t))
	acl := fmt.Sprintf(`[[plugin]]
name = "acl"
default = "allow"

[[plugin.rule]]
action = "deny"
port = [%s]
`, denyPort) + upstreamTable("silent", "http://"+newSilentParent(t)) + "[[route]]\nport = [\"1050\"]\nupstream = \"silent\"\n"
	f := startFerry(t, h2cConfig(`dial_timeout = "1s"`, []string{"acl"}, acl), nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, target string
		want         int
	}{
		{"closed port", closed, http.StatusBadGateway},
		{"silent parent", "127.0.0.1:1050", http.StatusGatewayTimeout},
		{"denied", "127.0.0.1:" + denyPort, http.StatusForbidden},
		{"no port", "127.0.0.1", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tun, resp, err := h2Connect(ctx, cc, tc.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tun != nil {
				tun.Close()
				t.Fatalf("CONNECT %s opened, want %d", tc.target, tc.want)
			}
			if resp.StatusCode != tc.want {
				t.Errorf("CONNECT %s: got %d, want %d", tc.target, resp.StatusCode, tc.want)
			}
		})
	}
	testkit.EchoCheck(t, mustH2Connect(t, ctx, cc, echo))
}

// TestH2CAuth: a stream without credentials gets 407 with a Basic
// challenge, one with them a tunnel; credentials are per stream.
func TestH2CAuth(t *testing.T) {
	t.Parallel()
	echo := testkit.EchoServer(t)
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	auth := fmt.Sprintf(`[[plugin]]
name = "auth"
realm = "e2e realm"
htpasswd = %q

[plugin.users]
dev = "plain:dev-pass"
`, path)
	f := startFerry(t, h2cConfig("", []string{"auth"}, auth), nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, resp, err := h2Connect(ctx, cc, echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") != `Basic realm="e2e realm"` {
		t.Fatalf("no credentials: got %d %q, want 407 with a Basic challenge", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
	hdr := http.Header{"Proxy-Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("dev:dev-pass"))}}
	tun, resp, err := h2Connect(ctx, cc, echo, hdr)
	if err != nil || tun == nil {
		t.Fatalf("with credentials: %v %v, want a tunnel", resp, err)
	}
	testkit.EchoCheck(t, tun)
	tun.Close()
	ls := accessLines(t, f, echo, 2)
	users := map[string]bool{}
	for _, l := range ls {
		users[l.str("user")] = true
	}
	if !users["dev"] {
		t.Errorf("no access line with user dev: %v", ls)
	}
}

// TestH2CForward sends absolute-URI GETs over HTTP/2: ferry forwards them
// to the origin over HTTP/1.1 without the fields addressed to it, runs
// OnHTTPRequest (the headers plugin) and logs each as an http session.
func TestH2CForward(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []http.Header
	var protos []string
	web := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		protos = append(protos, r.Proto)
		mu.Unlock()
		if r.Method == http.MethodPost {
			io.Copy(w, r.Body)
			return
		}
		w.Header().Set("X-Origin", "yes")
		io.WriteString(w, testkit.TargetBody)
	})
	headers := `[[plugin]]
name = "headers"
set = { "X-Env" = "e2e" }
`
	f := startFerry(t, h2cConfig("", []string{"headers"}, headers), nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hdr := http.Header{"Proxy-Authorization": {"Basic eDp5"}, "X-Client": {"kept"}}
	for range 2 {
		resp, err := h2Get(ctx, cc, web+"/page?q=1", hdr)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != testkit.TargetBody || resp.Header.Get("X-Origin") != "yes" {
			t.Fatalf("GET: got %d %q (X-Origin %q), want 200 with the target's body", resp.StatusCode, b, resp.Header.Get("X-Origin"))
		}
	}
	body := strings.Repeat("posted through HTTP/2\n", 10000)
	u, _ := url.Parse(web + "/post")
	req := (&http.Request{Method: http.MethodPost, URL: u, Host: u.Host, Header: http.Header{"X-Client": {"kept"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}).WithContext(ctx)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != body {
		t.Errorf("POST: echoed %d of %d bytes, want the body back", len(got), len(body))
	}
	// Hop-by-hop fields of the origin's answer stay with ferry (RFC 9110
	// section 7.6.1): those Connection names, and Keep-Alive.
	hop := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		testkit.NewBufConn(c, bufio.NewReader(c)).Reader().ReadSlice('\n')
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: X-Hop, close\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-End: 1\r\nContent-Length: 2\r\n\r\nok")
	})
	resp, err = h2Get(ctx, cc, "http://"+hop.Addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h := resp.Header; h.Get("X-Hop") != "" || h.Get("Keep-Alive") != "" || h.Get("X-End") != "1" {
		t.Errorf("answer's fields %v: want X-End, neither X-Hop nor Keep-Alive", h)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, h := range seen {
		if h.Get("Proxy-Authorization") != "" || h.Get("X-Client") != "kept" || h.Get("X-Env") != "e2e" || protos[i] != "HTTP/1.1" {
			t.Errorf("origin saw %s %v: want HTTP/1.1, X-Client kept, X-Env set, no Proxy-Authorization", protos[i], h)
		}
	}
	host := web[len("http://"):]
	ls := accessLines(t, f, host, 3)[:2] // the GETs
	for _, l := range ls {
		if l.str("proto") != "http" || l.str("parent") == "" || l.str("method") != "GET" || l.str("url") != web+"/page?q=1" {
			t.Errorf("access line: %v, want proto http, a parent, GET %s/page?q=1", l, web)
		}
	}
}

// httptestServer starts an HTTP/1.1 origin on loopback and returns its
// URL.
func httptestServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestH2CSlowReader opens 100 CONNECT streams on one connection (the
// default stream limit): one never reads what its target sends, one
// sends to a target that never reads, the other 98 echo 256 KiB each.
// Each stalled tunnel holds only its own stream's window: the others
// finish, and the first one's target is held back after a bounded amount
// (flow control reaches back to the target), not the whole transfer.
func TestH2CSlowReader(t *testing.T) {
	t.Parallel()
	echo := testkit.EchoServer(t)
	var sent atomic.Int64
	const sourceMax = 1 << 30
	source := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		buf := make([]byte, 64<<10)
		c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		for sent.Load() < sourceMax {
			n, err := c.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	f := startFerry(t, h2cConfig("", nil, ""), nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow := mustH2Connect(t, ctx, cc, source.Addr)
	defer slow.Close()
	waitFor(t, func() bool { return sent.Load() > 1<<20 })
	// The upload stall: the target never reads, so ferry stops taking
	// the stream's DATA once its window is full; the writer blocks.
	sink := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		c.Read(make([]byte, 1)) // returns when the tunnel closes
	})
	stuck := mustH2Connect(t, ctx, cc, sink.Addr)
	defer stuck.Close()
	var uploaded atomic.Int64
	go func() {
		buf := make([]byte, 64<<10)
		for uploaded.Load() < sourceMax {
			n, err := stuck.Write(buf)
			uploaded.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()

	payload := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	var wg sync.WaitGroup
	errs := make(chan error, 98)
	for i := range 98 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoStream(ctx, cc, echo, payload, i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	t.Logf("the stalled streams: the target sent %d KiB, the client uploaded %d KiB", sent.Load()>>10, uploaded.Load()>>10)
	if got := uploaded.Load(); got > 64<<20 {
		t.Errorf("the client uploaded %d MiB to a target that reads nothing: flow control did not hold it back", got>>20)
	}
	// Backpressure: what the source got rid of is the stream's window
	// and the socket buffers on the way, far below what it would send.
	if got := sent.Load(); got > 64<<20 {
		t.Errorf("the stalled stream's target sent %d MiB: flow control did not hold it back", got>>20)
	}
}

// echoStream sends payload through a CONNECT stream to an echo target and
// checks that it comes back whole.
func echoStream(ctx context.Context, cc *http2.ClientConn, echo string, payload []byte, i int) error {
	tun, resp, err := h2Connect(ctx, cc, echo, nil)
	if err != nil || tun == nil {
		return fmt.Errorf("stream %d: CONNECT: %v %v", i, resp, err)
	}
	defer tun.Close()
	go func() {
		tun.Write(payload)
		tun.CloseWrite()
	}()
	got, err := io.ReadAll(tun)
	if err != nil || !bytes.Equal(got, payload) {
		return fmt.Errorf("stream %d: echoed %d of %d bytes, err %v", i, len(got), len(payload), err)
	}
	return nil
}

// TestH2CShutdown: on SIGTERM an HTTP/2 connection gets GOAWAY: its open
// tunnel keeps working within drain_timeout, a new stream is refused,
// and ferry exits 0 once the tunnel ends.
func TestH2CShutdown(t *testing.T) {
	t.Parallel()
	echo := testkit.EchoServer(t)
	f := startFerry(t, func(addr string) string {
		return strings.Replace(h2cConfig("", nil, "")(addr), "[[listener]]", "[defaults]\ndrain_timeout = \"20s\"\n\n[[listener]]", 1)
	}, nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun := mustH2Connect(t, ctx, cc, echo)
	testkit.EchoCheck(t, tun)
	f.signal(t)
	waitFor(t, func() bool { return !cc.State().Closed && cc.State().StreamsActive == 1 && !cc.CanTakeNewRequest() })
	testkit.EchoCheck(t, tun)
	if _, _, err := h2Connect(ctx, cc, echo, nil); err == nil {
		t.Error("a new stream after GOAWAY opened, want it refused")
	}
	tun.Close()
	if code := f.wait(t); code != 0 {
		t.Errorf("ferry exited %d, want 0", code)
	}
}

// TestH2CDataHooks: a CONNECT stream's bytes go through the listener's
// data hooks (the replace plugin rewrites what the client sends), and an
// absolute-URI request, which would pass them by, is answered 501.
func TestH2CDataHooks(t *testing.T) {
	t.Parallel()
	echo := testkit.EchoServer(t)
	web := testkit.HTTPTarget(t)
	replace := `[[plugin]]
name = "replace"
flush_after = "0s"

[[plugin.rule]]
direction = "up"
find = "ferry"
replace = "FERRY"
`
	f := startFerry(t, h2cConfig("", []string{"replace"}, replace), nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tun := mustH2Connect(t, ctx, cc, echo)
	defer tun.Close()
	msg := "through ferry over HTTP/2\n"
	if _, err := io.WriteString(tun, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(tun, got); err != nil {
		t.Fatal(err)
	}
	if want := strings.ReplaceAll(msg, "ferry", "FERRY"); string(got) != want {
		t.Errorf("echo through the hook: got %q, want %q", got, want)
	}
	if code, _ := h2GetBody(t, ctx, cc, web.URL+"/"); code != http.StatusNotImplemented {
		t.Errorf("GET http:// with data hooks: got %d, want 501", code)
	}
}

// TestH2CResets: a reset is passed on as a reset both ways (RFC 9113
// section 8.5). A client that resets its stream (RST_STREAM) resets the
// target's connection; a target that resets its connection gets the
// client's stream reset, after the bytes it sent.
func TestH2CResets(t *testing.T) {
	t.Parallel()
	readErr := make(chan error, 1)
	patient := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := io.Copy(io.Discard, c)
		readErr <- err
	})
	rude := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		// Once the tunnel is open (a reset right at accept would fail
		// ferry's dial instead).
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		io.ReadFull(c, make([]byte, 2))
		io.WriteString(c, "last words")
		c.SetLinger(0) // close with RST
	})
	f := startFerry(t, h2cConfig("", nil, ""), nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tun := mustH2Connect(t, ctx, cc, patient.Addr)
	io.WriteString(tun, "hello")
	tun.Close() // the response is unread: x/net sends RST_STREAM (CANCEL)
	select {
	case err := <-readErr:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("target after the client's RST_STREAM: read error %v, want ECONNRESET", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the target saw no end within 20s of the client's RST_STREAM")
	}
	if l := accessLines(t, f, patient.Addr, 1)[0]; l.str("reason") != "client reset" {
		t.Errorf("access reason %q, want client reset: %v", l.str("reason"), l)
	}

	tun = mustH2Connect(t, ctx, cc, rude.Addr)
	io.WriteString(tun, "go")
	b, err := io.ReadAll(tun)
	var se http2.StreamError
	if string(b) != "last words" || !errors.As(err, &se) {
		t.Errorf("from a target that reset: read %q, %v; want its bytes, then the stream reset", b, err)
	}
	if l := accessLines(t, f, rude.Addr, 1)[0]; l.str("reason") != "upstream reset" {
		t.Errorf("access reason %q, want upstream reset: %v", l.str("reason"), l)
	}
}

// TestH2CChannelsParent: the admin API's /channels names the HTTP/2
// connection each live CONNECT stream rides in, the same for siblings.
func TestH2CChannelsParent(t *testing.T) {
	t.Parallel()
	echo := testkit.EchoServer(t)
	adminAddr := freeAddr(t)
	f := startFerry(t, h2cConfig("", nil, fmt.Sprintf("[admin]\nlisten = %q\ntoken = \"t\"\n", adminAddr)), nil)
	cc := dialH2C(t, f.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		testkit.EchoCheck(t, mustH2Connect(t, ctx, cc, echo)) // left open
	}
	_, body := adminRequest(t, adminAddr, "GET", "/channels")
	var chans []struct{ ID, Parent string }
	if err := json.Unmarshal(body, &chans); err != nil || len(chans) != 2 {
		t.Fatalf("/channels: got %s (%v), want two streams", body, err)
	}
	p := chans[0].Parent
	if p == "" || chans[1].Parent != p || p == chans[0].ID || p == chans[1].ID {
		t.Errorf("/channels: parents %q and %q of streams %q and %q, want one shared connection id", p, chans[1].Parent, chans[0].ID, chans[1].ID)
	}
}
