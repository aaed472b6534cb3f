// Package connlimit caps how many channels one client address, and one
// user, may have open at once.
//
//	[[plugin]]
//	name = "limits"
//	type = "connlimit"
//	per_client = 100 # open channels per client address; 0: unlimited
//	per_user = 20    # open channels per authenticated user; 0: unlimited
//
// OnConnect counts the channel against its client address (the PROXY
// protocol source when a load balancer sent one) and its user (s.User, set
// by an authenticating plugin; channels without one are not counted per
// user), and refuses it with plugins.CodeForbidden (HTTP 403, SOCKS5 0x02)
// when either is at its limit; refusals are logged as warnings, at most
// once per warnEvery. OnClose gives back what OnConnect counted, and only
// that: it also runs for channels that an earlier plugin, or this one,
// refused. Counters live in the instance, so listeners that share it share
// the limits, and a counter that drops to zero is deleted. A reload that
// keeps the instance's name carries the counters over, whether its limits
// changed or not (see CarryFrom). When [state] is Redis the counts are
// leases there instead, shared by every ferry of a fleet (see shared.go
// and state.Store.Lease); the in-process table then only serves
// fail_open while Redis fails.
//
// The package does not limit connections per listener (max_connections
// does), does not group IPv6 clients by prefix, and, since every plain
// HTTP request is its own channel, counts plain HTTP requests in flight,
// not the keep-alive connections that carry them.
package connlimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/throttle"
	"ferry/state"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "connlimit",
		Description: "caps concurrent channels per client address and per user",
		New:         New,
	})
}

// Config is the plugin's TOML table. At least one limit must be set.
type Config struct {
	// PerClient caps the channels one client address may have open at
	// once. Zero (the default): unlimited.
	PerClient int `toml:"per_client"`
	// PerUser caps the channels one authenticated user may have open at
	// once; channels without a user are not counted. Zero (the default):
	// unlimited.
	PerUser int `toml:"per_user"`
}

// warnEvery is how often, at most, a refusal is logged.
const warnEvery = 10 * time.Second

// Plugin counts open channels.
type Plugin struct {
	name      string
	log       zerolog.Logger
	perClient int
	perUser   int
	now       func() time.Time

	// counts is the table of open channels; a reload may replace it, in
	// CarryFrom, with the previous instance's before any channel comes.
	counts *counts
	warn   throttle.Gate
	// st counts through leases shared by a fleet when [state] is Redis
	// (see shared.go); nil: the process's own table.
	st *state.Store
}

// counts are the open channels per client address and per user. An
// instance and its successors after reloads share one (see CarryFrom), so
// that a channel of the old configuration closing after the reload gives
// back to the table the new instance checks.
type counts struct {
	mu      sync.Mutex
	clients map[netip.Addr]int
	users   map[string]int
}

func newCounts() *counts {
	return &counts{clients: make(map[netip.Addr]int), users: make(map[string]int)}
}

var (
	_ plugins.Connector       = (*Plugin)(nil)
	_ plugins.Closer          = (*Plugin)(nil)
	_ plugins.Carrier         = (*Plugin)(nil)
	_ plugins.SettingsCarrier = (*Plugin)(nil)
)

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	switch {
	case cfg.PerClient < 0:
		return nil, plugins.Errorf("per_client", "must not be negative (0 means unlimited)")
	case cfg.PerUser < 0:
		return nil, plugins.Errorf("per_user", "must not be negative (0 means unlimited)")
	case cfg.PerClient == 0 && cfg.PerUser == 0:
		return nil, errors.New("no limit set: give per_client or per_user")
	}
	var st *state.Store
	if env.StateShared && env.State != nil {
		var err error
		if st, err = env.State(); err != nil {
			return nil, err
		}
	}
	return &Plugin{
		st:        st,
		name:      env.Name,
		log:       env.Log,
		perClient: cfg.PerClient,
		perUser:   cfg.PerUser,
		now:       time.Now,
		counts:    newCounts(),
		warn:      throttle.Gate{Period: warnEvery},
	}, nil
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// CarryFrom implements plugins.Carrier: the instance adopts old's counts
// table, so that a reload does not reset anyone's open channels. It does
// so when the limits changed too (plugins.SettingsCarrier): the counts
// are of channels open now, whatever limit admitted them, so the new
// limits apply to them at once. A lowered limit refuses a client already
// over it until enough of its channels have ended, rather than letting
// everyone in afresh; a raised one gives room at once. A scope that was
// off (0) before the reload counts only channels opened after it. It
// keeps its own, empty, table when old is not a connlimit.
func (p *Plugin) CarryFrom(old plugins.Plugin) {
	o, ok := old.(*Plugin)
	if !ok || o == p {
		return
	}
	p.counts = o.counts
}

