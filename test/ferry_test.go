//go:build linux

package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Bounds for waiting on the child process. They are generous because the
// binary may run under the race detector on a loaded 2-core machine; they
// bound waits, they do not assert speed.
const (
	startTimeout = 20 * time.Second
	stopTimeout  = 30 * time.Second
	logTimeout   = 10 * time.Second
)

// syncBuffer is a bytes.Buffer safe for one writer (the child's stderr
// copier) and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a running `ferry run`.
type proc struct {
	addr   string // host:port of the first listener
	cmd    *exec.Cmd
	stderr *syncBuffer
	stdout *syncBuffer

	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed

	signalOnce sync.Once
	waited     atomic.Bool // wait returned the exit code to the test
}

// freePort returns a loopback TCP port that was free a moment ago: the
// listener that found it is closed again, so ferry can bind it.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freeAddr returns 127.0.0.1:PORT with a port that was free a moment ago,
// for ferry to listen on.
func freeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
}

// jsonConfig is a config file with one JSON-logging listener on addr
// serving every proxy protocol with the log plugin. extraDefaults go into
// [defaults].
func jsonConfig(addr, extraDefaults string) string {
	return fmt.Sprintf(`[log]
level = "info"
format = "json"

[defaults]
%s

[[listener]]
name = "e2e"
listen = %q
protocols = ["http", "socks5", "socks4"]
plugins = ["log"]

[[plugin]]
name = "log"
`, extraDefaults, addr)
}

// chainConfig returns a config maker for startFerry: one JSON-logging
// listener "e2e" serving every proxy protocol with the plugin chain given,
// followed by tables, the [[plugin]] tables of that chain.
func chainConfig(chain []string, tables string) func(addr string) string {
	return func(addr string) string {
		return fmt.Sprintf(`[log]
level = "info"
format = "json"

[[listener]]
name = "e2e"
listen = %q
protocols = ["http", "socks5", "socks4"]
plugins = [%s]

%s`, addr, quoteList(chain), tables)
	}
}

// quoteList renders names as the inside of a TOML array.
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// withJSON returns a config maker for startFerry: jsonConfig with
// extraDefaults.
func withJSON(extraDefaults string) func(addr string) string {
	return func(addr string) string { return jsonConfig(addr, extraDefaults) }
}

// startFerry runs `ferry run` listening on a free loopback port: config
// makes the config file for that address (nil: no -c, the embedded
// default) and args the extra arguments (may be nil). It returns once
// ferry logged "ferry started"; f.addr is where it listens. If another
// process took the port meanwhile, it retries on a new one.
//
// A cleanup stops it with SIGTERM (unless the test did) and fails the test
// unless it exits 0; on failure ferry's stderr goes to the test log.
func startFerry(t *testing.T, config func(addr string) string, args func(addr string) []string) *proc {
	t.Helper()
	const attempts = 3
	for i := 1; ; i++ {
		addr := freeAddr(t)
		full := []string{"run"}
		if config != nil {
			path := filepath.Join(t.TempDir(), "ferry.toml")
			if err := os.WriteFile(path, []byte(config(addr)), 0o644); err != nil {
				t.Fatal(err)
			}
			full = append(full, "-c", path)
		}
		if args != nil {
			full = append(full, args(addr)...)
		}
		p, err := tryStart(t, addr, full)
		if err == nil {
			return p
		}
		if i == attempts || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("port taken, retrying: %v", err)
	}
}

