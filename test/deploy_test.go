//go:build linux

package test

// Tests of the deployment files. There is no Docker engine to build the
// image with, so the Dockerfile is checked the way it can be: its go build
// command, read from its RUN line, builds the binary here, which must be
// static and stamped with the version; that binary then runs as the
// image's user (65532) on the image's configuration; the paths, port and
// commands the Dockerfile names must agree with each other and with the
// files they point at. The examples under deploy/ are checked with
// `ferry check`, with the real peers where they are installed (haproxy,
// systemd-analyze), and their access rules with the acl plugin itself: no
// example may serve a client from the Internet.

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	_ "ferry/plugins/all" // the plugins the examples name, as ferry links them
	"ferry/test/testkit"
)

// What the image is made of; TestDockerfile checks the Dockerfile says so.
const (
	imageBinary = "/usr/local/bin/ferry"
	imageConfig = "/etc/ferry/ferry.toml"
	imageUID    = 65532 // distroless's nonroot user and group
	imagePort   = "8080"
	// dockerConfig is the image's configuration in the repository.
	dockerConfig = "../deploy/docker/ferry.toml"
	// dockerListen is its listen line; tests that run it rewrite only that.
	dockerListen = `listen = "0.0.0.0:8080"`
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd   string // upper case: FROM, RUN, COPY...
	args  string
	line  int // where it starts
	stage int // 0 for the first FROM's stage
}

// readDockerfile returns ../Dockerfile's instructions in order, without
// comments and blank lines.
func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	stage := -1
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, instruction{cmd: cmd, args: strings.TrimSpace(args), line: start, stage: stage})
	}
	if cur.Len() > 0 {
		t.Fatalf("Dockerfile ends in a continuation line")
	}
	return out
}

// find returns the instructions cmd of stage (-1: any stage).
func find(ins []instruction, cmd string, stage int) []instruction {
	var out []instruction
	for _, in := range ins {
		if in.cmd == cmd && (stage < 0 || in.stage == stage) {
			out = append(out, in)
		}
	}
	return out
}

// execForm decodes a JSON array argument (ENTRYPOINT, CMD, HEALTHCHECK CMD).
func execForm(t *testing.T, in instruction, s string) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("Dockerfile:%d: %s %s: want the exec form, a JSON array (the image has no shell): %v", in.line, in.cmd, s, err)
	}
	return v
}

// shellWords splits a shell command line into words, handling single and
// double quotes and expanding $VAR and ${VAR} from vars. It is enough for
// the Dockerfile's build line, not a shell.
func shellWords(s string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	quote := byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				w.WriteByte(c)
			}
		case c == '\'' || c == '"':
			if quote == c {
				quote = 0
			} else if quote == 0 {
				quote = c
			} else {
				w.WriteByte(c)
			}
			inWord = true
		case c == '$':
			name, n := "", 0
			if strings.HasPrefix(s[i+1:], "{") {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unclosed ${ in %q", s)
				}
				name, n = s[i+2:i+end], end
			} else {
				j := i + 1
				for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
					j++
				}
				name, n = s[i+1:j], j-i-1
			}
			v, ok := vars[name]
			if !ok {
				return nil, fmt.Errorf("$%s is not a build argument", name)
			}
			w.WriteString(v)
			i += n
			inWord = true
		case quote == 0 && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case quote == 0 && strings.ContainsRune(`\;&|<>()`+"`", rune(c)):
			return nil, fmt.Errorf("%q: only a plain command is understood here, not %q", s, c)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed quote in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// buildCommand is the Dockerfile's go build: the environment it sets,
// go's arguments (starting with "build") and the -o output.
type buildCommand struct {
	env    []string
	args   []string
	output string
	line   int
}

// dockerBuildCommand reads the build stage's `RUN ... go build` line,
// with the build arguments (ARG NAME=default) overridden by args.
func dockerBuildCommand(t *testing.T, args map[string]string) buildCommand {
	t.Helper()
	ins := readDockerfile(t)
	vars := map[string]string{}
	var runs []instruction
	for _, in := range ins {
		switch {
		case in.stage != 0:
		case in.cmd == "ARG":
			name, def, _ := strings.Cut(in.args, "=")
			vars[name] = def
		case in.cmd == "RUN" && strings.Contains(in.args, "go build"):
			runs = append(runs, in)
		}
	}
	for k, v := range args {
		if _, ok := vars[k]; !ok {
			t.Fatalf("Dockerfile: no ARG %s in the build stage", k)
		}
		vars[k] = v
	}
	if len(runs) != 1 {
		t.Fatalf("Dockerfile: found %d RUN lines with go build in the build stage, want 1", len(runs))
	}
	run := runs[0]
	if strings.HasPrefix(run.args, "[") || strings.HasPrefix(run.args, "--") {
		t.Fatalf("Dockerfile:%d: want the go build RUN in shell form without options, like RUN CGO_ENABLED=0 go build ...", run.line)
	}
	words, err := shellWords(run.args, vars)
	if err != nil {
		t.Fatalf("Dockerfile:%d: %v", run.line, err)
	}
	bc := buildCommand{line: run.line}
	for len(words) > 0 && strings.Contains(words[0], "=") {
		bc.env = append(bc.env, words[0])
		words = words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile:%d: want [ENV=VALUE...] go build ..., got %q", run.line, words)
	}
	bc.args = words[1:]
	for i, a := range bc.args {
		if a == "-o" && i+1 < len(bc.args) {
			bc.output = bc.args[i+1]
		}
	}
	if bc.output == "" {
		t.Fatalf("Dockerfile:%d: go build without -o", run.line)
	}
	return bc
}

