//go:build linux

package test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// freePort6 returns a port on [::1] that was free a moment ago; the test
// is skipped on a host without IPv6 loopback.
func freePort6(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// askSOCKS5Name sends a no-auth greeting and a CONNECT for target by name
// (ATYP 3), and returns the REP byte as "REP 0x..".
func askSOCKS5Name(c net.Conn, target string) (string, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return "", err
	}
	port, _ := strconv.Atoi(portStr)
	c.Write([]byte{5, 1, 0})
	var greet [2]byte
	if _, err := io.ReadFull(c, greet[:]); err != nil {
		return "", fmt.Errorf("read greeting reply: %w", err)
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	c.Write(req)
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return "", fmt.Errorf("read reply: %w", err)
	}
	return fmt.Sprintf("REP %#02x", hdr[1]), nil
}

// askGETURL sends a plain proxy GET for url and returns the status.
func askGETURL(c net.Conn, url string) (string, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", url, host)
	return readStatus(c, http.MethodGet)
}

// hostsNames returns up to max names other than localhost that /etc/hosts
// maps to an IPv4 loopback address.
func hostsNames(max int) []string {
	b, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.SplitN(line, "#", 2)[0])
		if len(f) < 2 || !strings.HasPrefix(f[0], "127.") {
			continue
		}
		for _, name := range f[1:] {
			if name != "localhost" && len(out) < max && !strings.Contains(name, ".") {
				out = append(out, name)
			}
		}
	}
	return out
}

// selfCase is one request through ferry and the answer it must get.
type selfCase struct {
	proto  string // connect, socks5, socks5-name, http
	target string // as sent (URL-escaped for http and connect)
	logged string // the target in ferry's access line
	want   string
}

func (c selfCase) ask(t *testing.T, proxy string) string {
	t.Helper()
	switch c.proto {
	case "connect":
		return ask(t, proxy, c.target, askCONNECT)
	case "socks5":
		return ask(t, proxy, c.target, askSOCKS5)
	case "socks5-name":
		return ask(t, proxy, c.target, askSOCKS5Name)
	case "http":
		return ask(t, proxy, "http://"+c.target+"/", askGETURL)
	}
	t.Fatalf("unknown proto %q", c.proto)
	return ""
}

// logProto is the proto field of the access line for c.
func (c selfCase) logProto() string {
	switch c.proto {
	case "socks5", "socks5-name":
		return "socks5"
	}
	return c.proto
}

// expectRefusedLines waits until each case has a rejected access line
// whose error contains word.
func expectRefusedLines(t *testing.T, f *proc, cases []selfCase, word string) {
	t.Helper()
	for _, c := range cases {
		l := f.waitLine(t, "access", func(l logLine) bool {
			return l.str("target") == c.logged && l.str("proto") == c.logProto()
		})
		if l.str("reason") != "rejected" || !strings.Contains(l.str("error"), word) {
			t.Errorf("%s %s: access line %v; want reason rejected and an error saying %q", c.proto, c.target, l, word)
		}
	}
}

// Tunnels and plain HTTP requests back into ferry are refused however the
// address is spelled: unspecified addresses, IPv4-mapped IPv6, zone ids,
// names that resolve to loopback.
func TestSelfProtectLoops(t *testing.T) {
	t.Parallel()
	p6 := freePort6(t)
	v6 := "[::1]:" + strconv.Itoa(p6)
	f := startFerry(t, func(addr string) string {
		return jsonConfig(addr, `dial_timeout = "3s"`) + fmt.Sprintf(`
[[listener]]
name = "v6"
listen = %q
plugins = ["log"]
`, v6)
	}, nil)
	_, port, _ := net.SplitHostPort(f.addr)
	q := strconv.Itoa(p6)

	var cases []selfCase
	add := func(target, logged string, protos ...string) {
		want := map[string]string{"connect": "403", "http": "403", "socks5": "REP 0x02", "socks5-name": "REP 0x02"}
		for _, p := range protos {
			cases = append(cases, selfCase{proto: p, target: target, logged: logged, want: want[p]})
		}
	}
	add("0.0.0.0:"+port, "0.0.0.0:"+port, "connect", "socks5", "http")
	add("[::]:"+q, "[::]:"+q, "connect", "socks5", "http")
	// CONNECT keeps the authority as sent; a URL's host is unescaped.
	add("[::1%25lo]:"+q, "[::1%25lo]:"+q, "connect")
	add("[::1%25lo]:"+q, "[::1%lo]:"+q, "http")
	add("[::ffff:127.0.0.1]:"+port, "[::ffff:127.0.0.1]:"+port, "connect", "socks5", "http")
	add("[::ffff:0.0.0.0]:"+port, "[::ffff:0.0.0.0]:"+port, "connect")
	add("localhost:"+port, "localhost:"+port, "connect", "socks5-name", "http")
	for _, name := range hostsNames(2) {
		add(name+":"+port, name+":"+port, "connect", "socks5-name")
	}
	for _, c := range cases {
		if got := c.ask(t, f.addr); got != c.want {
			t.Errorf("%s %s: got %s, want %s", c.proto, c.target, got, c.want)
		}
	}
	expectRefusedLines(t, f, cases, "loop")

	// Numeric spellings that getaddrinfo turns into 127.0.0.1 and Go's
	// resolver asks DNS about: refused if they resolve here, failed if
	// not, never a tunnel.
	for _, host := range []string{"2130706433", "127.1", "0x7f000001", "017700000001"} {
		target := host + ":" + port
		if got := ask(t, f.addr, target, askCONNECT); got == "200" {
			t.Errorf("connect %s: got 200, want a refusal or a failed dial", target)
		}
	}
}

