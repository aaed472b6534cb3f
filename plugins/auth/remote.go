package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
	"ferry/plugins/pkg/units"
)

// Defaults and bounds of the remote backends (http, ldap).
const (
	defaultRemoteTimeout    = 2 * time.Second
	defaultRemoteConcurrent = 16
	defaultCacheTTL         = time.Minute
	defaultNegativeTTL      = 5 * time.Second
	defaultGracePeriod      = 5 * time.Minute
)

// RemoteConfig are the settings every remote backend shares: how its
// answers are cached, how many calls run at once, and what a failure of
// the backend does to a login.
type RemoteConfig struct {
	// Backend is "htpasswd" (the default: users, htpasswd), "http" or
	// "ldap".
	Backend string `toml:"backend"`
	// Timeout bounds one call, and the wait for a call slot. Default 2s.
	Timeout *units.Duration `toml:"timeout"`
	// MaxConcurrent bounds the calls in flight. Default 16.
	MaxConcurrent *int `toml:"max_concurrent"`
	// CacheTTL is how long an allow is reused. Default 1m; "0s": never.
	CacheTTL *units.Duration `toml:"cache_ttl"`
	// NegativeCacheTTL is how long a deny is reused. Default 5s.
	NegativeCacheTTL *units.Duration `toml:"negative_cache_ttl"`
	// OnBackendError is "refuse" (the default) or "grace".
	OnBackendError string `toml:"on_backend_error"`
	// GracePeriod: with "grace", a login whose last allow is this recent
	// is admitted while the backend fails. Default 5m.
	GracePeriod *units.Duration `toml:"grace_period"`
	// Upstreams are the upstream names the backend may choose: "direct"
	// or [[upstream]] names. None: an answer may name no upstream.
	Upstreams []string `toml:"upstreams"`
	// SourceAddresses are the addresses of this host the backend may
	// choose for a session's dial to leave from. None: an answer may
	// name no source address.
	SourceAddresses []string `toml:"source_addresses"`
}

// set reports whether any remote setting besides Backend is given.
func (c RemoteConfig) set() bool {
	return c.Timeout != nil || c.MaxConcurrent != nil || c.CacheTTL != nil || c.NegativeCacheTTL != nil ||
		c.OnBackendError != "" || c.GracePeriod != nil || len(c.Upstreams) > 0 || len(c.SourceAddresses) > 0
}

// request is what a remote backend is asked.
type request struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Client   string `json:"client"`
	Listener string `json:"listener"`
	Target   string `json:"target,omitempty"`
}

// checker is one remote backend: it answers a login, or fails. It need
// not bound itself: remote gives it a deadline and a call slot, checks
// its groups and attributes, and caches its answers.
type checker interface {
	check(ctx context.Context, req request) (result, error)
}

// result is one answer of the backend, as cached.
type result struct {
	allow    bool
	groups   []string // sorted; shared by the sessions
	upstream string
	source   netip.Addr    // the zero Addr: none chosen
	rate     *plugins.Rate // nil: none given; shared by the sessions
	at       time.Time     // when the backend answered
}

// remote is the state of a remote backend.
type remote struct {
	backend    checker
	kind       string // "http" or "ldap", for messages
	timeout    time.Duration
	ttl, neg   time.Duration
	grace      time.Duration       // 0: refuse on backend errors
	upstreams  map[string]bool     // what an answer's upstream may be
	sources    map[netip.Addr]bool // what an answer's source_address may be
	slots      chan struct{}       // a token per call in flight
	results    *gens[[32]byte, result]
	flights    *flights
	lastOutage atomic.Int64 // unix nanoseconds of the last outage log line
	now        func() time.Time
	stop       func() // releases the backend's connections; may be nil
	// pending holds the attributes of SOCKS5 logins by session id, until
	// the session's OnConnect takes them (see remotePlugin.OnConnect).
	pending *gens[string, attrs]
}

// errBackend marks a failure of the backend (not a denial).
var errBackend = errors.New("auth backend failed")

