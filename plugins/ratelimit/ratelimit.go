// Package ratelimit slows channels down to configured bandwidths, each
// direction separately, per channel, per client address and per user, and
// limits how fast one client address may open new channels.
//
//	[[plugin]]
//	name = "slow"
//	type = "ratelimit"
//	channel = { up = "1MiB", down = "1MiB", burst = "256KiB" } # bytes per second
//	client = { down = "10MiB" }                    # all channels of one address
//	user = { down = "5MiB" }                       # all channels of one user
//	user_from_auth = true                          # or the rate the user's login gave
//	new_connections = { per_client = 10, burst = 20 } # per second, per address
//
// Bandwidth limits delay data and never drop it: OnRead (client to
// upstream, "up") and OnWrite (upstream to client, "down") wait until every
// limiter that applies to the channel allows the chunk's bytes, in pieces
// no larger than the smallest burst, then pass the chunk on unchanged. A
// chunk is one read of up to the listener's buffer_size and goes on whole,
// so at rates far below buffer_size per second data arrives in lumps.
// A user's rate may come from the user's login (Session.UserRate, set by
// an auth plugin from its backend's answer) instead of the configuration:
// with user_from_auth, such users' buckets are keyed by rate and user.
// Shared limiters (client, user) are created on first use and forgotten
// once no channel uses them and they have refilled, so the tables stay as
// small as the set of recently active clients and users. A reload that
// keeps the instance's name and settings carries the shared tables over
// (see CarryFrom); one that changes them starts afresh. When [state] is
// Redis, client and user buckets also draw on buckets shared by the
// fleet (see shared.go).
//
// A wait ends as soon as the channel ends: it sleeps on a timer and on
// the channel's context (Session.Context), which the relay cancels when
// it closes the channel; the wait then gives its reserved bytes back and
// returns plugins.ErrClose. Nothing polls. After each piece it waited
// for, it writes zero bytes toward the side it delivers to
// (Session.SendUpstream or SendClient), which keeps a throttled channel
// from looking idle to the relay's idle timeout; when that write fails,
// the wait ends too. That covers plain HTTP proxying, where a request's
// context ends only with its exchange: a client that goes away in the
// middle of a throttled response is noticed after the piece in progress.
//
// Excess new connections are refused with plugins.CodeForbidden (HTTP 403,
// SOCKS5 0x02), a warning logged at most once per warnEvery.
//
// The package does not shape by target or port, does not group IPv6
// clients by prefix, and for plain HTTP proxying limits each request (its
// own channel), not the keep-alive connection that carries it.
package ratelimit

import (
	"context"
	"errors"
	"math"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"ferry/plugins"
	"ferry/plugins/pkg/throttle"
	"ferry/plugins/pkg/units"
	"ferry/state"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "ratelimit",
		Description: "bandwidth limits per channel, client and user, each way; new-connection rate per client",
		New:         New,
	})
}

// Config is the plugin's TOML table. At least one limit must be set.
type Config struct {
	// Channel limits each channel on its own (each request, for plain
	// HTTP proxying).
	Channel Bandwidth `toml:"channel"`
	// Client limits all channels of one client address together (the
	// PROXY protocol source when a load balancer sent one).
	Client Bandwidth `toml:"client"`
	// User limits all channels of one authenticated user together;
	// channels without a user are not limited by it.
	User Bandwidth `toml:"user"`
	// UserFromAuth takes the user scope's rate from the user's
	// authentication (Session.UserRate, an auth service's answer) when
	// it gave one, instead of User's up and down; User.Burst applies to
	// it too. Users it gave none keep User's rate, or none.
	UserFromAuth bool `toml:"user_from_auth"`
	// NewConnections limits how fast one client address opens channels.
	NewConnections NewConnections `toml:"new_connections"`
}

