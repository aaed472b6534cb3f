//go:build linux

package test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

// TestReloadSIGHUP: 50 transfers run while SIGHUP applies a config that
// adds a plugin and a listener and changes a route. Every transfer
// completes intact, a connection loop on the unchanged listener sees no
// refusal, new connections get the new plugin and route, the added
// listener serves; then a broken file is refused with its position logged
// and nothing changes.
func TestReloadSIGHUP(t *testing.T) {
	t.Parallel()
	const transfers, size = 50, 1 << 20
	// The target streams size bytes in slices so the transfers outlast
	// the reload.
	target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		w := &pacedWriter{c: c, slice: 64 << 10, pause: 20 * time.Millisecond}
		send(w, 7, size)
		c.CloseWrite()
	})
	denied := testkit.NewTCPTarget(t, func(c *net.TCPConn) {})
	// routed is rejected by a route before the reload, dialed after it.
	routed := testkit.NewTCPTarget(t, func(c *net.TCPConn) {})
	_, routedPort, _ := net.SplitHostPort(routed.Addr)
	added := freeAddr(t)
	path := filepath.Join(t.TempDir(), "ferry.toml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := func(addr string) string {
		return fmt.Sprintf(`[log]
format = "json"
[[listener]]
name = "main"
listen = %q
plugins = ["log"]
[[plugin]]
name = "log"
[[route]]
port = [%s]
reject = true
`, addr, routedPort)
	}
	// Our own file (not startFerry's), so the test can rewrite it.
	f := startFerry(t, nil, func(addr string) []string {
		write(base(addr))
		return []string{"-c", path}
	})
	_, deniedPort, _ := net.SplitHostPort(denied.Addr)
	ctx0, cancel0 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel0()
	if _, err := testkit.DialCONNECT(ctx0, f.addr, routed.Addr); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("CONNECT to the rejected route before reload: got %v, want 403", err)
	}

	// Transfers under way.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := func() digest { d, _ := send(discard{}, 7, size); return d }()
	var wg sync.WaitGroup
	errs := make(chan error, transfers)
	for i := 0; i < transfers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := testkit.DialCONNECT(ctx, f.addr, target.Addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(45 * time.Second))
			got, err := receive(c)
			if err != nil || got != want {
				errs <- fmt.Errorf("transfer: got %v (%v), want %v", got, err, want)
			}
		}()
	}

	// Connection attempts on the unchanged listener throughout.
	var refused, tried atomic.Int64
	stop := make(chan struct{})
	var loop sync.WaitGroup
	loop.Add(1)
	go func() {
		defer loop.Done()
		for i := 0; i < 10000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, err := net.DialTimeout("tcp", f.addr, time.Second)
			tried.Add(1)
			if err != nil {
				refused.Add(1)
				continue
			}
			c.Close()
			time.Sleep(time.Millisecond)
		}
	}()

	time.Sleep(100 * time.Millisecond)
	write(fmt.Sprintf(`[log]
format = "json"
[[listener]]
name = "main"
listen = %q
plugins = ["acl", "log"]
[[listener]]
name = "added"
listen = %q
plugins = ["log"]
[[plugin]]
name = "acl"
default = "allow"
rule = [{ action = "deny", port = [%s] }]
[[plugin]]
name = "log"
[[route]]
port = [%s]
upstream = "direct"
`, f.addr, added, deniedPort, routedPort))
	f.send(t, syscall.SIGHUP)
	f.waitLine(t, "configuration reloaded", nil)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	loop.Wait()
	if refused.Load() != 0 {
		t.Errorf("%d of %d connection attempts refused around the reload", refused.Load(), tried.Load())
	}

	// New connections get the acl; the added listener serves.
	if _, err := testkit.DialCONNECT(ctx, f.addr, denied.Addr); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("CONNECT to the denied port after reload: got %v, want 403", err)
	}
	if c, err := testkit.DialCONNECT(ctx, f.addr, routed.Addr); err != nil {
		t.Errorf("CONNECT to the changed route after reload: %v", err)
	} else {
		c.Close()
	}
	if c, err := testkit.DialCONNECT(ctx, added, target.Addr); err != nil {
		t.Errorf("CONNECT on the added listener: %v", err)
	} else {
		c.Close()
	}

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A broken file is refused with its position; the acl stays.
	write("[[listener]]\nlisen = \"x\"\n")
	f.send(t, syscall.SIGHUP)
	line := f.waitLine(t, "reload failed: the running configuration stays", nil)
	if e := line.str("error"); !strings.Contains(e, path+":2:1: listener[0].lisen: unknown key") {
		t.Errorf("reload error: got %q, want the file position and key", e)
	}
	if _, err := testkit.DialCONNECT(ctx, f.addr, denied.Addr); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("after a failed reload: got %v, want the acl's 403", err)
	}
}

// pacedWriter writes in slices with a pause between them.
type pacedWriter struct {
	c     net.Conn
	slice int
	pause time.Duration
}

func (w *pacedWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), w.slice)
		m, err := w.c.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
		time.Sleep(w.pause)
	}
	return n, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
