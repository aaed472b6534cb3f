package upstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ferry/plugins"
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

// Strategies a Group picks members by.
const (
	Failover         = "failover"
	RoundRobin       = "round-robin"
	Random           = "random"
	LeastConnections = "least-connections"
)

// Group is a dialer over several upstreams. Each dial tries the members
// that are up in the order its strategy gives, each with a fair share of
// the time left; a member that fails (the upstream, not the target behind
// it) is marked down and the next one is tried.
type Group struct {
	Name     string
	Members  []*Node
	Strategy string

	next atomic.Uint64
}

// NewGroup returns a group; strategy is one of Failover, RoundRobin,
// Random and LeastConnections.
func NewGroup(name, strategy string, members []*Node) (*Group, error) {
	switch strategy {
	case Failover, RoundRobin, Random, LeastConnections:
	default:
		return nil, fmt.Errorf("upstream %s: unknown strategy %q", name, strategy)
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("upstream %s: a group needs members", name)
	}
	return &Group{Name: name, Members: members, Strategy: strategy}, nil
}

// order returns the members to try, in the strategy's order.
func (g *Group) order() []*Node {
	n := len(g.Members)
	out := make([]*Node, n)
	switch g.Strategy {
	case Failover:
		copy(out, g.Members)
	case Random:
		for i, j := range rand.Perm(n) {
			out[i] = g.Members[j]
		}
	default: // round-robin, and least-connections' tie-break
		start := int(g.next.Add(1)-1) % n
		for i := range out {
			out[i] = g.Members[(start+i)%n]
		}
		if g.Strategy == LeastConnections {
			slices.SortStableFunc(out, func(a, b *Node) int {
				return int(a.Active() - b.Active())
			})
		}
	}
	return out
}

// DialContext implements Dialer.
func (g *Group) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	now := time.Now()
	var try []*Node
	var out []string
	for _, m := range g.order() {
		if m.Available(now) {
			try = append(try, m)
		} else {
			out = append(out, m.downReason(now))
		}
	}
	if len(try) == 0 {
		return nil, &Error{Upstream: g.Name, Stage: StageDown, Code: plugins.CodeGeneral,
			Err: fmt.Errorf("every member is down: %s", strings.Join(out, ", "))}
	}
	if err := ctx.Err(); err != nil {
		return nil, err // nothing to blame a member for
	}
	info := dialInfoFrom(ctx)
	var failures []string
	var last error
	for i, m := range try {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && i < len(try)-1 {
			actx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/time.Duration(len(try)-i)))
		}
		mark := info.mark()
		c, err := m.Dialer.DialContext(actx, network, address)
		cancel()
		if err == nil {
			m.MarkUp()
			m.active.Add(1)
			if !info.onRelease(func() { m.active.Add(-1) }) {
				m.active.Add(-1)
			}
			return c, nil
		}
		info.rewind(mark)
		// A plain error that timed out with time left overall is the
		// member's share running out: the member's fault. An upstream
		// answering that the target timed out is not.
		shareTimedOut := !isUpstreamError(err) && isTimeout(err) && ctx.Err() == nil
		if errors.Is(ctx.Err(), context.Canceled) || !memberFailed(err) && !shareTimedOut {
			return nil, err // the target failed, or the client gave up
		}
		m.MarkDown(err)
		failures = append(failures, err.Error())
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &Error{Upstream: g.Name, Stage: StageConnect, Code: DialCode(last),
		Err: fmt.Errorf("every member failed: %s", strings.Join(failures, "; "))}
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || DialCode(err) == plugins.CodeTimeout
}
