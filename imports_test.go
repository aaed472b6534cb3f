package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// The import graph the README's Architecture section draws, as layers;
// a package may import packages of its own layer or of a layer below
// (a larger number), never one above:
//
//	0 main (the module root: the CLI)
//	1 server, server/* (server/admin, server/httphead)
//	2 relay, relay/* (relay/upstream), config
//	3 plugins, plugins/<name> (and plugins/all)
//	4 plugins/pkg/* (matchers, value types, helpers), proxyproto and
//	  state (the store of usage counters plugins keep)
//
// proxyproto is a leaf: a codec that imports nothing of ferry, whose
// Header the plugin contract carries (Session.ProxyHeader) as a value.
//
// scripts/ and test/ are outside the graph: they may import anything
// and nothing imports them. Test files do not count.
const (
	layerMain = iota
	layerServer
	layerUnder // what the server builds on: relay, upstreams, config
	layerPlugins
	layerPluginPkg
)

var layerNames = [...]string{"main", "server", "relay/config", "plugins", "plugins/pkg, proxyproto and state"}

// importEdge is one import: From imports To, both full import paths.
type importEdge struct{ From, To string }

// forbiddenImports are edges inside one layer that the graph still
// forbids.
var forbiddenImports = map[importEdge]string{
	{"ferry/server", "ferry/server/admin"}: "the admin service serves the server's state: server/admin imports server, never the reverse",
}

// layerOf places an import path of module mod in the graph. ok is false
// for packages outside the graph (scripts/, test/); known is false for a
// package of the module the graph does not place.
func layerOf(mod, path string) (layer int, ok, known bool) {
	if path == mod {
		return layerMain, true, true
	}
	rel, inModule := strings.CutPrefix(path, mod+"/")
	if !inModule {
		return 0, false, true // the standard library or another module
	}
	under := func(dir string) bool { return rel == dir || strings.HasPrefix(rel, dir+"/") }
	switch {
	case under("scripts"), under("test"):
		return 0, false, true
	case under("server"):
		return layerServer, true, true
	case under("relay"), under("config"):
		return layerUnder, true, true
	case under("plugins/pkg"), under("proxyproto"), under("state"):
		return layerPluginPkg, true, true
	case under("plugins"):
		return layerPlugins, true, true
	}
	return 0, false, false
}

// listedPackage is the part of `go list -json` this test reads.
type listedPackage struct {
	ImportPath string
	Imports    []string // not those of test files
	Module     *struct{ Path string }
}

// goList lists the module's packages with their imports.
func goList(t *testing.T) []listedPackage {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command:", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -json ./...: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list -json ./...: no packages")
	}
	return pkgs
}

// TestImportDirection fails on an import that goes up the layers of the
// documented graph (a back edge) and on a package the graph does not
// place. No back edge is allowed.
func TestImportDirection(t *testing.T) {
	pkgs := goList(t)
	problems := importProblems(pkgs[0].Module.Path, pkgs)
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

// TestImportProblems shows that importProblems finds what it must, on a
// made-up module.
func TestImportProblems(t *testing.T) {
	pkg := func(path string, imports ...string) listedPackage {
		return listedPackage{ImportPath: path, Imports: imports}
	}
	tests := []struct {
		name string
		pkg  listedPackage
		want string // in the one problem; "" for none
	}{
		{"main imports anything", pkg("ferry", "ferry/server/admin", "ferry/plugins/all", "fmt"), ""},
		{"server imports relay and plugins", pkg("ferry/server", "ferry/relay/upstream", "ferry/plugins/pkg/match"), ""},
		{"server/admin imports server", pkg("ferry/server/admin", "ferry/server"), ""},
		{"server imports server/admin", pkg("ferry/server", "ferry/server/admin"), "ferry/server imports ferry/server/admin: "},
		{"plugin imports server", pkg("ferry/plugins/acl", "ferry/server"), "ferry/plugins/acl (plugins) imports ferry/server (server), a layer above it"},
		{"relay/upstream imports main", pkg("ferry/relay/upstream", "ferry"), "ferry/relay/upstream (relay/config) imports ferry (main)"},
		{"plugins/pkg imports plugins", pkg("ferry/plugins/pkg/units", "ferry/plugins"), "ferry/plugins/pkg/units (plugins/pkg, proxyproto and state) imports ferry/plugins (plugins)"},
		{"test imports anything", pkg("ferry/test", "ferry", "ferry/server"), ""},
		{"scripts import anything", pkg("ferry/scripts/bench", "ferry/relay"), ""},
		{"unplaced package", pkg("ferry/extra"), "ferry/extra: a package the import graph does not place"},
		{"plugin imports config", pkg("ferry/plugins/auth", "ferry/config"), "ferry/plugins/auth (plugins) imports ferry/config (relay/config)"},
		{"plugins import proxyproto", pkg("ferry/plugins", "ferry/proxyproto"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := importProblems("ferry", []listedPackage{tt.pkg})
			switch {
			case tt.want == "" && len(problems) > 0:
				t.Errorf("got %q, want no problem", problems)
			case tt.want != "" && (len(problems) != 1 || !strings.Contains(problems[0], tt.want)):
				t.Errorf("got %q, want one problem containing %q", problems, tt.want)
			}
		})
	}
}

// importProblems checks the imports of pkgs, packages of module mod,
// against the graph, one message per problem.
func importProblems(mod string, pkgs []listedPackage) (problems []string) {
	for _, p := range pkgs {
		from, ok, known := layerOf(mod, p.ImportPath)
		if !known {
			problems = append(problems, p.ImportPath+": a package the import graph does not place: "+
				"give it a layer in imports_test.go and in the README's Architecture section")
		}
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			to, ok, _ := layerOf(mod, imp)
			if !ok {
				continue
			}
			e := importEdge{p.ImportPath, imp}
			if why, bad := forbiddenImports[e]; bad {
				problems = append(problems, e.From+" imports "+e.To+": "+why)
				continue
			}
			if to >= from {
				continue
			}
			problems = append(problems, e.From+" ("+layerNames[from]+") imports "+e.To+" ("+layerNames[to]+
				"), a layer above it: the graph runs main -> server -> relay, relay/upstream, config -> plugins -> plugins/pkg, proxyproto")
		}
	}
	return problems
}
