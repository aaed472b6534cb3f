package upstream

import (
	"context"
	"time"
)

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
