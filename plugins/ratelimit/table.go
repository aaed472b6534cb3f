package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"ferry/state"
)

// bucket holds the shared limiters of one client address or user.
type bucket struct {
	up, down *rate.Limiter // bandwidth; nil: that direction unlimited
	conn     *rate.Limiter // new connections; nil in bandwidth tables
	// sharedUp and sharedDown are the fleet's buckets of the key, with a
	// shared store (see shared.go); nil otherwise.
	sharedUp, sharedDown *state.Bucket
	users                int // channels holding the bucket; guarded by table.mu
}

// full reports whether every limiter of b has its whole burst back at
// now: b then behaves exactly like a new bucket, so dropping it loses
// nothing.
func (b *bucket) full(now time.Time) bool {
	for _, l := range [...]*rate.Limiter{b.up, b.down, b.conn} {
		if l != nil && l.TokensAt(now) < float64(l.Burst()) {
			return false
		}
	}
	return true
}

// table is one shared scope's buckets by key (a client address or a user
// name). A bucket lives while channels hold it and until it has refilled;
// sweeps, run from acquire and allow at most once per sweepEvery, and
// release drop the others. Safe for concurrent use.
type table struct {
	newBucket func() *bucket // makes a bucket unless acquire says otherwise
	// onNew, when set, completes a bucket just made for key.
	onNew     func(key string, b *bucket)
	mu        sync.Mutex
	m         map[string]*bucket
	nextSweep time.Time
}

func newTable(newBucket func() *bucket) *table {
	return &table{newBucket: newBucket, m: make(map[string]*bucket)}
}

// getLocked returns key's bucket, creating it with mk (nil: newBucket),
// and sweeps when due.
func (t *table) getLocked(key string, now time.Time, mk func() *bucket) *bucket {
	if !now.Before(t.nextSweep) {
		t.sweepLocked(now)
		t.nextSweep = now.Add(sweepEvery)
	}
	b, ok := t.m[key]
	if !ok {
		if mk == nil {
			mk = t.newBucket
		}
		b = mk()
		if t.onNew != nil {
			t.onNew(key, b)
		}
		t.m[key] = b
	}
	return b
}

// acquire returns key's bucket for a channel to hold until release,
// made by mk (nil: newBucket) when key has none.
func (t *table) acquire(key string, now time.Time, mk func() *bucket) *bucket {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.getLocked(key, now, mk)
	b.users++
	return b
}

// release lets go of a bucket acquire returned; the last channel to let
// go of a full bucket drops it at once.
func (t *table) release(key string, b *bucket, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b.users--
	if b.users == 0 && t.m[key] == b && b.full(now) {
		delete(t.m, key)
	}
}

// allow takes one new connection from key's bucket, reporting whether
// there was one.
func (t *table) allow(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.getLocked(key, now, nil).conn.AllowN(now, 1)
}

func (t *table) sweepLocked(now time.Time) {
	for k, b := range t.m {
		if b.users == 0 && b.full(now) {
			delete(t.m, k)
		}
	}
}

// len is the number of buckets kept.
func (t *table) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
