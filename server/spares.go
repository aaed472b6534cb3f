package server

import (
	"sync/atomic"
	"time"
)

// spares lets a goroutine that has finished its work (a connection, or
// a channel's copy) take the next piece of work instead of exiting while
// a new goroutine starts. A new goroutine starts with a small stack and
// grows it on the way through a handshake, a dial or a channel's end
// (runtime.newstack was 7% of ferry's CPU per new tunnel); a spare has
// grown it already. A tunnel's goroutines are spares again once it ends
// or parks. Spares are bounded: at most maxSpares wait at once, each for
// at most spareIdle, and all leave once close is called. A nil *spares
// runs each piece of work on a new goroutine.
type spares struct {
	work chan func() // unbuffered: a hand-off succeeds only if a spare waits
	done chan struct{}
	idle atomic.Int32
	// started counts goroutines started, for tests.
	started atomic.Int64
	// run is the run method as a func value made once, for
	// relay.Channel.Go (a method value per channel would allocate).
	runFn func(func())
}

const (
	maxSpares = 64
	spareIdle = 2 * time.Second
)

func newSpares() *spares {
	p := &spares{work: make(chan func()), done: make(chan struct{})}
	p.runFn = p.run
	return p
}

// run runs f on a waiting spare, or on a new goroutine.
func (p *spares) run(f func()) {
	if p == nil {
		go f()
		return
	}
	select {
	case p.work <- f:
	default:
		p.started.Add(1)
		go p.loop(f)
	}
}

// loop runs f, then more work while it is wanted as a spare. Named so
// that goroutine dumps say what the goroutine is.
func (p *spares) loop(f func()) {
	var t *time.Timer
	for f != nil {
		f()
		f = p.wait(&t)
	}
	if t != nil {
		t.Stop()
	}
}

// wait returns the next work, or nil when the goroutine is not wanted:
// enough spares wait already, none came for spareIdle, or close was
// called. *t is the goroutine's timer, made once.
func (p *spares) wait(t **time.Timer) func() {
	defer p.idle.Add(-1)
	if p.idle.Add(1) > maxSpares {
		return nil
	}
	if *t == nil {
		*t = time.NewTimer(spareIdle)
	} else {
		(*t).Reset(spareIdle)
	}
	select {
	case f := <-p.work:
		return f
	case <-(*t).C:
	case <-p.done:
	}
	return nil
}

// goFunc is what relay.Channel.Go takes: nil for a nil *spares.
func (p *spares) goFunc() func(func()) {
	if p == nil {
		return nil
	}
	return p.runFn
}

// close sends the waiting spares away; work run after it gets a
// goroutine of its own.
func (p *spares) close() {
	if p != nil {
		close(p.done)
	}
}
