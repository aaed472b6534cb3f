package quota

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"ferry/state"
)

// account is one subject's usage against one limit ("user:alice" against
// "daily"). The data path reads and adds through the current slot with
// atomics only; the slot changes when its span ends (a new day, the next
// bucket of a window), under mu.
type account struct {
	lim     *limit
	subject string
	st      *state.Store

	mu  sync.Mutex
	cur atomic.Pointer[slot]
	// ring holds a window's bucket counters by bucket number modulo
	// its length; nil for calendar periods.
	ring []*state.Counter
	// refs counts the channels holding the account; idle is when the
	// last let go (Unix nanoseconds), for the plugin's sweep.
	refs atomic.Int64
	idle atomic.Int64
}

// slot is the counter an account adds to until end (Unix seconds), and,
// for a window, the usage of its earlier buckets still in the window.
type slot struct {
	end   int64
	c     *state.Counter
	older int64
}

// newAccount makes the account and reads its usage from the store.
func newAccount(ctx context.Context, st *state.Store, lim *limit, subject string, now time.Time) (*account, error) {
	a := &account{lim: lim, subject: subject, st: st}
	if n := lim.period.buckets(); n > 1 {
		a.ring = make([]*state.Counter, n)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.rollLocked(ctx, now); err != nil {
		return nil, err
	}
	return a, nil
}

// current is the slot for now, rolling over to a new one when the last
// ended. The roll reads the store (once per period or bucket).
func (a *account) current(now time.Time) (*slot, error) {
	if s := a.cur.Load(); s.valid(now) {
		return s, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.cur.Load(); s.valid(now) {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), rollTimeout)
	defer cancel()
	if err := a.rollLocked(ctx, now); err != nil {
		return nil, err
	}
	return a.cur.Load(), nil
}

// valid reports whether s is the slot for now: its span has not ended
// and the store still holds its counter.
func (s *slot) valid(now time.Time) bool {
	return s != nil && now.Unix() < s.end && !s.c.Stale()
}

// rollTimeout bounds the store read of a roll in the data path.
const rollTimeout = time.Second

// rollLocked makes the slot for now; a window sums the buckets still in
// it, reading from the store, in one call with the current bucket's, those
// the account does not hold yet.
func (a *account) rollLocked(ctx context.Context, now time.Time) error {
	p := a.lim.period
	_, end := p.slot(now)
	keys := []state.Key{a.key(end)}
	var b, n int64
	if a.ring != nil {
		b, n = int64(p.bucket/time.Second), int64(len(a.ring))
		for i := int64(1); i < n; i++ {
			e := end.Unix() - i*b
			if old := a.ring[(e/b)%n]; old == nil || old.Key().End != e || old.Stale() {
				keys = append(keys, a.key(time.Unix(e, 0)))
			}
		}
	}
	cs, err := a.st.Counters(ctx, keys, p.expires(end))
	if err != nil {
		return err
	}
	s := &slot{end: end.Unix(), c: cs[0]}
	if a.ring != nil {
		for _, c := range cs {
			a.ring[(c.Key().End/b)%n] = c
		}
		for i := int64(1); i < n; i++ {
			s.older += a.ring[((end.Unix()-i*b)/b)%n].Total()
		}
	}
	a.cur.Store(s)
	return nil
}

func (a *account) key(end time.Time) state.Key {
	return state.Key{Scope: a.lim.scope, Subject: a.subject, End: end.Unix()}
}

// used is the account's usage now.
func (a *account) used(now time.Time) (int64, *slot, error) {
	s, err := a.current(now)
	if err != nil {
		return 0, nil, err
	}
	return s.older + s.c.Total(), s, nil
}

// add counts n bytes and returns the usage after them.
func (a *account) add(now time.Time, n int64) (int64, error) {
	s, err := a.current(now)
	if err != nil {
		return 0, err
	}
	return s.older + s.c.Add(n), nil
}

// known reports whether the usage includes the store's (false while the
// store has not answered for the current slot).
func (a *account) known() bool {
	s := a.cur.Load()
	return s != nil && s.c.Known()
}
