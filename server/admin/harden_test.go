package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"ferry/config"
)

// serve runs f's Admin on a loopback listener through Serve (not
// httptest), with its limits as set, and returns the address.
func (f *fixture) serve(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.adm.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.adm.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// Keep-alive connections that stay idle are closed after the idle
// timeout: 100 of them cannot be held open.
func TestIdleTimeout(t *testing.T) {
	f := start(t, config.Admin{}, nil)
	f.adm.idleTimeout = 300 * time.Millisecond
	addr := f.serve(t)
	const n = 100
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("read /healthz answer: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("/healthz: got %d (close %v), want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
		}
	}
	start := time.Now()
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("connection %d: read %v after %v, want EOF: the server closes idle connections", i, err, time.Since(start))
		}
	}
}

// A request head over the header limit is answered 431.
func TestMaxHeaderBytes(t *testing.T) {
	f := start(t, config.Admin{}, nil)
	addr := f.serve(t)
	req, _ := http.NewRequest("GET", "http://"+addr+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header: got %d, want 431", resp.StatusCode)
	}
}

// Without a token, only requests naming the admin by its address or
// localhost are served; with one, any name is.
func TestHostCheck(t *testing.T) {
	open := start(t, config.Admin{}, nil)
	withToken := start(t, config.Admin{Token: "tok"}, nil)
	_, port, _ := net.SplitHostPort(open.web.Listener.Addr().String())
	_, tport, _ := net.SplitHostPort(withToken.web.Listener.Addr().String())
	for _, tt := range []struct {
		name       string
		f          *fixture
		port, host string // host "" keeps the URL's
		path       string
		want       int
	}{
		{"own address", open, port, "", "/channels", 200},
		{"localhost", open, port, "localhost:%s", "/channels", 200},
		{"LOCALHOST", open, port, "LOCALHOST:%s", "/metrics", 200},
		{"127.0.0.1", open, port, "127.0.0.1:%s", "/channels", 200},
		{"other loopback", open, port, "127.0.0.2:%s", "/channels", 200},
		{"ipv6 loopback", open, port, "[::1]:%s", "/channels", 200},
		{"mapped", open, port, "[::ffff:127.0.0.1]:%s", "/channels", 200},
		{"foreign name", open, port, "rebind.example:%s", "/channels", 421},
		{"foreign name, no port", open, port, "rebind.example", "/channels", 421},
		{"foreign address", open, port, "192.0.2.1:%s", "/reload", 421},
		{"localhost, other port", open, port, "localhost:1", "/channels", 421},
		{"localhost, no port", open, port, "localhost", "/channels", 421},
		{"localhost.example", open, port, "localhost.example:%s", "/channels", 421},
		{"healthz by any name", open, port, "rebind.example:%s", "/healthz", 200},
		{"token: any name", withToken, tport, "ferry-admin.svc:%s", "/channels", 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tt.f.web.URL+tt.path, nil)
			if tt.host != "" {
				req.Host = tt.host
				if strings.Contains(tt.host, "%s") {
					req.Host = fmt.Sprintf(tt.host, tt.port)
				}
			}
			req.Header.Set("Authorization", "Bearer tok")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("GET %s Host %q: got %d, want %d", tt.path, req.Host, resp.StatusCode, tt.want)
			}
		})
	}
}

// State-changing requests from another origin are refused, with or
// without a token; same-origin and non-browser ones are served.
func TestCrossOrigin(t *testing.T) {
	reload := func() error { return nil }
	for _, token := range []string{"", "tok"} {
		f := start(t, config.Admin{Token: token}, reload)
		origin := f.web.URL
		for _, tt := range []struct {
			name, method, path string
			hdr                map[string]string
			want               int
		}{
			{"no browser headers", "POST", "/reload", nil, 200},
			{"same origin", "POST", "/reload", map[string]string{"Origin": origin, "Sec-Fetch-Site": "same-origin"}, 200},
			{"same origin, no fetch metadata", "POST", "/reload", map[string]string{"Origin": origin}, 200},
			{"typed by the user", "POST", "/reload", map[string]string{"Sec-Fetch-Site": "none"}, 200},
			{"cross-site", "POST", "/reload", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
			{"same-site other port", "POST", "/reload", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}, 403},
			{"foreign origin", "POST", "/reload", map[string]string{"Origin": "http://evil.example"}, 403},
			{"null origin", "POST", "/reload", map[string]string{"Origin": "null"}, 403},
			{"foreign origin close", "DELETE", "/channels/x", map[string]string{"Origin": "http://evil.example"}, 403},
			{"foreign origin post close", "POST", "/channels/x/close", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
			{"cross-site read", "GET", "/healthz", map[string]string{"Sec-Fetch-Site": "cross-site"}, 200},
		} {
			t.Run(fmt.Sprintf("token %q: %s", token, tt.name), func(t *testing.T) {
				req, _ := http.NewRequest(tt.method, f.web.URL+tt.path, nil)
				if token != "" {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				for k, v := range tt.hdr {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.want {
					t.Fatalf("%s %s %v: got %d, want %d", tt.method, tt.path, tt.hdr, resp.StatusCode, tt.want)
				}
			})
		}
	}
}
