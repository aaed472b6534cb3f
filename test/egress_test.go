//go:build linux

package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"ferry/relay/upstream"
	"ferry/test/testkit"
)

// egressPool is the source_address pool of the egress tests: Linux
// answers the whole loopback range, so these need no setup.
var egressPool = []netip.Addr{
	netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
	netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5"),
}

// egressConfig is a listener behind the auth plugin with inline users,
// whose routes give user "rr" the pool round-robin, targets on port
// v6Port a source that cannot reach them, and everyone else the pool
// sticky.
func egressConfig(users []string, v6Port string) func(addr string) string {
	var inline strings.Builder
	for _, u := range users {
		fmt.Fprintf(&inline, "%s = \"plain:pw-%s\"\n", u, u)
	}
	pool := `["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]`
	return chainConfig([]string{"auth", "log"}, fmt.Sprintf(`[[plugin]]
name = "auth"
[plugin.users]
%s
[[plugin]]
name = "log"

[[route]]
port = [%s]
upstream = "direct"
source_address = "127.0.0.2"

[[route]]
user = ["rr"]
upstream = "direct"
source_address = %s
source_strategy = "round-robin"

[[route]]
upstream = "direct"
source_address = %s
`, inline.String(), v6Port, pool, pool))
}

// peerTarget is a TCP target that answers each connection with the
// address it came from.
func peerTarget(t *testing.T) *testkit.TCPTarget {
	return testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
	})
}

// peerVia opens a SOCKS5 tunnel as user (none if empty) to target and
// returns the address the target saw it come from.
func peerVia(t *testing.T, proxyAddr, target, user string) netip.Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var auth *proxy.Auth
	if user != "" {
		auth = &proxy.Auth{User: user, Password: "pw-" + user}
	}
	c, err := testkit.DialSOCKS5With(ctx, proxyAddr, target, auth)
	if err != nil {
		t.Fatalf("SOCKS5 as %s to %s: %v", user, target, err)
	}
	return peerOf(t, c, user)
}

// peerOf reads, from a tunnel to a peerTarget opened as user, the
// address the target saw it come from, and closes the tunnel.
func peerOf(t *testing.T, c *testkit.BufConn, user string) netip.Addr {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := c.Reader().ReadString('\n')
	if err != nil {
		t.Fatalf("read the target's answer as %s: %v", user, err)
	}
	return netip.MustParseAddr(strings.TrimSpace(line))
}

// twoUsers returns two user names whose sticky addresses in the pool
// differ, so that the test shows them apart.
func twoUsers(t *testing.T) (a, b string) {
	a = "user-0"
	slot := upstream.StickySource(egressPool, a, netip.Addr{})
	for i := 1; i < 100; i++ {
		b = fmt.Sprintf("user-%d", i)
		if upstream.StickySource(egressPool, b, netip.Addr{}) != slot {
			return a, b
		}
	}
	t.Fatal("no user among 100 names hashes to another address than user-0")
	return "", ""
}

// TestEgressSourceAddress: through the real binary, each user's 100
// connections leave from one address of the pool (sticky), a second user
// from another, round-robin cycles through all four, plain HTTP leaves
// from the user's address too, and the access line says which.
func TestEgressSourceAddress(t *testing.T) {
	t.Parallel()
	target := peerTarget(t)
	a, b := twoUsers(t)
	f := startFerry(t, egressConfig([]string{a, b, "rr"}, "1"), nil)

	got := map[string]netip.Addr{}
	for _, u := range []string{a, b} {
		want := upstream.StickySource(egressPool, u, netip.Addr{})
		for i := range 100 {
			if src := peerVia(t, f.addr, target.Addr, u); src != want {
				t.Fatalf("%s's connection %d came from %v, want %v like the others", u, i, src, want)
			}
		}
		got[u] = want
	}
	if got[a] == got[b] {
		t.Fatalf("users %s and %s both came from %v, want different addresses", a, b, got[a])
	}

	var seq []netip.Addr
	for range 8 {
		seq = append(seq, peerVia(t, f.addr, target.Addr, "rr"))
	}
	distinct := map[netip.Addr]bool{}
	for i, src := range seq {
		distinct[src] = true
		if src != seq[i%4] {
			t.Fatalf("round-robin sources %v: want a cycle through all four of %v", seq, egressPool)
		}
	}
	if len(distinct) != 4 {
		t.Fatalf("round-robin sources %v: want all four of %v", seq, egressPool)
	}

	l := f.waitLine(t, "access", func(l logLine) bool { return l.str("user") == b })
	if l.str("source") != got[b].String() {
		t.Fatalf("access line of %s: source %q, want %q", b, l.str("source"), got[b])
	}
	t.Logf("sticky: %s from %v, %s from %v (100 connections each); round-robin %v", a, got[a], b, got[b], seq)
	for _, host := range httpSources(t, f.addr, a, 3) {
		if host != got[a].String() {
			t.Fatalf("plain HTTP as %s came from %s, want %v", a, host, got[a])
		}
	}
	// A kept-alive origin connection bound to one address is not reused
	// for a request that round-robin sends from the next.
	rr := httpSources(t, f.addr, "rr", 3)
	for i := 1; i < len(rr); i++ {
		if rr[i] == rr[i-1] {
			t.Fatalf("round-robin plain HTTP requests came from %v: want each from the next address", rr)
		}
	}
}