// One TCP connection cannot nest tunnels: the first CONNECT back into
// ferry is refused, so the second is never read inside a tunnel.
func TestSelfProtectNoNesting(t *testing.T) {
	t.Parallel()
	f := startFerry(t, withJSON(""), nil)
	_, port, _ := net.SplitHostPort(f.addr)
	c, err := net.DialTimeout("tcp", f.addr, testkit.DialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadlineAfter(c, 10*time.Second)
	var req strings.Builder
	for range 5 {
		fmt.Fprintf(&req, "CONNECT 0.0.0.0:%s HTTP/1.1\r\nHost: 0.0.0.0:%s\r\n\r\n", port, port)
	}
	io.WriteString(c, req.String())
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("read first answer: %v", err)
	}
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("first CONNECT: got %d, want 403", resp.StatusCode)
	}
	rest, _ := io.ReadAll(br) // until ferry closes, or the deadline
	if n := strings.Count(string(rest), " 200 "); n > 0 {
		t.Fatalf("%d nested tunnels opened after the refusal: %q", n, rest)
	}
	if lines := f.lines("access", func(l logLine) bool { return l.str("reason") != "rejected" }); len(lines) > 0 {
		t.Fatalf("access lines of requests that were not refused: %v", lines)
	}
}

// The admin service is not reachable through the proxy, whatever the
// listener and however its address is spelled.
func TestSelfProtectAdmin(t *testing.T) {
	t.Parallel()
	needCurl(t)
	adminAddr := freeAddr(t)
	wide := freePort(t)
	f := startFerry(t, func(addr string) string {
		return jsonConfig(addr, "") + fmt.Sprintf(`
[[listener]]
name = "wide"
listen = "0.0.0.0:%d"
allow_local_destinations = true
plugins = ["log"]

[admin]
listen = %q
`, wide, adminAddr)
	}, nil)
	if body := curl(t, "http://"+adminAddr+"/healthz"); body != "ok\n" {
		t.Fatalf("admin /healthz directly: %q", body)
	}
	_, ap, _ := net.SplitHostPort(adminAddr)
	for _, proxy := range []string{f.addr, "127.0.0.1:" + strconv.Itoa(wide)} {
		out, _ := curlExit(t, "-o", "/dev/null", "-w", "%{http_code}", "-x", "http://"+proxy, "http://"+adminAddr+"/channels")
		if out != "403" {
			t.Errorf("curl -x %s http://%s/channels: got %s, want 403", proxy, adminAddr, out)
		}
		for _, tt := range []struct {
			target string
			how    refusal
			want   string
		}{
			{adminAddr, askCONNECT, "403"},
			{"0.0.0.0:" + ap, askCONNECT, "403"},
			{"localhost:" + ap, askCONNECT, "403"},
			{"[::ffff:127.0.0.1]:" + ap, askCONNECT, "403"},
			{adminAddr, askSOCKS5, "REP 0x02"},
		} {
			if got := ask(t, proxy, tt.target, tt.how); got != tt.want {
				t.Errorf("through %s to %s: got %s, want %s", proxy, tt.target, got, tt.want)
			}
		}
	}
	l := f.waitLine(t, "access", func(l logLine) bool { return l.str("target") == adminAddr })
	if l.str("reason") != "rejected" || !strings.Contains(l.str("error"), "admin") {
		t.Errorf("access line %v; want reason rejected and an error saying admin", l)
	}
}

