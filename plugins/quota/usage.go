package quota

import (
	"context"
	"sort"
	"strings"
	"time"

	"ferry/plugins"
)

// maxListed bounds the counters one Usage call reads from the store.
const maxListed = 100000

// Usage implements plugins.UsageReporter: the usage of every subject the
// store holds for the instance's budgets, in their current periods,
// sorted by budget and subject.
func (p *Plugin) Usage(ctx context.Context) ([]plugins.Usage, error) {
	entries, err := p.st.Entries(ctx, p.name+"/", maxListed)
	now := p.now()
	type sum struct {
		lim     *limit
		subject string
	}
	used := map[sum]int64{}
	for _, e := range entries {
		lim := p.limitOf(e.Key.Scope)
		if lim == nil || !lim.current(e.Key.End, now) {
			continue
		}
		used[sum{lim, e.Key.Subject}] += e.Total
	}
	out := make([]plugins.Usage, 0, len(used))
	for k, n := range used {
		out = append(out, p.usage(k.lim, k.subject, n, now))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Quota != out[j].Quota {
			return out[i].Quota < out[j].Quota
		}
		return out[i].Subject < out[j].Subject
	})
	return out, err
}

// usage describes one subject's usage of lim.
func (p *Plugin) usage(lim *limit, subject string, used int64, now time.Time) plugins.Usage {
	per, name, _ := strings.Cut(subject, ":")
	u := plugins.Usage{Plugin: p.name, Quota: lim.name, Per: per, Subject: name,
		Direction: lim.direction(), Used: used, Limit: lim.bytes}
	if lim.period.kind == "window" {
		u.Window = lim.period.window.String()
	} else {
		_, end := lim.period.slot(now)
		u.PeriodEnd = end
	}
	return u
}

// limitOf is the budget whose counters have scope; nil for none.
func (p *Plugin) limitOf(scope string) *limit {
	for _, l := range p.limits {
		if l.scope == scope {
			return l
		}
	}
	return nil
}

// current reports whether a counter whose span ends at end counts now:
// the current calendar period, or one of the window's buckets that an
// account sums (the current one and the buckets()-1 before it).
func (l *limit) current(end int64, now time.Time) bool {
	_, cur := l.period.slot(now)
	if l.period.kind != "window" {
		return end == cur.Unix()
	}
	span := int64(l.period.buckets()) * int64(l.period.bucket/time.Second)
	return end <= cur.Unix() && end > cur.Unix()-span
}

func (l *limit) direction() string {
	switch {
	case l.up && l.down:
		return "total"
	case l.up:
		return "up"
	}
	return "down"
}

// ResetUsage implements plugins.UsageReporter: it forgets subject's usage
// of every budget of the instance, in the store and in the accounts that
// live channels hold.
func (p *Plugin) ResetUsage(ctx context.Context, subject string) (int, error) {
	n, err := p.st.Reset(ctx, p.name+"/", subject)
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, a := range p.accounts {
		if k.subject == subject {
			a.mu.Lock()
			a.cur.Store(nil) // the next use sums the (now empty) counters again
			a.mu.Unlock()
		}
	}
	return n, err
}
