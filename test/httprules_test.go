//go:build linux

package test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// HTTP-level rules of the acl and headers plugins on plain http://
// requests, through the real binary, with curl as the client and nginx
// as the origin.

// TestHTTPRulesACLPath: an acl path rule refuses /admin/ however it is
// spelled, with deny_status and deny_body, and the next request on the
// same kept-alive client connection passes; the origin never sees the
// refused ones.
func TestHTTPRulesACLPath(t *testing.T) {
	t.Parallel()
	needCurl(t)
	origin, dir := runNginx(t, nginxSite{server: `        location / { return 200 "origin $request_uri\n"; }`})
	_, port, _ := net.SplitHostPort(origin)
	base := "http://" + net.JoinHostPort("localhost", port)
	f := startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[[listener]]
listen = %q
plugins = ["acl"]
[[plugin]]
name = "acl"
default = "allow"
deny_status = 403
deny_body = "admin is closed\n"
[[plugin.rule]]
action = "deny"
path = ["/admin/"]
[[plugin.rule]]
action = "deny"
method = ["DELETE"]
`, addr)
	}, nil)
	// One curl, one client connection: num_connects is 0 for a request
	// that reused it. --path-as-is sends the dot segments unresolved.
	out := curl(t, "--path-as-is", "-x", "http://"+f.addr, "-w", "|%{http_code}|%{num_connects}|\n",
		base+"/admin/users", base+"/x/../%61dmin//users", base+"/public/?a=1")
	got := curlResults.FindAllStringSubmatch(out, -1)
	if len(got) != 3 {
		t.Fatalf("curl printed %q, want three results", out)
	}
	for i, code := range []string{"403", "403", "200"} {
		if got[i][2] != code {
			t.Errorf("request %d: status %s, want %s", i, got[i][2], code)
		}
	}
	checkOriginSaw(t, filepath.Join(dir, "access.log"), "GET /public/?a=1")
	out = curl(t, "-x", "http://"+f.addr, "-X", "DELETE", "-w", "|%{http_code}|%{num_connects}|\n", base+"/public/")
	del := curlResults.FindStringSubmatch(out)
	if del == nil || del[2] != "403" {
		t.Errorf("DELETE: curl printed %q, want a 403", out)
	}
	want := [][2]string{{"admin is closed\n", "1"}, {"admin is closed\n", "0"}, {"origin /public/?a=1\n", "0"}}
	for i, w := range want {
		if got[i][1] != w[0] || got[i][3] != w[1] {
			t.Errorf("request %d: body %q on %s new connections, want %q on %s", i, got[i][1], got[i][3], w[0], w[1])
		}
	}
	if del != nil && del[1] != "admin is closed\n" {
		t.Errorf("DELETE: body %q, want the deny_body", del[1])
	}
}

// curlResults reads what curl prints for each URL with
// -w "|%{http_code}|%{num_connects}|\n": the body, the status and the
// connections it opened.
var curlResults = regexp.MustCompile(`(?s)(.*?)\|(\d+)\|(\d+)\|\n`)

// checkOriginSaw checks that nginx's access log has one request, want.
// nginx writes a request's line after it sent the response, so the
// client can have the response first: the log is read again until it
// has a line, for at most 5 s.
func checkOriginSaw(t *testing.T, accessLog, want string) {
	t.Helper()
	var log []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if log, err = os.ReadFile(accessLog); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(log), "\n") || time.Now().After(deadline) {
			break
		}
	}
	if n := strings.Count(string(log), "\n"); n != 1 || !strings.Contains(string(log), want) {
		t.Errorf("origin saw %d requests, want the one %q:\n%s", n, want, log)
	}
}

// TestHTTPRulesHeadersScoped: a headers rule by host adds a request field
// the origin sees, and a rule by host and path a response field curl
// sees; requests outside their scope get neither.
func TestHTTPRulesHeadersScoped(t *testing.T) {
	t.Parallel()
	needCurl(t)
	origin := startNginx(t, `        location / { return 200 "x-debug=$http_x_debug cookie=$http_cookie\n"; }`)
	_, port, _ := net.SplitHostPort(origin)
	f := startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[[listener]]
listen = %q
plugins = ["headers"]
[[plugin]]
name = "headers"
[[plugin.rule]]
host = ["localhost"]
set = { "X-Debug" = "1" }
[[plugin.rule]]
host = [".localhost"]
path = ["/v1/"]
response = { set = { "X-API" = "v1" } }
[[plugin.rule]]
host = ["tracker.example"]
remove = ["Cookie"]
`, addr)
	}, nil)
	tests := []struct {
		name, host, path string
		body, api        string
	}{
		{"host and path", "localhost", "/v1/users", "x-debug=1 cookie=id=1\n", "v1"},
		{"host only", "localhost", "/web/", "x-debug=1 cookie=id=1\n", ""},
		{"out of scope", "127.0.0.1", "/v1/users", "x-debug= cookie=id=1\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := "http://" + net.JoinHostPort(tt.host, port) + tt.path
			hdrs := filepath.Join(t.TempDir(), "headers")
			body := curl(t, "-x", "http://"+f.addr, "-H", "Cookie: id=1", "-D", hdrs, url)
			if body != tt.body {
				t.Errorf("origin saw %q, want %q", body, tt.body)
			}
			raw, err := os.ReadFile(hdrs)
			if err != nil {
				t.Fatal(err)
			}
			api := ""
			for _, line := range strings.Split(string(raw), "\r\n") {
				if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "X-API") {
					api = strings.TrimSpace(v)
				}
			}
			if api != tt.api {
				t.Errorf("response X-API = %q, want %q; head:\n%s", api, tt.api, raw)
			}
		})
	}
}