// Bandwidth is one scope's limits, in bytes per second.
type Bandwidth struct {
	// Up is the rate from the client to the upstream, in bytes per
	// second. Zero (the default): not limited.
	Up units.Size `toml:"up"`
	// Down is the rate from the upstream to the client, in bytes per
	// second. Zero (the default): not limited.
	Down units.Size `toml:"down"`
	// Burst is how many bytes may pass at once after a quiet spell, for
	// each direction; a limiter starts with its burst available. Default:
	// one second's worth of each direction's rate. Must be positive.
	Burst *units.Size `toml:"burst"`
}

// NewConnections limits the rate of new channels per client address.
type NewConnections struct {
	// PerClient is how many channels one client address may open per
	// Interval, on average. Zero (the default): not limited.
	PerClient int `toml:"per_client"`
	// Interval is the time PerClient is counted over. Default 1s; must be
	// positive.
	Interval *units.Duration `toml:"interval"`
	// Burst is how many channels a client may open at once after a quiet
	// spell. Default: PerClient. Must be positive.
	Burst *int `toml:"burst"`
}

// Timings of the plugin.
const (
	// sweepEvery is how often, at most, a shared table drops limiters
	// that are unused and full.
	sweepEvery = 10 * time.Second
	// warnEvery is how often, at most, a refusal is logged.
	warnEvery = 10 * time.Second
)

// Plugin holds one instance's limits and shared limiters. It has the data
// hooks of both directions and declares, with DataDirections, only those
// its limits need, so that an instance that limits one direction, or only
// new connections, leaves the rest of the relay's copy alone.
type Plugin struct {
	name    string
	log     zerolog.Logger
	channel rates
	// clients, users and conns are nil when their scope has no limit.
	clients, users *table
	conns          *table
	// authUsers are the buckets of users at the rate their
	// authentication gave, keyed by rate and user (see authKey); nil
	// without user_from_auth.
	authUsers *table
	up, down  bool // some scope limits that direction
	// limits are the resolved settings, for CarryFrom to compare.
	limits limits

	now func() time.Time
	// sleep waits for a duration or until the context ends; tests
	// replace it, with now, by a fake clock.
	sleep func(context.Context, time.Duration) error
	warn  throttle.Gate
	// st is the fleet's store when [state] is shared (see shared.go).
	st *state.Store
}

var (
	_ plugins.Connector    = (*Plugin)(nil)
	_ plugins.Closer       = (*Plugin)(nil)
	_ plugins.Reader       = (*Plugin)(nil)
	_ plugins.Writer       = (*Plugin)(nil)
	_ plugins.ChunkLimiter = (*Plugin)(nil)
	_ plugins.DataDirector = (*Plugin)(nil)
	_ plugins.Carrier      = (*Plugin)(nil)
)

// limits are an instance's resolved settings: two instances with equal
// limits make equal buckets, so one may adopt the other's tables.
type limits struct {
	channel, client, user rates
	connRate              rate.Limit
	connBurst             int
	fromAuth              bool
	authBurst             int // user.burst for rates from auth; 0: one second's worth
}

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	p, err := build(env.Name, cfg)
	if err != nil {
		return nil, err
	}
	p.log = env.Log
	if err := p.shareFrom(env); err != nil {
		return nil, err
	}
	return p, nil
}

