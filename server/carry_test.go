package server

import (
	"fmt"
	"testing"

	"ferry/plugins"
)

// carrier is a plugins.Carrier that records what it was handed.
type carrier struct {
	name string
	from plugins.Plugin
}

func (c *carrier) Name() string                 { return c.name }
func (c *carrier) CarryFrom(old plugins.Plugin) { c.from = old }

// settingsCarrier is a carrier that carries across settings.
type settingsCarrier struct{ *carrier }

func (settingsCarrier) CarriesAcrossSettings() {}

// carryGen is a generation of src whose instances are all carriers,
// settingsCarriers when across is set.
func carryGen(t *testing.T, file, src string, across bool) (*generation, map[string]*carrier) {
	t.Helper()
	cfg := parse(t, src)
	cfg.File = file
	g := &generation{cfg: cfg, byName: map[string]plugins.Plugin{}}
	cs := map[string]*carrier{}
	for _, pc := range cfg.Plugins {
		c := &carrier{name: pc.Name}
		g.byName[pc.Name], cs[pc.Name] = c, c
		if across {
			g.byName[pc.Name] = settingsCarrier{c}
		}
	}
	return g, cs
}

// TestCarryState: a new instance gets the old one of its name only when
// type, settings (as decoded, not as written) and config directory match;
// a plugins.SettingsCarrier whatever the settings.
func TestCarryState(t *testing.T) {
	const head = "[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"x\"]\n[[plugin]]\nname = \"x\"\n"
	const old = head + "type = \"t\"\nn = 2\nlist = [1, 2]\n"
	tests := []struct {
		name, file, src string
		carried         bool
		across          bool // carried by a SettingsCarrier
	}{
		{name: "same", file: "/etc/ferry/a.toml", src: old, carried: true, across: true},
		{name: "other layout", file: "/etc/ferry/b.toml", src: head + "# comment\nlist = [ 1, 2 ]\nn=2\ntype = \"t\"\n", carried: true, across: true},
		{name: "changed setting", file: "/etc/ferry/a.toml", src: head + "type = \"t\"\nn = 3\nlist = [1, 2]\n", across: true},
		{name: "added setting", file: "/etc/ferry/a.toml", src: head + "type = \"t\"\nn = 2\nlist = [1, 2]\nm = 1\n", across: true},
		{name: "other type", file: "/etc/ferry/a.toml", src: head + "type = \"u\"\nn = 2\nlist = [1, 2]\n"},
		{name: "other directory", file: "/srv/a.toml", src: old},
		{name: "other name", file: "/etc/ferry/a.toml", src: "[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"y\"]\n[[plugin]]\nname = \"y\"\ntype = \"t\"\nn = 2\nlist = [1, 2]\n"},
	}
	for _, tt := range tests {
		for _, across := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/across=%v", tt.name, across), func(t *testing.T) {
				og, _ := carryGen(t, "/etc/ferry/a.toml", old, across)
				ng, cs := carryGen(t, tt.file, tt.src, across)
				carryState(og, ng)
				want := tt.carried || across && tt.across
				for name, c := range cs {
					if got := c.from != nil; got != want {
						t.Fatalf("%s: carried %v, want %v", name, got, want)
					}
					if c.from != nil && c.from != og.byName["x"] {
						t.Fatalf("%s: carried from %v, want the old x", name, c.from)
					}
				}
			})
		}
	}
	carryState(nil, &generation{}) // the first generation has none before it
}
