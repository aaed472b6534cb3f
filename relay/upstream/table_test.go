package upstream

import (
	"errors"
	"testing"

	"github.com/rs/zerolog"

	"ferry/config"
)

// TestBuildUpstreamsShares: an upstream used by several others (via,
// members) is one node, so its health is one state.
func TestBuildUpstreamsShares(t *testing.T) {
	cfg, err := config.Parse("routes.toml", []byte(routesTOML))
	if err != nil {
		t.Fatal(err)
	}
	ups, err := Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"direct", "a", "b", "g"} {
		if ups.nodes[name] == nil {
			t.Errorf("no node %q", name)
		}
	}
	g, ok := ups.nodes["g"].Dialer.(*Group)
	if !ok {
		t.Fatalf("g is a %T, want a *Group", ups.nodes["g"].Dialer)
	}
	if g.Members[0] != ups.nodes["a"] || g.Members[1] != ups.nodes["b"] || g.Strategy != RoundRobin {
		t.Fatalf("group members %v, strategy %s: want the nodes of a and b, round-robin", g.Members, g.Strategy)
	}
	ups.nodes["a"].MarkDown(errors.New("test"))
	if !g.Members[0].Down() {
		t.Fatal("a marked down is not down in the group")
	}
}
