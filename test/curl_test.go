//go:build linux

package test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// needCurl returns curl's path. Without curl the test is skipped, except
// under CI=true, where scripts/test.sh has installed it and its absence is
// a failure.
func needCurl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err == nil {
		return path
	}
	testkit.Unmet(t, "curl not found on PATH (install curl, or run scripts/test.sh): %v", err)
	return ""
}

// curlResult is what one curl run produced.
type curlResult struct {
	stdout, stderr string
	code           int // curl's exit code
}

// curlMayFail runs curl with args and returns what it printed and its exit
// code, failing the test only when curl could not run or timed out. Proxy
// variables are removed from its environment: NO_PROXY=127.0.0.1, common
// on CI machines, would make curl bypass ferry.
func curlMayFail(t *testing.T, args ...string) curlResult {
	t.Helper()
	path := needCurl(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-sS", "--max-time", "20"}, args...)...)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(name) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "socks_proxy":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := curlResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.code = ee.ExitCode()
	default:
		t.Fatalf("curl %q: %v\nstderr: %s", args, err, res.stderr)
	}
	return res
}

// curl runs curl with args and returns its stdout; curl must succeed.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	res := curlMayFail(t, args...)
	if res.code != 0 {
		t.Fatalf("curl %q: exit %d\nstderr: %s", args, res.code, res.stderr)
	}
	return res.stdout
}

// curlExit runs curl and returns its stdout and exit code.
func curlExit(t *testing.T, args ...string) (stdout string, code int) {
	t.Helper()
	res := curlMayFail(t, args...)
	return res.stdout, res.code
}

// TestCurl drives ferry with curl in each proxy protocol and checks the
// body and ferry's single access line for the request.
func TestCurl(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t)
	tlsWeb, caFile := testkit.TLSTarget(t)
	webPort := web.Listener.Addr().(*net.TCPAddr).Port
	webAddr := web.Listener.Addr().String()
	tlsAddr := tlsWeb.Listener.Addr().String()
	localhost := net.JoinHostPort("localhost", strconv.Itoa(webPort))

	tests := []struct {
		name string
		// args are curl's arguments; %PROXY% stands for ferry's address.
		args       []string
		wantProto  string
		wantTarget string
		wantStatus int64 // 0: the line has no status
	}{
		{
			name:       "http plain",
			args:       []string{"-x", "http://%PROXY%", "http://" + webAddr + "/"},
			wantProto:  "http",
			wantTarget: webAddr,
			wantStatus: 200,
		},
		{
			name:       "http connect tls",
			args:       []string{"-x", "http://%PROXY%", "--cacert", caFile, "https://" + tlsAddr + "/"},
			wantProto:  "connect",
			wantTarget: tlsAddr,
			wantStatus: 200,
		},
		{
			name:       "socks5 hostname",
			args:       []string{"--socks5-hostname", "%PROXY%", "http://" + localhost + "/"},
			wantProto:  "socks5",
			wantTarget: localhost,
		},
		{
			name:       "socks5 address",
			args:       []string{"--socks5", "%PROXY%", "http://" + webAddr + "/"},
			wantProto:  "socks5",
			wantTarget: webAddr,
		},
		{
			name:       "socks4a hostname",
			args:       []string{"--socks4a", "%PROXY%", "http://" + localhost + "/"},
			wantProto:  "socks4",
			wantTarget: localhost,
		},
		{
			name:       "socks4 address",
			args:       []string{"--socks4", "%PROXY%", "http://" + webAddr + "/"},
			wantProto:  "socks4",
			wantTarget: webAddr,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := startFerry(t, withJSON(""), nil)
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "%PROXY%", f.addr)
			}
			if got := curl(t, args...); got != testkit.TargetBody {
				t.Errorf("curl body = %q, want %q", got, testkit.TargetBody)
			}
			// The access line is written when the channel closes, which may
			// be just after curl exits; stopping ferry drains it.
			if code := f.stop(t); code != 0 {
				t.Errorf("ferry exited %d after SIGTERM, want 0", code)
			}
			lines := f.lines("access", nil)
			if len(lines) != 1 {
				t.Fatalf("got %d access lines, want 1: %v", len(lines), lines)
			}
			l := lines[0]
			checkAccess(t, l, tt.wantProto, tt.wantTarget)
			status, hasStatus := l.num("status")
			if tt.wantStatus != 0 && status != tt.wantStatus {
				t.Errorf("access status = %v, want %d", l["status"], tt.wantStatus)
			}
			if tt.wantStatus == 0 && hasStatus {
				t.Errorf("access line of %s has status %d, want none", tt.wantProto, status)
			}
			if tt.wantProto == "http" {
				if got, want := l.str("method"), "GET"; got != want {
					t.Errorf("access method = %q, want %q", got, want)
				}
				if got, want := l.str("url"), "http://"+webAddr+"/"; got != want {
					t.Errorf("access url = %q, want %q", got, want)
				}
			}
		})
	}
}

// checkAccess checks the fields every access line has.
func checkAccess(t *testing.T, l logLine, proto, target string) {
	t.Helper()
	if got := l.str("proto"); got != proto {
		t.Errorf("access proto = %q, want %q", got, proto)
	}
	if got := l.str("target"); got != target {
		t.Errorf("access target = %q, want %q", got, target)
	}
	if got := l.str("upstream"); got != "direct" {
		t.Errorf("access upstream = %q, want %q", got, "direct")
	}
	if got := l.str("listener"); got == "" {
		t.Errorf("access line has no listener: %v", l)
	}
	if got := l.str("id"); got == "" {
		t.Errorf("access line has no id: %v", l)
	}
	if c := l.str("client"); !strings.HasPrefix(c, "127.0.0.1:") {
		t.Errorf("access client = %q, want 127.0.0.1:PORT", c)
	}
	for _, k := range []string{"up", "down"} {
		if n, ok := l.num(k); !ok || n <= 0 {
			t.Errorf("access %s = %v, want > 0 bytes", k, l[k])
		}
	}
	if _, ok := l["duration_ms"]; !ok {
		t.Errorf("access line has no duration_ms: %v", l)
	}
	if l.str("reason") == "" {
		t.Errorf("access line has no reason: %v", l)
	}
}

// TestCurlEmbeddedDefault runs ferry without -c: the embedded default
// configuration with its console log, moved by --listen.
func TestCurlEmbeddedDefault(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	f := startFerry(t, nil, func(addr string) []string { return []string{"--listen", addr} })
	addr := f.addr

	for _, args := range [][]string{
		{"-x", "http://" + addr, "http://" + webAddr + "/"},
		{"--socks5-hostname", addr, "http://" + webAddr + "/"},
	} {
		if got := curl(t, args...); got != testkit.TargetBody {
			t.Errorf("curl %q body = %q, want %q", args, got, testkit.TargetBody)
		}
	}
	// SIGINT (Ctrl-C) stops ferry like SIGTERM.
	f.signalOnce.Do(func() { f.send(t, os.Interrupt) })
	if code := f.wait(t); code != 0 {
		t.Errorf("ferry exited %d after SIGINT, want 0", code)
	}
	out := f.stderr.String()
	if strings.HasPrefix(strings.TrimSpace(out), "{") {
		t.Errorf("embedded default logged JSON, want console format:\n%s", out)
	}
	for _, want := range []string{"listening", addr, "ferry started", "ferry stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	var access []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "access") && strings.Contains(line, webAddr) {
			access = append(access, line)
		}
	}
	if len(access) != 2 {
		t.Errorf("got %d console access lines for %s, want 2 (http, socks5):\n%s", len(access), webAddr, out)
	}
}
