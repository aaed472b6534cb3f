package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Leaser is what a Backend implements to count concurrent things (open
// channels) across processes: each holder takes a lease, a member of the
// key's set that expires unless refreshed, so that the slots of a process
// that dies free themselves within the lease time.
type Leaser interface {
	// Acquire drops key's expired members, then adds member (expiring
	// after ttl) when fewer than limit remain; ok says it did, n is the
	// count it found.
	Acquire(ctx context.Context, key, member string, limit int, ttl time.Duration) (ok bool, n int, err error)
	// Refresh pushes the expiry of live leases ttl ahead, in one call,
	// adding again those the backend lost (a Redis restarted without
	// persistence), so that the count comes right again.
	Refresh(ctx context.Context, ls []LeaseRef, ttl time.Duration) error
	// Release removes member from key's set.
	Release(ctx context.Context, key, member string) error
}

// LeaseRef names one lease: its key and its member.
type LeaseRef struct{ Key, Member string }

// ErrLimit is returned by Store.Lease when the key holds its limit.
var ErrLimit = errors.New("state: lease limit reached")

// DefaultLeaseTime is how long a lease lives without a refresh; the Store
// refreshes every third of it.
const DefaultLeaseTime = 15 * time.Second

// leasePrefix starts the keys of lease sets in a shared Redis.
const leasePrefix = "ferry:lease:"

// leaseKey is the backend's key of a lease set, its parts escaped like
// encode's.
func leaseKey(scope, subject string) string {
	return leasePrefix + url.QueryEscape(scope) + ":" + url.QueryEscape(subject)
}

// Lease is one slot held in a key's set until Release.
type Lease struct {
	st       *Store
	ref      LeaseRef
	local    bool // counted in the Store's process-local table
	released atomic.Bool
}

// leases are a Store's live leases (refreshed) and, for a backend without
// Leaser, the process-local counts.
type leases struct {
	mu    sync.Mutex
	live  map[*Lease]struct{}
	local map[string]int
	seq   atomic.Uint64
	id    string // this process's part of every member
	// failedAt is when the backend last failed an Acquire (Unix ns; 0:
	// it answered since).
	failedAt atomic.Int64
	once     sync.Once
}

// newInstanceID is a random name for this process's lease members: two
// ferrys (or one restarted) never share one.
func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Lease takes a slot of subject's set in scope when fewer than limit are
// held, across every process that shares the backend when it is a
// Leaser, else in this process. It returns ErrLimit when the set is full.
// When the backend fails it returns an error wrapping ErrUnavailable,
// after noting it (a warning at most once a second, the errors metric),
// and for a second after that fails at once without asking the backend;
// the caller applies OnError, and may count in this process meanwhile.
func (s *Store) Lease(ctx context.Context, scope, subject string, limit int) (*Lease, error) {
	l := &Lease{st: s, ref: LeaseRef{Key: leaseKey(scope, subject),
		Member: s.leases.id + ":" + strconv.FormatUint(s.leases.seq.Add(1), 10)}}
	lr, ok := s.leaser()
	if !ok {
		return s.localLease(l, limit)
	}
	if t := s.leases.failedAt.Load(); t != 0 && time.Since(time.Unix(0, t)) < retryAfter {
		// A Redis that does not answer must not hold every new channel
		// for Timeout: one try a second, the others fail at once.
		return nil, fmt.Errorf("lease %s/%s: %w", scope, subject, ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	got, n, err := lr.Acquire(ctx, l.ref.Key, l.ref.Member, limit, s.leaseTime())
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("lease %s/%s: %w", scope, subject, err) // the caller gave up, not the backend
		}
		s.leases.failedAt.Store(time.Now().UnixNano())
		s.failed(fmt.Errorf("lease %s: %w", l.ref.Key, err))
		return nil, fmt.Errorf("lease %s/%s: %w: %w", scope, subject, ErrUnavailable, err)
	}
	s.leases.failedAt.Store(0)
	s.recovered()
	if !got {
		return nil, fmt.Errorf("%w (%d held)", ErrLimit, n)
	}
	s.leases.mu.Lock()
	s.leases.live[l] = struct{}{}
	s.leases.mu.Unlock()
	s.leases.once.Do(func() { go s.refresh() })
	return l, nil
}

// localLease counts l in the process-local table.
func (s *Store) localLease(l *Lease, limit int) (*Lease, error) {
	l.local = true
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	n := s.leases.local[l.ref.Key]
	if n >= limit {
		return nil, fmt.Errorf("%w (%d held)", ErrLimit, n)
	}
	s.leases.local[l.ref.Key] = n + 1
	return l, nil
}

// leaser is the backend as a Leaser, once started.
func (s *Store) leaser() (Leaser, bool) { return backendAs[Leaser](s) }

// backendAs is the Store's backend as a T (Leaser, Rater), once started.
func backendAs[T any](s *Store) (T, bool) {
	var zero T
	if !s.started.Load() {
		return zero, false
	}
	b, ok := s.cfg.Backend.(T)
	return b, ok
}

func (s *Store) leaseTime() time.Duration {
	if s.cfg.LeaseTime > 0 {
		return s.cfg.LeaseTime
	}
	return DefaultLeaseTime
}

// SharedLeases reports whether leases are counted across processes: the
// configuration names a shared backend (Config.Shared), whether or not
// it is open yet.
func (s *Store) SharedLeases() bool { return s.cfg.Shared }

// Release gives the slot back; only the first call counts. A shared
// lease is removed from the backend at once when it answers (else it
// expires within the lease time, no longer refreshed).
func (l *Lease) Release() {
	if l == nil || l.released.Swap(true) {
		return
	}
	s := l.st
	s.leases.mu.Lock()
	if l.local {
		if s.leases.local[l.ref.Key]--; s.leases.local[l.ref.Key] <= 0 {
			delete(s.leases.local, l.ref.Key)
		}
		s.leases.mu.Unlock()
		return
	}
	delete(s.leases.live, l)
	s.leases.mu.Unlock()
	lr, ok := s.leaser()
	if !ok || !s.healthy.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	if err := lr.Release(ctx, l.ref.Key, l.ref.Member); err != nil {
		s.failed(fmt.Errorf("release lease %s: %w", l.ref.Key, err))
	}
}

// refresh extends the live leases every third of the lease time, in
// batches of maxBatch per backend call, until Close.
func (s *Store) refresh() {
	ttl := s.leaseTime()
	s.every(ttl/3, nil, func() { s.refreshLeases(ttl) })
}

// refreshLeases extends the live leases by ttl. A lease released while
// its refresh was on the way may have been added back after its
// release's ZREM: it is removed again, so that no slot outlives its
// channel by a lease time.
func (s *Store) refreshLeases(ttl time.Duration) {
	lr, _ := s.leaser()
	ls := s.liveLeases()
	for len(ls) > 0 {
		n := min(len(ls), maxBatch)
		refs := make([]LeaseRef, n)
		for i, l := range ls[:n] {
			refs[i] = l.ref
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		err := lr.Refresh(ctx, refs, ttl)
		for _, l := range ls[:n] {
			if err == nil && l.released.Load() {
				_ = lr.Release(ctx, l.ref.Key, l.ref.Member)
			}
		}
		cancel()
		if err != nil {
			s.failed(fmt.Errorf("refresh %d leases: %w", n, err))
			return
		}
		s.recovered()
		ls = ls[n:]
	}
}

func (s *Store) liveLeases() []*Lease {
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	out := make([]*Lease, 0, len(s.leases.live))
	for l := range s.leases.live {
		out = append(out, l)
	}
	return out
}
