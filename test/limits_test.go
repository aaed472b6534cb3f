//go:build linux

package test

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/test/testkit"
)

// limitsConfig is the e2e listener with a [limits] table.
func limitsConfig(defaults, limits string) func(addr string) string {
	return func(addr string) string { return jsonConfig(addr, defaults) + "\n[limits]\n" + limits + "\n" }
}

// procFDs counts a process's open descriptors.
func procFDs(t *testing.T, pid int) int {
	t.Helper()
	n, err := testkit.CountFDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// procCPU is a process's user+system CPU time.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	d, err := testkit.CPUTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// setFileLimit sets a running process's open-file limit.
func setFileLimit(t *testing.T, pid int, n uint64) {
	t.Helper()
	lim := unix.Rlimit{Cur: n, Max: n}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Skipf("prlimit: %v", err)
	}
}

// holdConns opens n connections to addr that send nothing.
func holdConns(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(cs), err)
		}
		cs = append(cs, c)
	}
	return cs
}

// With descriptors exhausted, accept fails; ferry backs off and logs
// instead of spinning, and serves again once descriptors are free.
func TestAcceptBacksOffOnEMFILE(t *testing.T) {
	target := newEchoTarget(t)
	p := startFerry(t, limitsConfig(`handshake_timeout = "30s"`, "max_connections = 0\nmax_client_handshakes = 0"), nil)
	pid := p.cmd.Process.Pid
	setFileLimit(t, pid, uint64(procFDs(t, pid)+8))

	held := holdConns(t, p.addr, 40)
	p.waitLine(t, "accept failed", nil)
	// While out of descriptors: a spinning loop would burn a whole second
	// of CPU per second; backing off costs next to nothing.
	cpu0 := procCPU(t, pid)
	time.Sleep(2 * time.Second)
	if used := procCPU(t, pid) - cpu0; used > 500*time.Millisecond {
		t.Fatalf("ferry used %v of CPU in 2s while out of descriptors: the accept loop spins", used)
	}
	fails := p.lines("accept failed", nil)
	if len(fails) > 40 {
		t.Fatalf("%d \"accept failed\" lines: no back-off", len(fails))
	}
	if _, ok := fails[0].num("retry_in"); !ok {
		t.Fatalf("accept failed without retry_in: %v", fails[0])
	}

	for _, c := range held {
		c.Close()
	}
	// Served again once the held connections are gone.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := testkit.DialCONNECT(ctx, p.addr, target.Addr)
		cancel()
		if err == nil {
			err = echo(c, "after EMFILE\n")
			c.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not served after descriptors were freed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The default [limits] max_connections follows the open-file limit, so
// ferry refuses connections before accept runs out of descriptors.
func TestAutoMaxConnectionsRefusesBeforeEMFILE(t *testing.T) {
	p := startFerry(t, limitsConfig(`handshake_timeout = "30s"`, "max_client_handshakes = 0"), nil)
	started := p.waitLine(t, "ferry started", nil)
	if n, _ := started.num("max_connections"); n <= 0 {
		t.Fatalf("ferry started without a derived max_connections: %v", started)
	}
	pid := p.cmd.Process.Pid
	setFileLimit(t, pid, 64) // (64 - 16) / 6 = 8 connections
	p.send(t, unix.SIGHUP)
	p.waitLine(t, "configuration reloaded", nil)

	holdConns(t, p.addr, 40)
	line := p.waitLine(t, "connection refused: server at [limits] max_connections", nil)
	if n, _ := line.num("limit"); n != 8 {
		t.Fatalf("limit %d, want 8 (64 descriptors less a quarter, 6 a connection)", n)
	}
	if fails := p.lines("accept failed", nil); len(fails) > 0 {
		t.Fatalf("accept failed %d times: the cap should have refused first", len(fails))
	}
	if fds := procFDs(t, pid); fds >= 64 {
		t.Fatalf("%d descriptors open, at the limit", fds)
	}
}
