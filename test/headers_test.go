//go:build linux

package test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHeadersPlugin: curl through ferry with the headers plugin; the target
// sees the edited request headers.
func TestHeadersPlugin(t *testing.T) {
	t.Parallel()
	needCurl(t)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, name := range []string{"Via", "X-Forwarded-For", "X-Env", "Cookie", "User-Agent"} {
			fmt.Fprintf(w, "%s=%s\n", name, strings.Join(r.Header.Values(name), ","))
		}
	}))
	t.Cleanup(echo.Close)
	f := startFerry(t, func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"
[[listener]]
listen = %q
plugins = ["headers", "log"]
[[plugin]]
name = "headers"
remove = ["Cookie"]
set = { "X-Env" = "prod", "User-Agent" = "ferry-e2e" }
via = true
x_forwarded_for = true
[[plugin]]
name = "log"
`, addr)
	}, nil)
	body := curl(t, "-x", "http://"+f.addr, "-H", "Cookie: secret=1", "-H", "Via: 1.0 upstream-lb", echo.URL+"/")
	want := "Via=1.0 upstream-lb, 1.1 ferry\nX-Forwarded-For=127.0.0.1\nX-Env=prod\nCookie=\nUser-Agent=ferry-e2e\n"
	if body != want {
		t.Fatalf("target saw:\n%s\nwant:\n%s", body, want)
	}
}