// build validates cfg and makes the instance.
func build(name string, cfg Config) (*Plugin, error) {
	p := &Plugin{name: name, log: zerolog.Nop(), now: time.Now, sleep: sleep,
		warn: throttle.Gate{Period: warnEvery}}
	var err error
	if p.channel, err = resolve("channel", cfg.Channel, false); err != nil {
		return nil, err
	}
	client, err := resolve("client", cfg.Client, false)
	if err != nil {
		return nil, err
	}
	user, err := resolve("user", cfg.User, cfg.UserFromAuth)
	if err != nil {
		return nil, err
	}
	p.limits = limits{channel: p.channel, client: client, user: user, fromAuth: cfg.UserFromAuth}
	if client.any() {
		p.clients = newTable(client.newBucket)
	}
	if user.any() {
		p.users = newTable(user.newBucket)
	}
	if cfg.UserFromAuth {
		if cfg.User.Burst != nil {
			p.limits.authBurst = int(*cfg.User.Burst)
		}
		p.authUsers = newTable(nil)
	}
	nc := cfg.NewConnections
	switch {
	case nc.PerClient < 0:
		return nil, plugins.Errorf("new_connections.per_client", "must not be negative (0 means unlimited)")
	case nc.PerClient == 0 && nc.Burst != nil:
		return nil, plugins.Errorf("new_connections.burst", "has no effect without new_connections.per_client")
	case nc.PerClient == 0 && nc.Interval != nil:
		return nil, plugins.Errorf("new_connections.interval", "has no effect without new_connections.per_client")
	case nc.Burst != nil && *nc.Burst <= 0:
		return nil, plugins.Errorf("new_connections.burst", "must be positive")
	case nc.Interval != nil && *nc.Interval <= 0:
		return nil, plugins.Errorf("new_connections.interval", "must be positive")
	}
	if nc.PerClient > 0 {
		interval := time.Second
		if nc.Interval != nil {
			interval = nc.Interval.D()
		}
		burst := nc.PerClient
		if nc.Burst != nil {
			burst = *nc.Burst
		}
		limit := rate.Limit(float64(nc.PerClient) / interval.Seconds())
		p.limits.connRate, p.limits.connBurst = limit, burst
		p.conns = newTable(func() *bucket { return &bucket{conn: rate.NewLimiter(limit, burst)} })
	}
	// A rate from auth may limit either way.
	p.up = p.channel.up > 0 || client.up > 0 || user.up > 0 || cfg.UserFromAuth
	p.down = p.channel.down > 0 || client.down > 0 || user.down > 0 || cfg.UserFromAuth
	if !p.up && !p.down && p.conns == nil {
		return nil, errors.New("no limit set: give channel, client or user an up or down rate, new_connections a per_client rate, or set user_from_auth")
	}
	return p, nil
}

// rates are one scope's limits: bytes per second and bursts in bytes for
// each direction; a zero rate leaves that direction unlimited.
type rates struct {
	up, down           int64
	upBurst, downBurst int
}

// resolve reads one scope's rates; fromAuth: its burst also applies to
// rates from auth (user_from_auth), so it may come without up or down.
func resolve(scope string, b Bandwidth, fromAuth bool) (rates, error) {
	r := rates{up: int64(b.Up), down: int64(b.Down)}
	if b.Burst != nil {
		switch {
		case *b.Burst <= 0:
			return r, plugins.Errorf(scope+".burst", "must be positive")
		case r.up == 0 && r.down == 0 && !fromAuth:
			return r, plugins.Errorf(scope+".burst", "has no effect without %s.up or %s.down", scope, scope)
		}
	}
	r.upBurst, r.downBurst = burstFor(r.up, b.Burst), burstFor(r.down, b.Burst)
	return r, nil
}

// burstFor is the burst of a direction with rate bytes per second: the
// configured one, else one second's worth.
func burstFor(bytesPerSec int64, burst *units.Size) int {
	if burst != nil {
		return int(*burst)
	}
	return int(bytesPerSec)
}

func (r rates) any() bool { return r.up > 0 || r.down > 0 }

// limiters makes new limiters for r; nil for an unlimited direction.
func (r rates) limiters() (up, down *rate.Limiter) {
	if r.up > 0 {
		up = rate.NewLimiter(rate.Limit(r.up), r.upBurst)
	}
	if r.down > 0 {
		down = rate.NewLimiter(rate.Limit(r.down), r.downBurst)
	}
	return up, down
}

