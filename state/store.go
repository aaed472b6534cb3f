package state

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins/pkg/throttle"
)

// Config is a Store's settings. Zero values take the defaults named.
type Config struct {
	// Backend holds the counters. When nil, the Store waits for Start:
	// until then its counters count in memory, unread.
	Backend Backend
	// OnError is what plugins do while Backend fails; the Store only
	// reports it (see Store.OnError).
	OnError OnError
	// FlushEvery is how often gathered counts go to the backend, and how
	// often a shared backend's counters are read again. Default 1s.
	FlushEvery time.Duration
	// FlushBytes makes a counter with this much gathered wake the flusher
	// before FlushEvery. Default 1 MiB.
	FlushBytes int64
	// MaxCounters bounds the counters held in memory, which is also what
	// bounds the counts kept while the backend is down. Default 100000.
	MaxCounters int
	// Timeout bounds each backend call. Default 2s.
	Timeout time.Duration
	// Log gets the warnings (at most one a second) and the recovery.
	Log zerolog.Logger
	// LeaseTime is how long a lease lives unless refreshed (see Lease).
	// Default DefaultLeaseTime.
	LeaseTime time.Duration
	// Shared says the Backend, once started, is shared with other
	// processes (Redis), so that plugins can choose at build time.
	Shared bool
}

// Defaults of Config.
const (
	DefaultFlushEvery  = time.Second
	DefaultFlushBytes  = 1 << 20
	DefaultMaxCounters = 100000
	DefaultTimeout     = 2 * time.Second
	// idleAfter is how long a counter nobody touched stays in memory.
	idleAfter = 10 * time.Minute
	// maxBatch bounds the keys of one backend call.
	maxBatch = 1000
)

// Store hands out Counters and flushes them to its Backend. Safe for
// concurrent use.
type Store struct {
	cfg Config

	mu       sync.Mutex
	counters map[Key]*Counter

	// started is set once the backend is (Start), before the flusher
	// runs; Counter, Entries and Reset read cfg.Backend only after it.
	started atomic.Bool
	healthy atomic.Bool
	errors  atomic.Uint64
	warn    throttle.Gate
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	closed  sync.Once
	leases  leases
}

// Counter is one usage counter: the total the backend last reported plus
// what was added here since. Add and Total are atomic operations only.
type Counter struct {
	st      *Store
	key     Key
	expires time.Time
	base    atomic.Int64 // the backend's total when last heard
	pending atomic.Int64 // added here, not yet flushed
	loaded  atomic.Bool  // base came from the backend
	touched atomic.Int64 // Unix nanoseconds of the last Total, or of the flush after an Add
	added   atomic.Bool  // Add ran since the last flush looked
	evicted atomic.Bool  // the Store let it go: Add hands its counts back
	// read is closed once Counter's first read of the backend is over,
	// so that callers who find the counter meanwhile wait for its total.
	read chan struct{}
}

// New makes a Store, started over cfg.Backend if it is set (else see
// Start); Close stops it.
func New(cfg Config) *Store {
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = DefaultFlushEvery
	}
	if cfg.FlushBytes <= 0 {
		cfg.FlushBytes = DefaultFlushBytes
	}
	if cfg.MaxCounters <= 0 {
		cfg.MaxCounters = DefaultMaxCounters
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	s := &Store{cfg: cfg, counters: make(map[Key]*Counter), warn: throttle.Gate{Period: time.Second},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.leases.live, s.leases.local, s.leases.id = make(map[*Lease]struct{}), make(map[string]int), newInstanceID()
	s.healthy.Store(true)
	if cfg.Backend != nil {
		s.Start(cfg.Backend)
	}
	return s
}

// Start gives the Store its backend and starts the flusher; only the
// first call counts. The server opens the backend when it starts the
// configuration, not when it builds it, so that building (ferry check,
// a reload that fails) takes no file lock.
func (s *Store) Start(b Backend) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started.Load() {
		return
	}
	s.cfg.Backend = b
	s.started.Store(true)
	go s.run()
}

// OnError is the configured behaviour while the backend fails.
func (s *Store) OnError() OnError { return s.cfg.OnError }

// SetOnError changes it (a reload that changed only on_error).
func (s *Store) SetOnError(o OnError) {
	s.mu.Lock()
	s.cfg.OnError = o
	s.mu.Unlock()
}

// Healthy reports whether the backend answered the last call.
func (s *Store) Healthy() bool { return s.healthy.Load() }

// Errors counts failed backend calls since the Store started.
func (s *Store) Errors() uint64 { return s.errors.Load() }

// Counter returns the counter of k, expiring at expires, creating it the
// first time. A new counter reads its total from the backend, within ctx
// and Timeout, unless the backend is failing; a counter whose total is
// not known yet (Known is false) is read again by the flusher.
func (s *Store) Counter(ctx context.Context, k Key, expires time.Time) (*Counter, error) {
	cs, err := s.Counters(ctx, []Key{k}, expires)
	if err != nil {
		return nil, err
	}
	return cs[0], nil
}

