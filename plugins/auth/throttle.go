package auth

import (
	"container/list"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"ferry/plugins"
)

// maxTracked bounds the client addresses the throttle remembers: 21 MiB
// of heap when full (measured: 1M failing addresses leave 65536 entries),
// however many addresses attack; past it the address whose last failure
// is oldest is forgotten.
const maxTracked = 1 << 16

// throttle counts failed logins per client address and locks an address
// out for a while after max failures within window: lockout at first,
// doubling with each further lockout up to maxLockout. A locked-out
// address is refused before any password check, so its attempts cost no
// bcrypt. An address whose lockouts stopped (no failure for maxLockout
// after the last one ended) starts again from lockout.
//
// Checks still running count against the budget too: with max 5, a
// sixth concurrent attempt from one address is refused rather than
// queued for a bcrypt the address cannot use.
//
// IPv6 clients are counted per /64, the block one host usually gets, so a
// client cannot escape by changing its interface identifier.
//
// Safe for concurrent use. A nil *throttle admits everything.
type throttle struct {
	max        int
	window     time.Duration
	lockout    time.Duration
	maxLockout time.Duration
	cap        int              // entries at most
	now        func() time.Time // tests move time

	mu    sync.Mutex
	byKey map[netip.Addr]*list.Element // of *client
	lru   list.List                    // front: least recently failed
}

// client is one address's record.
type client struct {
	key     netip.Addr
	fails   int       // failures in the current window
	since   time.Time // start of the current window
	pending int       // checks running now
	level   int       // lockouts so far: the next lasts lockout<<level
	until   time.Time // locked out before this
	last    time.Time // last failure
	refused int       // refusals during the current lockout, for the log
}

func newThrottle(maxFails int, window, lockout, maxLockout time.Duration) *throttle {
	if maxFails <= 0 {
		return nil
	}
	return &throttle{max: maxFails, window: window, lockout: lockout, maxLockout: maxLockout,
		cap: maxTracked, now: time.Now, byKey: make(map[netip.Addr]*list.Element)}
}

