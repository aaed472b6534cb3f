//go:build linux

package test

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ferry/test/testkit"
)

// aclConfig is the e2e listener with an acl instance ahead of the log
// plugin; acl is the body of its [[plugin]] table.
func aclConfig(acl string) func(addr string) string {
	return chainConfig([]string{"acl", "log"}, "[[plugin]]\nname = \"acl\"\n"+acl+"\n\n[[plugin]]\nname = \"log\"\n")
}

// TestACLPrivateDestinations: with deny_private_destinations, a name that
// resolves to 127.0.0.1 is refused at dial time, through HTTP and SOCKS5
// alike, and so is the address itself.
func TestACLPrivateDestinations(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t)
	webPort := web.Listener.Addr().(*net.TCPAddr).Port
	localhost := net.JoinHostPort("localhost", strconv.Itoa(webPort))
	f := startFerry(t, aclConfig(`default = "allow"
deny_private_destinations = true`), nil)

	tests := []struct {
		name   string
		args   []string
		target string
		// wantCode is curl's exit code; wantStatus the HTTP status when
		// curl gets one.
		wantCode   int
		wantStatus string
	}{
		{
			name:       "http name",
			args:       []string{"-x", "http://" + f.addr, "-o", "/dev/null", "-w", "%{http_code}", "http://" + localhost + "/"},
			target:     localhost,
			wantStatus: "403",
		},
		{
			name:       "http address",
			args:       []string{"-x", "http://" + f.addr, "-o", "/dev/null", "-w", "%{http_code}", "http://" + web.Listener.Addr().String() + "/"},
			target:     web.Listener.Addr().String(),
			wantStatus: "403",
		},
		{
			name:     "socks5 hostname",
			args:     []string{"--socks5-hostname", f.addr, "http://" + localhost + "/"},
			target:   localhost,
			wantCode: 97, // CURLE_PROXY: the SOCKS5 reply was a failure
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := curlMayFail(t, tt.args...)
			t.Logf("curl exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
			if tt.wantStatus != "" && res.stdout != tt.wantStatus {
				t.Errorf("HTTP status %q, want %q (curl exit %d, %s)", res.stdout, tt.wantStatus, res.code, res.stderr)
			}
			if tt.wantCode != 0 {
				// Older curls say 7 (couldn't connect) for a SOCKS refusal;
				// the reply code is in the message either way.
				if res.code != tt.wantCode && res.code != 7 {
					t.Errorf("curl exit %d, want %d; stderr: %s", res.code, tt.wantCode, res.stderr)
				}
				if !strings.Contains(res.stderr, "(2)") && !strings.Contains(res.stderr, "not allowed") {
					t.Errorf("curl stderr does not report SOCKS5 reply 2 (not allowed): %s", res.stderr)
				}
			}
			if strings.Contains(res.stdout, testkit.TargetBody) {
				t.Errorf("the target's body came through: %q", res.stdout)
			}
			l := f.waitLine(t, "access", byTarget(tt.target))
			if got := l.str("reason"); got != "rejected" {
				t.Errorf("access reason = %q, want rejected: %v", got, l)
			}
			if got := l.str("error"); !strings.Contains(got, "deny_private_destinations") {
				t.Errorf("access error = %q, want it to name deny_private_destinations", got)
			}
		})
	}
	denied := f.lines("acl denied", nil)
	if len(denied) == 0 {
		t.Fatalf("no acl denied line; stderr:\n%s", f.stderr.String())
	}
	for _, l := range denied {
		if l.str("level") != "info" || l.str("rule") != "deny_private_destinations" || l.str("client") == "" || l.str("target") == "" {
			t.Errorf("acl denied line lacks level, rule, client or target: %v", l)
		}
	}
}

// TestACLDomainRules: a domain rule lets one name through and the default
// refuses another, in HTTP and SOCKS5.
func TestACLDomainRules(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t)
	port := strconv.Itoa(web.Listener.Addr().(*net.TCPAddr).Port)
	allowed := net.JoinHostPort("localhost", port)
	// Denied by rule[0] before any lookup: the name need not exist.
	blocked := net.JoinHostPort("ads.blocked.test", port)
	// Denied by default.
	other := net.JoinHostPort("other.test", port)
	f := startFerry(t, aclConfig(`default = "deny"

[[plugin.rule]]
action = "deny"
domain = ["*.blocked.test"]

[[plugin.rule]]
action = "allow"
domain = [".localhost"]
port = [`+port+`]`), nil)

	if got := curl(t, "-x", "http://"+f.addr, "http://"+allowed+"/"); got != testkit.TargetBody {
		t.Errorf("allowed name over HTTP: body %q, want %q", got, testkit.TargetBody)
	}
	if got := curl(t, "--socks5-hostname", f.addr, "http://"+allowed+"/"); got != testkit.TargetBody {
		t.Errorf("allowed name over SOCKS5: body %q, want %q", got, testkit.TargetBody)
	}
	for _, target := range []string{blocked, other} {
		res := curlMayFail(t, "-x", "http://"+f.addr, "-o", "/dev/null", "-w", "%{http_code}", "http://"+target+"/")
		if res.stdout != "403" {
			t.Errorf("%s over HTTP: status %q, want 403 (curl exit %d, %s)", target, res.stdout, res.code, res.stderr)
		}
		res = curlMayFail(t, "--socks5-hostname", f.addr, "http://"+target+"/")
		if res.code == 0 || !strings.Contains(res.stderr, "(2)") {
			t.Errorf("%s over SOCKS5: curl exit %d, stderr %q, want SOCKS5 reply 2 (not allowed)", target, res.code, res.stderr)
		}
	}
	for target, wantRule := range map[string]string{blocked: "rule[0]", other: "default"} {
		l := f.waitLine(t, "access", byTarget(target))
		if got := l.str("reason"); got != "rejected" {
			t.Errorf("access reason for %s = %q, want rejected", target, got)
		}
		d := f.waitLine(t, "acl denied", func(l logLine) bool { return l.str("target") == target })
		if got := d.str("rule"); got != wantRule {
			t.Errorf("acl denied %s by %q, want %q", target, got, wantRule)
		}
	}
	for _, l := range f.lines("access", byTarget(allowed)) {
		if got := l.str("reason"); got == "rejected" {
			t.Errorf("allowed request rejected: %v", l)
		}
	}
}