func (r rates) newBucket() *bucket {
	up, down := r.limiters()
	return &bucket{up: up, down: down}
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// CarryFrom implements plugins.Carrier: the instance adopts old's shared
// tables (client, user and new-connection buckets), so that a reload
// neither refills a client's buckets nor resets its new-connection rate.
// The tables are shared: channels of the old instance keep drawing from,
// and releasing, the same buckets. ferry calls it only when the settings
// are unchanged; it checks the resolved limits anyway and keeps its own
// tables when old is not a ratelimit with the same limits. Per-channel
// limiters are the channel's own and end with it.
func (p *Plugin) CarryFrom(old plugins.Plugin) {
	o, ok := old.(*Plugin)
	if !ok || o == p || o.limits != p.limits {
		return
	}
	p.clients, p.users, p.conns, p.authUsers = o.clients, o.users, o.conns, o.authUsers
}

// DataDirections implements plugins.DataDirector: the directions some
// scope limits.
func (p *Plugin) DataDirections() plugins.Directions {
	var ds plugins.Directions
	if p.up {
		ds |= plugins.UpData
	}
	if p.down {
		ds |= plugins.DownData
	}
	return ds
}

// authMaxChunk caps chunks when rates come from logins, unknown when the
// chain is built: the relay's default read size.
const authMaxChunk = 128 << 10

// MaxChunk implements plugins.ChunkLimiter. A chunk passes whole once
// all of its bytes are granted, so a large one would wait long and then
// go in one burst: chunks of at most an eighth of a second of the
// slowest configured rate keep the pacing smooth (a 1 MiB/s limit moves
// 128 KiB pieces every 125 ms, not 1 MiB every second).
func (p *Plugin) MaxChunk() int {
	var slowest int64
	for _, r := range []rates{p.limits.channel, p.limits.client, p.limits.user} {
		for _, v := range []int64{r.up, r.down} {
			if v > 0 && (slowest == 0 || v < slowest) {
				slowest = v
			}
		}
	}
	n := 0
	if slowest > 0 {
		n = int(max(slowest/8, 1))
	}
	if p.limits.fromAuth && (n == 0 || n > authMaxChunk) {
		n = authMaxChunk
	}
	return n
}

// sessionKey keys a channel's state; the instance is part of it so that
// two ratelimit instances on one listener keep apart.
type sessionKey struct{ p *Plugin }

// channelState is what one channel holds of an instance.
type channelState struct {
	clientKey, userKey string
	client, user       *bucket // nil: not held
	userTable          *table  // the table user is from
	up, down           flow
}

// OnConnect implements plugins.Connector: it refuses a client over its
// new-connection rate and sets up the channel's limiters.
func (p *Plugin) OnConnect(_ context.Context, s *plugins.Session) error {
	key := sessionKey{p}
	if s.Value(key) != nil {
		return nil // the instance is listed twice: its limits apply once
	}
	now := p.now()
	addr, hasAddr := clientAddr(s.Client)
	if p.conns != nil && hasAddr && !p.conns.allow(addr.String(), now) {
		if ok, suppressed := p.warn.Pass(now); ok {
			p.log.Warn().Str("id", s.ID).Str("listener", s.Listener).Str("client", addr.String()).
				Str("user", s.User).Str("target", s.Target).Int("suppressed", suppressed).
				Msg("new connection rate exceeded")
		}
		return plugins.Reject(plugins.CodeForbidden, "too many new connections from "+addr.String())
	}
	st := &channelState{}
	var up, down []*rate.Limiter
	if p.channel.any() {
		u, d := p.channel.limiters()
		up, down = appendLimiter(up, u), appendLimiter(down, d)
	}
	if p.clients != nil && hasAddr {
		st.clientKey = addr.String()
		st.client = p.clients.acquire(st.clientKey, now, nil)
		up, down = appendLimiter(up, st.client.up), appendLimiter(down, st.client.down)
	}
	if st.userTable, st.userKey = p.userScope(s); st.userTable != nil {
		st.user = st.userTable.acquire(st.userKey, now, p.userBucket(s))
		up, down = appendLimiter(up, st.user.up), appendLimiter(down, st.user.down)
	}
	st.up, st.down = newFlow(up), newFlow(down)
	st.addShared()
	s.SetValue(key, st)
	return nil
}

// userScope is the table and key of the session's user bucket: by the
// rate the user's authentication gave, with user_from_auth, else the
// configured user rate; a nil table when neither limits the user (no
// user, a rate of 0 both ways).
func (p *Plugin) userScope(s *plugins.Session) (*table, string) {
	switch r := s.UserRate; {
	case s.User == "":
		return nil, ""
	case p.authUsers != nil && r != nil:
		if r.Up <= 0 && r.Down <= 0 {
			return nil, ""
		}
		return p.authUsers, authKey(*r, s.User)
	case p.users != nil:
		return p.users, s.User
	}
	return nil, ""
}

// authKey keys a user's bucket at a rate from auth: the rates first, so
// that no two (rate, user) pairs share a key, and a user whose rate
// changes gets a bucket at the new rate (channels opened before keep
// theirs).
func authKey(r plugins.Rate, user string) string {
	return strconv.FormatInt(r.Up, 10) + "/" + strconv.FormatInt(r.Down, 10) + "/" + user
}

// userBucket makes a new bucket at the session's rate from auth; nil (the
// table's own) for the configured user rate.
func (p *Plugin) userBucket(s *plugins.Session) func() *bucket {
	if p.authUsers == nil || s.UserRate == nil {
		return nil
	}
	r := rates{up: s.UserRate.Up, down: s.UserRate.Down}
	r.upBurst, r.downBurst = p.authBurst(r.up), p.authBurst(r.down)
	return r.newBucket
}

// authBurst is the burst of a rate from auth: user.burst, else one
// second's worth, within an int32 so that any platform's int holds it.
func (p *Plugin) authBurst(bytesPerSec int64) int {
	if p.limits.authBurst > 0 {
		return p.limits.authBurst
	}
	return int(min(bytesPerSec, math.MaxInt32))
}

func appendLimiter(ls []*rate.Limiter, l *rate.Limiter) []*rate.Limiter {
	if l == nil {
		return ls
	}
	return append(ls, l)
}

// OnClose implements plugins.Closer: the channel lets go of the shared
// limiters it held. Channels this instance did not set up are ignored.
func (p *Plugin) OnClose(s *plugins.Session, _ plugins.Stats) {
	key := sessionKey{p}
	st, _ := s.Value(key).(*channelState)
	if st == nil {
		return
	}
	s.SetValue(key, nil)
	now := p.now()
	if st.client != nil {
		p.clients.release(st.clientKey, st.client, now)
	}
	if st.user != nil {
		st.userTable.release(st.userKey, st.user, now)
	}
}

// OnRead implements plugins.Reader: it waits until the limits on the
// way up allow b.
func (p *Plugin) OnRead(s *plugins.Session, b []byte) ([]byte, error) {
	return p.pass(s, plugins.Up, b)
}

// OnWrite implements plugins.Writer: it waits until the limits on the
// way down allow b.
func (p *Plugin) OnWrite(s *plugins.Session, b []byte) ([]byte, error) {
	return p.pass(s, plugins.Down, b)
}

// pass waits until the channel's limiters for direction d allow b, then
// returns it unchanged.
func (p *Plugin) pass(s *plugins.Session, d plugins.Direction, b []byte) ([]byte, error) {
	st, _ := s.Value(sessionKey{p}).(*channelState)
	if st == nil {
		return b, nil
	}
	var err error
	if d == plugins.Up {
		err = p.wait(s.Context(), &st.up, len(b), s.SendUpstream)
	} else {
		err = p.wait(s.Context(), &st.down, len(b), s.SendClient)
	}
	if err != nil {
		return nil, err
	}
	return b, nil
}

// clientAddr is the IP address of a client address (see
// Session.ClientIP); ok is false when it has none.
func clientAddr(a net.Addr) (netip.Addr, bool) {
	ip := (&plugins.Session{Client: a}).ClientIP()
	return ip, ip.IsValid()
}