// A listener bound beyond loopback refuses destinations on the proxy host
// itself unless it sets allow_local_destinations; a loopback listener
// keeps relaying to them.
func TestSelfProtectLocalDestinations(t *testing.T) {
	t.Parallel()
	target := newEchoTarget(t)
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	wide, wideOK := freePort(t), freePort(t)
	f := startFerry(t, func(addr string) string {
		return jsonConfig(addr, "") + fmt.Sprintf(`
[[listener]]
name = "wide"
listen = "0.0.0.0:%d"
plugins = ["log"]

[[listener]]
name = "wide-ok"
listen = "0.0.0.0:%d"
allow_local_destinations = true
plugins = ["log"]
`, wide, wideOK)
	}, nil)
	wideAddr := "127.0.0.1:" + strconv.Itoa(wide)
	okAddr := "127.0.0.1:" + strconv.Itoa(wideOK)
	_, tport, _ := net.SplitHostPort(target.Addr)

	cases := []selfCase{
		{proto: "connect", target: target.Addr, logged: target.Addr, want: "403"},
		{proto: "socks5", target: target.Addr, logged: target.Addr, want: "REP 0x02"},
		{proto: "http", target: webAddr, logged: webAddr, want: "403"},
		{proto: "connect", target: "localhost:" + tport, logged: "localhost:" + tport, want: "403"},
		{proto: "connect", target: "[::ffff:127.0.0.1]:" + tport, logged: "[::ffff:127.0.0.1]:" + tport, want: "403"},
		{proto: "connect", target: "0.0.0.0:" + tport, logged: "0.0.0.0:" + tport, want: "403"},
	}
	for _, c := range cases {
		if got := c.ask(t, wideAddr); got != c.want {
			t.Errorf("through %s: %s %s: got %s, want %s", wideAddr, c.proto, c.target, got, c.want)
		}
	}
	expectRefusedLines(t, f, cases, "allow_local_destinations")

	ctx := t.Context()
	for _, proxy := range []string{f.addr, okAddr} {
		for name, dial := range map[string]tunnelDialer{"connect": testkit.DialCONNECT, "socks5": testkit.DialSOCKS5} {
			c, err := dial(ctx, proxy, target.Addr)
			if err != nil {
				t.Errorf("through %s: %s %s: %v", proxy, name, target.Addr, err)
				continue
			}
			if err := echo(c, "hello\n"); err != nil {
				t.Errorf("through %s: %s: %v", proxy, name, err)
			}
			c.Close()
		}
		if got := ask(t, proxy, "http://"+webAddr+"/", askGETURL); got != "200" {
			t.Errorf("through %s: GET http://%s/: got %s, want 200", proxy, webAddr, got)
		}
	}
}

// Without a token the admin service answers only requests that name it by
// its address (or localhost), and refuses state-changing requests from
// another origin: no DNS rebinding, no CSRF from a page in a browser.
func TestSelfProtectAdminHeaders(t *testing.T) {
	t.Parallel()
	adminAddr := freeAddr(t)
	f := startFerry(t, func(addr string) string {
		return jsonConfig(addr, "") + fmt.Sprintf("\n[admin]\nlisten = %q\n", adminAddr)
	}, nil)
	_, ap, _ := net.SplitHostPort(adminAddr)
	do := func(method, path, host string, hdr map[string]string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, nil)
		if host != "" {
			req.Host = host
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		client := http.Client{Timeout: 10 * time.Second}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		name, method, path, host string
		hdr                      map[string]string
		want                     int
	}{
		{"own address", "GET", "/channels", "", nil, 200},
		{"localhost", "GET", "/channels", "localhost:" + ap, nil, 200},
		{"ipv6 loopback", "GET", "/channels", "[::1]:" + ap, nil, 200},
		{"foreign host", "GET", "/channels", "rebind.example:" + ap, nil, 421},
		{"foreign host metrics", "GET", "/metrics", "rebind.example", nil, 421},
		{"localhost other port", "GET", "/channels", "localhost:1", nil, 421},
		{"foreign host healthz", "GET", "/healthz", "rebind.example:" + ap, nil, 200},
		{"cross-site reload", "POST", "/reload", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site reload", "POST", "/reload", "", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"foreign origin reload", "POST", "/reload", "", map[string]string{"Origin": "http://evil.example"}, 403},
		{"other port origin close", "DELETE", "/channels/x", "", map[string]string{"Origin": "http://127.0.0.1:1"}, 403},
		{"same-origin reload", "POST", "/reload", "", map[string]string{"Origin": "http://" + adminAddr, "Sec-Fetch-Site": "same-origin"}, 200},
		{"curl reload", "POST", "/reload", "", nil, 200},
	} {
		if got := do(tt.method, tt.path, tt.host, tt.hdr); got != tt.want {
			t.Errorf("%s: %s %s Host %q %v: got %d, want %d", tt.name, tt.method, tt.path, tt.host, tt.hdr, got, tt.want)
		}
	}
	f.waitLine(t, "admin request refused: Host does not name the admin service (DNS rebinding?)", nil)
	f.waitLine(t, "admin request refused: cross-origin request (CSRF?)", nil)
}
