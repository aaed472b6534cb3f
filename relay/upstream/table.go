package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/proxy"

	"ferry/config"
	"ferry/plugins"
	"ferry/plugins/pkg/throttle"
)

// Table is one configuration's upstreams: a dialer for each [[upstream]]
// (and the built-in "direct"), the [[route]] rules that pick among them,
// and the health checks that mark them up or down. Build makes it; Start
// and Stop run its health checks.
type Table struct {
	nodes map[string]*Node // by name, "direct" included
	// conf are the [[upstream]] settings by name, without what was
	// loaded from them (RootCAs), for CarryFrom to compare.
	conf  map[string]config.Upstream
	gates map[string]*throttle.Gate // failure log lines, per upstream
	// sourceLog rate-limits the warnings of dials that could not leave
	// from a route's source address.
	sourceLog throttle.Gate
	routes    []route
	checks    []healthCheck
	// sendsHeader: some upstream sends a PROXY header, so dials carry the
	// client's.
	sendsHeader bool
	// udp says how SOCKS5 UDP associations reach each upstream
	// (socks5udpparent.go).
	udp map[string]udpRoute

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Build makes the dialers of cfg's upstreams, each once (an upstream used
// by several others, through via or members, is one node with one
// health), and compiles its routes. Health changes go to log.
func Build(cfg *config.Config, log zerolog.Logger) (*Table, error) {
	b := &builder{
		t: &Table{
			nodes: map[string]*Node{config.Direct: {Name: config.Direct, Dialer: DirectTarget()}},
			gates: map[string]*throttle.Gate{},
			udp:   map[string]udpRoute{},

			sourceLog: throttle.Gate{Period: time.Second},
		},
		byName: map[string]*config.Upstream{},
		limit:  len(cfg.Upstreams),
		log:    log,
	}
	for i := range cfg.Upstreams {
		b.byName[cfg.Upstreams[i].Name] = &cfg.Upstreams[i]
	}
	b.t.conf = settingsOf(cfg.Upstreams)
	for _, uc := range cfg.Upstreams {
		if uc.SendProxyProtocol == "v1" || uc.SendProxyProtocol == "v2" {
			b.t.sendsHeader = true
		}
		if _, err := b.node(uc.Name, 0); err != nil {
			return nil, err
		}
	}
	for i, r := range cfg.Routes {
		if r.Rule == nil {
			return nil, fmt.Errorf("route[%d]: not compiled", i) // Load compiles every route
		}
		b.t.routes = append(b.t.routes, route{idx: i, rule: r.Rule, upstream: r.Upstream, reject: r.Reject,
			source: newSourcePool(r.Sources, r.SourceStrategy)})
	}
	return b.t, nil
}

// builder makes a Table's nodes, each the first time it is named.
type builder struct {
	t      *Table
	byName map[string]*config.Upstream
	limit  int // deeper than this, via or members loop
	log    zerolog.Logger
}

// node returns the node of the upstream name, building it (and the
// upstreams it goes through) the first time.
func (b *builder) node(name string, depth int) (*Node, error) {
	if n, ok := b.t.nodes[name]; ok {
		return n, nil
	}
	uc, ok := b.byName[name]
	if !ok {
		return nil, fmt.Errorf("no upstream %q", name)
	}
	if depth > b.limit {
		return nil, fmt.Errorf("upstream %s: via or members loop", name) // config rejects loops first
	}
	d, err := b.dialer(uc, depth)
	if err != nil {
		return nil, err
	}
	n := &Node{Name: name, Dialer: d}
	log := b.log
	n.OnHealth = func(up bool, err error) {
		if up {
			log.Info().Str("upstream", name).Msg("upstream up")
		} else {
			log.Warn().Str("upstream", name).Err(err).Msg("upstream down")
		}
	}
	b.t.nodes[name] = n
	b.t.gates[name] = &throttle.Gate{Period: time.Second} // at most a line a second each
	parent, uerr := udpParent(uc)
	b.t.udp[name] = udpRoute{parent: parent, err: uerr}
	if hc := uc.HealthCheck; hc != nil {
		b.t.checks = append(b.t.checks, healthCheck{node: n, interval: hc.Interval.D(), timeout: hc.Timeout.D(), target: hc.Target})
	}
	return n, nil
}

// dialer makes the dialer of uc: a group of its members, or its proxy
// reached directly or through its via.
func (b *builder) dialer(uc *config.Upstream, depth int) (Dialer, error) {
	if len(uc.Members) > 0 {
		var members []*Node
		for _, m := range uc.Members {
			n, err := b.node(m, depth+1)
			if err != nil {
				return nil, err
			}
			members = append(members, n)
		}
		strategy := uc.Strategy
		if strategy == "" {
			strategy = Failover
		}
		return NewGroup(uc.Name, strategy, members)
	}
	forward := Direct()
	if uc.Via != "" {
		n, err := b.node(uc.Via, depth+1)
		if err != nil {
			return nil, err
		}
		forward = n
	}
	return proxyDialer(uc, forward)
}

// proxyDialer makes the dialer of an upstream with a URL, reaching it
// through forward.
func proxyDialer(uc *config.Upstream, forward Dialer) (Dialer, error) {
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
			return SendProxyHeader(DirectTarget(), version, pass), nil
		}
		forward = SendProxyHeader(forward, version, pass)
	}
	if uc.URL == config.Direct || uc.URL == "direct://" {
		return DirectTarget(), nil
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
		return SOCKS5(uc.Name, pu.Host, auth, forward)
	case "http":
		return HTTPConnect(uc.Name, pu.Host, user, pass, nil, forward), nil
	case "https":
		tc := &tls.Config{
			ServerName:         pu.Hostname(),
			RootCAs:            uc.RootCAs,
			InsecureSkipVerify: uc.InsecureSkipVerify,
			MinVersion:         tls.VersionTLS12,
		}
		return HTTPConnect(uc.Name, pu.Host, user, pass, tc, forward), nil
	}
	return nil, fmt.Errorf("upstream %s: unknown scheme %q", uc.Name, pu.Scheme)
}

