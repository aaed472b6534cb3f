package relay

import (
	"context"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// openPipes counts the process's pipe descriptors.
func openPipes(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, e := range entries {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// TestIdleTunnelsHoldNoPipes: tunnels on the splice path that moved data
// both ways and then went idle hold no pipe; io.Copy's splice would keep
// one per direction, two descriptors each, for the tunnel's life.
func TestIdleTunnelsHoldNoPipes(t *testing.T) {
	const tunnels = 40
	before := openPipes(t)
	var done []<-chan Result
	var clients []io.Closer
	for range tunnels {
		client, target, ch := setup(t)
		done = append(done, runAsync(ch, context.Background()))
		buf := make([]byte, 5)
		for _, dir := range [][2]io.ReadWriter{{client, target}, {target, client}} {
			if _, err := dir[0].Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(dir[1], buf); err != nil || string(buf) != "hello" {
				t.Fatalf("relayed %q, %v", buf, err)
			}
		}
		clients = append(clients, client, target)
	}
	// Each tunnel spliced both ways; now all are idle, blocked waiting.
	// Pipes the pool dropped (the race detector makes it drop some) close
	// when the collector finalizes them.
	got := 0
	for range 50 {
		runtime.GC()
		if got = openPipes(t) - before; got < tunnels {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got >= tunnels {
		t.Fatalf("%d idle tunnels hold %d pipe descriptors; want only the few pooled ones", tunnels, got)
	}
	for _, c := range clients {
		c.Close()
	}
	for _, d := range done {
		<-d
	}
}
