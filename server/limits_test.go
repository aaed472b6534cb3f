package server

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

	"ferry/relay"
	"ferry/test/testkit"
)

func TestHTTPHeaderLimits(t *testing.T) {
	f := start(t, basicConfig+`
[limits]
max_header_bytes = "8KiB"
max_headers = 10
`)
	manyHeaders := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-H%d: v\r\n", i)
		}
		return b.String()
	}
	for _, tt := range []struct {
		name, req  string
		wantStatus int
	}{
		{"head over max_header_bytes", "CONNECT 127.0.0.1:9 HTTP/1.1\r\nX: " + strings.Repeat("a", 9<<10) + "\r\n\r\n", 431},
		{"over max_headers", "CONNECT 127.0.0.1:9 HTTP/1.1\r\n" + manyHeaders(11) + "\r\n", 431},
		{"repeated name counts each time", "GET http://127.0.0.1:9/ HTTP/1.1\r\n" + strings.Repeat("Cookie: a=1\r\n", 11) + "\r\n", 431},
		{"at max_headers", "GET http://" + testkit.ClosedAddr(t) + "/ HTTP/1.1\r\n" + manyHeaders(10) + "\r\n", 502},
		{"head under max_header_bytes", "GET http://" + testkit.ClosedAddr(t) + "/ HTTP/1.1\r\nX: " + strings.Repeat("a", 7<<10) + "\r\n\r\n", 502},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, f.addr)
			go io.WriteString(c, tt.req) // a refused head may be read only in part
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

// refusedAtOnce reports whether the server closed c without an answer.
func refusedAtOnce(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n > 0 {
		return false
	}
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		return true // EOF or reset
	}
	return false
}

