//go:build linux

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

// TestReloadKeepsConnlimit: a reload during live traffic keeps connlimit's
// counts, whether the limit changed or not: a client at its limit stays
// refused across a reload that keeps the limit, a raised limit gives room
// for the difference only, a lowered one refuses until enough old tunnels
// have ended, and a tunnel of the old configuration that closes after the
// reload makes room.
func TestReloadKeepsConnlimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		after string // the limit table after the reload
		// room is how many new tunnels the client may open after the
		// reload while its 2 old ones are open; roomAfter, once one old
		// tunnel has closed.
		room, roomAfter int
	}{
		{name: "same settings", after: "type = \"connlimit\"\n# reloaded\nper_client   = 2", room: 0, roomAfter: 1},
		{name: "raised limit", after: "type = \"connlimit\"\nper_client = 3", room: 1, roomAfter: 1},
		{name: "lowered limit", after: "type = \"connlimit\"\nper_client = 1", room: 0, roomAfter: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFerry(t, pluginConfig("type = \"connlimit\"\nper_client = 2"), nil)
			target := newEchoTarget(t)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			dial := func(what string) *testkit.BufConn {
				t.Helper()
				c, err := testkit.DialCONNECT(ctx, f.addr, target.Addr)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				t.Cleanup(func() { c.Close() })
				if err := echo(c, what+"\n"); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				return c
			}
			old := []*testkit.BufConn{dial("old tunnel 1"), dial("old tunnel 2")}
			if got := ask(t, f.addr, target.Addr, askCONNECT); got != "403" {
				t.Fatalf("third tunnel before the reload: got %s, want 403", got)
			}

			path := f.cmd.Args[len(f.cmd.Args)-1]
			writeFile(t, path, pluginConfig(tt.after)(f.addr))
			f.send(t, syscall.SIGHUP)
			f.waitLine(t, "configuration reloaded", nil)

			for i := range tt.room {
				dial(fmt.Sprintf("new tunnel %d", i+1))
			}
			if got := ask(t, f.addr, target.Addr, askCONNECT); got != "403" {
				t.Fatalf("after the reload and %d new tunnels: got %s, want 403", tt.room, got)
			}
			for i, c := range old {
				if err := echo(c, "still here\n"); err != nil {
					t.Fatalf("old tunnel %d after the reload: %v", i+1, err)
				}
			}

			// An old tunnel closes: its access line comes after connlimit's
			// OnClose (closers run in reverse order), so it has given back.
			old[0].Close()
			waitFor(t, func() bool {
				return len(f.lines("access", func(l logLine) bool { return l.str("reason") != "rejected" })) > 0
			})
			for i := range tt.roomAfter {
				dial(fmt.Sprintf("tunnel %d after an old one closed", i+1))
			}
			if got := ask(t, f.addr, target.Addr, askCONNECT); got != "403" {
				t.Errorf("at the limit again: got %s, want 403", got)
			}
		})
	}
}

// TestReloadKeepsRatelimit: a client that used up its new-connection rate
// stays refused across a reload that keeps ratelimit's settings; one that
// changes them starts afresh.
func TestReloadKeepsRatelimit(t *testing.T) {
	t.Parallel()
	const limit = "type = \"ratelimit\"\nnew_connections = { per_client = 2, interval = \"1h\" }"
	tests := []struct {
		name, after string
		want        string // the next CONNECT after the reload
	}{
		{name: "same settings", after: "# reloaded\n" + limit, want: "403"},
		{name: "changed rate", after: "type = \"ratelimit\"\nnew_connections = { per_client = 3, interval = \"1h\" }", want: "200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFerry(t, pluginConfig(limit), nil)
			target := newEchoTarget(t)
			for i, want := range []string{"200", "200", "403"} {
				if got := ask(t, f.addr, target.Addr, askCONNECT); got != want {
					t.Fatalf("CONNECT %d before the reload: got %s, want %s", i+1, got, want)
				}
			}
			writeFile(t, f.cmd.Args[len(f.cmd.Args)-1], pluginConfig(tt.after)(f.addr))
			f.send(t, syscall.SIGHUP)
			f.waitLine(t, "configuration reloaded", nil)
			if got := ask(t, f.addr, target.Addr, askCONNECT); got != tt.want {
				t.Errorf("CONNECT after the reload: got %s, want %s", got, tt.want)
			}
		})
	}
}

// reload writes config for f's address over f's file, sends SIGHUP and
// waits for the reload to be logged.
func reload(t *testing.T, f *proc, config func(addr string) string) {
	t.Helper()
	writeFile(t, f.cmd.Args[len(f.cmd.Args)-1], config(f.addr))
	f.send(t, syscall.SIGHUP)
	f.waitLine(t, "configuration reloaded", nil)
}

