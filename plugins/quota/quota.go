// Package quota is the quota plugin: byte budgets per user, group or
// client address, up, down or both, over a calendar period (day, week,
// month in a time zone) or a rolling window, kept in the [state] store so
// that they survive restarts (and, with Redis, hold across a fleet).
//
//	[[plugin]]
//	name = "quota"
//	timezone = "Europe/Berlin"
//	end_live = true
//	[[plugin.limit]]
//	name = "daily"
//	per = "user"
//	bytes = "10GiB"
//	period = "day"
//
// OnConnect finds the accounts a channel counts against (one per limit
// and subject: the user, each of the user's groups, the client address)
// and refuses it with plugins.CodeForbidden (HTTP 403 whose body names the
// quota, SOCKS5 0x02) when one is spent. It counts as a plugins.Meter, so
// tunnels keep the kernel splice path: each chunk's size is added to the
// accounts with an atomic add (the store flushes them in batches, see
// package state) and, with end_live, the chunk that crosses a budget is
// cut to what fits and the channel ends, so one process overshoots by
// nothing it sees; other processes sharing a Redis add up to their flush
// interval's worth before this one hears of it. A channel ended so gets
// the access-log field quota=NAME.
//
// While the store is unreachable (see state.Store), fail_open admits
// channels and counts in memory, fail_closed refuses channels whose usage
// it cannot read.
//
// The package does not shape bandwidth (ratelimit does), does not count
// datagrams of SOCKS5 UDP associations, and counts bytes after the other
// plugins' data hooks: what ferry delivered, each way.
package quota

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/throttle"
	"ferry/plugins/pkg/units"
	"ferry/state"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "quota",
		Description: "byte budgets per user, group or client over a day, week, month or rolling window",
		New:         New,
	})
}

// Config is the plugin's TOML table.
type Config struct {
	// Timezone is the IANA time zone ("Europe/Berlin") calendar periods
	// start at midnight in. Default "UTC".
	Timezone string `toml:"timezone"`
	// EndLive ends live channels once a budget they count against is
	// spent. Default false: only new channels are refused.
	EndLive bool `toml:"end_live"`
	// Limits are the budgets; at least one.
	Limits []LimitConfig `toml:"limit"`
}

// LimitConfig is one [[plugin.limit]] table.
type LimitConfig struct {
	// Name names the budget in refusals, /usage and metrics; unique in
	// the instance. Default "limit-N" (N from 0).
	Name string `toml:"name"`
	// Per is whose budget it is: "user" (channels without a user are not
	// counted), "group" (each of the user's groups has one, shared by its
	// members) or "client" (the client's IP address). Required.
	Per string `toml:"per"`
	// Direction is what counts: "up" (client to upstream), "down" or
	// "total" (both, the default).
	Direction string `toml:"direction"`
	// Bytes is the budget. Required, positive.
	Bytes units.Size `toml:"bytes"`
	// Period is "day", "week" (from Monday) or "month", in Timezone.
	// Give Period or Window.
	Period string `toml:"period"`
	// Window is a rolling window (at least 1m), counted in 60 slices:
	// usage falls back a slice at a time.
	Window units.Duration `toml:"window"`
}

// limit is one budget, resolved.
type limit struct {
	name     string
	per      string
	up, down bool // directions that count
	bytes    int64
	period   period
	// scope is the store's Scope of its counters: instance/limit.
	scope string
}

// Timings and bounds of the plugin.
const (
	// warnEvery is how often, at most, a refusal is logged.
	warnEvery = 10 * time.Second
	// sweepEvery is how often, at most, idle accounts are let go.
	sweepEvery = time.Minute
	// idleAfter is how long an account without channels is kept.
	idleAfter = 10 * time.Minute
	// connectTimeout bounds the store reads of OnConnect.
	connectTimeout = 2 * time.Second
)

// Plugin is one quota instance.
type Plugin struct {
	name    string
	log     zerolog.Logger
	st      *state.Store
	limits  []*limit
	endLive bool
	now     func() time.Time
	warn    throttle.Gate

	mu        sync.Mutex
	accounts  map[accountKey]*account
	nextSweep time.Time
}

type accountKey struct {
	lim     *limit
	subject string
}

