// Package memtrim gives back to the operating system the memory a burst
// of work left behind, once the process goes quiet.
//
// A proxy's load comes in bursts: thousands of tunnels open at once, then
// sit idle for minutes. The Go runtime keeps the heap it grew for the
// burst (garbage, freed goroutine stacks, the headroom GOGC allows) until
// its next collection, which an idle process reaches only by the forced
// one every two minutes, and its background scavenger returns pages
// slowly. Meanwhile the process's RSS, what operators watch and what the
// kernel accounts, counts all of it: measured with 3,000 idle tunnels,
// about 17 MiB over what they use. A Trimmer watches the allocation rate
// and, after a burst, at the first quiet tick collects and releases the
// free pages at once (runtime/debug.FreeOSMemory), which is what C
// proxies do with malloc_trim or their pool trimming.
//
//	t := memtrim.New()
//	go t.Run(ctx) // returns when ctx ends
//
// It never trims a busy process (the collection would cost CPU where it
// is needed and the memory would be used again at once), trims at most
// once per burst, and at most once per MinGap. It does not tune GOGC or
// set a memory limit: steady-state memory is the runtime's business.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Trimmer decides when to trim; the zero value is not usable, use New.
type Trimmer struct {
	// Every is how often the allocation rate is looked at.
	Every time.Duration
	// Quiet is the most a tick may allocate and still be quiet.
	Quiet uint64
	// Burst is how much must have been allocated since the last trim for
	// another to be worth a collection.
	Burst uint64
	// MinGap is the least time between two trims.
	MinGap time.Duration

	trim   func()        // debug.FreeOSMemory; tests count instead
	allocs func() uint64 // bytes allocated since the process started

	last      uint64    // allocs at the last tick
	sinceTrim uint64    // allocated since the last trim
	trimmed   time.Time // when the last trim ran
}

// New returns a Trimmer that looks twice a second, calls half a second
// with less than 128 KiB allocated quiet, and trims after bursts of 8 MiB,
// at most once every 10 s: within a second of the end of a burst.
func New() *Trimmer {
	t := &Trimmer{Every: time.Second / 2, Quiet: 128 << 10, Burst: 8 << 20, MinGap: 10 * time.Second,
		trim: debug.FreeOSMemory, allocs: heapAllocs()}
	t.last = t.allocs()
	return t
}

// heapAllocs reads the runtime's count of bytes allocated, which, unlike
// runtime.ReadMemStats, does not stop the world.
func heapAllocs() func() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	return func() uint64 {
		metrics.Read(s)
		if s[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[0].Value.Uint64()
	}
}

// Run ticks until ctx ends.
func (t *Trimmer) Run(ctx context.Context) {
	tk := time.NewTicker(t.Every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			if t.tick(t.allocs(), now) {
				t.trim()
			}
		}
	}
}

// tick takes the allocation count at now and reports whether to trim.
func (t *Trimmer) tick(allocs uint64, now time.Time) bool {
	delta := allocs - t.last
	t.last = allocs
	t.sinceTrim += delta
	if delta > t.Quiet || t.sinceTrim < t.Burst || now.Sub(t.trimmed) < t.MinGap {
		return false
	}
	t.sinceTrim, t.trimmed = 0, now
	return true
}
