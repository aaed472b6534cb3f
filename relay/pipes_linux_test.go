package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pipeInodes is the set of pipe inodes among the process's descriptors,
// "pipe:[123]" -> count of descriptors.
func pipeInodes(t *testing.T) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	m := map[string]int{}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && len(l) > 5 && l[:5] == "pipe:" {
			m[l]++
		}
	}
	return m
}

// pipeLink is the /proc name of a pipe's read end.
func pipeLink(t *testing.T, p *pipe) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", p.r))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// openOf counts the descriptors (two per pipe) of links still open.
func openOf(t *testing.T, links []string) int {
	t.Helper()
	now := pipeInodes(t)
	n := 0
	for _, l := range links {
		n += now[l]
	}
	return n
}

// getN takes n pipes from pp and returns them with their /proc names.
func getN(t *testing.T, pp *pipePool, n int) ([]*pipe, []string) {
	t.Helper()
	var ps []*pipe
	var links []string
	for range n {
		p := pp.get()
		if p == nil {
			t.Fatal("no pipe")
		}
		ps = append(ps, p)
		links = append(links, pipeLink(t, p))
	}
	return ps, links
}

func TestPipePool(t *testing.T) {
	const max = 4
	tests := []struct {
		name string
		// use takes and gives back pipes, and says how many of them
		// should be open after it, and after sweeps more sweeps.
		take, sweeps int
		// touch: take and give back one pipe between the sweeps.
		touch    bool
		wantOpen int
		wantLeft int
	}{
		// The pool keeps at most max empty pipes: more are closed at once.
		{name: "bounded", take: 10, sweeps: 0, wantOpen: max, wantLeft: max},
		// One sweep closes nothing just put back: idle for less than a
		// sweep interval.
		{name: "one sweep keeps fresh pipes", take: 3, sweeps: 1, wantOpen: 3, wantLeft: 3},
		// Two sweeps close pipes nobody took in between.
		{name: "two sweeps close idle pipes", take: 3, sweeps: 2, wantOpen: 0, wantLeft: 0},
		// A pipe taken between sweeps (the most recent, at the end) is
		// kept; the others go.
		{name: "a used pipe stays", take: 3, sweeps: 2, touch: true, wantOpen: 1, wantLeft: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// An hour between sweeps: the test runs them itself.
			pp := newPipePool(max, 2*time.Hour)
			t.Cleanup(func() { pp.timer.Stop() })
			ps, links := getN(t, pp, tt.take)
			if got := openOf(t, links); got != 2*tt.take {
				t.Fatalf("%d descriptors open for %d pipes in use, want %d", got, tt.take, 2*tt.take)
			}
			for _, p := range ps {
				pp.put(p)
			}
			for i := range tt.sweeps {
				if tt.touch && i == 1 {
					pp.put(pp.get())
				}
				pp.sweepIdle()
			}
			if got := openOf(t, links); got != 2*tt.wantOpen {
				t.Errorf("%d descriptors open, want %d (%d pipes)", got, 2*tt.wantOpen, tt.wantOpen)
			}
			if got := pp.Open(); got != int64(tt.wantOpen) {
				t.Errorf("Open() = %d, want %d", got, tt.wantOpen)
			}
			if got := len(pp.free); got != tt.wantLeft {
				t.Errorf("%d free pipes, want %d", got, tt.wantLeft)
			}
			for pp.Open() > 0 { // bounded: each round closes the free ones
				pp.sweepIdle()
			}
		})
	}
}

// The pool's own timer closes pipes left idle, with no garbage
// collection, and stops once the pool is empty.
func TestPipePoolTimerClosesIdlePipes(t *testing.T) {
	const idle = 100 * time.Millisecond
	pp := newPipePool(8, idle)
	ps, links := getN(t, pp, 5)
	for _, p := range ps {
		pp.put(p)
	}
	if got := openOf(t, links); got != 10 {
		t.Fatalf("%d descriptors open right after put, want 10: the pool keeps fresh pipes", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for openOf(t, links) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors of idle pipes still open after 5s (idle time %v)", openOf(t, links), idle)
		}
		time.Sleep(idle / 4)
	}
	pp.mu.Lock()
	armed := pp.armed
	pp.mu.Unlock()
	if armed || pp.Open() != 0 {
		t.Fatalf("empty pool: timer armed %v, %d pipes open; want disarmed and none", armed, pp.Open())
	}
	// Used again, it arms again.
	pp.put(pp.get())
	pp.mu.Lock()
	armed = pp.armed
	pp.mu.Unlock()
	if !armed {
		t.Fatal("timer not armed after a put")
	}
	for pp.Open() > 0 && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(idle / 4)
	}
}

// A bulk transfer through a spliced channel takes pipes from the shared
// pool; once the channel is gone they are closed within the idle time,
// without a garbage collection. A sync.Pool kept them until one.
func TestSplicePipesClosedAfterIdle(t *testing.T) {
	const idle = 200 * time.Millisecond
	saved := pipes
	pipes = newPipePool(maxFreePipes, idle)
	t.Cleanup(func() { pipes = saved })
	before := pipeInodes(t)

	client, target, ch := setup(t)
	done := runAsync(ch, context.Background())
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	go func() {
		client.Write(payload)
		client.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(target)
	if err != nil || len(got) != len(payload) {
		t.Fatalf("target got %d bytes, %v; want %d", len(got), err, len(payload))
	}
	if pipes.made.Load() == 0 {
		t.Fatal("the transfer used no pipe: not the splice path")
	}
	target.Close()
	client.Close()
	<-done

	deadline := time.Now().Add(10 * idle)
	for {
		extra := 0
		for l, n := range pipeInodes(t) {
			if before[l] == 0 {
				extra += n
			}
		}
		if extra == 0 && pipes.Open() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pipe descriptors (%d pipes) still open %v after the channel ended (idle time %v)",
				extra, pipes.Open(), 10*idle, idle)
		}
		time.Sleep(idle / 4)
	}
}