// TestACLUserOnKeptAliveConnection: plain HTTP requests of one client
// connection to one destination share an upstream connection, and a rule
// on user and destination address still decides each of them. admin's
// second request reuses the connection of the first and is checked again
// on its address; bob's, next on the same client connection, is refused
// and never reaches the target.
func TestACLUserOnKeptAliveConnection(t *testing.T) {
	t.Parallel()
	var conns atomic.Int32 // connections the target accepted
	web := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, testkit.TargetBody)
	}))
	web.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	web.Start()
	t.Cleanup(web.Close)
	// A name: the verdict waits for the address, which only a dial (or
	// the check of a reused connection) knows.
	target := net.JoinHostPort("localhost", strconv.Itoa(web.Listener.Addr().(*net.TCPAddr).Port))
	f := startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[log]
level = "debug"
format = "json"

[[listener]]
name = "e2e"
listen = %q
protocols = ["http"]
plugins = ["auth", "acl", "log"]

[[plugin]]
name = "auth"

[plugin.users]
admin = "plain:admin-pass"
bob = "plain:bob-pass"

[[plugin]]
name = "acl"
default = "allow"
rule = [
  { action = "allow", user = ["admin"], dest = ["127.0.0.0/8", "::1"] },
  { action = "deny", dest = ["127.0.0.0/8", "::1"] },
]

[[plugin]]
name = "log"
`, addr)
	}, nil)

	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadlineAfter(c, 30*time.Second)
	br := bufio.NewReader(c)
	tests := []struct {
		user, path string
		wantStatus int
		wantConns  int32 // connections the target has seen after it
	}{
		{user: "admin", path: "/first", wantStatus: http.StatusOK, wantConns: 1},
		{user: "admin", path: "/again", wantStatus: http.StatusOK, wantConns: 1},
		{user: "bob", path: "/bob", wantStatus: http.StatusForbidden, wantConns: 1},
	}
	for i, tt := range tests {
		cred := base64.StdEncoding.EncodeToString([]byte(tt.user + ":" + tt.user + "-pass"))
		fmt.Fprintf(c, "GET http://%s%s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", target, tt.path, target, cred)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d (%s %s): %v", i+1, tt.user, tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.wantStatus {
			t.Fatalf("request %d (%s %s): status %d, want %d; body %q", i+1, tt.user, tt.path, resp.StatusCode, tt.wantStatus, body)
		}
		if resp.StatusCode == http.StatusOK && string(body) != testkit.TargetBody {
			t.Errorf("request %d: body %q, want %q", i+1, body, testkit.TargetBody)
		}
		if got := conns.Load(); got != tt.wantConns {
			t.Errorf("after request %d (%s %s): the target saw %d connections, want %d", i+1, tt.user, tt.path, got, tt.wantConns)
		}
	}

	// Every request was decided on an address: admin's second one, which
	// was not dialed, too.
	var access []logLine
	waitFor(t, func() bool { access = f.lines("access", byTarget(target)); return len(access) == len(tests) })
	for i, l := range access {
		id, user := l.str("id"), tests[i].user
		onAddr := func(d logLine) bool { return d.str("id") == id && d.str("addr") != "" }
		if len(f.lines("acl allowed", onAddr))+len(f.lines("acl denied", onAddr)) == 0 {
			t.Errorf("request %d (%s): no acl verdict on an address for session %s", i+1, user, id)
		}
		if l.str("user") != user {
			t.Errorf("request %d: access line user %q, want %q", i+1, l.str("user"), user)
		}
	}
	if got := access[2].str("reason"); got != "rejected" {
		t.Errorf("bob's access reason = %q, want rejected", got)
	}
	d := f.waitLine(t, "acl denied", func(l logLine) bool { return l.str("user") == "bob" })
	if d.str("rule") != "rule[1]" || d.str("addr") == "" {
		t.Errorf("acl denied bob by %q at %q, want rule[1] at an address", d.str("rule"), d.str("addr"))
	}
}