// flagValue returns the value of a go build flag that takes one
// (-ldflags "..."), or "true" for a boolean one (-trimpath), and whether
// the flag is there.
func flagValue(args []string, name string, takesValue bool) (string, bool) {
	for i, a := range args {
		switch {
		case a == name && takesValue && i+1 < len(args):
			return args[i+1], true
		case a == name && !takesValue:
			return "true", true
		case strings.HasPrefix(a, name+"="):
			return strings.TrimPrefix(a, name+"="), true
		}
	}
	return "", false
}

// TestDockerBuildLine: the build line is the one the README and the
// release process rely on: a static, trimmed, stripped build stamped with
// VERSION.
func TestDockerBuildLine(t *testing.T) {
	t.Parallel()
	bc := dockerBuildCommand(t, map[string]string{"VERSION": "1.2.3"})
	if !slices.Contains(bc.env, "CGO_ENABLED=0") {
		t.Errorf("Dockerfile:%d: environment %q lacks CGO_ENABLED=0: the distroless static image has no libc", bc.line, bc.env)
	}
	if _, ok := flagValue(bc.args, "-trimpath", false); !ok {
		t.Errorf("Dockerfile:%d: go build %q lacks -trimpath", bc.line, bc.args)
	}
	ld, _ := flagValue(bc.args, "-ldflags", true)
	for _, want := range []string{"-s", "-w", "-X", "main.version=1.2.3"} {
		if !slices.Contains(strings.Fields(ld), want) {
			t.Errorf("Dockerfile:%d: -ldflags %q lacks %q", bc.line, ld, want)
		}
	}
	if pkg := bc.args[len(bc.args)-1]; pkg != "." {
		t.Errorf("Dockerfile:%d: builds %q, want . (package main at the module root)", bc.line, pkg)
	}
	const want = `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ferry .`
	for _, in := range find(readDockerfile(t), "RUN", 0) {
		if strings.Contains(in.args, "go build") && in.args != want {
			t.Errorf("Dockerfile:%d: RUN %s\nwant RUN %s\n(change this test with it: the README documents this build)", in.line, in.args, want)
		}
	}
}

