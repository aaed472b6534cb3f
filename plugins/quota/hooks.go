package quota

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"ferry/plugins"
	"ferry/plugins/pkg/units"
	"ferry/state"
)

// sessionKey keys a channel's state; the instance is part of it so that
// two quota instances on one listener keep apart.
type sessionKey struct{ p *Plugin }

// channelState is what a channel holds of an instance: the accounts it
// counts against, and whether a spent budget ended it.
type channelState struct {
	accounts []*account
	spent    atomic.Pointer[limit]
}

// OnConnect implements plugins.Connector: it refuses a channel that
// counts against a spent budget.
func (p *Plugin) OnConnect(ctx context.Context, s *plugins.Session) error {
	key := sessionKey{p}
	if s.Value(key) != nil {
		return nil // the instance is listed twice: count the channel once
	}
	now := p.now()
	p.sweep(now)
	cs := &channelState{}
	s.SetValue(key, cs) // before any error: OnClose gives back what was taken
	for _, lim := range p.limits {
		for _, subject := range subjects(lim, s) {
			a, err := p.account(ctx, lim, subject, now)
			if err != nil {
				if err := p.unavailable(s, err); err != nil {
					return err
				}
				continue // fail_open: this account goes uncounted
			}
			cs.accounts = append(cs.accounts, a)
			if err := p.check(s, a, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// subjects are the accounts' subjects of a channel under lim.
func subjects(lim *limit, s *plugins.Session) []string {
	switch lim.per {
	case "user":
		if s.User != "" {
			return []string{"user:" + s.User}
		}
	case "group":
		out := make([]string, 0, len(s.Groups))
		for _, g := range s.Groups {
			out = append(out, "group:"+g)
		}
		return out
	case "client":
		if ip := s.ClientIP(); ip.IsValid() {
			return []string{"client:" + ip.String()}
		}
	}
	return nil
}

// check refuses the channel when a's budget is spent, or, with
// fail_closed, when a's usage is unknown.
func (p *Plugin) check(s *plugins.Session, a *account, now time.Time) error {
	used, sl, err := a.used(now)
	if err != nil {
		return p.unavailable(s, err)
	}
	if !a.known() && p.st.OnError() == state.FailClosed {
		return p.unavailable(s, fmt.Errorf("usage of %s not read yet", a.subject))
	}
	if used < a.lim.bytes {
		return nil
	}
	msg := fmt.Sprintf("quota %q of %s spent: %v of %v used%s", a.lim.name, a.subject,
		units.Size(used), units.Size(a.lim.bytes), until(a.lim, sl))
	p.refused(s, msg)
	return plugins.Reject(plugins.CodeForbidden, msg)
}

// until says when a spent budget comes back.
func until(lim *limit, sl *slot) string {
	if lim.period.kind == "window" {
		return " in the last " + lim.period.window.String()
	}
	return ", until " + time.Unix(sl.end, 0).In(lim.period.loc).Format(time.RFC3339)
}

// unavailable is the answer while the store cannot be read: fail_open
// admits the channel, fail_closed refuses it.
func (p *Plugin) unavailable(s *plugins.Session, err error) error {
	if p.st.OnError() == state.FailOpen {
		return nil
	}
	msg := "quota store unavailable (on_error = fail_closed)"
	p.refused(s, msg+": "+err.Error())
	return plugins.Reject(plugins.CodeForbidden, msg)
}

func (p *Plugin) refused(s *plugins.Session, msg string) {
	if ok, suppressed := p.warn.Pass(p.now()); ok {
		p.log.Warn().Str("id", s.ID).Str("listener", s.Listener).Str("user", s.User).
			Str("target", s.Target).Int("suppressed", suppressed).Msg(msg)
	}
}

// OnBytes implements plugins.Meter: it counts n bytes going d against
// the channel's accounts of that direction. With end_live, the chunk that
// spends a budget is cut to what fits, which ends the channel, as does
// any later chunk.
func (p *Plugin) OnBytes(s *plugins.Session, d plugins.Direction, n int) (int, error) {
	cs, _ := s.Value(sessionKey{p}).(*channelState)
	if cs == nil || n == 0 {
		return n, nil
	}
	if cs.spent.Load() != nil {
		return 0, plugins.ErrClose
	}
	now := p.now()
	size := int64(n)
	keep := size
	var spent *limit
	for _, a := range cs.accounts {
		if !a.lim.counts(d) {
			continue
		}
		used, err := a.add(now, size)
		if err != nil || !p.endLive || used <= a.lim.bytes {
			continue // the store is failing: the account counts on when it is back
		}
		if fits := a.lim.bytes - (used - size); fits < keep {
			keep, spent = max(fits, 0), a.lim
		}
	}
	if spent == nil {
		return n, nil
	}
	p.uncount(cs, d, now, size-keep)
	if cs.spent.CompareAndSwap(nil, spent) {
		s.SetLogField("quota", spent.name)
	}
	return int(keep), plugins.ErrClose
}

// uncount takes back n bytes not delivered from the accounts of d.
func (p *Plugin) uncount(cs *channelState, d plugins.Direction, now time.Time, n int64) {
	if n == 0 {
		return
	}
	for _, a := range cs.accounts {
		if a.lim.counts(d) {
			_, _ = a.add(now, -n)
		}
	}
}

// counts reports whether lim counts bytes going d.
func (l *limit) counts(d plugins.Direction) bool {
	if d == plugins.Up {
		return l.up
	}
	return l.down
}

// OnClose implements plugins.Closer: the channel lets go of its accounts.
func (p *Plugin) OnClose(s *plugins.Session, _ plugins.Stats) {
	key := sessionKey{p}
	cs, _ := s.Value(key).(*channelState)
	if cs == nil {
		return
	}
	s.SetValue(key, nil)
	now := p.now().UnixNano()
	for _, a := range cs.accounts {
		if a.refs.Add(-1) == 0 {
			a.idle.Store(now)
		}
	}
}

// account returns the account of subject under lim, held for a channel
// (OnClose lets go), making it the first time.
func (p *Plugin) account(ctx context.Context, lim *limit, subject string, now time.Time) (*account, error) {
	k := accountKey{lim, subject}
	p.mu.Lock()
	a, ok := p.accounts[k]
	if ok {
		a.refs.Add(1)
	}
	p.mu.Unlock()
	if ok {
		return a, nil
	}
	// Outside the lock: the first read of the store may take a while.
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	a, err := newAccount(ctx, p.st, lim, subject, now)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if other, ok := p.accounts[k]; ok {
		a = other
	} else {
		p.accounts[k] = a
	}
	a.refs.Add(1)
	return a, nil
}

// sweep lets go, at most once per sweepEvery, of accounts no channel has
// held for idleAfter; the store keeps their usage.
func (p *Plugin) sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.nextSweep) {
		return
	}
	p.nextSweep = now.Add(sweepEvery)
	stale := now.Add(-idleAfter).UnixNano()
	for k, a := range p.accounts {
		if a.refs.Load() == 0 && a.idle.Load() < stale {
			delete(p.accounts, k)
		}
	}
}