// Node returns the upstream called name ("direct" included).
func (u *Table) Node(name string) (*Node, bool) {
	n, ok := u.nodes[name]
	return n, ok
}

// SendsHeader reports whether some upstream sends a PROXY header, so
// dials must carry the client's (DialInfo.ProxyHeader).
func (u *Table) SendsHeader() bool { return u.sendsHeader }

// LogFailure logs a dial that an upstream failed (not the target behind
// it), at most a line a second per upstream; the access line has the rest.
// A parent refusing ferry's credentials is a configuration error worth a
// warning of its own.
func (u *Table) LogFailure(s *plugins.Session, err error) {
	if u.logSourceFailure(s, err) {
		return
	}
	var ue *Error
	if !errors.As(err, &ue) || ue.Stage == StageTarget {
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
	case StageAuth:
		ev.Msg("upstream auth failed")
	case StageDown:
		ev.Msg("upstream group down")
	default:
		ev.Msg("upstream " + string(ue.Stage) + " failed")
	}
}

// logSourceFailure logs a dial that could not leave from its source
// address, at most a line a second: the address left the host, or a
// target has no address of its family. It reports whether err was one.
func (u *Table) logSourceFailure(s *plugins.Session, err error) bool {
	var se *SourceError
	if !errors.As(err, &se) {
		return false
	}
	ok, suppressed := u.sourceLog.Pass(time.Now())
	if !ok {
		return true
	}
	ev := s.Log.Warn().Str("source", se.Source.String()).Str("upstream", s.Upstream).Str("target", s.Target).Err(se.Err)
	if suppressed > 0 {
		ev = ev.Int("suppressed", suppressed)
	}
	ev.Msg("dial from source address failed")
	return true
}

// Status is an upstream's state, for metrics and the admin API.
type Status struct {
	Name string `json:"name"`
	// Up is false while the upstream is marked down (failed dials or
	// health checks) and groups skip it.
	Up bool `json:"up"`
	// Active counts connections that groups made through it and that are
	// still open.
	Active int64 `json:"active"`
}

// Status returns the state of the table's upstreams, "direct" left out,
// by name.
func (u *Table) Status() []Status {
	out := make([]Status, 0, len(u.nodes))
	for name, n := range u.nodes {
		if name == config.Direct {
			continue
		}
		out = append(out, Status{Name: name, Up: !n.Down(), Active: n.Active()})
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}
