package auth

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestDeniedCache: the htpasswd backend remembers a refusal for
// negative_cache_ttl, per client address, and never past a change of
// the user's hash; "0s" turns it off.
func TestDeniedCache(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/users"
	steps := []struct {
		name     string
		ip, pw   string
		advance  time.Duration
		rehash   string // write the file with this password's hash first
		compares int64
	}{
		{name: "first refusal", ip: "192.0.2.1", pw: "x", compares: 1},
		{name: "repeat: cached", ip: "192.0.2.1", pw: "x", compares: 0},
		{name: "another client: checked", ip: "192.0.2.2", pw: "x", compares: 1},
		{name: "an IPv6 client: checked", ip: "2001:db8::1", pw: "x", compares: 1},
		{name: "same /64, other host", ip: "2001:db8::2", pw: "x", compares: 0},
		{name: "within the ttl", ip: "192.0.2.1", pw: "x", advance: 9 * time.Second, compares: 0},
		{name: "past the ttl", ip: "192.0.2.1", pw: "x", advance: 2 * time.Second, compares: 1},
		{name: "a changed hash misses", ip: "192.0.2.1", pw: "x", rehash: "new", compares: 1},
	}
	writeUsers(t, path, "alice:"+hashOf(t, "a")+"\n")
	p := mustBuild(t, fmt.Sprintf("htpasswd = %q\nreload_interval = \"0s\"\nmax_failures = 0\nnegative_cache_ttl = \"10s\"\n", path))
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	p.now = clock.now
	p.sleep = func(context.Context, time.Duration) {}
	n := countCompares(p)
	for _, st := range steps {
		clock.add(st.advance)
		if st.rehash != "" {
			writeUsers(t, path, "alice:"+hashOf(t, st.rehash)+"\n")
			p.settle = 0
			p.htpasswd.seen.racy = true
			if changed, err := p.reload(); !changed || err != nil {
				t.Fatalf("%s: reload: changed %v, %v", st.name, changed, err)
			}
		}
		before := n.Load()
		if err := p.Authenticate(context.Background(), session(st.ip), "alice", st.pw); err == nil {
			t.Fatalf("%s: admitted", st.name)
		}
		if got := n.Load() - before; got != st.compares {
			t.Fatalf("%s: %d bcrypt checks, want %d", st.name, got, st.compares)
		}
	}
	if got, want := p.Counts().DeniedCached, uint64(3); got != want {
		t.Errorf("denied_cached %d, want %d", got, want)
	}

	off := mustBuild(t, fmt.Sprintf("users = { alice = %q }\nmax_failures = 0\nnegative_cache_ttl = \"0s\"\n", hashOf(t, "a")))
	off.sleep = p.sleep
	m := countCompares(off)
	for range 3 {
		off.Authenticate(context.Background(), session("192.0.2.1"), "alice", "x")
	}
	if m.Load() != 3 {
		t.Errorf("negative_cache_ttl = \"0s\": %d bcrypt checks for 3 refusals, want 3", m.Load())
	}
}

// TestDeniedCacheBound: a flood of distinct wrong passwords keeps the
// negative cache at its bound.
func TestDeniedCacheBound(t *testing.T) {
	d := newDenials(time.Minute)
	c := newCache(cacheSize)
	now := time.Now()
	for i := range 20000 {
		d.add(c.deniedKey(c.sum("u", fmt.Sprint(i), nil), session("192.0.2.1").ClientIP()), now)
	}
	d.m.mu.Lock()
	n := len(d.m.cur) + len(d.m.old)
	d.m.mu.Unlock()
	if n > cacheSize*4 {
		t.Fatalf("%d entries after 20000 refusals, want at most %d", n, cacheSize*4)
	}
}

// BenchmarkDeniedCached: a refusal the negative cache answers costs the
// same for a wrong password and for an unknown user.
func BenchmarkDeniedCached(b *testing.B) {
	src := fmt.Sprintf("users = { alice = %q }\nmax_failures = 0\n", hashOf(b, "a"))
	for _, user := range []string{"alice", "eve"} {
		b.Run(user, func(b *testing.B) {
			p := mustBuild(b, src)
			var calls atomic.Int64
			p.compare = func([]byte, []byte) error { calls.Add(1); return fmt.Errorf("no") }
			s := session("192.0.2.1")
			p.Authenticate(context.Background(), s, user, "x")
			b.ResetTimer()
			for b.Loop() {
				p.Authenticate(context.Background(), s, user, "x")
			}
			if calls.Load() != 1 {
				b.Fatalf("%d checks, want 1", calls.Load())
			}
		})
	}
}