// listenPort returns the port of a config file's first listener.
func listenPort(t *testing.T, file string) string {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(cfg.Listeners[0].Listen)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestDockerfile checks what the Dockerfile names without building it:
// base images, the paths the final stage copies to and runs, the user,
// the port and the health check, and that .dockerignore keeps what the
// build needs.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	ins := readDockerfile(t)
	froms := find(ins, "FROM", -1)
	if len(froms) != 2 {
		t.Fatalf("Dockerfile: %d FROM lines, want 2 (build and final stages)", len(froms))
	}

	// The build stage's Go is the go.mod's.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	wantBuild := "golang:" + string(m[1]) + "-bookworm AS build"
	if froms[0].args != wantBuild {
		t.Errorf("Dockerfile:%d: FROM %s, want FROM %s (go.mod says go %s)", froms[0].line, froms[0].args, wantBuild, m[1])
	}
	const wantFinal = "gcr.io/distroless/static-debian12:nonroot"
	if froms[1].args != wantFinal {
		t.Errorf("Dockerfile:%d: FROM %s, want FROM %s", froms[1].line, froms[1].args, wantFinal)
	}

	// The final stage: what it copies, from where, to where.
	bc := dockerBuildCommand(t, nil)
	copies := map[string]string{} // destination -> source
	for _, in := range find(ins, "COPY", 1) {
		f := strings.Fields(in.args)
		src, dst := f[len(f)-2], f[len(f)-1]
		if slices.Contains(f, "--from=build") {
			src = "build:" + src
		} else if _, err := os.Stat(filepath.Join("..", src)); err != nil {
			t.Errorf("Dockerfile:%d: COPY %s: %v", in.line, src, err)
		}
		copies[dst] = src
	}
	if got, want := copies[imageBinary], "build:"+bc.output; got != want {
		t.Errorf("Dockerfile: %s comes from %q, want %q (the build stage's go build -o)", imageBinary, got, want)
	}
	if got, want := copies[imageConfig], "deploy/docker/ferry.toml"; got != want {
		t.Errorf("Dockerfile: %s comes from %q, want %q", imageConfig, got, want)
	}

	one := func(cmd string) instruction {
		t.Helper()
		got := find(ins, cmd, 1)
		if len(got) != 1 {
			t.Fatalf("Dockerfile: %d %s lines in the final stage, want 1", len(got), cmd)
		}
		return got[0]
	}
	if u := one("USER"); u.args != "nonroot:nonroot" {
		t.Errorf("Dockerfile:%d: USER %s, want nonroot:nonroot (%d)", u.line, u.args, imageUID)
	}
	if e := one("EXPOSE"); e.args != imagePort {
		t.Errorf("Dockerfile:%d: EXPOSE %s, want %s", e.line, e.args, imagePort)
	}
	if p := listenPort(t, dockerConfig); p != imagePort {
		t.Errorf("%s listens on port %s, the image exposes %s", dockerConfig, p, imagePort)
	}
	if !strings.Contains(mustRead(t, dockerConfig), dockerListen) {
		t.Errorf("%s: lacks %s, which the tests rewrite", dockerConfig, dockerListen)
	}

	hc := one("HEALTHCHECK")
	_, cmd, ok := strings.Cut(hc.args, "CMD ")
	if !ok {
		t.Fatalf("Dockerfile:%d: HEALTHCHECK %s: no CMD", hc.line, hc.args)
	}
	// `ferry health` without --addr checks 127.0.0.1:8080: the exposed port.
	if got, want := execForm(t, hc, cmd), []string{imageBinary, "health"}; !slices.Equal(got, want) {
		t.Errorf("Dockerfile:%d: HEALTHCHECK CMD %q, want %q", hc.line, got, want)
	}
	ep := one("ENTRYPOINT")
	if got, want := execForm(t, ep, ep.args), []string{imageBinary}; !slices.Equal(got, want) {
		t.Errorf("Dockerfile:%d: ENTRYPOINT %q, want %q", ep.line, got, want)
	}
	c := one("CMD")
	if got, want := execForm(t, c, c.args), []string{"run", "-c", imageConfig}; !slices.Equal(got, want) {
		t.Errorf("Dockerfile:%d: CMD %q, want %q", c.line, got, want)
	}

	checkDockerignore(t)
}

func mustRead(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkDockerignore fails if .dockerignore leaves out of the build
// context a file the image needs: go.mod, go.sum, the Go and embedded
// files of every package of the module the binary imports, and the
// image's configuration. Patterns match as Docker matches them, from the
// context's root, a path or any of its parent directories.
func checkDockerignore(t *testing.T) {
	t.Helper()
	var patterns []string
	for _, line := range strings.Split(mustRead(t, "../.dockerignore"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, "**") || strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: pattern %q: this test understands path.Match patterns only; keep them simple or teach it", line)
		}
		patterns = append(patterns, path.Clean(strings.TrimPrefix(line, "/")))
	}
	if !slices.Contains(patterns, ".git") {
		t.Errorf(".dockerignore does not exclude .git")
	}

	need := []string{"go.mod", "go.sum", "deploy/docker/ferry.toml"}
	out, err := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{.Dir}}|{{join .GoFiles ","}},{{join .EmbedFiles ","}}{{end}}{{end}}`, "..").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, _ := strings.Cut(line, "|")
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Split(files, ",") {
			if f != "" {
				need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %q", need)
	}
	for _, p := range need {
		parts := strings.Split(p, "/")
		for i := range parts {
			prefix := strings.Join(parts[:i+1], "/")
			for _, pat := range patterns {
				if ok, _ := path.Match(pat, prefix); ok {
					t.Errorf(".dockerignore: %q excludes %s, which the image build needs", pat, p)
				}
			}
		}
	}
}

// publicClients must be refused by every example; privateClients served.
var (
	publicClients  = []string{"203.0.113.9", "8.8.8.8", "1.1.1.1", "172.32.0.1", "11.0.0.1", "2001:db8::1", "2606:4700::1111", "::ffff:203.0.113.9"}
	privateClients = []string{"10.1.2.3", "172.16.5.4", "172.31.255.254", "192.168.1.10", "127.0.0.1", "::1", "fd00::1", "::ffff:10.1.2.3"}
)

// exampleConfigs returns every ferry configuration under deploy/: the
// .toml files and the ferry.toml of YAML ConfigMaps (written to temp
// files), by name.
func exampleConfigs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir("../deploy", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(p) {
		case ".toml":
			out[p] = p
		case ".yaml", ".yml":
			for i, block := range yamlLiteralBlocks(t, mustRead(t, p), "ferry.toml") {
				f := filepath.Join(t.TempDir(), "ferry.toml")
				writeFile(t, f, block)
				out[fmt.Sprintf("%s#ferry.toml[%d]", p, i)] = f
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 5 {
		t.Fatalf("found only %d ferry configurations under deploy/: %v", len(out), out)
	}
	return out
}

// yamlLiteralBlocks returns the values of `key: |` literal block scalars
// in a YAML file, without their indentation and with one final newline
// (clip chomping). Enough for a ConfigMap; not a YAML parser.
func yamlLiteralBlocks(t *testing.T, src, key string) []string {
	t.Helper()
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	lines := strings.Split(src, "\n")
	var out []string
	for i, l := range lines {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || strings.Trim(k, `"'`) != key {
			continue
		}
		if v = strings.TrimSpace(v); v != "|" {
			t.Fatalf("YAML line %d: %s: want a literal block (%s: |), got %q", i+1, key, key, v)
		}
		var body []string
		block := -1
		for _, b := range lines[i+1:] {
			if strings.TrimSpace(b) == "" {
				body = append(body, "")
				continue
			}
			if indent(b) <= indent(l) {
				break
			}
			if block < 0 {
				block = indent(b)
			}
			if indent(b) < block {
				t.Fatalf("YAML line %d: %s: line %q is indented less than the block", i+1, key, b)
			}
			body = append(body, b[block:])
		}
		for len(body) > 0 && body[len(body)-1] == "" {
			body = body[:len(body)-1]
		}
		out = append(out, strings.Join(body, "\n")+"\n")
	}
	return out
}

