package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
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

	// h is the upstream's health, made on first use; a reload may hand
	// it on to the next configuration's node (Table.CarryFrom).
	h     *health
	hOnce sync.Once
}

// DialContext dials through the upstream's dialer.
func (u *Node) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return u.Dialer.DialContext(ctx, network, address)
}

// Available reports whether a group may try the upstream now: it is up,
// or its backoff has run out (it gets one more chance).
func (u *Node) Available(now time.Time) bool {
	h := u.health()
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.down || !now.Before(h.downUntil)
}

// Down reports whether the upstream is marked down.
func (u *Node) Down() bool {
	h := u.health()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.down
}

// Active is the number of connections made through the upstream by
// groups and not yet released.
func (u *Node) Active() int64 { return u.health().active.Load() }

// MarkDown records a failure: the upstream is kept out of groups for its
// backoff, which doubles with each failure in a row.
func (u *Node) MarkDown(err error) {
	h := u.health()
	h.mu.Lock()
	was := h.down
	h.down = true
	h.backoff = min(max(2*h.backoff, minBackoff), maxBackoff)
	h.downUntil = time.Now().Add(h.backoff)
	h.lastErr = err
	h.mu.Unlock()
	if !was && u.OnHealth != nil {
		u.OnHealth(false, err)
	}
}

// MarkUp records a success and ends any backoff.
func (u *Node) MarkUp() {
	h := u.health()
	h.mu.Lock()
	was := h.down
	h.down, h.backoff, h.lastErr = false, 0, nil
	h.mu.Unlock()
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
	h := u.health()
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("%s (%v; next try in %s)", u.Name, h.lastErr, h.downUntil.Sub(now).Round(100*time.Millisecond))
}
