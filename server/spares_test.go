package server

import (
	"sync"
	"testing"
	"time"
)

// waitIdle waits until n spares wait in p.
func waitIdle(t *testing.T, p *spares, n int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.idle.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("idle spares: got %d, want %d", p.idle.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSpares(t *testing.T) {
	tests := []struct {
		name     string
		workers  int   // pieces of work running at once, then released
		wantIdle int32 // spares waiting afterwards
	}{
		{"one", 1, 1},
		{"some", 8, 8},
		{"bounded", maxSpares + 16, maxSpares},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newSpares()
			release := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(tt.workers)
			for range tt.workers {
				p.run(func() { <-release; wg.Done() })
			}
			close(release)
			wg.Wait()
			waitIdle(t, p, tt.wantIdle)

			// Later work runs on a spare. A spare counts itself idle
			// just before it waits, so a hand-off may miss it: try a
			// few times.
			reused := false
			for range 100 {
				before := p.started.Load()
				done := make(chan struct{})
				p.run(func() { close(done) })
				<-done
				if p.started.Load() == before {
					reused = true
					break
				}
				time.Sleep(time.Millisecond)
			}
			if !reused {
				t.Error("work never ran on a spare")
			}

			// close sends every spare away; work still runs after it.
			p.close()
			waitIdle(t, p, 0)
			done := make(chan struct{})
			p.run(func() { close(done) })
			<-done
		})
	}
}

func TestSparesNil(t *testing.T) {
	var p *spares
	if p.goFunc() != nil {
		t.Fatal("goFunc of a nil *spares: got a func, want nil")
	}
	done := make(chan struct{})
	p.run(func() { close(done) })
	<-done
	p.close()
}