// TestDeployConfigsCheck: `ferry check` accepts every configuration under
// deploy/, those embedded in Kubernetes ConfigMaps included.
func TestDeployConfigsCheck(t *testing.T) {
	t.Parallel()
	for name, file := range exampleConfigs(t) {
		t.Run(strings.TrimPrefix(name, "../"), func(t *testing.T) {
			t.Parallel()
			res := runFerry(t, "", "check", "-c", file)
			if res.code != 0 || !strings.Contains(res.stdout, "ok:") {
				t.Fatalf("ferry check -c %s: exit %d\nstdout: %s\nstderr: %s", name, res.code, res.stdout, res.stderr)
			}
		})
	}
}

// TestDeployConfigsRefuseStrangers: every example listener that is not on
// loopback runs the acl, which refuses clients from public addresses and
// serves private ones: a published port must not make an open proxy. The
// listener's plugins are built from the file as ferry builds them, and
// run on sessions with the client addresses that cannot be had for real
// on loopback (for a listener behind haproxy, the client is the one its
// PROXY header names; the session is the same).
func TestDeployConfigsRefuseStrangers(t *testing.T) {
	t.Parallel()
	for name, file := range exampleConfigs(t) {
		t.Run(strings.TrimPrefix(name, "../"), func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range cfg.Listeners {
				host, _, err := net.SplitHostPort(l.Listen)
				if err != nil {
					t.Fatal(err)
				}
				if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
					continue
				}
				chain := buildChain(t, cfg, l)
				for _, c := range publicClients {
					err := connect(chain, l.Name, c)
					if err == nil || plugins.CodeOf(err) != plugins.CodeForbidden {
						t.Errorf("listener %s (%s): client %s: got %v, want a refusal (forbidden)", l.Name, l.Listen, c, err)
					}
				}
				for _, c := range privateClients {
					if err := connect(chain, l.Name, c); err != nil {
						t.Errorf("listener %s (%s): client %s: got %v, want it served", l.Name, l.Listen, c, err)
					}
				}
			}
		})
	}
}

// buildChain builds listener l's plugins from cfg as the server does:
// each instance from its [[plugin]] table, through its registered factory.
func buildChain(t *testing.T, cfg *config.Config, l config.Listener) *plugins.Chain {
	t.Helper()
	svcs := plugins.NewServices()
	var ps []plugins.Plugin
	for _, name := range l.Plugins {
		i := slices.IndexFunc(cfg.Plugins, func(pc config.PluginConfig) bool { return pc.Name == name })
		if i < 0 {
			t.Fatalf("listener %s: no plugin %q", l.Name, name)
		}
		pc := &cfg.Plugins[i]
		reg, ok := plugins.Lookup(pc.Type)
		if !ok {
			t.Fatalf("plugin %s: type %q not compiled in", pc.Name, pc.Type)
		}
		p, err := reg.New(plugins.NewEnv(pc.Name, zerolog.Nop(), svcs, pc.Decode))
		if err != nil {
			t.Fatalf("plugin %s: %v", pc.Name, err)
		}
		if c, ok := p.(interface{ Close() error }); ok {
			t.Cleanup(func() { c.Close() })
		}
		ps = append(ps, p)
	}
	return plugins.NewChain(ps)
}

// connect runs the chain's OnConnect hooks for a client asking for
// example.com:443 and, when they admit it, the dial check on a public
// address of it, as the server would.
func connect(chain *plugins.Chain, listener, client string) error {
	s := &plugins.Session{
		ID:       "deploy-test",
		Listener: listener,
		Client:   &net.TCPAddr{IP: net.ParseIP(client), Port: 40000},
		Peer:     &net.TCPAddr{IP: net.ParseIP(client), Port: 40000},
		Protocol: "connect",
		Target:   "example.com:443",
		Log:      zerolog.Nop(),
	}
	if err := chain.Connect(context.Background(), s); err != nil {
		return err
	}
	return chain.CheckDial(s, netip.MustParseAddrPort("93.184.215.14:443"))
}

