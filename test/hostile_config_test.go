//go:build linux

package test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

// hostileFiles writes the hostile configurations of issue 15 into dir and
// returns them by name. listen is the listener address the valid parts
// use.
func hostileFiles(t *testing.T, dir, listen string) map[string]string {
	t.Helper()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	head := fmt.Sprintf("[log]\nformat = \"json\"\n\n[[listener]]\nname = \"e2e\"\nlisten = %q\n", listen)
	mitm := func(cert string) string {
		return head + "plugins = [\"mitm\"]\n\n[[plugin]]\nname = \"mitm\"\nintercept = [\"*\"]\n" +
			fmt.Sprintf("ca_cert = %q\nca_key = %q\n", cert, cert)
	}
	docs := map[string]string{
		// An 80 KB file: 3 GB and 14 s before.
		"dotted40k": "[" + strings.Repeat("a.", 40_000) + "a]\n",
		// fatal error: out of memory before.
		"dotted100k": "[" + strings.Repeat("a.", 100_000) + "a]\n",
		"devzero":    mitm("/dev/zero"),
		"fifo-cert":  mitm(fifo),
		"fifo-domains": head + "plugins = [\"acl\"]\n\n[[plugin]]\nname = \"acl\"\ndefault = \"allow\"\n\n" +
			fmt.Sprintf("[[plugin.rule]]\naction = \"deny\"\ndomain_file = %q\n", fifo),
		// 7 MB: 116 MiB of errors before.
		"array7mb": head + "plugins = [" + strings.Repeat(`"x",`, 1_750_000) + "]\n",
	}
	files := map[string]string{}
	for name, doc := range docs {
		path := filepath.Join(dir, name+".toml")
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = path
	}
	return files
}

// fileLineCol is how each problem line of ferry check starts.
var fileLineCol = regexp.MustCompile(`^[^:\s]+\.toml:\d+:\d+: \S`)

// TestHostileCheck runs ferry check on each hostile file of issue 15 and
// asserts it ends within 2 s and 200 MiB with a FILE:LINE:COL error.
func TestHostileCheck(t *testing.T) {
	dir := t.TempDir()
	files := hostileFiles(t, dir, freeAddr(t))

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	files["busy-port"] = filepath.Join(dir, "busy.toml")
	if err := os.WriteFile(files["busy-port"], []byte(fmt.Sprintf("[[listener]]\nname = \"e2e\"\nlisten = %q\n", busy.Addr())), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		want string // in the first line, after FILE:LINE:COL:
	}{
		{"dotted40k", "nested more than 64 levels deep"},
		{"dotted100k", "nested more than 64 levels deep"},
		{"devzero", "/dev/zero: not a regular file but a character device"},
		{"fifo-cert", "fifo: not a regular file but a FIFO"},
		{"fifo-domains", "fifo: not a regular file but a FIFO"},
		{"array7mb", "more than 100000 keys, tables and array elements"},
		{"busy-port", "listener[0].listen: listen tcp " + busy.Addr().String() + ": bind: address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := checkMeasured(t, files[tt.name])
			if res.code != 1 {
				t.Fatalf("exit code: got %d, want 1; stderr:\n%.2000s", res.code, res.stderr)
			}
			first, _, _ := strings.Cut(res.stderr, "\n")
			if !fileLineCol.MatchString(first) || !strings.Contains(first, tt.want) {
				t.Fatalf("first line: got %.500q, want FILE:LINE:COL: ...%s", first, tt.want)
			}
			if len(res.stderr) > 64<<10 {
				t.Fatalf("stderr: got %d bytes, want at most 64 KiB", len(res.stderr))
			}
			// 2 s for the real binary; a race-enabled one touches fresh
			// memory several times slower (reading the 7 MB file alone
			// takes 0.2-0.4 s), so its bound is looser.
			limit := 2 * time.Second
			if raceEnabled {
				limit = 6 * time.Second
			}
			if res.took > limit {
				t.Errorf("took %v, want at most %v", res.took, limit)
			}
			if res.maxRSS > 200<<20 {
				t.Errorf("max RSS: got %d MiB, want at most 200 MiB", res.maxRSS>>20)
			}
			t.Logf("%s: %v, max RSS %d MiB: %.200s", tt.name, res.took.Round(time.Millisecond), res.maxRSS>>20, first)
		})
	}
}

type measured struct {
	cmdResult
	took   time.Duration
	maxRSS int64 // bytes
}