func TestMaxClientHandshakes(t *testing.T) {
	f := start(t, `
[defaults]
handshake_timeout = "5s"
[limits]
max_client_handshakes = 2
[[listener]]
listen = "127.0.0.1:0"
protocols = ["socks5"]
`)
	// Two connections from 127.0.0.1 that do not finish their handshake.
	slow := []net.Conn{dial(t, f.addr), dial(t, f.addr)}
	for _, c := range slow {
		c.Write([]byte{5}) // half a greeting
	}
	waitFor(t, func() bool { return f.srv.Stats().Accepted == 2 })
	third := dial(t, f.addr)
	if !refusedAtOnce(t, third) {
		t.Fatal("a third handshake from the same address was not refused")
	}
	if got := f.srv.Stats().RefusedOverLimit; got != 1 {
		t.Fatalf("refused: got %d, want 1", got)
	}
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"reason":"max_client_handshakes"`) })
	// Another address is not affected.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	other, err := d.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.Write([]byte{5, 1, 0})
	got := make([]byte, 2)
	other.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(other, got); err != nil || got[0] != 5 || got[1] != 0 {
		t.Fatalf("other address: greeting reply %v, %v", got, err)
	}
	// A finished handshake frees its place.
	echo := testkit.EchoServer(t)
	_, port := splitPort(t, echo)
	slow[0].Write(socks5Request("127.0.0.1", port, 1)[1:]) // the rest of it
	if rep := readSOCKS5Reply(t, slow[0]); rep != 0 {
		t.Fatalf("reply %d", rep)
	}
	testkit.EchoCheck(t, slow[0])
	fourth := dial(t, f.addr)
	fourth.Write([]byte{5, 1, 0})
	fourth.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(fourth, got); err != nil || got[0] != 5 {
		t.Fatalf("after a handshake finished: greeting reply %v, %v", got, err)
	}
}

func TestMaxClientHandshakesExemptsTrustedProxies(t *testing.T) {
	f := start(t, `
[limits]
max_client_handshakes = 1
[[listener]]
listen = "127.0.0.1:0"
protocols = ["socks5"]
proxy_protocol = "optional"
trusted_proxies = ["127.0.0.1/32"]
`)
	a, b := dial(t, f.addr), dial(t, f.addr)
	for _, c := range []net.Conn{a, b} {
		c.Write([]byte{5, 1, 0})
		got := make([]byte, 2)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || got[0] != 5 {
			t.Fatalf("trusted peer refused: %v, %v", got, err)
		}
	}
}

func TestServerMaxConnections(t *testing.T) {
	echo := testkit.EchoServer(t)
	f := start(t, `
[limits]
max_connections = 2
[[listener]]
name = "a"
listen = "127.0.0.1:0"
protocols = ["tcp"]
target = "`+echo+`"
[[listener]]
name = "b"
listen = "127.0.0.1:0"
protocols = ["tcp"]
target = "`+echo+`"
`)
	addrs := f.srv.Addrs()
	first, second := dial(t, addrs[0].String()), dial(t, addrs[1].String())
	testkit.EchoCheck(t, first)
	testkit.EchoCheck(t, second)
	// Both listeners share the cap.
	for _, a := range addrs {
		if !refusedAtOnce(t, dial(t, a.String())) {
			t.Fatalf("%s: a connection over [limits] max_connections was served", a)
		}
	}
	first.Close()
	waitFor(t, func() bool { return f.srv.Stats().Active == 1 })
	testkit.EchoCheck(t, dial(t, addrs[1].String()))
}

func TestAutoMaxConnections(t *testing.T) {
	n := autoMaxConnections()
	if n <= 0 {
		t.Skip("no open-file limit")
	}
	// Each connection's most descriptors must fit under the limit.
	if relay.TunnelFDs*n >= openFileLimit(t) {
		t.Fatalf("auto max_connections %d does not leave descriptors to spare under %d", n, openFileLimit(t))
	}
}

// The budget counts a spliced tunnel's pipes, not just its two sockets,
// and keeps a reserve for ferry's own descriptors.
func TestMaxConnectionsFor(t *testing.T) {
	if relay.TunnelFDs != 6 {
		t.Skip("no splice path here")
	}
	tests := []struct {
		limit uint64
		want  int
	}{
		{limit: 64, want: 8},     // (64-16)/6
		{limit: 120, want: 15},   // (120-30)/6
		{limit: 1024, want: 128}, // (1024-256)/6
		{limit: 1 << 20, want: (1<<20 - 256) / 6},
		{limit: 4, want: 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			got := maxConnectionsFor(tt.limit)
			if got != tt.want {
				t.Fatalf("maxConnectionsFor(%d) = %d, want %d", tt.limit, got, tt.want)
			}
			if reserve := min(tt.limit/4, 256); tt.limit > 8 && uint64(got*relay.TunnelFDs)+reserve > tt.limit {
				t.Fatalf("%d connections x %d descriptors leave less than %d spare under %d", got, relay.TunnelFDs, reserve, tt.limit)
			}
		})
	}
}

func openFileLimit(t *testing.T) int {
	limit, ok := fileLimit()
	if !ok {
		t.Fatal("no open-file limit")
	}
	return int(limit)
}

// Targets that are not host:port get the protocol's refusal, never a dial.
func TestMalformedTargets(t *testing.T) {
	f := start(t, basicConfig)
	dialed := dialFunc(func(context.Context, string, string) (net.Conn, error) {
		t.Error("a malformed target was dialed")
		return nil, errors.New("no")
	})
	f.srv.dialHook.Store(&dialed)
	for _, host := range []string{"a:b]", "[::1]", "x y", "a/b"} {
		c := dial(t, f.addr)
		c.Write(socks5Request(host, 80, 1))
		if rep := readSOCKS5Reply(t, c); rep != 4 {
			t.Errorf("SOCKS5 %q: REP %d, want 4 (host unreachable)", host, rep)
		}
		c = dial(t, f.addr)
		c.Write(benchSOCKS4Request([4]byte{0, 0, 0, 1}, 80, host))
		got := make([]byte, 8)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || got[1] != socks4Rejected {
			t.Errorf("SOCKS4a %q: reply %v, %v; want rejected", host, got, err)
		}
	}
	c := dial(t, f.addr)
	io.WriteString(c, "CONNECT :443 HTTP/1.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("CONNECT without a host: %v, %v; want 400", resp, err)
	}
}