// TestDockerConfigACL is the image's rule in the brief's own words: a
// client from 203.0.113.9 is refused, one from 10.1.2.3 served, by the acl
// instance of deploy/docker/ferry.toml on its own.
func TestDockerConfigACL(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(dockerConfig)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	if len(l.Plugins) == 0 || l.Plugins[0] != "acl" {
		t.Fatalf("listener %s plugins %q: want the acl first, so refused clients reach no other plugin", l.Name, l.Plugins)
	}
	chain := buildChain(t, cfg, config.Listener{Name: l.Name, Plugins: []string{"acl"}})
	err = connect(chain, l.Name, "203.0.113.9")
	var re *plugins.RejectError
	if !errors.As(err, &re) || re.Code != plugins.CodeForbidden {
		t.Errorf("client 203.0.113.9: got %v, want a forbidden rejection", err)
	}
	if err := connect(chain, l.Name, "10.1.2.3"); err != nil {
		t.Errorf("client 10.1.2.3: got %v, want it served", err)
	}
}

// TestDockerImage builds the binary as the Dockerfile does, checks it is
// static and stamped, then runs it as the image does: as user 65532, from
// a directory only readable by others, on the image's configuration with
// only its listen address moved to a free loopback port.
func TestDockerImage(t *testing.T) {
	t.Parallel()
	const version = "v0.0.0-deploytest"
	dir := worldReadableDir(t)
	bin := filepath.Join(dir, "ferry")

	t.Run("build", func(t *testing.T) {
		bc := dockerBuildCommand(t, map[string]string{"VERSION": version})
		args := slices.Clone(bc.args)
		args[slices.Index(args, "-o")+1] = bin
		cmd := exec.Command("go", args...)
		cmd.Dir = ".." // the Dockerfile builds in the context's root
		cmd.Env = append(os.Environ(), bc.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s go %q: %v\n%s", strings.Join(bc.env, " "), args, err, out)
		}
	})
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no binary: %v", err)
	}

	t.Run("static", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("program header %v: the binary is dynamically linked; distroless/static has no libc", p.Type)
			}
		}
		if s := f.SectionByType(elf.SHT_DYNAMIC); s != nil {
			t.Errorf("section %s of type SHT_DYNAMIC: the binary is dynamically linked", s.Name)
		}
		if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
			t.Errorf("DT_NEEDED: got %q (%v), want none", libs, err)
		}
		// -s -w: no symbol table, no DWARF.
		for _, name := range []string{".symtab", ".debug_info"} {
			if f.Section(name) != nil {
				t.Errorf("section %s present: -ldflags \"-s -w\" did not apply", name)
			}
		}
		bi, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
			t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
		}
	})

	t.Run("version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").Output()
		if err != nil {
			t.Fatalf("ferry version: %v", err)
		}
		if want := "ferry " + version + " (go1."; !strings.HasPrefix(string(out), want) {
			t.Fatalf("ferry version: got %q, want %q...", out, want)
		}
	})

	t.Run("run as nonroot", func(t *testing.T) {
		orig := mustRead(t, dockerConfig)
		p := startImage(t, bin, dir, func(addr string) string {
			return rewriteListen(t, orig, addr)
		})
		if uid := processUID(t, p.cmd.Process.Pid); os.Geteuid() == 0 && uid != imageUID {
			t.Errorf("ferry runs as uid %d, want %d", uid, imageUID)
		}

		// The image's HEALTHCHECK, as its user.
		res := runAs(t, bin, dir, "health", "--addr", p.addr)
		if res.code != 0 || !strings.HasPrefix(res.stdout, "ok: "+p.addr+" answers socks5") {
			t.Fatalf("ferry health --addr %s: exit %d\nstdout: %s\nstderr: %s", p.addr, res.code, res.stdout, res.stderr)
		}
		// Without --addr it checks the image's port.
		res = runAs(t, bin, dir, "health", "--help")
		if !strings.Contains(res.stdout, `"127.0.0.1:`+imagePort+`"`) {
			t.Errorf("ferry health --help: want the default address 127.0.0.1:%s:\n%s", imagePort, res.stdout)
		}

		// A client on loopback is served.
		web := testkit.HTTPTarget(t)
		target := web.URL + "/through-the-image"
		proxyURL := &url.URL{Scheme: "http", Host: p.addr}
		client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
		defer client.CloseIdleConnections()
		resp, err := client.Get(target)
		if err != nil {
			t.Fatalf("GET %s through %s: %v", target, p.addr, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != testkit.TargetBody {
			t.Fatalf("GET %s through %s: %s %q, want 200 %q", target, p.addr, resp.Status, body, testkit.TargetBody)
		}
		line := p.waitLine(t, "access", byTarget(web.Listener.Addr().String()))
		if c := line.str("client"); !strings.HasPrefix(c, "127.0.0.1:") || line.str("listener") != "main" {
			t.Errorf("access line: got client %q listener %q, want 127.0.0.1:… main", c, line.str("listener"))
		}
	})
}

// worldReadableDir is a temp directory user 65532 can enter: t.TempDir
// lives in a 0700 directory of the test's user.
func worldReadableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ferry-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rewriteListen returns the image's configuration with its listen address
// replaced by addr, and checks that nothing else changed.
func rewriteListen(t *testing.T, orig, addr string) string {
	t.Helper()
	if n := strings.Count(orig, dockerListen); n != 1 {
		t.Fatalf("%s: %d lines %s, want 1", dockerConfig, n, dockerListen)
	}
	got := strings.Replace(orig, dockerListen, fmt.Sprintf("listen = %q", addr), 1)
	a, err := config.Parse("orig.toml", []byte(orig))
	if err != nil {
		t.Fatal(err)
	}
	b, err := config.Parse("test.toml", []byte(got))
	if err != nil {
		t.Fatal(err)
	}
	if b.Listeners[0].Listen != addr {
		t.Fatalf("rewritten listen: got %q, want %q", b.Listeners[0].Listen, addr)
	}
	b.Listeners[0].Listen = a.Listeners[0].Listen
	same := reflect.DeepEqual(a.Log, b.Log) && reflect.DeepEqual(a.Defaults, b.Defaults) &&
		reflect.DeepEqual(a.Listeners, b.Listeners) && reflect.DeepEqual(a.Upstreams, b.Upstreams) &&
		reflect.DeepEqual(a.Routes, b.Routes) && len(a.Plugins) == len(b.Plugins)
	for i := range a.Plugins {
		same = same && a.Plugins[i].Name == b.Plugins[i].Name && a.Plugins[i].Type == b.Plugins[i].Type
	}
	if !same {
		t.Fatalf("rewriting the listen address changed more than the address:\n%s", got)
	}
	return got
}

// asImageUser makes cmd run as the image's user and group when the tests
// run as root (they do under CI); otherwise the test user is already not
// root.
func asImageUser(cmd *exec.Cmd) {
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: imageUID, Gid: imageUID}}
	}
}

