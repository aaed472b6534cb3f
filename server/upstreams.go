package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/proxy"

	"ferry/config"
	"ferry/plugins"
	"ferry/plugins/pkg/match"
	"ferry/plugins/pkg/throttle"
	"ferry/relay/upstream"
)

// upstreams is one generation's [[upstream]] dialers, [[route]] rules and
// health checks.
type upstreams struct {
	nodes  map[string]*upstream.Node // by name, "direct" included
	gates  map[string]*throttle.Gate  // failure log lines, per upstream
	routes []route
	checks []healthCheck
	// sendsHeader: some upstream sends a PROXY header, so dials carry the
	// client's.
	sendsHeader bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type route struct {
	idx      int
	rule     *match.Rule
	upstream string // "direct" or an [[upstream]]; empty with reject
	reject   bool
}

type healthCheck struct {
	node     *upstream.Node
	interval time.Duration
	timeout  time.Duration
	target   string
}

// buildUpstreams makes the dialers of cfg's upstreams, each once, and
// compiles its routes. Health goes to log and obs.
func buildUpstreams(cfg *config.Config, log zerolog.Logger) (*upstreams, error) {
	u := &upstreams{
		nodes: map[string]*upstream.Node{config.Direct: {Name: config.Direct, Dialer: upstream.DirectTarget()}},
		gates: map[string]*throttle.Gate{},
	}
	byName := map[string]*config.Upstream{}
	for i := range cfg.Upstreams {
		byName[cfg.Upstreams[i].Name] = &cfg.Upstreams[i]
	}
	var build func(name string, depth int) (*upstream.Node, error)
	build = func(name string, depth int) (*upstream.Node, error) {
		if n, ok := u.nodes[name]; ok {
			return n, nil
		}
		uc, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("no upstream %q", name)
		}
		if depth > len(cfg.Upstreams) {
			return nil, fmt.Errorf("upstream %s: via or members loop", name) // config rejects loops first
		}
		var d upstream.Dialer
		var err error
		if len(uc.Members) > 0 {
			var members []*upstream.Node
			for _, m := range uc.Members {
				n, err := build(m, depth+1)
				if err != nil {
					return nil, err
				}
				members = append(members, n)
			}
			strategy := uc.Strategy
			if strategy == "" {
				strategy = upstream.Failover
			}
			d, err = upstream.NewGroup(name, strategy, members)
		} else {
			var forward upstream.Dialer = upstream.Direct()
			if uc.Via != "" {
				n, err := build(uc.Via, depth+1)
				if err != nil {
					return nil, err
				}
				forward = n
			}
			d, err = proxyDialer(uc, forward)
		}
		if err != nil {
			return nil, err
		}
		n := &upstream.Node{Name: name, Dialer: d}
		n.OnHealth = func(up bool, err error) {
			if up {
				log.Info().Str("upstream", name).Msg("upstream up")
			} else {
				log.Warn().Str("upstream", name).Err(err).Msg("upstream down")
			}
		}
		u.nodes[name] = n
		u.gates[name] = new(throttle.Gate)
		if hc := uc.HealthCheck; hc != nil {
			u.checks = append(u.checks, healthCheck{node: n, interval: hc.Interval.D(), timeout: hc.Timeout.D(), target: hc.Target})
		}
		return n, nil
	}
	for _, uc := range cfg.Upstreams {
		if uc.SendProxyProtocol == "v1" || uc.SendProxyProtocol == "v2" {
			u.sendsHeader = true
		}
		if _, err := build(uc.Name, 0); err != nil {
			return nil, err
		}
	}
	for i, r := range cfg.Routes {
		if r.Rule == nil {
			return nil, fmt.Errorf("route[%d]: not compiled", i) // Load compiles every route
		}
		u.routes = append(u.routes, route{idx: i, rule: r.Rule, upstream: r.Upstream, reject: r.Reject})
	}
	return u, nil
}