// newRemote checks the shared settings of a remote backend.
func newRemote(cfg Config, kind string, backend checker) (*remote, error) {
	h := cfg.RemoteConfig
	switch {
	case len(cfg.Users) > 0 || cfg.Htpasswd != "":
		return nil, plugins.Errorf("backend", "users and htpasswd do not apply to backend %q", kind)
	case cfg.GroupsFile != "" || len(cfg.Groups) > 0:
		return nil, plugins.Errorf("backend", "groups come from the backend with backend %q", kind)
	case cfg.MaxConcurrentChecks != nil:
		return nil, plugins.Errorf("max_concurrent_checks", "use max_concurrent with backend %q", kind)
	}
	r := &remote{backend: backend, kind: kind, timeout: dur(h.Timeout, defaultRemoteTimeout),
		ttl: dur(h.CacheTTL, defaultCacheTTL), neg: dur(h.NegativeCacheTTL, defaultNegativeTTL),
		upstreams: map[string]bool{}, sources: map[netip.Addr]bool{}, pending: newGens[string, attrs](maxPending),
		results: newGens[[32]byte, result](cacheSize * 4), flights: &flights{m: map[[32]byte]*flight{}}, now: time.Now}
	n := defaultRemoteConcurrent
	if h.MaxConcurrent != nil {
		n = *h.MaxConcurrent
	}
	switch {
	case r.timeout <= 0:
		return nil, plugins.Errorf("timeout", "must be more than 0s")
	case n < 1 || n > 1024:
		return nil, plugins.Errorf("max_concurrent", "must be 1 to 1024")
	}
	r.slots = make(chan struct{}, n)
	if err := r.onError(h); err != nil {
		return nil, err
	}
	return r, nil
}

// onError reads on_backend_error and grace_period.
func (r *remote) onError(h RemoteConfig) error {
	switch h.OnBackendError {
	case "", "refuse":
		if h.GracePeriod != nil {
			return plugins.Errorf("grace_period", "only applies with on_backend_error = \"grace\"")
		}
	case "grace":
		r.grace = dur(h.GracePeriod, defaultGracePeriod)
		if r.grace <= 0 {
			return plugins.Errorf("grace_period", "must be more than 0s")
		}
	default:
		return plugins.Errorf("on_backend_error", "want \"refuse\" or \"grace\", not %q", h.OnBackendError)
	}
	return nil
}

func dur(d *units.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.D()
}

// call asks the backend, within the timeout and a call slot, and checks
// its answer. Every failure wraps errBackend.
func (r *remote) call(ctx context.Context, req request) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return result{}, fmt.Errorf("%w: no call slot free within %v", errBackend, r.timeout)
	}
	defer func() { <-r.slots }()
	res, err := r.backend.check(ctx, req)
	if err == nil {
		err = r.valid(&res)
	}
	if err != nil {
		return result{}, fmt.Errorf("%w: %v", errBackend, err)
	}
	return res, nil
}

// valid checks an answer's groups (at most maxUserGroups, each a valid
// name) and attributes, sorts the groups and stamps the time. A deny
// carries nothing.
func (r *remote) valid(res *result) error {
	res.at = r.now()
	if !res.allow {
		*res = result{at: res.at}
		return nil
	}
	if len(res.groups) > maxUserGroups {
		return fmt.Errorf("answer with more than %d groups", maxUserGroups)
	}
	for _, g := range res.groups {
		if err := match.CheckGroup(g); err != nil {
			return fmt.Errorf("answer group %q: %v", clip(g), err)
		}
	}
	if err := r.validAttrs(res.attrs()); err != nil {
		return err
	}
	res.groups = slices.Compact(slices.Sorted(slices.Values(res.groups)))
	return nil
}

// gens is a map bounded at max entries in two generations, like cache:
// hits in the old one move to the current one, and when the current one
// is full it becomes the old one and the oldest are dropped. It holds the
// backend's answers by the HMAC of user and password (cache.sum), never
// the password, and the SOCKS5 logins' attributes by session id.
type gens[K comparable, V any] struct {
	max      int
	mu       sync.Mutex
	cur, old map[K]V
}

func newGens[K comparable, V any](size int) *gens[K, V] {
	return &gens[K, V]{max: size, cur: map[K]V{}, old: map[K]V{}}
}

func (c *gens[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.cur[k]; ok {
		return r, true
	}
	r, ok := c.old[k]
	if ok {
		delete(c.old, k)
		c.putLocked(k, r)
	}
	return r, ok
}

// take returns k's value and forgets it.
func (c *gens[K, V]) take(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.cur[k]
	if !ok {
		v, ok = c.old[k]
	}
	delete(c.cur, k)
	delete(c.old, k)
	return v, ok
}

func (c *gens[K, V]) put(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, v)
}

func (c *gens[K, V]) putLocked(k K, v V) {
	if _, ok := c.cur[k]; !ok && len(c.cur) >= c.max/2 {
		c.old, c.cur = c.cur, make(map[K]V, c.max/2)
	}
	c.cur[k] = v
}

