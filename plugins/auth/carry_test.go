package auth

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"ferry/plugins"
)

// TestCarryFrom: a reload's new instance with the same settings shares
// the old one's caches and throttle: a user who logged in before pays no
// bcrypt, a repeated refusal none either, and a locked-out address stays
// locked out. Other settings, or another type, start afresh.
func TestCarryFrom(t *testing.T) {
	hash := hashOf(t, "secret")
	old := fmt.Sprintf("users = { alice = %q }\nmax_failures = 2\nlockout = \"1m\"\n", hash)
	tests := []struct {
		name    string
		body    string
		other   bool // CarryFrom gets a plugin of another type
		carried bool
	}{
		{name: "same settings", body: old, carried: true},
		{name: "same settings, spelt otherwise", body: fmt.Sprintf("lockout = \"60s\"\nmax_failures = 2\n[plugin.users]\nalice = %q\n", hash), carried: true},
		{name: "other lockout", body: fmt.Sprintf("users = { alice = %q }\nmax_failures = 2\nlockout = \"2m\"\n", hash)},
		{name: "other realm", body: old + "realm = \"other\"\n"},
		{name: "another type", body: old, other: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			o := mustBuild(t, old)
			o.sleep = func(context.Context, time.Duration) {}
			good, bad, retry := session("192.0.2.1"), session("192.0.2.66"), session("192.0.2.9")
			if err := o.Authenticate(ctx, good, "alice", "secret"); err != nil {
				t.Fatal(err)
			}
			o.Authenticate(ctx, retry, "alice", "stale")
			for _, pw := range []string{"x", "y"} {
				o.Authenticate(ctx, bad, "alice", pw)
			}
			if !o.throttle.locked(bad.ClientIP()) {
				t.Fatal("the old instance did not lock the address out")
			}

			p := mustBuild(t, tt.body)
			p.sleep = o.sleep
			n := countCompares(p)
			var from plugins.Plugin = o
			if tt.other {
				from = struct{ plugins.Plugin }{} // a plugin of another type
			}
			p.CarryFrom(from)
			if shared := p.cache == o.cache && p.throttle == o.throttle && p.denied == o.denied; shared != tt.carried {
				t.Fatalf("state shared: %v, want %v", shared, tt.carried)
			}
			before := n.Load()
			if err := p.Authenticate(ctx, bad, "alice", "secret"); (err != nil) != tt.carried || p.Counts().Throttled != boolInt(tt.carried) {
				t.Errorf("locked-out address after the reload: err %v, throttled %d; want it refused unchecked: %v", err, p.Counts().Throttled, tt.carried)
			}
			if err := p.Authenticate(ctx, good, "alice", "secret"); err != nil {
				t.Fatal(err)
			}
			if err := p.Authenticate(ctx, retry, "alice", "stale"); err == nil {
				t.Fatal("stale password admitted")
			}
			// Carried: the locked-out address refused unchecked, the
			// others from the caches. Afresh: a bcrypt for the right
			// password (cached for the second login) and one for the
			// stale one.
			want := int64(2)
			if tt.carried {
				want = 0
			}
			if got := n.Load() - before; got != want {
				t.Errorf("bcrypt checks after the reload: %d, want %d", got, want)
			}
		})
	}
}

func boolInt(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// TestCarryFromRemote: the new instance of an http backend with the same
// settings reuses the old one's answers, allows and denies, and their
// age: an allow the old instance got 50s ago is reused for the 10s left
// of its 1m TTL, then asked again; other settings ask at once.
func TestCarryFromRemote(t *testing.T) {
	svc := newService(t, false, allowIf(nil, ""))
	const body = "cache_ttl = \"1m\"\nnegative_cache_ttl = \"1m\"\n"
	tests := []struct {
		name    string
		body    string
		carried bool
	}{
		{name: "same settings", body: body, carried: true},
		{name: "other ttl", body: "cache_ttl = \"2m\"\nnegative_cache_ttl = \"1m\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			o, _ := mustHTTP(t, svc.URL, body)
			for _, pw := range []string{"pw-alice", "bad"} {
				o.Authenticate(ctx, httpSession(), "alice", pw)
			}
			p, skew := mustHTTP(t, svc.URL, tt.body)
			p.CarryFrom(o)
			calls := svc.calls.Load()
			skew.Store(int64(50 * time.Second))
			if err := p.Authenticate(ctx, httpSession(), "alice", "pw-alice"); err != nil {
				t.Fatal(err)
			}
			if err := p.Authenticate(ctx, httpSession(), "alice", "bad"); err == nil {
				t.Fatal("denied password admitted")
			}
			want := int64(2)
			if tt.carried {
				want = 0
			}
			if got := svc.calls.Load() - calls; got != want {
				t.Fatalf("calls after the reload: %d, want %d", got, want)
			}
			// 61s: past the TTL of the old instance's answer; the new
			// instance's own answer (afresh) is 11s old.
			skew.Store(int64(61 * time.Second))
			if err := p.Authenticate(ctx, httpSession(), "alice", "pw-alice"); err != nil {
				t.Fatal(err)
			}
			if tt.carried {
				want++
			}
			if got := svc.calls.Load() - calls; got != want {
				t.Fatalf("calls at 61s: %d, want %d", got, want)
			}
		})
	}
}

// TestCarryFromRemoteFlight: a login on the new instance joins the call
// the old one started for the same credentials before the reload: one
// call for both.
func TestCarryFromRemoteFlight(t *testing.T) {
	release := make(chan struct{})
	svc := newService(t, false, func(w http.ResponseWriter, r request) {
		<-release
		allowIf(nil, "")(w, r)
	})
	o, _ := mustHTTP(t, svc.URL, "")
	errs := make(chan error, 2)
	go func() { errs <- o.Authenticate(context.Background(), httpSession(), "alice", "pw-alice") }()
	for deadline := time.Now().Add(5 * time.Second); svc.calls.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	p, _ := mustHTTP(t, svc.URL, "")
	p.CarryFrom(o)
	go func() { errs <- p.Authenticate(context.Background(), httpSession(), "alice", "pw-alice") }()
	time.Sleep(50 * time.Millisecond) // let it join the flight
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if c := svc.calls.Load(); c != 1 {
		t.Errorf("calls %d, want 1 shared by the old and the new instance", c)
	}
}

// TestCarryFromConcurrent: the old and the new instance check logins at
// once on the shared caches and throttle; run with -race.
func TestCarryFromConcurrent(t *testing.T) {
	body := fmt.Sprintf("users = { alice = %q }\nmax_failures = 3\nlockout = \"1m\"\n", hashOf(t, "a"))
	o := mustBuild(t, body)
	p := mustBuild(t, body)
	p.CarryFrom(o)
	nop := func(context.Context, time.Duration) {}
	o.sleep, p.sleep = nop, nop
	var wg sync.WaitGroup
	for i := range 8 {
		inst := o
		if i%2 == 1 {
			inst = p
		}
		wg.Go(func() {
			for j := range 50 {
				s := session(fmt.Sprintf("192.0.2.%d", j%4))
				pw := "a"
				if j%3 == 0 {
					pw = fmt.Sprint("wrong", j%5)
				}
				inst.Authenticate(context.Background(), s, "alice", pw)
			}
		})
	}
	wg.Wait()
	if p.cache != o.cache || p.throttle.len() != o.throttle.len() {
		t.Fatal("the instances do not share their state")
	}
}
