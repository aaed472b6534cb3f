package state

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"time"
)

// Rater is what a Backend implements to share token buckets (bandwidth)
// across processes, as a GCRA: the bucket is one "theoretical arrival
// time", and a reservation moves it on by n tokens' worth.
type Rater interface {
	// Reserve takes n tokens from key's bucket (rate tokens a second,
	// holding burst at most) and says how long the caller must wait
	// before it may use them: zero when the bucket had them.
	Reserve(ctx context.Context, key string, rate float64, burst, n int64) (time.Duration, error)
}

// ratePrefix starts the keys of shared buckets in a shared Redis.
const ratePrefix = "ferry:rate:"

// Batching of shared buckets: a process takes tokens from the backend a
// slice of the rate at a time, never per chunk.
const (
	// batchOf is the share of a second's rate taken at once: 100 ms
	// worth, which is also what one process may hold unspent.
	batchOf = 10
	// retryAfter is how long a bucket whose backend failed answers
	// ErrUnavailable before it tries the backend again, so that a Redis
	// that does not answer does not stall every chunk for Timeout.
	retryAfter = time.Second
)

// ErrUnavailable is returned (wrapped) by Bucket.Take and Store.Lease
// while the backend fails; the caller applies OnError.
var ErrUnavailable = errors.New("state: shared store unavailable")

// Bucket is a token bucket shared by every process on the backend. Take
// asks the backend only when the tokens taken last are spent, for a
// batch of at least 100 ms of the rate. Safe for concurrent use: the
// channels of one process that share the bucket take from it in turn.
type Bucket struct {
	st    *Store
	key   string
	rate  float64
	burst int64
	batch int64

	lock   chan struct{} // a mutex that a context can give up on
	avail  int64         // tokens taken from the backend, not yet spent
	failed time.Time     // the backend's last failure
}

// Bucket returns a shared bucket of subject in scope, at rate tokens
// (bytes) a second with burst at most. It holds no backend resource:
// callers keep it as long as they like and drop it.
func (s *Store) Bucket(scope, subject string, rate, burst int64) *Bucket {
	return &Bucket{st: s, key: ratePrefix + url.QueryEscape(scope) + ":" + url.QueryEscape(subject),
		rate: float64(rate), burst: burst, batch: max(1, min(rate/batchOf, burst)),
		lock: make(chan struct{}, 1)}
}

// Take returns once n tokens are this process's: at once when the last
// batch has them, else after reserving a batch from the backend and
// waiting what the backend says. It returns ctx's error when ctx ends
// first (the tokens reserved stay for the next Take), nil at once when
// the backend shares no buckets (the caller's own limiter does the job),
// and an error wrapping ErrUnavailable while the backend fails.
func (b *Bucket) Take(ctx context.Context, n int64, sleep func(context.Context, time.Duration) error) error {
	r, ok := b.st.rater()
	if !ok {
		return nil
	}
	select {
	case b.lock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.lock }()
	if b.avail >= n {
		b.avail -= n
		return nil
	}
	if time.Since(b.failed) < retryAfter {
		return ErrUnavailable
	}
	ask := max(n-b.avail, b.batch)
	wait, err := b.reserve(ctx, r, ask)
	if err != nil {
		return err
	}
	b.avail += ask
	if wait > 0 {
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
	b.avail -= n
	return nil
}

// reserve asks the backend for ask tokens, within Timeout.
func (b *Bucket) reserve(ctx context.Context, r Rater, ask int64) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, b.st.cfg.Timeout)
	defer cancel()
	wait, err := r.Reserve(ctx, b.key, b.rate, b.burst, ask)
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
			return 0, ctx.Err() // the channel ended, not the backend
		}
		b.failed = time.Now()
		b.st.failed(fmt.Errorf("shared bucket %s: %w", b.key, err))
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	b.st.recovered()
	return wait, nil
}

// rater is the backend as a Rater, once started.
func (s *Store) rater() (Rater, bool) { return backendAs[Rater](s) }
