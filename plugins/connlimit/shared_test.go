package connlimit

import (
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/state"
	"ferry/state/statetest"
	"ferry/test/testkit"
)

// fleet builds n instances named "p" with opts, each with a Store of
// its own on one redis-server, as n ferrys of a fleet; onErr for all.
func fleet(t *testing.T, n int, opts string, onErr state.OnError) ([]*Plugin, *testkit.Redis) {
	t.Helper()
	sts, r := statetest.Fleet(t, n, onErr)
	var out []*Plugin
	for _, st := range sts {
		p := mustLoad(t, opts, zerolog.Nop())
		p.st = st
		out = append(out, p)
	}
	return out, r
}

// TestShared: two instances on one Redis hold the limits together, in
// both scopes or neither; a close gives its slots back; with Redis down
// fail_open counts on the instance's own table and fail_closed refuses.
func TestShared(t *testing.T) {
	tests := []struct {
		name  string
		onErr state.OnError
		// down: the answers of instance 0 while Redis is down, for
		// clients .1, .1, .1 (per_client = 2 in its own table).
		down []bool
	}{
		{name: "fail_open", onErr: state.FailOpen, down: []bool{true, true, false}},
		{name: "fail_closed", onErr: state.FailClosed, down: []bool{false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, r := fleet(t, 2, "per_client = 2\nper_user = 3", tt.onErr)
			ctx := context.Background()
			connect := func(p *Plugin, client, user string) (*plugins.Session, error) {
				s := session(client, user)
				return s, p.OnConnect(ctx, s)
			}
			s1, err1 := connect(ps[0], "10.0.0.1:1", "alice")
			_, err2 := connect(ps[1], "10.0.0.1:2", "alice")
			if err1 != nil || err2 != nil {
				t.Fatalf("two channels of one client on two instances: %v, %v", err1, err2)
			}
			if _, err := connect(ps[1], "10.0.0.1:3", ""); err == nil || !strings.Contains(err.Error(), "across the fleet") {
				t.Fatalf("third channel of the client: %v, want refused across the fleet", err)
			}
			_, _ = connect(ps[0], "10.0.0.2:1", "alice") // alice's third
			if _, err := connect(ps[1], "10.0.0.3:1", "alice"); err == nil {
				t.Fatal("alice's fourth channel admitted")
			}
			if _, err := connect(ps[1], "10.0.0.3:1", "bob"); err != nil {
				t.Fatalf("client .3 was counted for alice's refused channel: %v", err)
			}
			ps[0].OnClose(s1, plugins.Stats{})
			ps[0].OnClose(s1, plugins.Stats{}) // twice: gives back once
			if _, err := connect(ps[1], "10.0.0.1:4", ""); err != nil {
				t.Fatalf("after a close: %v", err)
			}
			if _, err := connect(ps[1], "10.0.0.1:5", ""); err == nil {
				t.Fatal("a double close gave two slots back")
			}
			r.Stop()
			for i, want := range tt.down {
				_, err := connect(ps[0], "10.0.0.9:1", "")
				if (err == nil) != want {
					t.Errorf("Redis down, channel %d: %v, want admitted %v", i+1, err, want)
				}
				if err != nil && strings.Contains(err.Error(), r.Addr) {
					t.Errorf("Redis down: the client would read Redis's address: %v", err)
				}
			}
		})
	}
}
