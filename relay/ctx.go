package relay

import (
	"context"
	"time"

	"ferry/plugins"
)

// channelCtx is the session's context while a channel runs: it carries
// the values and deadline of the context Start was given and is done
// once the channel ends, which it does when that context is.
//
// It is the Channel itself, converted, rather than a context.WithCancel:
// a cancelCtx costs an allocation and an entry among the server
// context's children for each of many idle tunnels, and its Done channel
// is seldom asked for (a rate limit's wait does), so it is made on first
// use. A context derived from it (WithTimeout) watches it from a
// goroutine of its own, as the context package does for contexts it does
// not know; no hook derives one while the channel runs.
type channelCtx Channel

var _ context.Context = (*channelCtx)(nil)

func (x *channelCtx) Deadline() (time.Time, bool) { return x.parent.Deadline() }

func (x *channelCtx) Value(key any) any { return x.parent.Value(key) }

// Done returns a channel that is closed once the channel has ended.
func (x *channelCtx) Done() <-chan struct{} {
	x.ctxMu.Lock()
	defer x.ctxMu.Unlock()
	if x.ctxDone == nil {
		x.ctxDone = make(chan struct{})
		if x.ctxEnded {
			close(x.ctxDone)
		}
	}
	return x.ctxDone
}

// Err is context.Canceled once the channel has ended, as a cancelled
// context.WithCancel would say.
func (x *channelCtx) Err() error {
	x.ctxMu.Lock()
	defer x.ctxMu.Unlock()
	if x.ctxEnded {
		return context.Canceled
	}
	return nil
}

// cancelCtx ends the session's context; it is idempotent.
func (c *Channel) cancelCtx() {
	c.ctxMu.Lock()
	if !c.ctxEnded {
		c.ctxEnded = true
		if c.ctxDone != nil {
			close(c.ctxDone)
		}
	}
	c.ctxMu.Unlock()
}

// Shutdown ends the channel with plugins.ReasonShutdown, as the end of
// the context given to Start would; safe to call from any goroutine,
// before or while Start runs. A caller that ends its channels itself
// when shutting down (the server, which tracks them all) gives Start a
// context that is never cancelled (context.WithoutCancel), so that each
// channel spares the registration with a cancellable one.
func (c *Channel) Shutdown() { c.end(plugins.ReasonShutdown, nil) }
