package upstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"ferry/plugins"
)

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
			active := &m.health().active // the one counted in, after a reload too
			active.Add(1)
			if !info.onRelease(func() { active.Add(-1) }) {
				active.Add(-1)
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
