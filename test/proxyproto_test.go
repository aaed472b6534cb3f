//go:build linux

package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

// startPeer runs a peer server in the foreground until the test ends and
// waits until addr accepts connections.
func startPeer(t *testing.T, addr string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that workers the peer forks (nginx's) end
	// with it; WaitDelay so a straggler holding the output pipe cannot
	// hang the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited at start:\n%s", name, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept on %s: %v\n%s", name, addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// proxyListenerConfig is a JSON-logging proxy listener that requires (or
// accepts) PROXY headers from 127.0.0.1.
func proxyListenerConfig(mode string) func(addr string) string {
	return func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"
[defaults]
handshake_timeout = "2s"
[[listener]]
name = "behind-lb"
listen = %q
proxy_protocol = %q
trusted_proxies = ["127.0.0.1/32"]
plugins = ["log"]
[[plugin]]
name = "log"
`, addr, mode)
	}
}

// TestHAProxyInFront: haproxy relays to ferry with send-proxy and
// send-proxy-v2; ferry's access line names the real client (curl, bound
// to 127.0.0.5), not haproxy (127.0.0.1), and keeps haproxy as the peer.
func TestHAProxyInFront(t *testing.T) {
	t.Parallel()
	haproxy := testkit.NeedBin(t, "haproxy")
	needCurl(t)
	web := testkit.HTTPTarget(t)
	for _, send := range []string{"send-proxy", "send-proxy-v2"} {
		t.Run(send, func(t *testing.T) {
			f := startFerry(t, proxyListenerConfig("required"), nil)
			front := startHAProxyFront(t, haproxy, f.addr, send)

			url := "http://" + web.Listener.Addr().String() + "/"
			body := curl(t, "--interface", "127.0.0.5", "-x", "http://"+front, url)
			if !strings.Contains(body, "hello") {
				t.Fatalf("body: got %q", body)
			}
			line := f.waitLine(t, "access", byTarget(web.Listener.Addr().String()))
			if c := line.str("client"); !strings.HasPrefix(c, "127.0.0.5:") {
				t.Fatalf("access line client: got %q, want 127.0.0.5:… (curl, from the PROXY header)", c)
			}
			if p := line.str("peer"); !strings.HasPrefix(p, "127.0.0.1:") {
				t.Fatalf("access line peer: got %q, want 127.0.0.1:… (haproxy)", p)
			}
		})
	}
}

// startHAProxyFront runs haproxy in mode tcp on a free address in front
// of backend, to which it sends PROXY headers as send says ("send-proxy"
// or "send-proxy-v2"), and returns the front address.
func startHAProxyFront(t *testing.T, haproxy, backend, send string) string {
	t.Helper()
	front := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	writeFile(t, cfg, fmt.Sprintf(`global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind %s
    default_backend ferry
backend ferry
    server ferry %s %s
`, front, backend, send))
	startPeer(t, front, haproxy, "-db", "-f", cfg)
	return front
}

// TestCurlHAProxyProtocol: with proxy_protocol = "optional", clients may
// send a header (curl --haproxy-protocol) or not. curl sends it to an HTTP
// proxy, and, as a plain client, to a tcp listener, which must consume it
// so the target sees only the request.
func TestCurlHAProxyProtocol(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	f := startFerry(t, proxyListenerConfig("optional"), nil)
	url := "http://" + webAddr + "/"
	for _, args := range [][]string{
		{"--haproxy-protocol", "-x", "http://" + f.addr, url},
		{"-x", "http://" + f.addr, url},
	} {
		if body := curl(t, args...); body != testkit.TargetBody {
			t.Fatalf("curl %q: body %q", args, body)
		}
	}
	waitFor(t, func() bool { return len(f.lines("access", byTarget(webAddr))) == 2 })

	fwd := startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"
[[listener]]
listen = %q
protocols = ["tcp"]
target = %q
proxy_protocol = "optional"
trusted_proxies = ["127.0.0.1"]
plugins = ["log"]
[[plugin]]
name = "log"
`, addr, webAddr)
	}, nil)
	for _, args := range [][]string{
		{"--haproxy-protocol", "http://" + fwd.addr + "/"},
		{"http://" + fwd.addr + "/"},
	} {
		if body := curl(t, args...); body != testkit.TargetBody {
			t.Fatalf("curl %q: body %q", args, body)
		}
	}
}

