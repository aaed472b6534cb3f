//go:build linux

package test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestPluginsCommand(t *testing.T) {
	t.Parallel()
	res := runFerry(t, "", "plugins")
	if res.code != 0 {
		t.Fatalf("ferry plugins exited %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	descs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
		name, desc, _ := strings.Cut(line, " ")
		descs[name] = strings.TrimSpace(desc)
	}
	for _, name := range []string{"log", "hexdump"} {
		desc, ok := descs[name]
		if !ok {
			t.Errorf("ferry plugins does not list %q:\n%s", name, res.stdout)
			continue
		}
		if desc == "" {
			t.Errorf("ferry plugins lists %q without a description:\n%s", name, res.stdout)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string // substrings of stdout
	}{
		{name: "version", args: []string{"version"}, want: []string{"ferry ", "go1."}},
		{name: "--version", args: []string{"--version"}, want: []string{"go1."}},
		{name: "--help", args: []string{"--help"}, want: []string{"run", "check", "plugins", "version"}},
		{name: "run --help", args: []string{"run", "--help"}, want: []string{"--config", "-c", "--listen", "--log-level", "--log-format", "SIGTERM"}},
		{name: "check --help", args: []string{"check", "--help"}, want: []string{"--config", "FILE:LINE:COL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := runFerry(t, "", tt.args...)
			if res.code != 0 {
				t.Fatalf("ferry %q exited %d, want 0; stderr:\n%s", tt.args, res.code, res.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(res.stdout, w) {
					t.Errorf("ferry %q output lacks %q:\n%s", tt.args, w, res.stdout)
				}
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{name: "unknown command", args: []string{"sail"}},
		{name: "unknown flag", args: []string{"run", "--no-such-flag"}},
		{name: "missing config file", args: []string{"check", "-c", "testdata/does-not-exist.toml"}},
		{name: "bad log level", args: []string{"run", "--listen", "127.0.0.1:0", "--log-level", "loud"}},
		{name: "bad log format", args: []string{"run", "--listen", "127.0.0.1:0", "--log-format", "xml"}},
		{name: "bad listen address", args: []string{"run", "--listen", "127.0.0.1:notaport"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := runFerry(t, "", tt.args...)
			if res.code == 0 {
				t.Errorf("ferry %q exited 0, want an error; stdout:\n%s", tt.args, res.stdout)
			}
			if strings.TrimSpace(res.stderr) == "" {
				t.Errorf("ferry %q exited %d without a message on stderr", tt.args, res.code)
			}
		})
	}
}

func TestCheckValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dir  string
		file string
	}{
		{name: "example", dir: "..", file: "ferry.example.toml"},
		{name: "testdata valid", dir: "testdata", file: "valid.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := runFerry(t, tt.dir, "check", "-c", tt.file)
			if res.code != 0 {
				t.Fatalf("ferry check -c %s exited %d, want 0; stderr:\n%s", tt.file, res.code, res.stderr)
			}
			out := strings.TrimSpace(res.stdout)
			if out == "" || strings.Contains(out, "\n") {
				t.Errorf("ferry check printed %q, want one summary line", res.stdout)
			}
			if res.stderr != "" {
				t.Errorf("ferry check wrote to stderr:\n%s", res.stderr)
			}
		})
	}
}

// problemRE parses "FILE:LINE:COL: key.path: message".
var problemRE = regexp.MustCompile(`^([^:]+):(\d+):(\d+): ([^ :]+): (.+)$`)

type problem struct {
	line, col int
	key       string
	msg       string // a substring of the message
}

// TestCheckInvalid runs `ferry check` and `ferry run` on broken files:
// both exit 1 and print every problem, in file order, as
// FILE:LINE:COL: key.path: message, and nothing else.
func TestCheckInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file string // in testdata
		want []problem
	}{
		{
			name: "misspelled key",
			file: "misspelled.toml",
			want: []problem{
				{5, 3, "listener[0].listen", "missing"},
				{7, 3, "listener[0].lisen", "unknown key"},
			},
		},
		{
			name: "several problems",
			file: "problems.toml",
			want: []problem{
				{3, 1, "log.level", `"loud"`},
				{4, 1, "log.fromat", "unknown key"},
				{7, 21, "defaults.handshake_timeout", `invalid duration "10"`},
				{8, 16, "defaults.dial_timeout", "must be a string"},
				{9, 15, "defaults.buffer_size", `invalid size "32XB"`},
				{14, 22, "listener[0].protocols[1]", `"gopher"`},
				{15, 19, "listener[0].plugins[1]", `"nope"`},
				{16, 1, "listener[0].max_conections", "unknown key"},
				{19, 1, "listener[1].name", `duplicate name "main"`},
				{20, 1, "listener[1].listen", `"127.0.0.1:notaport"`},
			},
		},
		{
			name: "problems in two plugins",
			file: "plugin-problems.toml",
			want: []problem{
				{8, 1, "plugin[0].fiel", "unknown key"},
				{13, 13, "plugin[1].max_bytes", "negative"},
			},
		},
		{
			name: "unknown plugin type",
			file: "unknown-type.toml",
			want: []problem{
				{10, 1, "plugin[0].fiel", "unknown key"},
				{14, 1, "plugin[1].type", `unknown plugin type "stunnel" (known types: acl,`},
			},
		},
		{
			name: "config problem and unknown plugin type",
			file: "unknown-type-mixed.toml",
			want: []problem{
				{3, 1, "log.level", `"loud"`},
				{10, 1, "plugin[0].name", `unknown plugin type "stunnel"`},
			},
		},
		{
			name: "config and plugin problems",
			file: "mixed-problems.toml",
			want: []problem{
				{4, 16, "defaults.idle_timeout", `invalid duration "forever"`},
				{12, 1, "plugin[0].fiel", "unknown key"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			check := runFerry(t, "testdata", "check", "-c", tt.file)
			if check.code != 1 {
				t.Errorf("ferry check exited %d, want 1", check.code)
			}
			if check.stdout != "" {
				t.Errorf("ferry check printed to stdout:\n%s", check.stdout)
			}
			checkProblems(t, tt.file, check.stderr, tt.want)

			run := runFerry(t, "testdata", "run", "-c", tt.file)
			if run.code != 1 {
				t.Errorf("ferry run exited %d, want 1", run.code)
			}
			if run.stderr != check.stderr {
				t.Errorf("ferry run stderr differs from ferry check's:\nrun:\n%s\ncheck:\n%s", run.stderr, check.stderr)
			}
		})
	}
}

func checkProblems(t *testing.T, file, stderr string, want []problem) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != len(want) {
		t.Errorf("got %d lines on stderr, want %d problems:\n%s", len(lines), len(want), stderr)
	}
	for i, line := range lines {
		m := problemRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %q is not FILE:LINE:COL: key: message", line)
			continue
		}
		if i >= len(want) {
			continue
		}
		w := want[i]
		gotLine, _ := strconv.Atoi(m[2])
		gotCol, _ := strconv.Atoi(m[3])
		if m[1] != file || gotLine != w.line || gotCol != w.col || m[4] != w.key || !strings.Contains(m[5], w.msg) {
			t.Errorf("problem %d:\n got %s\nwant %s:%d:%d: %s: ...%s...", i, line, file, w.line, w.col, w.key, w.msg)
		}
	}
	for i := len(lines); i < len(want); i++ {
		w := want[i]
		t.Errorf("missing problem %s:%d:%d: %s: ...%s...", file, w.line, w.col, w.key, w.msg)
	}
}
