package auth

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"ferry/plugins"
)

// result is one answer of the service, as cached.
type result struct {
	allow    bool
	groups   []string // sorted; shared by the sessions
	upstream string
	at       time.Time // when the service answered
}

// results remembers answers by the HMAC of user and password (cache.sum),
// never the password, in two generations like cache: bounded at max.
type results struct {
	max      int
	mu       sync.Mutex
	cur, old map[[32]byte]result
}

func newResults(size int) *results {
	return &results{max: size, cur: map[[32]byte]result{}, old: map[[32]byte]result{}}
}

func (c *results) get(k [32]byte) (result, bool) {
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

func (c *results) put(k [32]byte, r result) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(k, r)
}

func (c *results) putLocked(k [32]byte, r result) {
	if _, ok := c.cur[k]; !ok && len(c.cur) >= c.max/2 {
		c.old, c.cur = c.cur, make(map[[32]byte]result, c.max/2)
	}
	c.cur[k] = r
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

// upstreamKey holds, in the session, the upstream the service chose; the
// plugin's OnConnect applies it (Authenticate runs before the server
// resets s.Upstream for the Connectors).
type upstreamKey struct{}

// httpPlugin is the plugin with backend = "http": it also sets the
// upstream the service chose.
type httpPlugin struct{ *Plugin }

var _ plugins.Connector = httpPlugin{}

// OnConnect implements plugins.Connector: the upstream from the login's
// answer, unless an earlier plugin chose one. A SOCKS5 login authenticates
// a provisional session, so its answer is found by user name.
func (h httpPlugin) OnConnect(_ context.Context, s *plugins.Session) error {
	if s.Upstream != "" || s.User == "" {
		return nil
	}
	up, _ := s.Value(upstreamKey{}).(string)
	if up == "" {
		h.remote.umu.Lock()
		up = h.remote.byUser[s.User]
		h.remote.umu.Unlock()
	}
	if up != "" {
		s.Upstream = up
	}
	return nil
}

// maxByUser bounds the user -> upstream map; past it, it starts afresh.
const maxByUser = 65536

// admit gives the session the answer's groups and upstream.
func (r *remote) admit(s *plugins.Session, user string, res result) {
	s.Groups = res.groups
	if res.upstream != "" {
		s.SetValue(upstreamKey{}, res.upstream)
	}
	r.umu.Lock()
	defer r.umu.Unlock()
	if r.byUser[user] == res.upstream {
		return
	}
	if len(r.byUser) >= maxByUser {
		clear(r.byUser)
	}
	if res.upstream == "" {
		delete(r.byUser, user)
	} else {
		r.byUser[user] = res.upstream
	}
}

// checkRemote is checkFrom for the http backend: the cache, then the
// throttle, then the negative cache, then one shared call. A backend
// error admits a login whose last allow is within the grace period.
func (p *Plugin) checkRemote(ctx context.Context, s *plugins.Session, ip netip.Addr, user, password string) (l lock, locked bool, err error) {
	r := p.remote
	k := p.cache.sum(user, password, nil)
	cached, ok := r.results.get(k)
	now := r.now()
	if ok && cached.allow && now.Sub(cached.at) < r.ttl {
		r.admit(s, user, cached)
		return lock{}, false, nil
	}
	if err := refused(p.throttle.begin(ip)); err != nil {
		return lock{}, false, err
	}
	failed := true
	defer func() { l, locked = p.throttle.end(ip, failed) }()
	if ok && !cached.allow && now.Sub(cached.at) < r.neg {
		return lock{}, false, errWrongPassword
	}
	req := request{User: user, Password: password, Client: addrString(s.Client), Listener: s.Listener, Target: s.Target}
	res, err := r.flights.do(ctx, k, func(ctx context.Context) (result, error) {
		p.counts.calls.Add(1)
		res, err := r.call(ctx, req)
		if err == nil {
			r.results.put(k, res)
		}
		return res, err
	})
	switch {
	case err == nil && res.allow:
		failed = false
		r.admit(s, user, res)
		return lock{}, false, nil
	case err == nil:
		return lock{}, false, errWrongPassword
	case !errors.Is(err, errBackend):
		failed = false // the client gave up waiting
		return lock{}, false, err
	}
	failed = false // the service failed, not the client
	p.counts.backendErrors.Add(1)
	if r.grace > 0 && ok && cached.allow && r.now().Sub(cached.at) < r.grace {
		p.counts.grace.Add(1)
		p.logOutage(s, user, err, "auth service failed: login admitted on grace")
		r.admit(s, user, cached)
		return lock{}, false, nil
	}
	return lock{}, false, err
}

// logOutage logs a login the service failed, at most once a second
// over all logins: an outage must not flood the log.
func (p *Plugin) logOutage(s *plugins.Session, user string, err error, msg string) {
	now := p.remote.now().UnixNano()
	last := p.remote.lastOutage.Load()
	if now-last < int64(time.Second) || !p.remote.lastOutage.CompareAndSwap(last, now) {
		return
	}
	p.log.Warn().Str("client", addrString(s.Client)).Str("user", clip(user)).Str("reason", err.Error()).
		Uint64("backend_errors", p.counts.backendErrors.Load()).Uint64("grace_logins", p.counts.grace.Load()).Msg(msg)
}

// stopRemote closes the idle connections to the service when the server
// stops.
type stopRemote struct{ r *remote }

func (s stopRemote) Start(context.Context) error { return nil }
func (s stopRemote) Stop(context.Context) error {
	s.r.client.CloseIdleConnections()
	return nil
}
