package relay

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// TunnelFDs is the most descriptors one tunnel holds: its two sockets
// and, on the splice path, one pipe (two descriptors) per direction while
// a chunk is in flight. A client that does not read keeps the pipe of
// the way back for as long as it does not, so a server that budgets
// descriptors per connection counts this many.
const TunnelFDs = 6

// Defaults of the shared pipe pool.
const (
	// maxFreePipes bounds the empty pipes kept between chunks; one put
	// back beyond it is closed at once.
	maxFreePipes = 128
	// pipeIdle is how long an empty pipe is kept: one unused for at
	// least half of it is closed by the next sweep, so none is kept
	// longer than pipeIdle.
	pipeIdle = 10 * time.Second
)

// pipes holds the empty pipes of all channels between chunks. The pipes
// open at any time are at most those in use at the busiest moment (a pipe
// is made only when none is free), and those in use are at most one per
// spliced direction; so idle pipes never take descriptors a budget of
// TunnelFDs per connection did not count, and they are closed soon after
// the traffic that needed them ends.
var pipes = newPipePool(maxFreePipes, pipeIdle)

// pipePool is a bounded pool of empty pipes. Unlike a sync.Pool, whose
// contents live until a garbage collection (and whose pipes then wait for
// their finalizers), it closes pipes nobody used for a while, with one
// timer for the whole pool, armed only while it holds pipes.
type pipePool struct {
	max   int
	sweep time.Duration // between sweeps: half the idle time

	mu    sync.Mutex
	free  []*pipe // oldest first: get and put work at the end
	epoch uint64  // sweeps so far; a put stamps the pipe with it
	timer *time.Timer
	armed bool

	open atomic.Int64 // pipes open, free or in use
	made atomic.Int64 // pipes made so far
}

func newPipePool(max int, idle time.Duration) *pipePool {
	return &pipePool{max: max, sweep: idle / 2}
}

type pipe struct {
	r, w  int
	epoch uint64 // the pool's epoch when the pipe was last put back
	pool  *pipePool
}

// get returns an empty pipe, a new one when none is free; nil when no
// pipe can be made (out of descriptors).
func (pp *pipePool) get() *pipe {
	pp.mu.Lock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free[n-1] = nil
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p
	}
	pp.mu.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil
	}
	// A pipe as large as a splice call asks for halves the calls per
	// byte; smaller (the limit is a sysctl) still works.
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, maxSpliceChunk)
	p := &pipe{r: fds[0], w: fds[1], pool: pp}
	pp.open.Add(1)
	pp.made.Add(1)
	// A pipe that is lost rather than put back or closed (a bug) is still
	// closed, by the collector.
	runtime.SetFinalizer(p, (*pipe).close)
	return p
}

// put gives back an empty pipe; it is closed if the pool is full.
func (pp *pipePool) put(p *pipe) {
	pp.mu.Lock()
	if len(pp.free) >= pp.max {
		pp.mu.Unlock()
		p.close()
		return
	}
	p.epoch = pp.epoch
	pp.free = append(pp.free, p)
	if !pp.armed {
		pp.armed = true
		if pp.timer == nil {
			pp.timer = time.AfterFunc(pp.sweep, pp.sweepIdle)
		} else {
			pp.timer.Reset(pp.sweep)
		}
	}
	pp.mu.Unlock()
}

// sweepIdle runs from the timer: it closes the pipes not put back since
// before the previous sweep (unused for at least one sweep interval, at
// most two), and re-arms while pipes are left.
func (pp *pipePool) sweepIdle() {
	pp.mu.Lock()
	// Pipes are stamped in the order they are put back, so the stale
	// ones are at the front.
	n := 0
	for n < len(pp.free) && pp.free[n].epoch < pp.epoch {
		n++
	}
	stale := make([]*pipe, n)
	copy(stale, pp.free[:n])
	rest := copy(pp.free, pp.free[n:])
	clear(pp.free[rest:])
	pp.free = pp.free[:rest]
	pp.epoch++
	if pp.armed = len(pp.free) > 0; pp.armed {
		pp.timer.Reset(pp.sweep)
	}
	pp.mu.Unlock()
	for _, p := range stale {
		p.close()
	}
}

// Open is the number of pipes open, free or in use.
func (pp *pipePool) Open() int64 { return pp.open.Load() }

// close closes a pipe that is not in the pool.
func (p *pipe) close() {
	runtime.SetFinalizer(p, nil)
	unix.Close(p.r)
	unix.Close(p.w)
	p.pool.open.Add(-1)
}

// SplicePipes is the number of pipes the splice path holds open, in use
// or kept empty for the next chunk.
func SplicePipes() int64 { return pipes.Open() }
