//go:build linux

package test

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// TestAuthDeniedCache: a client retrying a wrong password against the
// htpasswd backend pays one bcrypt check; its retries are answered by the
// negative cache, as ferry_plugin_events_total shows (checks 1,
// denied_cached 2). Another client address sending the same password
// pays its own check, and the right password still gets in.
func TestAuthDeniedCache(t *testing.T) {
	t.Parallel()
	users := filepath.Join(t.TempDir(), "users")
	writeFile(t, users, htpasswdLine(t, "alice", "secret"))
	admin := freeAddr(t)
	f := startFerry(t, func(addr string) string {
		return authConfigWith(users, "max_failures = 0\n")(addr) + fmt.Sprintf("\n[admin]\nlisten = %q\n", admin)
	}, nil)
	w := &watched{proc: f, admin: admin, hc: &http.Client{Timeout: 10 * time.Second}}
	t.Cleanup(w.hc.CloseIdleConnections)
	events := func() (checks, cached float64) {
		t.Helper()
		mfs, err := w.metrics()
		if err != nil {
			t.Fatal(err)
		}
		ev := func(e string) float64 {
			return metricSum(mfs, "ferry_plugin_events_total", map[string]string{"plugin": "auth", "event": e})
		}
		return ev("checks"), ev("denied_cached")
	}
	steps := []struct {
		name    string
		from    string // client address
		pass    string
		refused bool
		checks  float64 // bcrypt checks so far
		cached  float64 // refusals from the negative cache so far
	}{
		{name: "wrong password", from: "127.0.0.1", pass: "stale", refused: true, checks: 1},
		{name: "retried", from: "127.0.0.1", pass: "stale", refused: true, checks: 1, cached: 1},
		{name: "retried again", from: "127.0.0.1", pass: "stale", refused: true, checks: 1, cached: 2},
		{name: "another client", from: "127.0.0.2", pass: "stale", refused: true, checks: 2, cached: 2},
		{name: "right password", from: "127.0.0.1", pass: "secret", checks: 3, cached: 2},
	}
	for _, st := range steps {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(st.from)}, Timeout: 5 * time.Second}
		code, err := connectLogin(d, f.addr, "alice", st.pass)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := code == http.StatusProxyAuthRequired; got != st.refused {
			t.Fatalf("%s: status %d, want refused %v", st.name, code, st.refused)
		}
		if checks, cached := events(); checks != st.checks || cached != st.cached {
			t.Fatalf("%s: checks %v, denied_cached %v; want %v, %v", st.name, checks, cached, st.checks, st.cached)
		}
	}
}