// runAs runs the image's binary with args as the image's user.
func runAs(t *testing.T, bin, dir string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	asImageUser(cmd)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cmdResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.code = ee.ExitCode()
	default:
		t.Fatalf("ferry %q: %v\nstderr: %s", args, err, res.stderr)
	}
	return res
}

// startImage runs `ferry run -c FILE` as the image's user, FILE being
// config(addr) for a free loopback addr, written to dir. It returns once
// ferry has started; a cleanup stops it and wants exit 0.
func startImage(t *testing.T, bin, dir string, config func(addr string) string) *proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := freeAddr(t)
		file := filepath.Join(dir, "ferry.toml")
		writeFile(t, file, config(addr))
		p := &proc{addr: addr, stderr: &syncBuffer{}, stdout: &syncBuffer{}, done: make(chan struct{})}
		p.cmd = exec.Command(bin, "run", "-c", file)
		p.cmd.Dir = dir
		p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
		asImageUser(p.cmd)
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start ferry as uid %d: %v", imageUID, err)
		}
		go func() {
			p.waitErr = p.cmd.Wait()
			close(p.done)
		}()
		err := waitStarted(p)
		if err == nil {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("ferry stderr:\n%s", p.stderr.String())
				}
			})
			t.Cleanup(func() {
				if code := p.stop(t); code != 0 {
					t.Errorf("ferry exited %d after SIGTERM, want 0", code)
				}
			})
			return p
		}
		if attempt < 3 && strings.Contains(p.stderr.String(), "address already in use") {
			t.Logf("port taken, retrying: %v", err)
			continue
		}
		t.Fatal(err)
	}
}

