package state

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestBucketShared: two Stores on one Redis, each with channels taking
// from one shared bucket, hold its rate together.
func TestBucketShared(t *testing.T) {
	a, b, _ := redisStores(t, DefaultLeaseTime)
	const rate, burst, chunk, total = 1 << 20, 64 << 10, 16 << 10, 2 << 20
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, st := range []*Store{a, b} {
		bk := st.Bucket("ratelimit/x/user", "alice", rate, burst)
		for range 2 { // two channels of one ferry share its Bucket
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < total/4; n += chunk {
					if err := bk.Take(ctx, chunk, sleep); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := time.Duration(float64(total-burst) / rate * float64(time.Second))
	if got := time.Since(start); got < want*9/10 || got > want*11/10 {
		t.Fatalf("%d bytes at %d B/s shared took %v, want %v within 10%%", total, rate, got, want)
	}
}

// TestBucketUnavailable: while Redis is down Take says so, at once after
// the first failure, and works again once it is back.
func TestBucketUnavailable(t *testing.T) {
	a, _, r := redisStores(t, DefaultLeaseTime)
	bk := a.Bucket("s", "x", 1<<20, 64<<10)
	ctx := context.Background()
	if err := bk.Take(ctx, 1000, sleep); err != nil {
		t.Fatal(err)
	}
	bk.avail = 0
	r.Stop()
	if err := bk.Take(ctx, 1000, sleep); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("redis down: got %v, want ErrUnavailable", err)
	}
	start := time.Now()
	if err := bk.Take(ctx, 1000, sleep); !errors.Is(err, ErrUnavailable) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second take while down: %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	r.Start()
	deadline := time.Now().Add(3 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = bk.Take(ctx, 1000, sleep); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after redis came back: %v", err)
	}
}

// TestBucketLocal: without a Rater Take returns at once.
func TestBucketLocal(t *testing.T) {
	st := New(Config{Backend: NewMemory()})
	defer st.Close(context.Background())
	if err := st.Bucket("s", "x", 1, 1).Take(context.Background(), 1<<30, sleep); err != nil {
		t.Fatal(err)
	}
}

// sleep is a plain sleep: these tests do not end their contexts.
func sleep(_ context.Context, d time.Duration) error {
	time.Sleep(d)
	return nil
}