// httpSources sends n plain HTTP requests as user over one kept-alive
// client connection and returns the addresses the origin saw them come
// from.
func httpSources(t *testing.T, proxyAddr, user string, n int) []string {
	t.Helper()
	seen := make(chan string, 1)
	web := testkit.HTTPTarget(t)
	web.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		seen <- host
		io.WriteString(w, "ok")
	})
	client := userClient(t, proxyAddr, user)
	var out []string
	for range n {
		resp, err := client.Get(web.URL + "/")
		if err != nil {
			t.Fatalf("plain HTTP as %s: %v", user, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("plain HTTP as %s: status %d, want 200", user, resp.StatusCode)
		}
		out = append(out, <-seen)
	}
	return out
}

// userClient is an HTTP client of the proxy at proxyAddr logged in as
// user; its idle connections close with the test.
func userClient(t *testing.T, proxyAddr, user string) *http.Client {
	pu := &url.URL{Scheme: "http", Host: proxyAddr, User: url.UserPassword(user, "pw-"+user)}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	t.Cleanup(client.CloseIdleConnections)
	return client
}

// TestEgressSourceFailure: a dial that cannot leave from its source (an
// IPv4 source to an IPv6 target) is a 502 for HTTP and reply 0x01 for
// SOCKS5, with the reason in the access line and in a warning.
func TestEgressSourceFailure(t *testing.T) {
	t.Parallel()
	port := fmt.Sprint(freePort(t))
	f := startFerry(t, egressConfig([]string{"alice"}, port), nil)
	target := net.JoinHostPort("::1", port)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := testkit.DialSOCKS5Auth(ctx, f.addr, target, "alice", "pw-alice")
	if err == nil || !strings.Contains(err.Error(), "general SOCKS server failure") {
		t.Fatalf("SOCKS5 to %s from 127.0.0.2: got %v, want reply 0x01 (general failure)", target, err)
	}
	client := userClient(t, f.addr, "alice")
	resp, err := client.Get("http://" + target + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("plain HTTP to %s from 127.0.0.2: status %d, want 502", target, resp.StatusCode)
	}
	l := f.waitLine(t, "access", byTarget(target))
	if e := l.str("error"); !strings.Contains(e, "bind source address 127.0.0.2") || l.str("source") != "127.0.0.2" {
		t.Fatalf("access line: error %q source %q, want the source address and why it failed", e, l.str("source"))
	}
	w := f.waitLine(t, "dial from source address failed", nil)
	if w.str("source") != "127.0.0.2" {
		t.Fatalf("warning: source %q, want 127.0.0.2", w.str("source"))
	}
}

// TestEgressCheckUnassigned: `ferry check` reports a source address this
// host does not have at its position.
func TestEgressCheckUnassigned(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.toml")
	src := "[[listener]]\nlisten = \"127.0.0.1:0\"\n\n[[route]]\nupstream = \"direct\"\nsource_address = [\"127.0.0.2\", \"192.0.2.1\"]\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runFerry(t, dir, "check", "-c", path)
	want := path + ":6:32: route[0].source_address[1]: 192.0.2.1 is not assigned to this host"
	sc := bufio.NewScanner(strings.NewReader(res.stderr))
	found := false
	for sc.Scan() {
		found = found || strings.HasPrefix(sc.Text(), want)
	}
	if res.code == 0 || !found {
		t.Fatalf("ferry check exited %d with stderr\n%s\nwant non-zero and a line starting %q", res.code, res.stderr, want)
	}
}

// TestEgressFirstHop: a route to an upstream proxy binds the connection
// ferry makes to it, the first hop; the parent (another ferry) sees the
// child come from the route's address.
func TestEgressFirstHop(t *testing.T) {
	t.Parallel()
	target := peerTarget(t)
	parent := startFerry(t, withJSON(""), nil)
	child := startFerry(t, func(addr string) string {
		return jsonConfig(addr, "") + fmt.Sprintf(`
[[upstream]]
name = "parent"
url = "socks5://%s"

[[route]]
upstream = "parent"
source_address = "127.0.0.4"
`, parent.addr)
	}, nil)
	if got := peerVia(t, child.addr, target.Addr, ""); got.String() != "127.0.0.1" {
		t.Fatalf("target saw %s, want the parent's 127.0.0.1 (the source binds the first hop only)", got)
	}
	l := parent.waitLine(t, "access", byTarget(target.Addr))
	if host, _, _ := net.SplitHostPort(l.str("client")); host != "127.0.0.4" {
		t.Fatalf("parent's access line: client %q, want it from 127.0.0.4", l.str("client"))
	}
	cl := child.waitLine(t, "access", byTarget(target.Addr))
	if cl.str("source") != "127.0.0.4" || cl.str("chain") != "parent" {
		t.Fatalf("child's access line: source %q chain %q, want 127.0.0.4 and parent", cl.str("source"), cl.str("chain"))
	}
}