// key is what failures are counted under: the address, or its /64.
func key(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// verdict is throttle.begin's answer.
type verdict int

const (
	admitted  verdict = iota // go on; call end afterwards
	lockedOut                // refuse: the address is locked out
	tooMany                  // refuse: checks in flight would exceed the budget
)

// locked reports whether ip is locked out now, counting the refusal.
func (t *throttle) locked(ip netip.Addr) bool {
	if t == nil || !ip.IsValid() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[key(ip)]
	if !ok {
		return false
	}
	c := e.Value.(*client)
	if t.now().Before(c.until) {
		c.refused++
		return true
	}
	return false
}

// begin is called before a password check from ip: it refuses when ip is
// locked out or when the checks already running from it would use up its
// remaining failures. When it admits, end must follow.
func (t *throttle) begin(ip netip.Addr) verdict {
	if t == nil || !ip.IsValid() {
		return admitted
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	k := key(ip)
	e, ok := t.byKey[k]
	if !ok {
		t.evictLocked(now)
		e = t.lru.PushBack(&client{key: k, since: now})
		t.byKey[k] = e
	}
	c := e.Value.(*client)
	if now.Before(c.until) {
		c.refused++
		return lockedOut
	}
	t.rollLocked(c, now)
	if c.fails+c.pending >= t.max {
		c.refused++
		return tooMany
	}
	c.pending++
	return admitted
}

// lock is a lockout that end started: the log says so once per lockout.
type lock struct {
	d       time.Duration
	fails   int // the failures that led to it
	refused int // refusals during the previous lockout
}

// end records the result of a check that begin admitted. When a failure
// locks the address out, it returns the lockout.
func (t *throttle) end(ip netip.Addr, failed bool) (l lock, locked bool) {
	if t == nil || !ip.IsValid() {
		return lock{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[key(ip)]
	if !ok {
		return lock{}, false // evicted meanwhile
	}
	c := e.Value.(*client)
	if c.pending > 0 {
		c.pending--
	}
	if !failed {
		if c.fails == 0 && c.pending == 0 && c.level == 0 {
			t.removeLocked(e) // nothing worth keeping
		}
		return lock{}, false
	}
	now := t.now()
	t.rollLocked(c, now)
	c.fails++
	c.last = now
	t.lru.MoveToBack(e)
	if c.fails < t.max {
		return lock{}, false
	}
	d := t.maxLockout
	if c.level < 32 && t.lockout<<c.level < t.maxLockout && t.lockout<<c.level > 0 {
		d = t.lockout << c.level
	}
	l = lock{d: d, fails: c.fails, refused: c.refused}
	c.level++
	c.until = now.Add(d)
	c.fails, c.since, c.refused = 0, c.until, 0
	return l, true
}

// rollLocked starts a new window when the current one has passed, and
// forgets the lockout level after a quiet maxLockout past the last
// lockout's end.
func (t *throttle) rollLocked(c *client, now time.Time) {
	if now.Sub(c.since) >= t.window {
		c.fails, c.since = 0, now
	}
	if c.level > 0 && now.Sub(c.until) >= t.maxLockout && now.Sub(c.last) >= t.maxLockout {
		c.level = 0
	}
}

// expiredLocked reports whether c holds nothing that changes a verdict:
// no failures in a live window, no lockout, no level to remember.
func (t *throttle) expiredLocked(c *client, now time.Time) bool {
	if c.pending > 0 || now.Before(c.until) {
		return false
	}
	idle := now.Sub(c.last)
	return idle >= t.window && (c.level == 0 || idle >= t.maxLockout && now.Sub(c.until) >= t.maxLockout)
}

// evictLocked makes room for one entry: it drops expired entries from the
// front (a few, to stay cheap) and, when the table is still full, the
// least recently failed one.
func (t *throttle) evictLocked(now time.Time) {
	for range 4 {
		e := t.lru.Front()
		if e == nil || !t.expiredLocked(e.Value.(*client), now) {
			break
		}
		t.removeLocked(e)
	}
	if t.lru.Len() >= t.cap {
		t.removeLocked(t.lru.Front())
	}
}

func (t *throttle) removeLocked(e *list.Element) {
	delete(t.byKey, e.Value.(*client).key)
	t.lru.Remove(e)
}

// len counts the addresses remembered.
func (t *throttle) len() int {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lru.Len()
}

// limits reads the throttle settings: the failure table (nil when
// max_failures is 0) and the number of bcrypt checks that may run at once.
func limits(cfg Config) (*throttle, int, error) {
	fails, window, lockout, maxLockout := defaultMaxFailures, defaultFailureWindow, defaultLockout, defaultMaxLockout
	if cfg.MaxFailures != nil {
		fails = *cfg.MaxFailures
	}
	if cfg.FailureWindow != nil {
		window = cfg.FailureWindow.D()
	}
	if cfg.Lockout != nil {
		lockout = cfg.Lockout.D()
	}
	if cfg.MaxLockout != nil {
		maxLockout = cfg.MaxLockout.D()
	}
	slots := runtime.GOMAXPROCS(0)
	if cfg.MaxConcurrentChecks != nil {
		slots = *cfg.MaxConcurrentChecks
	}
	switch {
	case fails < 0:
		return nil, 0, plugins.Errorf("max_failures", "must be 0 (never lock out) or more")
	case window <= 0:
		return nil, 0, plugins.Errorf("failure_window", "must be more than 0s")
	case lockout <= 0:
		return nil, 0, plugins.Errorf("lockout", "must be more than 0s")
	case maxLockout < lockout:
		return nil, 0, plugins.Errorf("max_lockout", "must be at least lockout (%v)", lockout)
	case slots < 1:
		return nil, 0, plugins.Errorf("max_concurrent_checks", "must be at least 1")
	case slots > 1024:
		return nil, 0, plugins.Errorf("max_concurrent_checks", "must be at most 1024")
	}
	return newThrottle(fails, window, lockout, maxLockout), slots, nil
}

// refused is the error of a verdict that refuses a check: nil for one
// that lets it run.
func refused(v verdict) error {
	switch v {
	case lockedOut:
		return errLockedOut
	case tooMany:
		return errTooMany
	}
	return nil
}