func tryStart(t *testing.T, addr string, args []string) (*proc, error) {
	t.Helper()
	p := &proc{addr: addr, stderr: &syncBuffer{}, stdout: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(ferryBin, args...)
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stdout
	p.cmd.Env = childEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ferry: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()

	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(p.stderr.String(), "ferry started") {
		select {
		case <-p.done:
			return nil, fmt.Errorf("ferry %q exited before it started (%v); stderr:\n%s", args, p.waitErr, p.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.cmd.Process.Kill()
			<-p.done
			t.Fatalf("ferry %q did not log \"ferry started\" within %v; stderr:\n%s", args, startTimeout, p.stderr.String())
		}
	}

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ferry %q stderr:\n%s", args, p.stderr.String())
		}
	})
	t.Cleanup(func() {
		if p.waited.Load() {
			return // the test stopped it and checked the exit itself
		}
		if code := p.stop(t); code != 0 {
			t.Errorf("ferry exited %d (SIGTERM sent at the end of the test unless it had exited), want 0", code)
		}
	})
	// The listeners are open before "ferry started". Check the address in
	// the "listening" line instead of dialing it: on a tcp listener a test
	// dial would open a channel to the target.
	if !strings.Contains(p.stderr.String(), addr) {
		t.Fatalf("ferry started but did not log that it listens on %s; stderr:\n%s", addr, p.stderr.String())
	}
	return p, nil
}

// signal sends SIGTERM, once: stop and the cleanup do not send another.
func (p *proc) signal(t *testing.T) {
	t.Helper()
	p.signalOnce.Do(func() { p.send(t, syscall.SIGTERM) })
}

// send sends sig to ferry.
func (p *proc) send(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("send %v to ferry: %v", sig, err)
	}
}

// wait waits for the process to exit and returns its exit code; -1 if a
// signal killed it. It kills the process and fails the test if it does not
// exit within stopTimeout.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("ferry did not exit within %v of SIGTERM; stderr:\n%s", stopTimeout, p.stderr.String())
	}
	p.waited.Store(true)
	var ee *exec.ExitError
	switch {
	case p.waitErr == nil:
		return 0
	case errors.As(p.waitErr, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("wait for ferry: %v", p.waitErr)
	return -1
}

// stop sends SIGTERM and waits for the exit code.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	p.signal(t)
	return p.wait(t)
}

// logLine is one JSON line of ferry's log.
type logLine map[string]any

func (l logLine) str(key string) string {
	s, _ := l[key].(string)
	return s
}

// num returns a numeric field; JSON numbers decode as float64.
func (l logLine) num(key string) (int64, bool) {
	f, ok := l[key].(float64)
	return int64(f), ok
}

// dur returns a duration field, written either as a string ("1.5s") or,
// zerolog's Dur default, as a number of milliseconds.
func (l logLine) dur(key string) (time.Duration, bool) {
	switch v := l[key].(type) {
	case string:
		d, err := time.ParseDuration(v)
		return d, err == nil
	case float64:
		return time.Duration(v * float64(time.Millisecond)), true
	}
	return 0, false
}

// logLines parses every JSON line ferry wrote to stderr so far. Lines that
// are not JSON objects (a race report, a panic) are kept as {"raw": line}
// so that they show up in failure messages.
func (p *proc) logLines() []logLine { return parseLogLines(p.stderr.String()) }

// parseLogLines parses JSON log lines (ferry's stderr, the log plugin's
// file), keeping a line that is not a JSON object as {"raw": line}.
func parseLogLines(text string) []logLine {
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		var l logLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			l = logLine{"raw": line}
		}
		out = append(out, l)
	}
	return out
}

// lines returns the log lines whose message is msg and that pass match
// (nil matches all).
func (p *proc) lines(msg string, match func(logLine) bool) []logLine {
	var out []logLine
	for _, l := range p.logLines() {
		if l.str("message") == msg && (match == nil || match(l)) {
			out = append(out, l)
		}
	}
	return out
}

// waitLine waits until a line with message msg passes match and returns
// the first such line.
func (p *proc) waitLine(t *testing.T, msg string, match func(logLine) bool) logLine {
	t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		if ls := p.lines(msg, match); len(ls) > 0 {
			return ls[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q log line as expected within %v; stderr:\n%s", msg, logTimeout, p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// byTarget matches access lines of one target.
func byTarget(target string) func(logLine) bool {
	return func(l logLine) bool { return l.str("target") == target }
}
