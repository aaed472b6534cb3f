//go:build linux

package test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

// fleetLease is the lease time of the fleet tests: the shortest [state]
// accepts, so that a dead ferry's slots free quickly.
const fleetLease = 3 * time.Second

// fleetConfig is pluginConfig's listener with the plugin table given,
// over the Redis at url with on_error given.
func fleetConfig(table, url, onError string) func(addr string) string {
	return pluginConfig(fmt.Sprintf("%s\n\n[state]\nurl = %q\non_error = %q\nlease = %q\n", table, url, onError, fleetLease))
}

// openTunnels opens n CONNECT tunnels to target through proxy, checks
// each echoes, and closes them at cleanup.
func openTunnels(t *testing.T, proxy, target string, n int) []*testkit.BufConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*testkit.BufConn
	for i := range n {
		c, err := testkit.DialCONNECT(ctx, proxy, target)
		if err != nil {
			t.Fatalf("tunnel %d through %s: %v", i+1, proxy, err)
		}
		t.Cleanup(func() { c.Close() })
		if err := echo(c, "hello\n"); err != nil {
			t.Fatalf("tunnel %d through %s: %v", i+1, proxy, err)
		}
		out = append(out, c)
	}
	return out
}

// dialUntil opens a CONNECT tunnel to target through proxy, trying every
// 100 ms until one is admitted, for within at most; the tunnel stays
// open until cleanup. It returns how long that took.
func dialUntil(t *testing.T, proxy, target string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < within {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var c *testkit.BufConn
		c, err = testkit.DialCONNECT(ctx, proxy, target)
		cancel()
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no tunnel through %s within %v: %v", proxy, within, err)
	return 0
}

// TestFleetConnlimit: two ferrys on one Redis hold per_client = 10
// together: five tunnels through each, and the eleventh is refused by
// either, also after a reload. Once one ferry is killed (SIGKILL: it releases nothing), its
// five slots free within the lease time, and not the others'.
func TestFleetConnlimit(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t)
	target := newEchoTarget(t)
	cfg := fleetConfig("type = \"connlimit\"\nper_client = 10", r.URL(), "fail_open")
	f1, f2 := startFerry(t, cfg, nil), startFerry(t, cfg, nil)
	openTunnels(t, f1.addr, target.Addr, 5)
	openTunnels(t, f2.addr, target.Addr, 5)
	for _, f := range []*proc{f1, f2} {
		if got := ask(t, f.addr, target.Addr, askCONNECT); got != "403" {
			t.Errorf("eleventh tunnel through %s: got %s, want 403", f.addr, got)
		}
	}
	f2.waitLine(t, "connection limit reached", nil)
	// A reload keeps the store, and the open channels' leases with it.
	f2.send(t, syscall.SIGHUP)
	f2.waitLine(t, "configuration reloaded", nil)
	if got := ask(t, f2.addr, target.Addr, askCONNECT); got != "403" {
		t.Errorf("eleventh tunnel after a reload: got %s, want 403", got)
	}

	if err := f1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	f1.wait(t)
	// Its five leases expire one by one (each at its last refresh or
	// its acquisition, plus the lease): take each as it frees.
	killed := time.Now()
	for range 5 {
		dialUntil(t, f2.addr, target.Addr, fleetLease+3*time.Second-time.Since(killed))
	}
	freed := time.Since(killed)
	t.Logf("the killed ferry's five slots all free %v after SIGKILL (lease %v)", freed, fleetLease)
	if freed > fleetLease+time.Second {
		t.Errorf("the killed ferry's slots freed %v after SIGKILL, want within the lease (%v)", freed, fleetLease)
	}
	// f2's own five and the five new ones are held.
	if got := ask(t, f2.addr, target.Addr, askCONNECT); got != "403" {
		t.Errorf("after the lease expired: eleventh tunnel got %s, want 403", got)
	}
}

// TestFleetStoreDown: while Redis is down, a fail_open ferry admits
// tunnels (on its own count) and logs that the store is unreachable; a
// fail_closed one refuses them. Once Redis is back both share the limit
// again, without a restart.
func TestFleetStoreDown(t *testing.T) {
	t.Parallel()
	r := testkit.StartRedis(t)
	target := newEchoTarget(t)
	table := "type = \"connlimit\"\nper_client = 2"
	open := startFerry(t, fleetConfig(table, r.URL(), "fail_open"), nil)
	closed := startFerry(t, fleetConfig(table, r.URL(), "fail_closed"), nil)

	r.Stop()
	openTunnels(t, open.addr, target.Addr, 1)
	open.waitLine(t, "state store unreachable: counting in memory until it is back", nil)
	if got := ask(t, closed.addr, target.Addr, askCONNECT); got != "403" {
		t.Errorf("fail_closed, Redis down: got %s, want 403", got)
	}

	r.Start()
	t.Logf("fail_closed admits %v after Redis is back", dialUntil(t, closed.addr, target.Addr, 5*time.Second))
	openTunnels(t, open.addr, target.Addr, 1)
	if got := ask(t, closed.addr, target.Addr, askCONNECT); got != "403" {
		t.Errorf("Redis back: third tunnel got %s, want 403 (the limit shared again)", got)
	}
	for _, f := range []*proc{open, closed} {
		if out := f.stderr.String(); strings.Contains(out, "redis: ") {
			t.Errorf("the Redis client's own lines in ferry's log, want only ferry's throttled warning:\n%s", out)
		}
	}
}

// TestFleetRatelimit: a client limit of 1 MiB/s down, shared by two
// ferrys on one Redis, holds the two ferrys' total at 1 MiB/s within
// 10% (each ferry alone would let 1 MiB/s through: 2 MiB/s in all).
func TestFleetRatelimit(t *testing.T) {
	t.Parallel()
	const size, rate, burst = 2 << 20, 1 << 20, 64 << 10
	r := testkit.StartRedis(t)
	cfg := fleetConfig(`type = "ratelimit"
client = { down = "1MiB", burst = "64KiB" }`, r.URL(), "fail_open")
	fs := []*proc{startFerry(t, cfg, nil), startFerry(t, cfg, nil)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var conns []*testkit.BufConn
	var ends []<-chan bulkEnd
	for _, f := range fs {
		target, end := newBulkTarget(t, size, 9, false)
		c, err := testkit.DialCONNECT(ctx, f.addr, target.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		deadlineAfter(c, time.Minute)
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		conns, ends = append(conns, c), append(ends, end)
	}
	start := time.Now()
	got := make([]digest, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { got[i], errs[i] = receive(c) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i := range conns {
		if end := waitEnd(ctx, t, ends[i]); errs[i] != nil || got[i] != end.sent || got[i].n != size {
			t.Errorf("ferry %d: got %v (%v), target sent %v", i+1, got[i], errs[i], end.sent)
		}
	}
	total := float64(2*size - burst)
	bps := total / elapsed.Seconds()
	t.Logf("2 x %d bytes through two ferrys in %v: %.0f B/s, shared limit %d B/s", size, elapsed, bps, rate)
	if bps < rate*0.9 || bps > rate*1.1 {
		t.Errorf("total rate %.0f B/s, want %d within 10%%", bps, rate)
	}
}
