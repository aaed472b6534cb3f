package upstream

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
)

const routesTOML = `
[[listener]]
name = "main"
listen = "127.0.0.1:0"

[[listener]]
name = "other"
listen = "127.0.0.1:0"

[[upstream]]
name = "a"
url = "socks5://127.0.0.1:1"

[[upstream]]
name = "b"
url = "http://127.0.0.1:2"
via = "a"

[[upstream]]
name = "g"
members = ["a", "b"]
strategy = "round-robin"

[[route]]
match = ["*.a.test", "exact.test"]
upstream = "a"

[[route]]
match = ["127.0.0.2/32"]
upstream = "b"

[[route]]
match = ["*.ads.test"]
reject = true

[[route]]
port = ["8000-8999"]
upstream = "g"

[[route]]
client = ["10.9.0.0/16"]
upstream = "a"

[[route]]
user = ["alice"]
listener = ["other"]
upstream = "b"

[[route]]
match = ["127.0.0.3/32"]
upstream = "direct"

[[route]]
match = ["10.0.0.0/8"]
upstream = "g"
`

func TestRoutes(t *testing.T) {
	ups := buildRoutes(t, routesTOML)
	tests := []struct {
		name, target, client, user, listener string
		want                                 string // upstream, or "reject"
		pinned                               bool
	}{
		{name: "wildcard", target: "www.a.test:443", want: "a"},
		{name: "wildcard is not the domain itself", target: "a.test:443", want: "direct"},
		{name: "exact", target: "EXACT.test.:80", want: "a"},
		{name: "CIDR on literal", target: "127.0.0.2:80", want: "b"},
		{name: "CIDR on a name resolves it", target: "localhost:80", want: "direct", pinned: true},
		{name: "reject", target: "x.ads.test:443", want: "reject"},
		{name: "port range", target: "example.net:8080", want: "g"},
		{name: "client CIDR", target: "example.net:443", client: "10.9.1.1", want: "a"},
		{name: "user and listener", target: "example.net:443", user: "alice", listener: "other", want: "b"},
		{name: "user on another listener", target: "example.net:443", user: "alice", listener: "main", want: "direct"},
		{name: "first match wins", target: "www.a.test:8080", want: "a"},
		{name: "explicit direct", target: "127.0.0.3:443", want: "direct"},
		{name: "later CIDR", target: "10.1.2.3:443", want: "g"},
		{name: "no match", target: "example.net:443", want: "direct"},
		{name: "IPv6 literal", target: "[::1]:443", want: "direct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := tt.client
			if client == "" {
				client = "127.0.0.1"
			}
			listener := tt.listener
			if listener == "" {
				listener = "main"
			}
			s := &plugins.Session{
				Target: tt.target, User: tt.user, Listener: listener,
				Client: &net.TCPAddr{IP: net.ParseIP(client), Port: 5000},
			}
			name, pinned, err := ups.Route(context.Background(), s, 5*time.Second)
			if !wantRoute(t, name, err, tt.want) {
				return
			}
			if tt.pinned != (len(pinned) > 0) {
				t.Fatalf("pinned = %v, want pinned %v", pinned, tt.pinned)
			}
			for _, ip := range pinned {
				if !ip.IsLoopback() {
					t.Errorf("localhost pinned to %v", ip)
				}
			}
		})
	}
}

// wantRoute fails t unless Route's outcome is want: an upstream name, or
// "reject" for a rejection with CodeForbidden. It reports whether there
// is an upstream to check further.
func wantRoute(t *testing.T, name string, err error, want string) bool {
	t.Helper()
	if want == "reject" {
		var re *plugins.RejectError
		if !errors.As(err, &re) || re.Code != plugins.CodeForbidden {
			t.Fatalf("route = %q, %v; want a rejection with CodeForbidden", name, err)
		}
		return false
	}
	if err != nil || name != want {
		t.Fatalf("route = %q, %v; want %q", name, err, want)
	}
	return true
}

// TestRouteResolveFailure: a name that does not resolve does not match a
// route on addresses; it falls through to the routes after it.
func TestRouteResolveFailure(t *testing.T) {
	cfg, err := config.Parse("r.toml", []byte(`
[[listener]]
listen = "127.0.0.1:0"
[[upstream]]
name = "a"
url = "socks5://127.0.0.1:1"
[[route]]
match = ["0.0.0.0/0", "::/0"]
reject = true
[[route]]
upstream = "a"
`))
	if err != nil {
		t.Fatal(err)
	}
	ups, err := Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s := &plugins.Session{Target: "no-such-host.invalid:443", Listener: "listener-0", Log: zerolog.Nop()}
	name, _, err := ups.Route(context.Background(), s, 5*time.Second)
	if err != nil || name != "a" {
		t.Fatalf("route = %q, %v; want the catch-all %q", name, err, "a")
	}
	s.Target = "127.0.0.1:443"
	if _, _, err := ups.Route(context.Background(), s, 5*time.Second); err == nil {
		t.Fatal("127.0.0.1 not rejected by 0.0.0.0/0")
	}
}

// buildRoutes parses a configuration and builds its upstream table, for
// the route and source tests.
func buildRoutes(t *testing.T, toml string) *Table {
	t.Helper()
	cfg, err := config.Parse("routes.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	ups, err := Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return ups
}
