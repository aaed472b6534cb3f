package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// run flushes every FlushEvery, or when a counter gathered FlushBytes,
// until Close.
func (s *Store) run() {
	defer close(s.done)
	s.every(s.cfg.FlushEvery, s.kick, func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		defer cancel()
		s.flush(ctx)
	})
}

// every runs fn every d, and whenever kick (nil: never) has a value,
// until Close.
func (s *Store) every(d time.Duration, kick <-chan struct{}, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-kick:
		}
		fn()
	}
}

// errNotStarted is returned by calls that need the backend before Start.
var errNotStarted = errors.New("state store not started")

// flush sends the gathered counts, reads the totals the Store does not
// know (or, for a shared backend, may be stale), and lets idle counters
// go.
func (s *Store) flush(ctx context.Context) {
	now := time.Now()
	var adds, reads []*Counter
	s.mu.Lock()
	stale := now.Add(-idleAfter).UnixNano()
	for _, c := range s.counters {
		if c.added.Swap(false) {
			c.touched.Store(now.UnixNano())
		}
		switch {
		case c.pending.Load() != 0:
			adds = append(adds, c)
		case !c.loaded.Load() || s.cfg.Backend.Shared() && c.touched.Load() > stale:
			reads = append(reads, c)
		}
	}
	s.evictLocked(now)
	s.mu.Unlock()
	for len(adds) > 0 && ctx.Err() == nil {
		n := min(len(adds), maxBatch)
		if !s.flushAdds(ctx, adds[:n]) {
			return
		}
		adds = adds[n:]
	}
	s.read(ctx, reads)
}

// flushAdds sends one batch; false when the backend failed.
func (s *Store) flushAdds(ctx context.Context, cs []*Counter) bool {
	ds := make([]Delta, len(cs))
	for i, c := range cs {
		ds[i] = Delta{Key: c.key, N: c.pending.Load(), Expires: c.expires}
	}
	totals, err := s.cfg.Backend.Add(ctx, ds)
	if err != nil {
		s.failed(fmt.Errorf("flush %d counters: %w", len(ds), err))
		return false
	}
	s.recovered()
	for i, c := range cs {
		// The backend's total includes ds[i].N: what was added since
		// stays pending.
		c.pending.Add(-ds[i].N)
		c.setBase(totals[i])
	}
	return true
}

// evictLocked lets go of counters with nothing pending that expired or
// were not touched for idleAfter. A holder that adds to one later hands
// the counts back (Counter.Add, readopt); the next Counter call for its
// key reads the backend again. The mark goes up before pending is read a
// second time, so an Add racing the eviction either shows in pending
// (the counter stays) or sees the mark (readopt).
func (s *Store) evictLocked(now time.Time) {
	stale := now.Add(-idleAfter).UnixNano()
	for k, c := range s.counters {
		if c.pending.Load() != 0 || !c.loaded.Load() || c.added.Load() {
			continue
		}
		if !now.After(c.expires) && c.touched.Load() >= stale {
			continue
		}
		c.evicted.Store(true)
		if c.pending.Load() != 0 {
			c.evicted.Store(false)
			continue
		}
		delete(s.counters, k)
	}
}

// Entries lists the live counters whose Scope starts with prefix, at most
// limit: the backend's, with what this process has not flushed yet
// added, and the counters only this process knows (the backend is down).
func (s *Store) Entries(ctx context.Context, prefix string, limit int) ([]Entry, error) {
	if !s.started.Load() {
		return nil, errNotStarted
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	stored, err := s.cfg.Backend.List(ctx, prefix, limit)
	if err != nil {
		s.failed(fmt.Errorf("list counters: %w", err))
	}
	now := time.Now()
	byKey := make(map[Key]int, len(stored))
	for i, e := range stored {
		byKey[e.Key] = i
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.counters {
		if !strings.HasPrefix(k.Scope, prefix) || now.After(c.expires) {
			continue
		}
		if i, ok := byKey[k]; ok {
			stored[i].Total += c.pending.Load()
			continue
		}
		if len(stored) < limit {
			stored = append(stored, Entry{Key: k, Total: c.base.Load() + c.pending.Load()})
		}
	}
	return stored, err
}

// Reset forgets the counters of subject whose Scope starts with prefix,
// here and in the backend, and says how many the backend held.
func (s *Store) Reset(ctx context.Context, prefix, subject string) (int, error) {
	if !s.started.Load() {
		return 0, errNotStarted
	}
	s.mu.Lock()
	for k, c := range s.counters {
		if k.Subject == subject && strings.HasPrefix(k.Scope, prefix) {
			c.pending.Store(0)
			c.base.Store(0)
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	n, err := s.cfg.Backend.Delete(ctx, prefix, subject)
	if err != nil {
		s.failed(fmt.Errorf("reset %s: %w", subject, err))
		return n, fmt.Errorf("reset %s: %w", subject, err)
	}
	return n, nil
}
