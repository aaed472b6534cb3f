package testkit

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Redis is a redis-server the test started on a loopback port, without
// persistence. Stop and Start take it down and bring it back on the same
// port, for tests of a store that goes away.
type Redis struct {
	Addr string // 127.0.0.1:PORT
	bin  string
	t    testing.TB
	cmd  *exec.Cmd
	args []string // instead of the server's flags (Sentinel)
}

// StartRedis starts a redis-server for the test and stops it at cleanup.
// Without the binary the test is skipped, or fails under CI=true
// (scripts/test.sh installs Debian's redis-server).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{Addr: FreeAddr(t), bin: NeedBin(t, "redis-server"), t: t}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// URL is the redis:// URL of database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Start starts the server on its address and waits until it answers
// PING, for 10 seconds at most.
func (r *Redis) Start() {
	r.t.Helper()
	host, port, _ := net.SplitHostPort(r.Addr)
	args := r.args
	if args == nil {
		args = []string{"--bind", host, "--port", port, "--save", "", "--appendonly", "no",
			"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"}
	}
	r.cmd = exec.Command(r.bin, args...)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r.ping() == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Stop()
	r.t.Fatalf("redis-server on %s did not answer PING within 10s", r.Addr)
}

// Stop kills the server and waits for it; it does nothing when stopped.
func (r *Redis) Stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

func (r *Redis) ping() error {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// StartSentinel starts a Redis Sentinel (redis-server --sentinel) on a
// loopback port that monitors master as "mymaster", and stops it at
// cleanup. It returns the Sentinel's address once it answers PING.
func StartSentinel(t testing.TB, master *Redis) string {
	t.Helper()
	s := &Redis{Addr: FreeAddr(t), bin: master.bin, t: t}
	host, port, _ := net.SplitHostPort(s.Addr)
	mhost, mport, _ := net.SplitHostPort(master.Addr)
	conf := filepath.Join(t.TempDir(), "sentinel.conf") // Sentinel rewrites it
	body := fmt.Sprintf("bind %s\nport %s\nprotected-mode no\nsentinel monitor mymaster %s %s 1\nsentinel down-after-milliseconds mymaster 1000\n",
		host, port, mhost, mport)
	writeFile(t, conf, body)
	s.args = []string{conf, "--sentinel"}
	s.Start()
	t.Cleanup(s.Stop)
	return s.Addr
}