// CarriesAcrossSettings implements plugins.SettingsCarrier.
func (p *Plugin) CarriesAcrossSettings() {}

// countedKey keys what an instance counted for a channel; the instance is
// part of it so that two connlimit instances on one listener keep apart.
type countedKey struct{ p *Plugin }

// counted is what OnConnect counted, for OnClose to give back exactly
// that, whatever later plugins do to the session.
type counted struct {
	in     *counts    // the table counted in
	client netip.Addr // invalid: not counted per client
	user   string
	byUser bool
	// shared: counted by leases of the fleet's store, not in the table.
	shared bool
	leases []*state.Lease
}

// OnConnect implements plugins.Connector: it counts the channel, or
// refuses it when its client or user has no room left.
func (p *Plugin) OnConnect(ctx context.Context, s *plugins.Session) error {
	key := countedKey{p}
	if s.Value(key) != nil {
		return nil // the instance is listed twice: count the channel once
	}
	c := counted{in: p.counts}
	if p.perClient > 0 {
		c.client, _ = clientAddr(s.Client)
	}
	if p.perUser > 0 && s.User != "" {
		c.user, c.byUser = s.User, true
	}
	if err := p.count(ctx, &c); err != nil {
		if ok, suppressed := p.warn.Pass(p.now()); ok {
			p.log.Warn().Str("id", s.ID).Str("listener", s.Listener).Str("client", addrString(s.Client)).
				Str("user", s.User).Str("target", s.Target).Int("suppressed", suppressed).Err(err).
				Msg("connection limit reached")
		}
		return plugins.Reject(plugins.CodeForbidden, err.Error())
	}
	s.SetValue(key, &c)
	return nil
}

// take counts c in both scopes of its table, or in neither when one is
// full.
func (p *Plugin) take(c counted) error {
	t := c.in
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.client.IsValid() && t.clients[c.client] >= p.perClient {
		return fmt.Errorf("client %s has %d channels open, the limit", c.client, p.perClient)
	}
	if c.byUser && t.users[c.user] >= p.perUser {
		return fmt.Errorf("user %s has %d channels open, the limit", c.user, p.perUser)
	}
	if c.client.IsValid() {
		t.clients[c.client]++
	}
	if c.byUser {
		t.users[c.user]++
	}
	return nil
}

// OnClose implements plugins.Closer: it gives back what OnConnect counted
// for the channel, if anything, to the table it counted in.
func (p *Plugin) OnClose(s *plugins.Session, _ plugins.Stats) {
	key := countedKey{p}
	c, _ := s.Value(key).(*counted)
	if c == nil {
		return
	}
	s.SetValue(key, nil)
	if c.shared {
		releaseAll(c.leases)
		return
	}
	t := c.in
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.client.IsValid() {
		if t.clients[c.client]--; t.clients[c.client] <= 0 {
			delete(t.clients, c.client)
		}
	}
	if c.byUser {
		if t.users[c.user]--; t.users[c.user] <= 0 {
			delete(t.users, c.user)
		}
	}
}

// open returns the channels counted for a client address and a user.
func (p *Plugin) open(client netip.Addr, user string) (int, int) {
	t := p.counts
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.clients[client], t.users[user]
}

// clientAddr is the IP address of a client address (see
// Session.ClientIP); ok is false when it has none.
func clientAddr(a net.Addr) (netip.Addr, bool) {
	ip := (&plugins.Session{Client: a}).ClientIP()
	return ip, ip.IsValid()
}

func addrString(a net.Addr) string {
	if ip, ok := clientAddr(a); ok {
		return ip.String()
	}
	if a == nil {
		return ""
	}
	return a.String()
}