// flights lets concurrent logins of the same credentials share one call.
type flights struct {
	mu sync.Mutex
	m  map[[32]byte]*flight
}

type flight struct {
	done chan struct{}
	res  result
	err  error
}

// do runs fn once for k among the concurrent callers; the others wait
// for its outcome or their ctx. fn runs in the first caller, detached
// from its cancellation (the others count on it), bounded by its timeout.
func (f *flights) do(ctx context.Context, k [32]byte, fn func(context.Context) (result, error)) (result, error) {
	f.mu.Lock()
	if fl, ok := f.m[k]; ok {
		f.mu.Unlock()
		select {
		case <-fl.done:
			return fl.res, fl.err
		case <-ctx.Done():
			return result{}, ctx.Err()
		}
	}
	fl := &flight{done: make(chan struct{}), err: errBackend}
	f.m[k] = fl
	f.mu.Unlock()
	defer func() { // even if fn panics, the waiters are let go
		f.mu.Lock()
		delete(f.m, k)
		f.mu.Unlock()
		close(fl.done)
	}()
	fl.res, fl.err = fn(context.WithoutCancel(ctx))
	return fl.res, fl.err
}

// checkRemote is checkFrom for a remote backend: the cache, then the
// throttle, then the negative cache, then one shared call. A backend
// error admits a login whose last allow is within the grace period.
func (p *Plugin) checkRemote(ctx context.Context, s *plugins.Session, ip netip.Addr, user, password string) (l lock, locked bool, err error) {
	r := p.remote
	k := p.cache.sum(user, password, nil)
	cached, ok := r.results.get(k)
	now := r.now()
	if ok && cached.allow && now.Sub(cached.at) < r.ttl {
		r.admit(s, cached)
		return lock{}, false, nil
	}
	if err := refused(p.throttle.begin(ip)); err != nil {
		return lock{}, false, err
	}
	failed := true
	defer func() { l, locked = p.throttle.end(ip, failed) }()
	// A deny is remembered per client address (an IPv6 /64), as the
	// htpasswd backend's are: a quick refusal must not tell one client
	// that another tried this password lately.
	kd := p.cache.sum(user, password, []byte(key(ip).String()))
	if d, dok := r.results.get(kd); dok && !d.allow && now.Sub(d.at) < r.neg {
		return lock{}, false, errWrongPassword
	}
	req := request{User: user, Password: password, Client: addrString(s.Client), Listener: s.Listener, Target: s.Target}
	res, err := r.flights.do(ctx, k, func(ctx context.Context) (result, error) {
		p.counts.calls.Add(1)
		res, err := r.call(ctx, req)
		switch {
		case err == nil && res.allow:
			r.results.put(k, res)
		case err == nil:
			r.results.put(kd, res)
		}
		return res, err
	})
	switch {
	case err == nil && res.allow:
		failed = false
		r.admit(s, res)
		return lock{}, false, nil
	case err == nil:
		return lock{}, false, errWrongPassword
	case !errors.Is(err, errBackend):
		failed = false // the client gave up waiting
		return lock{}, false, err
	}
	failed = false // the backend failed, not the client
	p.counts.backendErrors.Add(1)
	if r.grace > 0 && ok && cached.allow && r.now().Sub(cached.at) < r.grace {
		p.counts.grace.Add(1)
		p.logOutage(s, user, err, "auth backend failed: login admitted on grace")
		r.admit(s, cached)
		return lock{}, false, nil
	}
	return lock{}, false, err
}

// logOutage logs a login the backend failed, at most once a second
// over all logins: an outage must not flood the log.
func (p *Plugin) logOutage(s *plugins.Session, user string, err error, msg string) {
	now := p.remote.now().UnixNano()
	last := p.remote.lastOutage.Load()
	if now-last < int64(time.Second) || !p.remote.lastOutage.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn().Str("backend", p.remote.kind).Str("client", addrString(s.Client)).Str("user", clip(user)).Str("reason", err.Error()).
		Uint64("backend_errors", p.counts.backendErrors.Load()).Uint64("grace_logins", p.counts.grace.Load()).Msg(msg)
}

// stopRemote releases the backend's connections when the server stops.
type stopRemote struct{ r *remote }

func (s stopRemote) Start(context.Context) error { return nil }
func (s stopRemote) Stop(context.Context) error {
	if s.r.stop != nil {
		s.r.stop()
	}
	return nil
}
