package server

import (
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

// carryGen is a generation of src whose instances are all carriers.
func carryGen(t *testing.T, file, src string) (*generation, map[string]*carrier) {
	t.Helper()
	cfg := parse(t, src)
	cfg.File = file
	g := &generation{cfg: cfg, byName: map[string]plugins.Plugin{}}
	cs := map[string]*carrier{}
	for _, pc := range cfg.Plugins {
		c := &carrier{name: pc.Name}
		g.byName[pc.Name], cs[pc.Name] = c, c
	}
	return g, cs
}

// TestCarryState: a new instance gets the old one of its name only when
// type, settings (as decoded, not as written) and config directory match.
func TestCarryState(t *testing.T) {
	const head = "[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"x\"]\n[[plugin]]\nname = \"x\"\n"
	const old = head + "type = \"t\"\nn = 2\nlist = [1, 2]\n"
	tests := []struct {
		name, file, src string
		carried         bool
	}{
		{name: "same", file: "/etc/ferry/a.toml", src: old, carried: true},
		{name: "other layout", file: "/etc/ferry/b.toml", src: head + "# comment\nlist = [ 1, 2 ]\nn=2\ntype = \"t\"\n", carried: true},
		{name: "changed setting", file: "/etc/ferry/a.toml", src: head + "type = \"t\"\nn = 3\nlist = [1, 2]\n"},
		{name: "added setting", file: "/etc/ferry/a.toml", src: head + "type = \"t\"\nn = 2\nlist = [1, 2]\nm = 1\n"},
		{name: "other type", file: "/etc/ferry/a.toml", src: head + "type = \"u\"\nn = 2\nlist = [1, 2]\n"},
		{name: "other directory", file: "/srv/a.toml", src: old},
		{name: "other name", file: "/etc/ferry/a.toml", src: "[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"y\"]\n[[plugin]]\nname = \"y\"\ntype = \"t\"\nn = 2\nlist = [1, 2]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			og, _ := carryGen(t, "/etc/ferry/a.toml", old)
			ng, cs := carryGen(t, tt.file, tt.src)
			carryState(og, ng)
			for name, c := range cs {
				if got := c.from != nil; got != tt.carried {
					t.Fatalf("%s: carried %v, want %v", name, got, tt.carried)
				}
				if c.from != nil && c.from != og.byName["x"] {
					t.Fatalf("%s: carried from %v, want the old x", name, c.from)
				}
			}
		})
	}
	carryState(nil, &generation{}) // the first generation has none before it
}
