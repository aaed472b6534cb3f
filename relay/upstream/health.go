package upstream

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"ferry/config"
)

// health is an upstream's state as groups judge it: whether it is
// marked down and until when, and the connections open through it. A
// reload that keeps an upstream's settings hands it on to the new
// configuration's node (Table.CarryFrom), so that the two share it.
type health struct {
	active atomic.Int64

	mu        sync.Mutex
	down      bool
	downUntil time.Time
	backoff   time.Duration
	lastErr   error
}

// health returns the node's health, made on first use so that a Node
// literal works.
func (u *Node) health() *health {
	u.hOnce.Do(func() {
		if u.h == nil {
			u.h = new(health)
		}
	})
	return u.h
}

// CarryFrom lets each upstream of u adopt the health of old's upstream of
// the same name, when both were built from equal settings (compared as
// decoded, like plugins' tables) and so were the upstreams each reaches
// through via or members, at any depth: a dial through a changed chain is
// another dial, whose past says nothing. An upstream marked down stays
// down, its backoff going on from where it was, rather than getting a
// fresh chance with every reload; its open connections stay counted for
// least-connections; its failure log gate (a line a second) goes on
// too, so a reload during an outage adds no line. The health is shared,
// not copied: old's groups and health checks go on serving the
// connections accepted before the reload and what they find applies to
// both. Others start afresh.
//
// It must run before u dials or starts its health checks (a reload calls
// it after Build, before Start); old may be in use.
func (u *Table) CarryFrom(old *Table) {
	if u == nil || old == nil {
		return
	}
	for name, n := range u.nodes {
		o, ok := old.nodes[name]
		if ok && name != config.Direct && u.sameAs(old, name, 0) {
			n.h = o.health()
			if g := old.gates[name]; g != nil {
				u.gates[name] = g
			}
		}
	}
}

// sameAs reports whether the upstream name has equal settings in u and
// old, and so do those it goes through. depth bounds the walk, though
// config rejects loops.
func (u *Table) sameAs(old *Table, name string, depth int) bool {
	if name == config.Direct {
		return true
	}
	a, ok := u.conf[name]
	b, okOld := old.conf[name]
	if !ok || !okOld || depth > len(u.conf) || !reflect.DeepEqual(a, b) {
		return false
	}
	if a.Via != "" && !u.sameAs(old, a.Via, depth+1) {
		return false
	}
	for _, m := range a.Members {
		if !u.sameAs(old, m, depth+1) {
			return false
		}
	}
	return true
}

// settingsOf copies the [[upstream]] tables by name, without the
// certificates loaded from them: CAFile names them.
func settingsOf(ups []config.Upstream) map[string]config.Upstream {
	out := make(map[string]config.Upstream, len(ups))
	for _, uc := range ups {
		uc.RootCAs = nil
		out[uc.Name] = uc
	}
	return out
}

// healthCheck probes one upstream every interval.
type healthCheck struct {
	node     *Node
	interval time.Duration
	timeout  time.Duration
	target   string
}

// Start runs the health checks until Stop.
func (u *Table) Start() {
	if len(u.checks) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	for _, hc := range u.checks {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			hc.run(ctx)
		}()
	}
}

// Stop ends the health checks and waits for them.
func (u *Table) Stop() {
	if u.cancel != nil {
		u.cancel()
		u.wg.Wait()
	}
}

func (hc healthCheck) run(ctx context.Context) {
	t := time.NewTicker(hc.interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, hc.timeout)
		hc.node.Probe(pctx, hc.target)
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
