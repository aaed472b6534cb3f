package ratelimit

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"ferry/plugins"
)

// otherPlugin is a plugin of another type, for CarryFrom.
type otherPlugin struct{}

func (otherPlugin) Name() string { return "p" }

// TestCarryFrom: a reload's new instance with the same limits adopts the
// old one's shared tables: a client that used up its new-connection rate
// stays refused, and a channel of the old instance releases its bucket in
// the table the new one uses. Other limits, or another type, start afresh.
func TestCarryFrom(t *testing.T) {
	const old = "new_connections = { per_client = 1, interval = \"1m\" }\nclient = { down = \"1KiB\" }"
	tests := []struct {
		name    string
		newOpts string
		other   bool // CarryFrom gets a plugin of another type
		carried bool
	}{
		{name: "same limits", newOpts: old, carried: true},
		{name: "same limits, spelt otherwise", newOpts: "client = { down = 1024 }\nnew_connections = { interval = \"60s\", per_client = 1 }", carried: true},
		{name: "other interval", newOpts: "new_connections = { per_client = 1, interval = \"2m\" }\nclient = { down = \"1KiB\" }"},
		{name: "other bandwidth", newOpts: "new_connections = { per_client = 1, interval = \"1m\" }\nclient = { down = \"2KiB\" }"},
		{name: "another type", newOpts: old, other: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			o := mustLoad(t, old, c, zerolog.Nop())
			held := session("a", "192.0.2.1:1", "")
			if err := o.OnConnect(context.Background(), held); err != nil {
				t.Fatal(err)
			}
			p := mustLoad(t, tt.newOpts, c, zerolog.Nop())
			var from plugins.Plugin = o
			if tt.other {
				from = otherPlugin{}
			}
			p.CarryFrom(from)
			if shared := p.clients == o.clients && p.conns == o.conns; shared != tt.carried {
				t.Fatalf("tables shared: %v, want %v", shared, tt.carried)
			}
			s := session("b", "192.0.2.1:2", "")
			err := p.OnConnect(context.Background(), s)
			if tt.carried != (err != nil) {
				t.Fatalf("second connection within the interval: got error %v, want one: %v", err, tt.carried)
			}
			p.OnClose(s, plugins.Stats{})
			o.OnClose(held, plugins.Stats{})
			if n := p.clients.len(); n != 0 {
				t.Errorf("after the old channel closed: new instance keeps %d client buckets, want 0", n)
			}
		})
	}
}

// TestCarryFromAuth: the buckets of rates from auth carry over with the
// same settings, and not across a change of user_from_auth or user.burst.
func TestCarryFromAuth(t *testing.T) {
	const old = "user_from_auth = true\nuser = { burst = 512 }"
	tests := []struct {
		name, newOpts string
		carried       bool
	}{
		{"same", old, true},
		{"other burst", "user_from_auth = true\nuser = { burst = 1024 }", false},
		{"off", "user = { down = 100, burst = 512 }", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := mustLoad(t, old, newClock(), zerolog.Nop())
			p := mustLoad(t, tt.newOpts, newClock(), zerolog.Nop())
			before := p.authUsers
			p.CarryFrom(o)
			if got := p.authUsers == o.authUsers; got != tt.carried {
				t.Errorf("auth buckets carried: %v, want %v", got, tt.carried)
			}
			if !tt.carried && p.authUsers != before {
				t.Error("the new instance lost its own auth buckets")
			}
		})
	}
}