var (
	_ plugins.Connector     = (*Plugin)(nil)
	_ plugins.Closer        = (*Plugin)(nil)
	_ plugins.Meter         = (*Plugin)(nil)
	_ plugins.DataDirector  = (*Plugin)(nil)
	_ plugins.UsageReporter = (*Plugin)(nil)
)

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	limits, err := resolve(env.Name, cfg)
	if err != nil {
		return nil, err
	}
	if env.State == nil {
		return nil, errors.New("no [state] store to keep usage in")
	}
	st, err := env.State()
	if err != nil {
		return nil, err
	}
	return &Plugin{name: env.Name, log: env.Log, st: st, limits: limits, endLive: cfg.EndLive,
		now: time.Now, warn: throttle.Gate{Period: warnEvery}, accounts: make(map[accountKey]*account)}, nil
}

// resolve validates cfg; every problem at once, each at its key.
func resolve(instance string, cfg Config) ([]*limit, error) {
	var errs []error
	loc := time.UTC
	if cfg.Timezone != "" {
		l, err := time.LoadLocation(cfg.Timezone)
		if err != nil {
			errs = append(errs, plugins.Errorf("timezone", "unknown time zone %q: want an IANA name like \"Europe/Berlin\"", cfg.Timezone))
		} else {
			loc = l
		}
	}
	if len(cfg.Limits) == 0 {
		errs = append(errs, errors.New("no limit: add a [[plugin.limit]] table"))
	}
	var out []*limit
	names := map[string]int{}
	for i, lc := range cfg.Limits {
		lim, err := resolveLimit(i, lc, loc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if j, dup := names[lim.name]; dup {
			errs = append(errs, plugins.Errorf(fmt.Sprintf("limit[%d].name", i), "duplicate name %q (also limit[%d])", lim.name, j))
			continue
		}
		names[lim.name] = i
		lim.scope = instance + "/" + lim.name
		out = append(out, lim)
	}
	return out, errors.Join(errs...)
}

// resolveLimit checks one [[plugin.limit]].
func resolveLimit(i int, lc LimitConfig, loc *time.Location) (*limit, error) {
	key := func(k string) string { return fmt.Sprintf("limit[%d].%s", i, k) }
	var errs []error
	lim := &limit{name: lc.Name, per: lc.Per, bytes: int64(lc.Bytes)}
	if lim.name == "" {
		lim.name = fmt.Sprintf("limit-%d", i)
	}
	switch lc.Per {
	case "user", "group", "client":
	case "":
		errs = append(errs, plugins.Errorf(key("per"), `missing: whose budget, "user", "group" or "client"`))
	default:
		errs = append(errs, plugins.Errorf(key("per"), `unknown value %q: want "user", "group" or "client"`, lc.Per))
	}
	switch lc.Direction {
	case "", "total":
		lim.up, lim.down = true, true
	case "up":
		lim.up = true
	case "down":
		lim.down = true
	default:
		errs = append(errs, plugins.Errorf(key("direction"), `unknown value %q: want "up", "down" or "total"`, lc.Direction))
	}
	if lc.Bytes <= 0 {
		errs = append(errs, plugins.Errorf(key("bytes"), "must be positive, like \"10GiB\""))
	}
	var err error
	switch {
	case lc.Period != "" && lc.Window != 0:
		errs = append(errs, plugins.Errorf(key("window"), "give period or window, not both"))
	case lc.Window != 0:
		if lim.period, err = newPeriod("window", loc, lc.Window.D()); err != nil {
			errs = append(errs, plugins.Errorf(key("window"), "%v", err))
		}
	case lc.Period == "":
		errs = append(errs, plugins.Errorf(key("period"), `missing: "day", "week" or "month", or a rolling window`))
	default:
		if lim.period, err = newPeriod(lc.Period, loc, 0); err != nil {
			errs = append(errs, plugins.Errorf(key("period"), "%v", err))
		}
	}
	return lim, errors.Join(errs...)
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// DataDirections implements plugins.DataDirector: the directions some
// limit counts, the only ones its Meter is told about.
func (p *Plugin) DataDirections() plugins.Directions {
	var ds plugins.Directions
	for _, l := range p.limits {
		if l.up {
			ds |= plugins.UpData
		}
		if l.down {
			ds |= plugins.DownData
		}
	}
	return ds
}
