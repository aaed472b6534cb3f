package upstream

import (
	"errors"
	"strings"
	"testing"
)

// carryConfig is routesTOML (upstreams a, b through a, the group g of
// both) with an upstream c of its own; edits replace text in it.
const carryConfig = routesTOML + `
[[upstream]]
name = "c"
url = "socks5://127.0.0.1:3"
`

// TestTableCarryFrom: after a reload, an upstream keeps its health (marked
// down, open connections) when it and every upstream it goes through
// keep their settings; the others start afresh. The health is shared: the
// old table's findings after the reload count in the new one.
func TestTableCarryFrom(t *testing.T) {
	tests := []struct {
		name    string
		from    string // replaced in carryConfig by to
		to      string
		carried map[string]bool // by upstream; absent: not carried
	}{
		{name: "same settings", from: `url = "socks5://127.0.0.1:3"`, to: "url   =   \"socks5://127.0.0.1:3\" # same",
			carried: map[string]bool{"a": true, "b": true, "c": true, "g": true}},
		{name: "a changed: b through it and g of it too", from: "127.0.0.1:1", to: "127.0.0.1:4",
			carried: map[string]bool{"c": true}},
		{name: "b changed: g of it too", from: "127.0.0.1:2", to: "127.0.0.1:5",
			carried: map[string]bool{"a": true, "c": true}},
		{name: "c gets a health check", from: `url = "socks5://127.0.0.1:3"`,
			to:      "url = \"socks5://127.0.0.1:3\"\nhealth_check = { interval = \"1h\", target = \"127.0.0.1:5\" }",
			carried: map[string]bool{"a": true, "b": true, "g": true}},
		{name: "g's strategy", from: `strategy = "round-robin"`, to: `strategy = "failover"`,
			carried: map[string]bool{"a": true, "b": true, "c": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := buildRoutes(t, carryConfig)
			for _, n := range old.nodes {
				n.MarkDown(errors.New("refused"))
				n.health().active.Add(1)
			}
			src := strings.Replace(carryConfig, tt.from, tt.to, 1)
			if src == carryConfig {
				t.Fatal("the edit changed nothing")
			}
			u := buildRoutes(t, src)
			u.CarryFrom(old)
			for _, name := range []string{"a", "b", "c", "g"} {
				n, o := u.nodes[name], old.nodes[name]
				want := tt.carried[name]
				gate := u.gates[name] == old.gates[name]
				if n.Down() != want || (n.Active() == 1) != want || (n.health() == o.health()) != want || gate != want {
					t.Errorf("%s: down %v, active %d, shared %v, log gate shared %v; want carried %v",
						name, n.Down(), n.Active(), n.health() == o.health(), gate, want)
				}
				// The old table finds it up again after the reload.
				o.MarkUp()
				if n.Down() {
					t.Errorf("%s: still down in the new table after the old one marked it up", name)
				}
			}
			if u.nodes["direct"].health() == old.nodes["direct"].health() {
				t.Error("direct's health is shared: it has none to carry")
			}
		})
	}
}

// TestTableCarryFromNothing: a first configuration, or one without the
// upstream, leaves the table as built.
func TestTableCarryFromNothing(t *testing.T) {
	u := buildRoutes(t, carryConfig)
	u.CarryFrom(nil)
	u.CarryFrom(buildRoutes(t, "[[listener]]\nlisten = \"127.0.0.1:0\"\n"))
	for name, n := range u.nodes {
		if n.Down() || n.Active() != 0 {
			t.Errorf("%s: down %v, active %d; want a fresh upstream", name, n.Down(), n.Active())
		}
	}
}
