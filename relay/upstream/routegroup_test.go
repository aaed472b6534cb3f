package upstream

import (
	"context"
	"net"
	"testing"
	"time"

	"ferry/plugins"
)

const groupRoutesTOML = `
[[listener]]
listen = "127.0.0.1:0"

[[upstream]]
name = "staffproxy"
url = "socks5://127.0.0.1:1"

[[route]]
group = ["blocked"]
reject = true

[[route]]
group = ["staff", "ops"]
match = ["*.corp.test"]
upstream = "staffproxy"

[[route]]
group = ["staff"]
upstream = "direct"

[[route]]
upstream = "staffproxy"
`

// TestRouteGroups: a group condition matches a user in one of its
// groups, ANDed with the route's other conditions; a session without a
// user matches no group route, whatever groups it carries.
func TestRouteGroups(t *testing.T) {
	ups := buildRoutes(t, groupRoutesTOML)
	tests := []struct {
		name, target, user string
		groups             []string
		want               string // upstream, or "reject"
	}{
		{name: "staff to corp", target: "git.corp.test:443", user: "alice", groups: []string{"staff"}, want: "staffproxy"},
		{name: "ops to corp", target: "git.corp.test:443", user: "bob", groups: []string{"dev", "ops"}, want: "staffproxy"},
		{name: "staff elsewhere", target: "example.net:443", user: "alice", groups: []string{"staff"}, want: "direct"},
		{name: "blocked first", target: "git.corp.test:443", user: "carol", groups: []string{"staff", "blocked"}, want: "reject"},
		{name: "no group", target: "example.net:443", user: "dave", want: "staffproxy"},
		{name: "groups without user", target: "example.net:443", groups: []string{"blocked", "staff"}, want: "staffproxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &plugins.Session{Target: tt.target, User: tt.user, Groups: tt.groups, Listener: "l",
				Client: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}}
			name, _, err := ups.Route(context.Background(), s, time.Second)
			wantRoute(t, name, err, tt.want)
		})
	}
}
