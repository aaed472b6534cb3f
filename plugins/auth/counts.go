package auth

import (
	"sync/atomic"

	"ferry/plugins"
)

// Counts are an instance's counters since it was built, for metrics.
type Counts struct {
	Checks    uint64 // bcrypt checks run
	Failures  uint64 // refusals after a password check: wrong password or unknown user
	Throttled uint64 // refusals without a password check: address locked out, or its budget in flight
	Busy      uint64 // refusals after waiting maxCheckWait for a check slot
	Lockouts  uint64 // addresses locked out
	Tracked   int    // client addresses with failures remembered now

	DeniedCached uint64 // refusals answered by the negative cache (htpasswd), counted in Failures too
	ReloadErrors uint64 // htpasswd or groups file found missing or bad: the last good users kept

	Calls         uint64 // calls to the auth service (backend "http")
	BackendErrors uint64 // logins the backend failed to answer
	Grace         uint64 // logins admitted on grace while it failed
}

type counters struct {
	checks, failures, throttled, busy, lockouts atomic.Uint64
	calls, backendErrors, grace                 atomic.Uint64
	deniedCached, reloadErrors                  atomic.Uint64
}

// Counts reports the instance's counters.
func (p *Plugin) Counts() Counts {
	return Counts{
		Checks:    p.counts.checks.Load(),
		Failures:  p.counts.failures.Load(),
		Throttled: p.counts.throttled.Load(),
		Busy:      p.counts.busy.Load(),
		Lockouts:  p.counts.lockouts.Load(),
		Tracked:   p.throttle.len(),

		DeniedCached: p.counts.deniedCached.Load(),
		ReloadErrors: p.counts.reloadErrors.Load(),

		Calls:         p.counts.calls.Load(),
		BackendErrors: p.counts.backendErrors.Load(),
		Grace:         p.counts.grace.Load(),
	}
}

var _ plugins.Counter = (*Plugin)(nil)

// Counters implements plugins.Counter for ferry_plugin_events_total.
func (p *Plugin) Counters() map[string]uint64 {
	c := p.Counts()
	return map[string]uint64{"checks": c.Checks, "failures": c.Failures, "throttled": c.Throttled,
		"busy": c.Busy, "lockouts": c.Lockouts, "calls": c.Calls, "backend_errors": c.BackendErrors,
		"grace": c.Grace, "denied_cached": c.DeniedCached, "reload_errors": c.ReloadErrors}
}