// checkMeasured runs ferry check -c path with a 20 s limit and returns
// its output, exit code, wall time and peak resident memory.
func checkMeasured(t *testing.T, path string) measured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, "check", "-c", path)
	cmd.Env = childEnv()
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	m := measured{took: time.Since(start)}
	m.stdout, m.stderr = stdout.String(), stderr.String()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("ferry check did not end within 20s; stderr:\n%.2000s", m.stderr)
	case err == nil:
	case errors.As(err, &ee):
		m.code = ee.ExitCode()
	default:
		t.Fatalf("run ferry check: %v", err)
	}
	// Linux starts a child's maxrss from its parent's RSS at fork, so
	// this is an upper bound: the larger of the child's peak and this
	// test process's size when it started the child.
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.maxRSS = ru.Maxrss << 10 // KiB on Linux
	}
	return m
}

// TestHostileReload reloads each hostile file (SIGHUP) into a running
// ferry while a tunnel carries data: each reload fails, the tunnel goes
// on, and new connections are served under the old configuration. Then
// SIGTERM right after a SIGHUP to a FIFO ca_cert still ends ferry.
func TestHostileReload(t *testing.T) {
	target := newEchoTarget(t)
	p := startFerry(t, func(addr string) string { return jsonConfig(addr, "") }, nil)
	path := p.cmd.Args[len(p.cmd.Args)-1]
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	files := hostileFiles(t, t.TempDir(), p.addr)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tunnel, err := testkit.DialCONNECT(ctx, p.addr, target.Addr)
	if err != nil {
		t.Fatalf("tunnel before the reloads: %v", err)
	}
	defer tunnel.Close()

	failed := func() int { return len(p.lines("reload failed: the running configuration stays", nil)) }
	for i, name := range []string{"dotted40k", "dotted100k", "devzero", "fifo-domains", "array7mb"} {
		doc, err := os.ReadFile(files[name])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		before := failed()
		start := time.Now()
		p.send(t, syscall.SIGHUP)
		for failed() == before {
			if time.Since(start) > logTimeout {
				t.Fatalf("%s: no \"reload failed\" within %v of SIGHUP; stderr:\n%.4000s", name, logTimeout, p.stderr.String())
			}
			if err := echo(tunnel, fmt.Sprintf("during reload %d\n", i)); err != nil {
				t.Fatalf("%s: the tunnel opened before the reload: %v", name, err)
			}
		}
		t.Logf("%s: reload refused after %v", name, time.Since(start).Round(time.Millisecond))
		c, err := testkit.DialCONNECT(ctx, p.addr, target.Addr)
		if err != nil {
			t.Fatalf("%s: a new tunnel after the refused reload: %v", name, err)
		}
		if err := echo(c, "after "+name+"\n"); err != nil {
			t.Fatalf("%s: a new tunnel after the refused reload: %v", name, err)
		}
		c.Close()
	}
	if err := echo(tunnel, "after every reload\n"); err != nil {
		t.Fatalf("the tunnel opened before the reloads: %v", err)
	}
	tunnel.Close()
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}

	// A FIFO ca_cert once blocked the reload in the signal loop for good.
	doc, err := os.ReadFile(files["fifo-cert"])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	p.send(t, syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	p.signal(t)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("ferry did not exit within 5s of SIGTERM sent during a FIFO reload; stderr:\n%.4000s", p.stderr.String())
	}
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit code: got %d, want 0", code)
	}
	t.Logf("SIGTERM after a FIFO reload: exited in %v", time.Since(start).Round(time.Millisecond))
}

// TestHostileBusyPort: ferry run reports a listener whose port is busy at
// the position of its listen key, as ferry check does; and ferry check
// passes a file whose ports a running ferry holds as its own listeners.
func TestHostileBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	path := filepath.Join(t.TempDir(), "busy.toml")
	doc := fmt.Sprintf("[log]\nformat = \"json\"\n\n[[listener]]\nname = \"e2e\"\n  listen = %q\n", busy.Addr())
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runFerry(t, "", "run", "-c", path)
	want := path + ":6:3: listener[0].listen: listen tcp " + busy.Addr().String() + ": bind: address already in use"
	if res.code != 1 || !strings.Contains(res.stderr, want) {
		t.Fatalf("ferry run on a busy port: got exit %d, stderr %q; want 1 and %q", res.code, res.stderr, want)
	}

	p := startFerry(t, func(addr string) string { return jsonConfig(addr, "") }, nil)
	running := p.cmd.Args[len(p.cmd.Args)-1]
	if res := runFerry(t, "", "check", "-c", running); res.code != 0 || !strings.Contains(res.stdout, ": ok: ") {
		t.Fatalf("ferry check on the running ferry's own file: got exit %d, stdout %q, stderr %q; want 0 and ok", res.code, res.stdout, res.stderr)
	}
}
