package state

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"ferry/test/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backends makes each backend afresh for a test: the same cases run
// against every one.
func backends(t *testing.T) map[string]func(t *testing.T) Backend {
	return map[string]func(t *testing.T) Backend{
		"memory": func(t *testing.T) Backend { return NewMemory() },
		"bolt": func(t *testing.T) Backend {
			b, err := OpenBolt(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		"redis": func(t *testing.T) Backend {
			r := testkit.StartRedis(t)
			b, err := OpenRedis(r.URL())
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		"sentinel": func(t *testing.T) Backend {
			sentinel := testkit.StartSentinel(t, testkit.StartRedis(t))
			b, err := OpenRedis("redis+sentinel://" + sentinel + "/mymaster/0")
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	}
}

var (
	alice   = Key{Scope: "quota/daily", Subject: "user:alice", End: 2000000000}
	bob     = Key{Scope: "quota/daily", Subject: "user:bob", End: 2000000000}
	aliceWk = Key{Scope: "quota/weekly", Subject: "user:alice", End: 2000000000}
	v6      = Key{Scope: "quota/daily", Subject: "client:::1", End: 2000000000}
	other   = Key{Scope: "other/x", Subject: "user:alice", End: 2000000000}
	future  = time.Unix(2000000000, 0)
)

// TestBackends runs one table of cases against every backend.
func TestBackends(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T, b Backend)
	}{
		{name: "add returns running totals", run: func(t *testing.T, b Backend) {
			got := mustAdd(t, b, Delta{alice, 5, future}, Delta{bob, 7, future}, Delta{alice, 3, future})
			if want := []int64{5, 7, 8}; !slices.Equal(got, want) {
				t.Errorf("totals %v, want %v", got, want)
			}
		}},
		{name: "get of a missing key is 0", run: func(t *testing.T, b Backend) {
			mustAdd(t, b, Delta{alice, 5, future})
			got, err := b.Get(ctx, []Key{bob, alice, v6})
			if err != nil || !slices.Equal(got, []int64{0, 5, 0}) {
				t.Errorf("Get = %v, %v; want [0 5 0]", got, err)
			}
		}},
		{name: "expired counters start again", run: func(t *testing.T, b Backend) {
			mustAdd(t, b, Delta{alice, 5, time.Now().Add(time.Second)})
			time.Sleep(1100 * time.Millisecond)
			got, err := b.Get(ctx, []Key{alice})
			if err != nil || got[0] != 0 {
				t.Errorf("Get after expiry = %v, %v; want 0", got, err)
			}
			if got := mustAdd(t, b, Delta{alice, 2, future}); got[0] != 2 {
				t.Errorf("Add after expiry = %d, want 2", got[0])
			}
		}},
		{name: "list by scope prefix", run: func(t *testing.T, b Backend) {
			mustAdd(t, b, Delta{alice, 1, future}, Delta{v6, 2, future}, Delta{aliceWk, 3, future}, Delta{other, 4, future})
			es, err := b.List(ctx, "quota/", 100)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := subjects(es), []string{"quota/daily client:::1 2", "quota/daily user:alice 1", "quota/weekly user:alice 3"}; !slices.Equal(got, want) {
				t.Errorf("List = %v, want %v", got, want)
			}
			if es, _ := b.List(ctx, "", 2); len(es) != 2 {
				t.Errorf("List with limit 2 gave %d entries", len(es))
			}
		}},
		{name: "delete one subject under a prefix", run: func(t *testing.T, b Backend) {
			mustAdd(t, b, Delta{alice, 1, future}, Delta{bob, 2, future}, Delta{aliceWk, 3, future}, Delta{other, 4, future})
			n, err := b.Delete(ctx, "quota/", "user:alice")
			if err != nil || n != 2 {
				t.Fatalf("Delete = %d, %v; want 2", n, err)
			}
			got, _ := b.Get(ctx, []Key{alice, bob, aliceWk, other})
			if want := []int64{0, 2, 0, 4}; !slices.Equal(got, want) {
				t.Errorf("after Delete: %v, want %v", got, want)
			}
		}},
	}
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					b := open(t)
					defer b.Close()
					tt.run(t, b)
				})
			}
		})
	}
}

