package state

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/test/testkit"
)

// redisStores makes two Stores on one redis-server, as two ferrys of a
// fleet, and returns the server too.
func redisStores(t *testing.T, lease time.Duration) (a, b *Store, r *testkit.Redis) {
	t.Helper()
	r = testkit.StartRedis(t)
	mk := func() *Store {
		be, err := OpenRedis(r.URL())
		if err != nil {
			t.Fatal(err)
		}
		st := New(Config{Backend: be, LeaseTime: lease, Shared: true, Timeout: 500 * time.Millisecond, Log: zerolog.Nop()})
		t.Cleanup(func() { _ = st.Close(context.Background()) })
		return st
	}
	return mk(), mk(), r
}

// TestLeaseShared: two Stores on one Redis share a limit; a release
// frees a slot at once, a Store that stops refreshing frees its slots
// within the lease time.
func TestLeaseShared(t *testing.T) {
	a, b, _ := redisStores(t, 3*time.Second)
	ctx := context.Background()
	var held []*Lease
	for i, st := range []*Store{a, b, a, b} {
		l, err := st.Lease(ctx, "connlimit/x/user", "alice", 4)
		if err != nil {
			t.Fatalf("lease %d: %v", i, err)
		}
		held = append(held, l)
	}
	for _, st := range []*Store{a, b} {
		if _, err := st.Lease(ctx, "connlimit/x/user", "alice", 4); !errors.Is(err, ErrLimit) {
			t.Fatalf("fifth lease: got %v, want ErrLimit", err)
		}
	}
	if _, err := a.Lease(ctx, "connlimit/x/user", "bob", 4); err != nil {
		t.Fatalf("another subject: %v", err)
	}
	held[0].Release()
	held[0].Release() // twice: counts once
	if _, err := b.Lease(ctx, "connlimit/x/user", "alice", 4); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := b.Lease(ctx, "connlimit/x/user", "alice", 4); !errors.Is(err, ErrLimit) {
		t.Fatalf("double release freed two slots: %v", err)
	}
	// a loses its Redis (as if killed): its two live leases expire.
	_ = a.cfg.Backend.Close()
	if d, err := leaseUntil(b, "connlimit/x/user", "alice", 4, 6*time.Second, noError); err != nil || d > 4*time.Second {
		t.Fatalf("a dead holder's slot freed after %v (%v), want within the lease time (3s)", d, err)
	}
}

// TestLeaseRefreshKeeps: leases refreshed by their Store outlive the
// lease time.
func TestLeaseRefreshKeeps(t *testing.T) {
	a, b, _ := redisStores(t, 3*time.Second)
	ctx := context.Background()
	if _, err := a.Lease(ctx, "s", "x", 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	if _, err := b.Lease(ctx, "s", "x", 1); !errors.Is(err, ErrLimit) {
		t.Fatalf("a refreshed lease expired: %v", err)
	}
}

// TestLeaseRedisDown: a Store whose Redis is down says so (not
// ErrLimit) and counts the failure; when Redis is back (empty, as after
// a restart without persistence) the next refresh counts the live
// leases again.
func TestLeaseRedisDown(t *testing.T) {
	a, b, r := redisStores(t, 3*time.Second)
	ctx := context.Background()
	if _, err := a.Lease(ctx, "s", "x", 1); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	_, err := b.Lease(ctx, "s", "x", 1)
	if err == nil || errors.Is(err, ErrLimit) {
		t.Fatalf("redis down: got %v, want a backend error", err)
	}
	if b.Errors() == 0 || b.Healthy() || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("redis down: %v, errors %d healthy %v", err, b.Errors(), b.Healthy())
	}
	start := time.Now()
	if _, err := b.Lease(ctx, "s", "x", 1); !errors.Is(err, ErrUnavailable) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second lease while down: %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	r.Start()
	if _, err = leaseUntil(b, "s", "x", 1, 3*time.Second, isLimit); !errors.Is(err, ErrLimit) {
		t.Fatalf("after redis came back, a's live lease was not counted again: %v", err)
	}
}

// TestLeaseLocal: without a Leaser (bolt, or before Start) leases count
// in the process.
func TestLeaseLocal(t *testing.T) {
	for name, st := range map[string]*Store{
		"bolt":        New(Config{Backend: must(OpenBolt(t.TempDir())), Log: zerolog.Nop()}),
		"not started": New(Config{Log: zerolog.Nop()}),
	} {
		t.Run(name, func(t *testing.T) {
			defer st.Close(context.Background())
			l1, err := st.Lease(context.Background(), "s", "x", 2)
			if err != nil {
				t.Fatal(err)
			}
			l2, err := st.Lease(context.Background(), "s", "x", 2)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Lease(context.Background(), "s", "x", 2); !errors.Is(err, ErrLimit) {
				t.Fatalf("third: %v, want ErrLimit", err)
			}
			l1.Release()
			l2.Release()
			l2.Release()
			if n := len(st.leases.local); n != 0 {
				t.Fatalf("%d local keys left after releases", n)
			}
		})
	}
}

func noError(err error) bool { return err == nil }
func isLimit(err error) bool { return errors.Is(err, ErrLimit) }

// leaseUntil asks st for a lease every 100 ms until done says the answer
// will do, for within at most, and returns how long it took and the last
// answer's error.
func leaseUntil(st *Store, scope, subject string, limit int, within time.Duration, done func(error) bool) (time.Duration, error) {
	start := time.Now()
	for {
		_, err := st.Lease(context.Background(), scope, subject, limit)
		if done(err) || time.Since(start) > within {
			return time.Since(start), err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