// Counters is Counter for several keys of one expiry rule at once:
// expires is the expiry of the first; each later key's expiry is its End
// shifted as much as the first key's is (a window's buckets). The new
// ones are read in one backend call. Callers that find a counter whose
// first read another caller has in flight wait for it, after their own
// reads, so that two callers never wait for each other.
func (s *Store) Counters(ctx context.Context, ks []Key, expires time.Time) ([]*Counter, error) {
	shift := expires.Unix() - ks[0].End
	out := make([]*Counter, len(ks))
	var fresh []*Counter
	defer func() {
		for _, c := range fresh {
			close(c.read)
		}
	}()
	for i, k := range ks {
		c, isFresh, err := s.lookup(k, time.Unix(k.End+shift, 0))
		if err != nil {
			return nil, err
		}
		out[i] = c
		if isFresh {
			fresh = append(fresh, c)
		}
	}
	if len(fresh) > 0 && s.healthy.Load() && s.started.Load() {
		s.read(ctx, fresh)
	}
	for _, c := range fresh {
		close(c.read)
	}
	fresh = nil
	for _, c := range out {
		select { // another caller may be reading its total: wait for it
		case <-c.read:
		case <-ctx.Done():
			return out, nil
		}
	}
	return out, nil
}

// read sets the totals of counters from the backend, within ctx and
// Timeout, in batches of maxBatch; false when the backend failed.
func (s *Store) read(ctx context.Context, cs []*Counter) bool {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	for len(cs) > 0 {
		n := min(len(cs), maxBatch)
		keys := make([]Key, n)
		for i, c := range cs[:n] {
			keys[i] = c.key
		}
		totals, err := s.cfg.Backend.Get(ctx, keys)
		if err != nil {
			s.failed(fmt.Errorf("read %d counters: %w", n, err))
			return false
		}
		s.recovered()
		for i, c := range cs[:n] {
			c.setBase(totals[i])
		}
		cs = cs[n:]
	}
	return true
}

// lookup finds or makes the counter of k; fresh says it was made.
func (s *Store) lookup(k Key, expires time.Time) (c *Counter, fresh bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.counters[k]; ok {
		return c, false, nil
	}
	if len(s.counters) >= s.cfg.MaxCounters {
		s.evictLocked(time.Now())
		if len(s.counters) >= s.cfg.MaxCounters {
			return nil, false, ErrFull
		}
	}
	c = &Counter{st: s, key: k, expires: expires, read: make(chan struct{})}
	c.touch()
	s.counters[k] = c
	return c, true, nil
}

// Add counts n more and returns the total as this process knows it.
func (c *Counter) Add(n int64) int64 {
	p := c.pending.Add(n)
	c.added.Store(true)
	if c.evicted.Load() {
		c.st.readopt(c)
	}
	if p >= c.st.cfg.FlushBytes && p-n < c.st.cfg.FlushBytes {
		select {
		case c.st.kick <- struct{}{}:
		default:
		}
	}
	return c.base.Load() + p
}

// Total is the counter's total as this process knows it.
func (c *Counter) Total() int64 {
	c.touch()
	return c.base.Load() + c.pending.Load()
}

// Known reports whether the total includes the backend's.
func (c *Counter) Known() bool { return c.loaded.Load() }

// Stale reports whether the Store let the counter go (it was idle): its
// holder should ask the Store for the key's counter again. Counts added
// to a stale counter are not lost (see readopt).
func (c *Counter) Stale() bool { return c.evicted.Load() }

// readopt takes back a counter that was let go but is still added to:
// into the table again when the key has no other counter, else its
// pending counts move to the one that has taken its place.
func (s *Store) readopt(c *Counter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !c.evicted.Load() {
		return
	}
	cur, ok := s.counters[c.key]
	if !ok {
		c.evicted.Store(false)
		s.counters[c.key] = c
		return
	}
	cur.pending.Add(c.pending.Swap(0))
}

// Key is the counter's key.
func (c *Counter) Key() Key { return c.key }

func (c *Counter) touch() { c.touched.Store(time.Now().UnixNano()) }

func (c *Counter) setBase(total int64) {
	c.base.Store(total)
	c.loaded.Store(true)
}

// failed notes a backend failure: a metric, a warning at most once a
// second.
func (s *Store) failed(err error) {
	s.errors.Add(1)
	s.healthy.Store(false)
	if ok, suppressed := s.warn.Pass(time.Now()); ok {
		s.cfg.Log.Warn().Err(err).Int("suppressed", suppressed).
			Msg("state store unreachable: counting in memory until it is back")
	}
}

// recovered notes a backend call that worked.
func (s *Store) recovered() {
	if !s.healthy.Swap(true) {
		s.cfg.Log.Info().Msg("state store reachable again")
	}
}

// Close flushes what is pending, within ctx, and closes the backend.
func (s *Store) Close(ctx context.Context) error {
	var err error
	s.closed.Do(func() {
		if !s.started.Load() {
			return
		}
		close(s.stop)
		<-s.done
		s.flush(ctx)
		if n := s.unflushed(); n > 0 {
			err = fmt.Errorf("state store unreachable at close: the counts of %d counters are lost", n)
		}
		if cerr := s.cfg.Backend.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close state store: %w", cerr))
		}
	})
	return err
}

// unflushed counts the counters with counts the backend has not got.
func (s *Store) unflushed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counters {
		if c.pending.Load() != 0 {
			n++
		}
	}
	return n
}