// TestNginxBehindFerry: a tcp listener sends v1 and v2 headers to nginx
// listening with proxy_protocol; nginx logs the real client (curl bound to
// 127.0.0.6) as $proxy_protocol_addr.
func TestNginxBehindFerry(t *testing.T) {
	t.Parallel()
	testkit.NeedBin(t, "nginx")
	needCurl(t)
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			backend, dir := runNginx(t, nginxSite{
				http:   `    log_format pp '$proxy_protocol_addr $remote_addr "$request"';`,
				log:    "pp",
				listen: "proxy_protocol",
				server: `        location / { return 200 "hello from nginx\n"; }`,
			})

			f := startFerry(t, func(addr string) string {
				return fmt.Sprintf(`[log]
format = "json"
[[listener]]
name = "to-nginx"
listen = %q
protocols = ["tcp"]
target = %q
send_proxy_protocol = %q
plugins = ["log"]
[[plugin]]
name = "log"
`, addr, backend, version)
			}, nil)
			body := curl(t, "--interface", "127.0.0.6", "http://"+f.addr+"/"+version)
			if body != "hello from nginx\n" {
				t.Fatalf("body: got %q", body)
			}
			var log string
			waitFor(t, func() bool {
				b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
				log = string(b)
				return strings.Contains(log, "/"+version)
			})
			if !strings.HasPrefix(log, "127.0.0.6 127.0.0.1 ") {
				t.Fatalf("nginx access log: got %q, want $proxy_protocol_addr 127.0.0.6 (curl) and $remote_addr 127.0.0.1 (ferry)", log)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUpstreamSendProxyProtocol: an [[upstream]] with send_proxy_protocol
// gets a PROXY header ahead of its SOCKS5 or CONNECT handshake, also when
// it sits behind another hop (via). The parent, a second ferry requiring
// the header, logs the real client (curl bound to 127.0.0.5).
func TestUpstreamSendProxyProtocol(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	hop := startFerry(t, withJSON(""), nil)
	for _, tt := range []struct{ name, scheme, version, via string }{
		{"v1 to an HTTP parent", "http", "v1", ""},
		{"v2 to a SOCKS5 parent", "socks5", "v2", ""},
		{"v2 behind another hop", "socks5", "v2", "hop"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			parent := startFerry(t, proxyListenerConfig("required"), nil)
			via := ""
			if tt.via != "" {
				via = fmt.Sprintf("via = %q", tt.via)
			}
			front := startFerry(t, func(addr string) string {
				return jsonConfig(addr, "") + fmt.Sprintf(`
[[upstream]]
name = "hop"
url = "http://%s"
[[upstream]]
name = "parent"
url = "%s://%s"
send_proxy_protocol = %q
%s
[[route]]
upstream = "parent"
`, hop.addr, tt.scheme, parent.addr, tt.version, via)
			}, nil)
			body := curl(t, "--interface", "127.0.0.5", "-x", "http://"+front.addr, "http://"+webAddr+"/")
			if !strings.Contains(body, "hello") {
				t.Fatalf("body: got %q", body)
			}
			line := parent.waitLine(t, "access", byTarget(webAddr))
			if c := line.str("client"); !strings.HasPrefix(c, "127.0.0.5:") {
				t.Errorf("parent's access line client: got %q, want 127.0.0.5:… (from ferry's PROXY header)", c)
			}
			if p := line.str("peer"); !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("parent's access line peer: got %q, want 127.0.0.1:…", p)
			}
			wantChain := "parent"
			if tt.via != "" {
				wantChain = "hop>parent"
			}
			if got := front.waitLine(t, "access", byTarget(webAddr)).str("chain"); got != wantChain {
				t.Errorf("front's access line chain: got %q, want %q", got, wantChain)
			}
		})
	}
}
