package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff bounds of an upstream marked down: the first failure keeps it
// out for minBackoff, each failure after that for twice as long, up to
// maxBackoff; a success ends it.
const (
	minBackoff = time.Second
	maxBackoff = time.Minute
)

// Node is an upstream: a named dialer with the health a Group judges it
// by. Its own DialContext ignores health: only groups skip members that
// are down.
type Node struct {
	Name   string
	Dialer Dialer
	// OnHealth, if set, is called when the upstream goes down or comes back
	// up (err is nil then), outside any lock.
	OnHealth func(up bool, err error)

	active atomic.Int64

	mu        sync.Mutex
	down      bool
	downUntil time.Time
	backoff   time.Duration
	lastErr   error
}

// DialContext dials through the upstream's dialer.
func (u *Node) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return u.Dialer.DialContext(ctx, network, address)
}

// Available reports whether a group may try the upstream now: it is up,
// or its backoff has run out (it gets one more chance).
func (u *Node) Available(now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return !u.down || !now.Before(u.downUntil)
}

// Down reports whether the upstream is marked down.
func (u *Node) Down() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.down
}

// Active is the number of connections made through the upstream by
// groups and not yet released.
func (u *Node) Active() int64 { return u.active.Load() }

// MarkDown records a failure: the upstream is kept out of groups for its
// backoff, which doubles with each failure in a row.
func (u *Node) MarkDown(err error) {
	u.mu.Lock()
	was := u.down
	u.down = true
	u.backoff = min(max(2*u.backoff, minBackoff), maxBackoff)
	u.downUntil = time.Now().Add(u.backoff)
	u.lastErr = err
	u.mu.Unlock()
	if !was && u.OnHealth != nil {
		u.OnHealth(false, err)
	}
}

// MarkUp records a success and ends any backoff.
func (u *Node) MarkUp() {
	u.mu.Lock()
	was := u.down
	u.down, u.backoff, u.lastErr = false, 0, nil
	u.mu.Unlock()
	if was && u.OnHealth != nil {
		u.OnHealth(true, nil)
	}
}

// Probe dials target through the upstream and closes the connection at
// once, marking the upstream up or down by the result. A target that
// fails beyond a working upstream (it refused, say) counts as up: the
// upstream answered.
func (u *Node) Probe(ctx context.Context, target string) error {
	c, err := u.Dialer.DialContext(ctx, "tcp", target)
	if err == nil {
		c.Close()
		u.MarkUp()
		return nil
	}
	if memberFailed(err) || !isUpstreamError(err) && ctx.Err() != nil {
		u.MarkDown(err)
		return err
	}
	u.MarkUp()
	return err
}

func isUpstreamError(err error) bool {
	var ue *Error
	return errors.As(err, &ue)
}

// downReason says why the upstream is out, for a group's error.
func (u *Node) downReason(now time.Time) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return fmt.Sprintf("%s (%v; next try in %s)", u.Name, u.lastErr, u.downUntil.Sub(now).Round(100*time.Millisecond))
}