// proxyDialer makes the dialer of an upstream with a URL, reaching it
// through forward.
func proxyDialer(uc *config.Upstream, forward upstream.Dialer) (upstream.Dialer, error) {
	if uc.SendProxyProtocol == "v1" || uc.SendProxyProtocol == "v2" {
		var pass []byte
		for _, t := range uc.PassTLVs {
			pass = append(pass, byte(t))
		}
		version := 1
		if uc.SendProxyProtocol == "v2" {
			version = 2
		}
		if uc.URL == config.Direct || uc.URL == "direct://" {
			return upstream.SendProxyHeader(upstream.DirectTarget(), version, pass), nil
		}
		forward = upstream.SendProxyHeader(forward, version, pass)
	}
	if uc.URL == config.Direct || uc.URL == "direct://" {
		return upstream.DirectTarget(), nil
	}
	pu, err := url.Parse(uc.URL)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: invalid url", uc.Name) // no details: it may hold a password
	}
	user := pu.User.Username()
	pass, _ := pu.User.Password()
	switch pu.Scheme {
	case "socks5", "socks5h":
		var auth *proxy.Auth
		if pu.User != nil {
			auth = &proxy.Auth{User: user, Password: pass}
		}
		return upstream.SOCKS5(uc.Name, pu.Host, auth, forward)
	case "http":
		return upstream.HTTPConnect(uc.Name, pu.Host, user, pass, nil, forward), nil
	case "https":
		tc := &tls.Config{
			ServerName:         pu.Hostname(),
			RootCAs:            uc.RootCAs,
			InsecureSkipVerify: uc.InsecureSkipVerify,
			MinVersion:         tls.VersionTLS12,
		}
		return upstream.HTTPConnect(uc.Name, pu.Host, user, pass, tc, forward), nil
	}
	return nil, fmt.Errorf("upstream %s: unknown scheme %q", uc.Name, pu.Scheme)
}

// start runs the health checks until stop.
func (u *upstreams) start() {
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

func (u *upstreams) stop() {
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

// route picks the session's upstream by the first route that matches it,
// "direct" when none does. A route on destination addresses resolves a
// name destination (once per session, within resolveTimeout); the
// addresses are returned so a direct dial goes where the route decided.
func (u *upstreams) route(ctx context.Context, s *plugins.Session, resolveTimeout time.Duration) (name string, pinned []netip.Addr, err error) {
	if len(u.routes) == 0 {
		return config.Direct, nil, nil
	}
	host, portStr, err := net.SplitHostPort(s.Target)
	if err != nil {
		return "", nil, fmt.Errorf("route: target %q: %w", s.Target, err)
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	q := match.Query{Host: host, Port: uint16(port), Client: s.ClientIP(), User: s.User, Listener: s.Listener}
	resolved := false
	for _, r := range u.routes {
		res := r.rule.Eval(q)
		if res == match.NeedIP {
			if !resolved {
				resolved = true
				rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
				pinned, err = net.DefaultResolver.LookupNetIP(rctx, "ip", host)
				cancel()
				if err != nil {
					s.Log.Debug().Err(err).Str("host", host).Msg("route: resolve failed; routes on addresses do not match")
				}
				for i := range pinned {
					pinned[i] = pinned[i].Unmap()
				}
			}
			res = match.No
			for _, ip := range pinned {
				q.IP = ip
				if r.rule.Eval(q) == match.Yes {
					res = match.Yes
					break
				}
			}
			q.IP = netip.Addr{}
		}
		if res != match.Yes {
			continue
		}
		if r.reject {
			return "", nil, &plugins.RejectError{Code: plugins.CodeForbidden, Msg: fmt.Sprintf("rejected by route[%d]", r.idx)}
		}
		return r.upstream, pinned, nil
	}
	return config.Direct, pinned, nil
}

// logFailure logs a dial that an upstream failed (not the target behind
// it), at most a line a second per upstream; the access line has the rest.
// A parent refusing ferry's credentials is a configuration error worth a
// warning of its own.
func (u *upstreams) logFailure(s *plugins.Session, err error) {
	var ue *upstream.Error
	if !errors.As(err, &ue) || ue.Stage == upstream.StageTarget {
		return
	}
	g := u.gates[ue.Upstream]
	if g == nil {
		return
	}
	ok, suppressed := g.Pass(time.Now())
	if !ok {
		return
	}
	ev := s.Log.Warn().Str("upstream", ue.Upstream).Str("target", s.Target).Err(ue.Err)
	if suppressed > 0 {
		ev = ev.Int("suppressed", suppressed)
	}
	switch ue.Stage {
	case upstream.StageAuth:
		ev.Msg("upstream auth failed")
	case upstream.StageDown:
		ev.Msg("upstream group down")
	default:
		ev.Msg("upstream " + string(ue.Stage) + " failed")
	}
}

// UpstreamStatus is an upstream's state, for metrics and the admin API.
type UpstreamStatus struct {
	Name string `json:"name"`
	// Up is false while the upstream is marked down (failed dials or
	// health checks) and groups skip it.
	Up bool `json:"up"`
	// Active counts connections that groups made through it and that are
	// still open.
	Active int64 `json:"active"`
}

// Upstreams returns the state of the current configuration's upstreams,
// by name.
func (s *Server) Upstreams() []UpstreamStatus {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	out := make([]UpstreamStatus, 0, len(g.ups.nodes))
	for name, n := range g.ups.nodes {
		if name == config.Direct {
			continue
		}
		out = append(out, UpstreamStatus{Name: name, Up: !n.Down(), Active: n.Active()})
	}
	slices.SortFunc(out, func(a, b UpstreamStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}
