// Package throttle keeps a flood of identical warnings (refused
// connections, say) from flooding the log: a Gate lets one through per
// period and counts the others.
//
//	var g = throttle.Gate{Period: 10 * time.Second}
//	if ok, suppressed := g.Pass(time.Now()); ok {
//		log.Warn().Int("suppressed", suppressed).Msg("refused")
//	}
//
// It does not log anything itself.
package throttle

import (
	"sync"
	"time"
)

// Gate lets one event through per Period. The zero Gate lets every event
// through. Safe for concurrent use.
type Gate struct {
	Period time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// Pass reports whether an event at now may be logged and, if so, how many
// were held back since the last one that passed.
func (g *Gate) Pass(now time.Time) (ok bool, suppressed int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Before(g.next) {
		g.suppressed++
		return false, 0
	}
	suppressed, g.suppressed = g.suppressed, 0
	g.next = now.Add(g.Period)
	return true, suppressed
}
