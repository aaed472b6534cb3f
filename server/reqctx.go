package server

import (
	"context"
	"sync"
	"time"
)

// requestCtx is the context a plain HTTP request's session carries: it
// has parent's values and deadline, and is done once the exchange ends
// or parent is.
//
// A context.WithCancel per request cost two allocations and a place
// among hardCtx's children, taken and given back under that context's
// lock, on every request of every keep-alive connection; yet only a hook
// that waits (a rate limit) ever asks for Done. So the cancellable
// context is made on the first Done, and until then Err asks parent.
// Unlike relay's channelCtx, which the server ends itself at a hard
// shutdown, this one follows parent once it exists: an exchange has no
// such registry.
type requestCtx struct {
	parent context.Context
	mu     sync.Mutex
	ctx    context.Context // made by the first Done before end
	cancel context.CancelFunc
	// endErr is Err once end ran with no ctx made: what a cancelled
	// WithCancel would say then, so Err never changes once set.
	endErr error
	done   chan struct{} // closed; Done's answer after such an end
}

var _ context.Context = (*requestCtx)(nil)

func (x *requestCtx) Deadline() (time.Time, bool) { return x.parent.Deadline() }

func (x *requestCtx) Value(key any) any { return x.parent.Value(key) }

// Done returns a channel closed once the exchange or parent has ended.
func (x *requestCtx) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case x.ctx != nil:
	case x.endErr != nil:
		if x.done == nil {
			x.done = make(chan struct{})
			close(x.done)
		}
		return x.done
	default:
		x.ctx, x.cancel = context.WithCancel(x.parent)
	}
	return x.ctx.Done()
}

// Err is nil until the exchange or parent has ended, then why, as a
// context.WithCancel of parent would say.
func (x *requestCtx) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case x.ctx != nil:
		return x.ctx.Err()
	case x.endErr != nil:
		return x.endErr
	}
	return x.parent.Err()
}

// end ends the context; it is idempotent.
func (x *requestCtx) end() {
	x.mu.Lock()
	defer x.mu.Unlock()
	switch {
	case x.cancel != nil:
		x.cancel()
	case x.endErr == nil:
		x.endErr = x.parent.Err()
		if x.endErr == nil {
			x.endErr = context.Canceled
		}
	}
}