// waitStarted waits for p to log "ferry started"; it kills p if it does
// not within startTimeout.
func waitStarted(p *proc) error {
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(p.stderr.String(), "ferry started") {
		select {
		case <-p.done:
			return fmt.Errorf("ferry exited before it started (%v); stderr:\n%s", p.waitErr, p.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.cmd.Process.Kill()
			<-p.done
			return fmt.Errorf("ferry did not start within %v; stderr:\n%s", startTimeout, p.stderr.String())
		}
	}
	return nil
}

// processUID returns the real uid of a running process.
func processUID(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			uid, err := strconv.Atoi(strings.Fields(rest)[0])
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return -1
}

// unitFile reads a systemd unit into section -> key -> values.
func unitFile(t *testing.T, file string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	section := ""
	for i, line := range strings.Split(mustRead(t, file), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", file, i+1, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

// TestDeploySystemd checks the unit's essentials, that it agrees with its
// ferry.toml (no capability, so a port above 1024; a stop timeout longer
// than the drain), and, where systemd-analyze is installed, that systemd
// accepts every directive and rates its exposure OK.
func TestDeploySystemd(t *testing.T) {
	t.Parallel()
	const unit = "../deploy/systemd/ferry.service"
	svc := unitFile(t, unit)["Service"]
	want := map[string]string{
		"ExecStart":             imageBinary + " run -c " + imageConfig,
		"DynamicUser":           "yes",
		"NoNewPrivileges":       "yes",
		"ProtectSystem":         "strict",
		"CapabilityBoundingSet": "",
		"AmbientCapabilities":   "",
		"Restart":               "on-failure",
		"LimitNOFILE":           "1048576",
	}
	for k, v := range want {
		if got := svc[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s: %s=%q, want %s=%s", unit, k, got, k, v)
		}
	}
	if r := svc["ExecReload"]; len(r) == 0 || r[len(r)-1] != "/bin/kill -HUP $MAINPID" {
		t.Errorf("%s: ExecReload=%q, want it to end with /bin/kill -HUP $MAINPID", unit, r)
	}

	cfg, err := config.Load("../deploy/systemd/ferry.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range cfg.Listeners {
		_, port, _ := net.SplitHostPort(l.Listen)
		if n, _ := strconv.Atoi(port); n < 1024 {
			t.Errorf("listener %s on port %d: the unit grants no CAP_NET_BIND_SERVICE", l.Name, n)
		}
	}
	stop, err := time.ParseDuration(svc["TimeoutStopSec"][0])
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if drain := cfg.Defaults.DrainTimeout.D(); stop <= drain {
		t.Errorf("TimeoutStopSec %v is not longer than drain_timeout %v: systemd would kill ferry mid-drain", stop, drain)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze not installed: %v", err)
	}
	// systemd-analyze wants the binary to exist: point it at the test's.
	dir := t.TempDir()
	copyUnit := filepath.Join(dir, "ferry.service")
	writeFile(t, copyUnit, strings.ReplaceAll(mustRead(t, unit), imageBinary, ferryBin))
	out, err := exec.Command(analyze, "verify", copyUnit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=true", "--no-pager", copyUnit).CombinedOutput()
	if err != nil {
		t.Skipf("systemd-analyze security --offline: %v\n%s", err, out) // systemd older than 250
	}
	m := regexp.MustCompile(`Overall exposure level for ferry\.service: (\d+\.\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in:\n%s", out)
	}
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("systemd-analyze security: exposure %.1f, want at most 2.0:\n%s", level, out)
	}
}

// TestDeployKubernetes: the ConfigMap embeds deploy/kubernetes/ferry.toml
// as it is, and the manifest agrees with the image and the configuration.
func TestDeployKubernetes(t *testing.T) {
	t.Parallel()
	const manifest = "../deploy/kubernetes/ferry.yaml"
	src := mustRead(t, manifest)
	blocks := yamlLiteralBlocks(t, src, "ferry.toml")
	if len(blocks) != 1 {
		t.Fatalf("%s: %d ferry.toml blocks, want 1", manifest, len(blocks))
	}
	if file := mustRead(t, "../deploy/kubernetes/ferry.toml"); blocks[0] != file {
		t.Errorf("%s: the ConfigMap's ferry.toml differs from deploy/kubernetes/ferry.toml:\n--- ConfigMap\n%s\n--- file\n%s", manifest, blocks[0], file)
	}
	port := listenPort(t, "../deploy/kubernetes/ferry.toml")
	for _, want := range []string{
		"kind: ConfigMap", "kind: Deployment", "kind: Service",
		"replicas: 3",
		"runAsNonRoot: true",
		fmt.Sprintf("runAsUser: %d", imageUID),
		"readOnlyRootFilesystem: true",
		"allowPrivilegeEscalation: false",
		"containerPort: " + port,
		"mountPath: " + path.Dir(imageConfig),
		fmt.Sprintf(`args: ["run", "-c", %q]`, imageConfig),
		"readinessProbe:", "livenessProbe:", "resources:",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("%s lacks %q", manifest, want)
		}
	}
	for _, probe := range []string{
		fmt.Sprintf(`command: [%q, "health"]`, imageBinary),           // readiness
		fmt.Sprintf(`command: [%q, "health", "--live"]`, imageBinary), // liveness
	} {
		if n := strings.Count(src, probe); n != 1 {
			t.Errorf("%s: %d probes with %s, want 1", manifest, n, probe)
		}
	}
}

// haproxyCfg is the haproxy example.
const haproxyCfg = "../deploy/haproxy/haproxy.cfg"

// TestDeployHAProxyConfig: haproxy accepts the example as it is.
func TestDeployHAProxyConfig(t *testing.T) {
	t.Parallel()
	haproxy := testkit.NeedBin(t, "haproxy")
	out, err := exec.Command(haproxy, "-c", "-f", haproxyCfg).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", haproxyCfg, err, out)
	}
}

// TestDeployHAProxyHealthChecks runs the haproxy example in front of two
// ferrys on the haproxy example's ferry.toml, plus a dead server, all
// moved to loopback: haproxy's SOCKS5 health checks, sent with a PROXY v2
// header, pass on the ferrys and fail on the dead one, and a client
// through haproxy is served with its own address in ferry's access log.
func TestDeployHAProxyHealthChecks(t *testing.T) {
	t.Parallel()
	haproxy := testkit.NeedBin(t, "haproxy")
	needCurl(t)
	ferryCfg := mustRead(t, "../deploy/haproxy/ferry.toml")
	for _, s := range []string{`listen = "0.0.0.0:8080"`, `trusted_proxies = ["10.0.0.2"]`} {
		if strings.Count(ferryCfg, s) != 1 {
			t.Fatalf("deploy/haproxy/ferry.toml: want one line %s, which this test rewrites", s)
		}
	}
	ferry := func(addr string) string {
		c := strings.Replace(ferryCfg, `listen = "0.0.0.0:8080"`, fmt.Sprintf("listen = %q", addr), 1)
		return strings.Replace(c, `trusted_proxies = ["10.0.0.2"]`, `trusted_proxies = ["127.0.0.1"]`, 1)
	}
	f1, f2 := startFerry(t, ferry, nil), startFerry(t, ferry, nil)
	dead := testkit.ClosedAddr(t)

	dir := t.TempDir()
	front := freeAddr(t)
	sock := filepath.Join(dir, "admin.sock")
	cfg := mustRead(t, haproxyCfg)
	for _, r := range [][2]string{
		{"bind :3128", "bind " + front},
		{"10.0.0.11:8080", f1.addr},
		{"10.0.0.12:8080", f2.addr},
		{"10.0.0.13:8080", dead},
		{"stats socket /run/haproxy/admin.sock", "stats socket " + sock},
	} {
		if strings.Count(cfg, r[0]) != 1 {
			t.Fatalf("%s: want %q once, which this test rewrites", haproxyCfg, r[0])
		}
		cfg = strings.Replace(cfg, r[0], r[1], 1)
	}
	if os.Geteuid() != 0 {
		// Only root can become the haproxy user.
		cfg = regexp.MustCompile(`(?m)^\s*(user|group) .*$`).ReplaceAllString(cfg, "")
	}
	file := filepath.Join(dir, "haproxy.cfg")
	writeFile(t, file, cfg)
	startPeer(t, front, haproxy, "-db", "-f", file)

	want := map[string]string{"ferry1": "L7OK", "ferry2": "L7OK", "ferry3": "L4CON"}
	var got map[string]string
	deadline := time.Now().Add(20 * time.Second)
	for {
		got = haproxyChecks(t, sock, "ferry")
		if reflect.DeepEqual(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy check status: got %v, want %v", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}

	web := testkit.HTTPTarget(t)
	if body := curl(t, "--interface", "127.0.0.5", "-x", "http://"+front, web.URL+"/via-haproxy"); body != testkit.TargetBody {
		t.Fatalf("curl through haproxy: body %q, want %q", body, testkit.TargetBody)
	}
	waitFor(t, func() bool {
		return len(f1.lines("access", byTarget(web.Listener.Addr().String())))+
			len(f2.lines("access", byTarget(web.Listener.Addr().String()))) == 1
	})
	for _, f := range []*proc{f1, f2} {
		for _, l := range f.lines("access", byTarget(web.Listener.Addr().String())) {
			if c := l.str("client"); !strings.HasPrefix(c, "127.0.0.5:") {
				t.Errorf("access line client: got %q, want 127.0.0.5:… (curl, from haproxy's header)", c)
			}
		}
		// The checks came with a header: ferry refused none of them.
		for _, l := range f.logLines() {
			if lv := l.str("level"); lv == "warn" || lv == "error" || l["raw"] != nil {
				t.Errorf("ferry logged %v: haproxy's checks must come with a PROXY header", l)
			}
		}
	}
}

// haproxyChecks asks haproxy's stats socket for the last check status of
// each server of backend.
func haproxyChecks(t *testing.T, sock, backend string) map[string]string {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("haproxy stats socket: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("show stat: %v", err)
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(data), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("show stat: %v\n%s", err, data)
	}
	col := func(name string) int {
		i := slices.Index(rows[0], name)
		if i < 0 {
			t.Fatalf("show stat: no column %q", name)
		}
		return i
	}
	px, sv, st := col("pxname"), col("svname"), col("check_status")
	out := map[string]string{}
	for _, row := range rows[1:] {
		if len(row) > st && row[px] == backend && row[sv] != "BACKEND" {
			// "* L7OK": a check is running; the status is the last one's.
			out[row[sv]] = strings.TrimPrefix(row[st], "* ")
		}
	}
	return out
}