// TestBoltSurvivesReopen: the embedded file keeps totals across a close,
// as across a ferry restart.
func TestBoltSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := New(Config{Backend: b, Log: zerolog.Nop()})
	c, err := st.Counter(context.Background(), alice, future)
	if err != nil {
		t.Fatal(err)
	}
	c.Add(8 << 20)
	if err := st.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	b2, err := OpenBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	got, err := b2.Get(context.Background(), []Key{alice})
	if err != nil || got[0] != 8<<20 {
		t.Errorf("after reopen: %v, %v; want %d", got, err, 8<<20)
	}
}

// TestStoreBatches: adds are local until a flush, which sends one batch;
// a backend that fails keeps the counts in memory, and they reach it when
// it is back.
func TestStoreBatches(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	st := New(Config{Backend: m, FlushEvery: time.Hour, Log: zerolog.Nop()})
	defer st.Close(ctx)
	c, err := st.Counter(ctx, alice, future)
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 {
		c.Add(10)
	}
	if got, _ := m.Get(ctx, []Key{alice}); got[0] != 0 {
		t.Fatalf("backend has %d before a flush, want 0", got[0])
	}
	st.flush(ctx)
	if got, _ := m.Get(ctx, []Key{alice}); got[0] != 10000 {
		t.Fatalf("backend has %d after a flush, want 10000", got[0])
	}
	m.SetFail(errors.New("down"))
	c.Add(5)
	st.flush(ctx)
	if st.Healthy() || st.Errors() == 0 {
		t.Fatalf("healthy %v, errors %d after a failed flush", st.Healthy(), st.Errors())
	}
	if c.Total() != 10005 {
		t.Errorf("total while down %d, want 10005", c.Total())
	}
	m.SetFail(nil)
	st.flush(ctx)
	if got, _ := m.Get(ctx, []Key{alice}); got[0] != 10005 || !st.Healthy() {
		t.Errorf("after recovery: backend %d, healthy %v; want 10005, true", got[0], st.Healthy())
	}
}

// TestStoreFlushBytes: a counter that gathered FlushBytes wakes the
// flusher before FlushEvery.
func TestStoreFlushBytes(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	st := New(Config{Backend: m, FlushEvery: time.Hour, FlushBytes: 100, Log: zerolog.Nop()})
	defer st.Close(ctx)
	c, _ := st.Counter(ctx, alice, future)
	c.Add(150)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if got, _ := m.Get(ctx, []Key{alice}); got[0] == 150 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the flusher did not run within 5s of FlushBytes")
}

// TestStoreFull: MaxCounters bounds what is held, even while the backend
// is down.
func TestStoreFull(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	m.SetFail(errors.New("down"))
	st := New(Config{Backend: m, FlushEvery: time.Hour, MaxCounters: 2, Log: zerolog.Nop()})
	defer st.Close(ctx)
	for i, k := range []Key{alice, bob, v6} {
		c, err := st.Counter(ctx, k, future)
		if i < 2 && (err != nil || c == nil) {
			t.Fatalf("counter %d: %v", i, err)
		}
		if i == 2 && !errors.Is(err, ErrFull) {
			t.Fatalf("third counter: err %v, want ErrFull", err)
		}
	}
}

func TestKeyEncoding(t *testing.T) {
	for _, k := range []Key{alice, v6, {Scope: "a:b*", Subject: "user:x?[y]", End: -1}} {
		got, ok := decode(encode(k))
		if !ok || got != k {
			t.Errorf("decode(encode(%v)) = %v, %v", k, got, ok)
		}
	}
	for _, bad := range []string{"", "ferry:usage:a:b", "ferry:usage:a:b:c", "other:a:b:1"} {
		if _, ok := decode(bad); ok {
			t.Errorf("decode(%q) ok", bad)
		}
	}
}

func mustAdd(t *testing.T, b Backend, ds ...Delta) []int64 {
	t.Helper()
	got, err := b.Add(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func subjects(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Key.Scope+" "+e.Key.Subject+" "+strconv.FormatInt(e.Total, 10))
	}
	sort.Strings(out)
	return out
}