// TestReloadKeepsAuthCache: logins through an auth service, a reload that
// keeps the auth instance's settings, and logins on new connections
// after it: the service is not asked again within cache_ttl. A reload
// that changes a setting asks it once more per user.
func TestReloadKeepsAuthCache(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		after func(url string) string // the auth table's extra keys after the reload
		calls int                     // per user, in all
	}{
		{name: "same settings", after: func(string) string { return "# reloaded\n" }, calls: 1},
		{name: "changed timeout", after: func(string) string { return "timeout = \"3s\"\n" }, calls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc := newAuthService(t, nil)
			web := testkit.HTTPTarget(t)
			config := func(extra string) func(addr string) string {
				base := authHTTPConfig(svc.URL, testkit.ClosedAddr(t))
				return func(addr string) string {
					return strings.Replace(base(addr), "max_failures = 0\n", "max_failures = 0\n"+extra, 1)
				}
			}
			f := startFerry(t, config(""), nil)
			users := []string{"u1", "u2", "u3"}
			logins := func(when string) {
				for _, u := range users {
					c := userClient(t, f.addr, u) // new connections: the current configuration's
					for i := range 5 {
						if err := getOK(c, web.URL+"/"); err != nil {
							t.Fatalf("%s: %s login %d: %v", when, u, i+1, err)
						}
					}
					c.CloseIdleConnections()
				}
			}
			logins("before the reload")
			reload(t, f, config(tt.after(svc.URL)))
			logins("after the reload")
			for _, u := range users {
				if n := svc.callsOf()[u]; n != tt.calls {
					t.Errorf("auth service calls for %s: %d, want %d", u, n, tt.calls)
				}
			}
		})
	}
}

// TestReloadKeepsLockout: a client address locked out after failed
// logins stays locked out, even with the right password, across a reload
// that keeps the auth instance's settings; one that changes them starts
// afresh. (connectLogin's target is closed: an admitted login gets 502.)
func TestReloadKeepsLockout(t *testing.T) {
	t.Parallel()
	const keys = "max_failures = 2\nlockout = \"1h\"\nmax_lockout = \"1h\"\n"
	tests := []struct {
		name, after string
		locked      bool // after the reload
	}{
		{name: "same settings", after: "# reloaded\n" + keys, locked: true},
		{name: "changed max_failures", after: "max_failures = 3\nlockout = \"1h\"\nmax_lockout = \"1h\"\n", locked: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			users := filepath.Join(t.TempDir(), "users")
			writeFile(t, users, htpasswdLine(t, "alice", "secret"))
			f := startFerry(t, authConfigWith(users, keys), nil)
			refused := func(pass string) bool {
				t.Helper()
				code, err := connectLogin(&net.Dialer{}, f.addr, "alice", pass)
				if err != nil {
					t.Fatal(err)
				}
				return code == http.StatusProxyAuthRequired
			}
			if refused("secret") {
				t.Fatal("right password refused before any failure")
			}
			for range 2 {
				refused("wrong")
			}
			f.waitLine(t, "client locked out after failed logins", nil)
			if !refused("secret") {
				t.Fatal("locked out: right password admitted")
			}
			reload(t, f, authConfigWith(users, tt.after))
			if got := refused("secret"); got != tt.locked {
				t.Errorf("right password after the reload: refused %v, want %v", got, tt.locked)
			}
		})
	}
}

// TestReloadKeepsUpstreamHealth: a group member marked down by a failed
// dial stays down across a reload that keeps its settings (the admin
// API's /upstreams says so); one whose settings change starts afresh,
// up.
func TestReloadKeepsUpstreamHealth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(dead string) string // dead's url after the reload
		up   bool                     // dead after the reload
	}{
		{name: "same settings", edit: func(dead string) string { return dead }, up: false},
		{name: "changed url", edit: func(string) string { return "socks5://" + testkit.ClosedAddr(t) }, up: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			parent := startFerry(t, withJSON(""), nil)
			target := newEchoTarget(t)
			admin := freeAddr(t)
			dead := "socks5://" + testkit.ClosedAddr(t)
			config := func(deadURL string) func(addr string) string {
				return upstreamConfig("10s", upstreamTable("dead", deadURL)+
					upstreamTable("live", "socks5://"+parent.addr)+
					groupTable("pool", "failover", "dead", "live")+routeAll("pool")+
					fmt.Sprintf("[admin]\nlisten = %q\ntoken = \"t\"\n", admin))
			}
			f := startFerry(t, config(dead), nil)
			if got := ask(t, f.addr, target.Addr, askCONNECT); got != "200" {
				t.Fatalf("CONNECT through the group: got %s, want 200", got)
			}
			f.waitLine(t, "upstream down", nil)
			if up := upstreamUp(t, admin, "dead"); up {
				t.Fatal("dead is up before the reload after a failed dial")
			}
			reload(t, f, config(tt.edit(dead)))
			if up := upstreamUp(t, admin, "dead"); up != tt.up {
				t.Errorf("dead after the reload: up %v, want %v", up, tt.up)
			}
			if !upstreamUp(t, admin, "live") {
				t.Error("live is down after the reload")
			}
		})
	}
}

// upstreamUp asks the admin API at admin (token "t") whether the
// upstream name is up.
func upstreamUp(t *testing.T, admin, name string) bool {
	t.Helper()
	code, body := adminRequest(t, admin, "GET", "/upstreams")
	if code != http.StatusOK {
		t.Fatalf("GET /upstreams: %d %s", code, body)
	}
	var ups []struct {
		Name string `json:"name"`
		Up   bool   `json:"up"`
	}
	if err := json.Unmarshal(body, &ups); err != nil {
		t.Fatalf("GET /upstreams: %v: %s", err, body)
	}
	for _, u := range ups {
		if u.Name == name {
			return u.Up
		}
	}
	t.Fatalf("GET /upstreams: no %s in %s", name, body)
	return false
}
