package memtrim

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestTick: a trim comes at the first quiet tick after a burst, never
// while busy, once per burst, and not twice within MinGap.
func TestTick(t *testing.T) {
	const mib = 1 << 20
	start := time.Unix(1000, 0)
	tests := []struct {
		name  string
		ticks []uint64 // bytes allocated during each tick, a second apart
		want  []int    // ticks (0-based) that trim
	}{
		{name: "idle", ticks: []uint64{0, 0, 0, 0}},
		{name: "small allocations", ticks: []uint64{200 << 10, 100 << 10, 0, 0, 0}},
		{name: "burst then quiet", ticks: []uint64{20 * mib, 0, 0, 0}, want: []int{1}},
		{name: "busy", ticks: []uint64{20 * mib, 20 * mib, 20 * mib, mib}},
		{name: "busy then quiet", ticks: []uint64{20 * mib, 20 * mib, 0, 0}, want: []int{2}},
		{name: "burst built from ticks", ticks: []uint64{3 * mib, 3 * mib, 3 * mib, 0}, want: []int{3}},
		{name: "second burst within the gap", ticks: []uint64{20 * mib, 0, 20 * mib, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, want: []int{1, 11}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New()
			tr.last = 0
			var total uint64
			var got []int
			for i, d := range tt.ticks {
				total += d
				if tr.tick(total, start.Add(time.Duration(i+1)*time.Second)) {
					got = append(got, i)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("trims at ticks %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("trims at ticks %v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestRun: Run trims after a burst on its own ticker and returns when
// its context ends.
func TestRun(t *testing.T) {
	var allocs atomic.Uint64
	trimmed := make(chan struct{}, 10)
	tr := New()
	tr.Every = 5 * time.Millisecond
	tr.allocs, tr.last = allocs.Load, 0
	tr.trim = func() { trimmed <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	allocs.Add(64 << 20)
	select {
	case <-trimmed:
	case <-time.After(5 * time.Second):
		t.Fatal("no trim after a burst")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}
