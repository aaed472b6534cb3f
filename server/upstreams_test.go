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

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	"ferry/relay/upstream"
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
	cfg, err := config.Parse("routes.toml", []byte(routesTOML))
	if err != nil {
		t.Fatal(err)
	}
	ups, err := buildUpstreams(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
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
			name, pinned, err := ups.route(context.Background(), s, 5*time.Second)
			if tt.want == "reject" {
				var re *plugins.RejectError
				if !errors.As(err, &re) || re.Code != plugins.CodeForbidden {
					t.Fatalf("route = %q, %v; want a rejection with CodeForbidden", name, err)
				}
				return
			}
			if err != nil || name != tt.want {
				t.Fatalf("route = %q, %v; want %q", name, err, tt.want)
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
	ups, err := buildUpstreams(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	s := &plugins.Session{Target: "no-such-host.invalid:443", Listener: "listener-0", Log: zerolog.Nop()}
	name, _, err := ups.route(context.Background(), s, 5*time.Second)
	if err != nil || name != "a" {
		t.Fatalf("route = %q, %v; want the catch-all %q", name, err, "a")
	}
	s.Target = "127.0.0.1:443"
	if _, _, err := ups.route(context.Background(), s, 5*time.Second); err == nil {
		t.Fatal("127.0.0.1 not rejected by 0.0.0.0/0")
	}
}

// TestBuildUpstreamsShares: an upstream used by several others (via,
// members) is one node, so its health is one state.
func TestBuildUpstreamsShares(t *testing.T) {
	cfg, err := config.Parse("routes.toml", []byte(routesTOML))
	if err != nil {
		t.Fatal(err)
	}
	ups, err := buildUpstreams(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"direct", "a", "b", "g"} {
		if ups.nodes[name] == nil {
			t.Errorf("no node %q", name)
		}
	}
	g, ok := ups.nodes["g"].Dialer.(*upstream.Group)
	if !ok {
		t.Fatalf("g is a %T, want a *upstream.Group", ups.nodes["g"].Dialer)
	}
	if g.Members[0] != ups.nodes["a"] || g.Members[1] != ups.nodes["b"] || g.Strategy != upstream.RoundRobin {
		t.Fatalf("group members %v, strategy %s: want the nodes of a and b, round-robin", g.Members, g.Strategy)
	}
	ups.nodes["a"].MarkDown(errors.New("test"))
	if !g.Members[0].Down() {
		t.Fatal("a marked down is not down in the group")
	}
}

// TestPluginChoosesUpstream: an upstream a plugin sets in OnConnect wins
// over the routes (here a catch-all reject); one the config does not have
// fails the request with 502.
func TestPluginChoosesUpstream(t *testing.T) {
	echo := echoServer(t)
	parent := start(t, basicConfig)
	pick := &testPlugin{name: "pick", upstream: "parent"}
	bad := &testPlugin{name: "bad", upstream: "nope"}
	f := start(t, fmt.Sprintf(`
[defaults]
dial_timeout = "2s"
[[listener]]
name = "pick"
listen = "127.0.0.1:0"
plugins = ["pick", "log"]
[[listener]]
name = "bad"
listen = "127.0.0.1:0"
plugins = ["bad", "log"]
[[plugin]]
name = "pick"
type = "servertest"
[[plugin]]
name = "bad"
type = "servertest"
[[plugin]]
name = "log"
[[upstream]]
name = "parent"
url = "socks5://%s"
[[route]]
reject = true
`, parent.addr), pick, bad)
	pickAddr, badAddr := f.srv.Addrs()[0].String(), f.srv.Addrs()[1].String()

	host, port := splitPort(t, echo)
	c := dial(t, pickAddr)
	c.Write(socks5Request(host, port, 1))
	if got := readSOCKS5Reply(t, c); got != 0 {
		t.Fatalf("through the plugin's upstream: REP %#x", got)
	}
	echoCheck(t, c)
	if n := parent.srv.Stats().Accepted; n != 1 {
		t.Errorf("parent accepted %d connections, want 1", n)
	}
	c.Close()
	waitFor(t, func() bool { return strings.Contains(f.logs.String(), `"chain":"parent"`) })

	c = dial(t, badAddr)
	io.WriteString(c, "CONNECT "+echo+" HTTP/1.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 502 {
		t.Fatalf("unknown upstream: got %v %v, want 502", resp, err)
	}
}