// TestStoreEvictReadopt: a counter let go while idle hands back what is
// added to it later: into the table again, or to the counter that took
// its place.
func TestStoreEvictReadopt(t *testing.T) {
	ctx := context.Background()
	for _, replaced := range []bool{false, true} {
		m := NewMemory()
		st := New(Config{Backend: m, FlushEvery: time.Hour, Log: zerolog.Nop()})
		c, _ := st.Counter(ctx, alice, future)
		c.Add(10)
		st.flush(ctx)
		st.flush(ctx) // clears the mark of the Add
		st.mu.Lock()
		st.evictLocked(time.Now().Add(idleAfter + time.Minute))
		st.mu.Unlock()
		if !c.Stale() {
			t.Fatal("idle counter not let go")
		}
		if replaced {
			if c2, _ := st.Counter(ctx, alice, future); c2 == c || c2.Total() != 10 {
				t.Fatalf("new counter %p (old %p) with total %d, want a new one with 10", c2, c, c2.Total())
			}
		}
		c.Add(5)
		st.flush(ctx)
		if got, _ := m.Get(ctx, []Key{alice}); got[0] != 15 {
			t.Errorf("replaced %v: backend has %d, want 15", replaced, got[0])
		}
		st.Close(ctx)
	}
}

// slowGet is a backend whose reads take a while.
type slowGet struct{ *Memory }

func (s slowGet) Get(ctx context.Context, keys []Key) ([]int64, error) {
	time.Sleep(50 * time.Millisecond)
	return s.Memory.Get(ctx, keys)
}

// TestStoreCounterConcurrent: callers that find a counter while its first
// read is in flight wait for it, and all see the backend's total.
func TestStoreCounterConcurrent(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	mustAdd(t, m, Delta{alice, 42, future})
	st := New(Config{Backend: slowGet{m}, FlushEvery: time.Hour, Log: zerolog.Nop()})
	defer st.Close(ctx)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			c, err := st.Counter(ctx, alice, future)
			if err != nil || !c.Known() || c.Total() != 42 {
				t.Errorf("counter: %v, known %v, total %d; want 42", err, c != nil && c.Known(), c.Total())
			}
		})
	}
	wg.Wait()
}

// TestStoreCloseLost: Close says how many counters' counts the backend
// never got, and nothing when it got them all.
func TestStoreCloseLost(t *testing.T) {
	ctx := context.Background()
	for _, down := range []bool{false, true} {
		m := NewMemory()
		st := New(Config{Backend: m, FlushEvery: time.Hour, Log: zerolog.Nop()})
		c, _ := st.Counter(ctx, alice, future)
		if down {
			m.SetFail(errors.New("down"))
		}
		c.Add(1)
		err := st.Close(ctx)
		if down != (err != nil) {
			t.Errorf("backend down %v: Close = %v", down, err)
		}
	}
}

// countGets is a backend that counts its reads.
type countGets struct {
	*Memory
	gets atomic.Int64
}

func (c *countGets) Get(ctx context.Context, keys []Key) ([]int64, error) {
	c.gets.Add(1)
	return c.Memory.Get(ctx, keys)
}

// TestStoreCounters: new counters of one call are read in one backend
// call, each with its expiry shifted as the first's; known ones are not
// read again.
func TestStoreCounters(t *testing.T) {
	ctx := context.Background()
	m := &countGets{Memory: NewMemory()}
	mustAdd(t, m.Memory, Delta{bob, 7, future})
	st := New(Config{Backend: m, FlushEvery: time.Hour, Log: zerolog.Nop()})
	defer st.Close(ctx)
	early := Key{Scope: bob.Scope, Subject: bob.Subject, End: bob.End - 60}
	cs, err := st.Counters(ctx, []Key{bob, early}, future.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if cs[0].Total() != 7 || cs[1].Total() != 0 || m.gets.Load() != 1 {
		t.Errorf("totals %d, %d after %d reads; want 7, 0 after 1", cs[0].Total(), cs[1].Total(), m.gets.Load())
	}
	if want := future.Add(time.Hour - time.Minute); !cs[1].expires.Equal(want) {
		t.Errorf("second counter expires %v, want %v", cs[1].expires, want)
	}
	if _, err := st.Counters(ctx, []Key{early, bob}, future); err != nil || m.gets.Load() != 1 {
		t.Errorf("known counters: %v, %d reads; want none more", err, m.gets.Load())
	}
}
