package auth

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ferry/plugins"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestThrottle walks one address through failures, lockouts and quiet
// periods with max 3 failures a minute, lockout 1s doubling to 4s.
func TestThrottle(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	type step struct {
		name    string
		advance time.Duration // clock moves before the step
		fail    int           // failed checks to record (each begin then end)
		ok      bool          // record one successful check instead
		want    verdict       // begin's verdict after the step
		lockFor time.Duration // the lockout the step's last failure started; 0: none
	}
	steps := []step{
		{name: "fresh address", want: admitted},
		{name: "two failures", fail: 2, want: admitted},
		{name: "third locks 1s", fail: 1, want: lockedOut, lockFor: time.Second},
		{name: "still locked", advance: 900 * time.Millisecond, want: lockedOut},
		{name: "lockout over", advance: 100 * time.Millisecond, want: admitted},
		{name: "a success does not reset", ok: true, want: admitted},
		{name: "three more lock 2s", fail: 3, want: lockedOut, lockFor: 2 * time.Second},
		{name: "after 2s", advance: 2 * time.Second, want: admitted},
		{name: "then 4s", fail: 3, want: lockedOut, lockFor: 4 * time.Second},
		{name: "after 4s", advance: 4 * time.Second, want: admitted},
		{name: "capped at max_lockout", fail: 3, want: lockedOut, lockFor: 4 * time.Second},
		{name: "failures spread over windows never lock", advance: 4 * time.Second, want: admitted},
		{name: "two", fail: 2, want: admitted},
		{name: "a minute later, two more", advance: time.Minute, fail: 2, want: admitted},
		{name: "quiet for max_lockout: back to 1s", advance: time.Minute, fail: 3, want: lockedOut, lockFor: time.Second},
	}
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	th := newThrottle(3, time.Minute, time.Second, 4*time.Second)
	th.now = clk.now
	for _, st := range steps {
		clk.add(st.advance)
		var got lock
		for range st.fail {
			if v := th.begin(ip); v != admitted {
				t.Fatalf("%s: begin before a failure: got %d, want admitted", st.name, v)
			}
			if l, ok := th.end(ip, true); ok {
				got = l
			}
		}
		if st.ok {
			if v := th.begin(ip); v != admitted {
				t.Fatalf("%s: begin: got %d, want admitted", st.name, v)
			}
			th.end(ip, false)
		}
		if got.d != st.lockFor {
			t.Fatalf("%s: lockout %v, want %v", st.name, got.d, st.lockFor)
		}
		v := th.begin(ip)
		if v != st.want {
			t.Fatalf("%s: verdict %d, want %d", st.name, v, st.want)
		}
		if v == admitted {
			th.end(ip, false) // a success: changes nothing
		}
		if locked := th.locked(ip); locked != (st.want == lockedOut) {
			t.Fatalf("%s: locked() = %v, want %v", st.name, locked, st.want == lockedOut)
		}
	}
}

// TestThrottleKeys: IPv6 clients share their /64, IPv4-mapped addresses
// are IPv4, and other addresses are apart.
func TestThrottleKeys(t *testing.T) {
	tests := []struct {
		name   string
		a, b   string
		shared bool
	}{
		{"same IPv4", "192.0.2.1", "192.0.2.1", true},
		{"other IPv4", "192.0.2.1", "192.0.2.2", false},
		{"IPv4-mapped", "192.0.2.1", "::ffff:192.0.2.1", true},
		{"same /64", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true},
		{"other /64", "2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"zone ignored", "fe80::1%eth0", "fe80::2", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newThrottle(1, time.Minute, time.Minute, time.Minute)
			a, b := netip.MustParseAddr(tt.a), netip.MustParseAddr(tt.b)
			th.begin(a)
			if _, ok := th.end(a, true); !ok {
				t.Fatal("one failure with max 1 did not lock out")
			}
			if got := th.locked(b); got != tt.shared {
				t.Fatalf("%s locked after %s failed: got %v, want %v", tt.b, tt.a, got, tt.shared)
			}
		})
	}
}

// TestThrottleInFlight: checks running count against the budget, so a
// burst from one address runs at most max bcrypt checks.
func TestThrottleInFlight(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	th := newThrottle(3, time.Minute, time.Second, time.Minute)
	var got []verdict
	for range 5 {
		got = append(got, th.begin(ip))
	}
	want := []verdict{admitted, admitted, admitted, tooMany, tooMany}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("burst of 5 with max 3: got %v, want %v", got, want)
	}
	th.end(ip, false) // one succeeded: its slot is free again
	if v := th.begin(ip); v != admitted {
		t.Fatalf("after a success: got %d, want admitted", v)
	}
	if th.locked(ip) {
		t.Fatal("in-flight checks alone locked the address out")
	}
}

// TestThrottleBound: a million addresses cannot grow the table past its
// cap; the oldest failures are forgotten first, and successes leave
// nothing behind.
func TestThrottleBound(t *testing.T) {
	th := newThrottle(2, time.Minute, time.Minute, time.Minute)
	th.cap = 100
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := range 1000 {
		th.begin(addr(i))
		th.end(addr(i), true)
	}
	if got := th.len(); got != 100 {
		t.Fatalf("after 1000 failing addresses: %d entries, want the cap 100", got)
	}
	if _, ok := th.byKey[addr(0)]; ok {
		t.Fatal("the oldest address is still there")
	}
	if _, ok := th.byKey[addr(999)]; !ok {
		t.Fatal("the newest address was evicted")
	}
	ok := netip.MustParseAddr("192.0.2.9")
	th.begin(ok)
	th.end(ok, false)
	if _, kept := th.byKey[ok]; kept {
		t.Fatal("an address with only a success was kept")
	}
}

// TestThrottleDisabled: max_failures = 0 never refuses. Each password
// differs, so the negative cache answers none.
func TestThrottleDisabled(t *testing.T) {
	p := mustBuild(t, "users = { a = \"plain:x\" }\nmax_failures = 0\n")
	n := countCompares(p)
	for i := range 20 {
		if err := p.Authenticate(context.Background(), testSession, "a", fmt.Sprint("wrong", i)); err == nil {
			t.Fatal("wrong password admitted")
		}
	}
	if got := n.Load(); got != 20 {
		t.Fatalf("%d bcrypt checks for 20 wrong passwords with max_failures = 0, want 20", got)
	}
	if c := p.Counts(); c.Throttled != 0 || c.Lockouts != 0 || c.Tracked != 0 {
		t.Fatalf("counts %+v, want no throttling", c)
	}
}

func session(ip string) *plugins.Session {
	return &plugins.Session{ID: "t-" + ip, Protocol: "http",
		Client: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}

// TestLockout drives Authenticate: after max_failures a locked-out
// address is refused without a bcrypt, whatever it sends (a cached
// password included), while other addresses, cached or not, go on; the
// log has one line for the lockout, not one per refused attempt.
func TestLockout(t *testing.T) {
	var logs bytes.Buffer
	p, err := build(t, fmt.Sprintf("users = { alice = %q }\nmax_failures = 3\nlockout = \"1m\"\n", hashOf(t, "secret")), &logs)
	if err != nil {
		t.Fatal(err)
	}
	var slept atomic.Int64
	p.sleep = func(context.Context, time.Duration) { slept.Add(1) }
	n := countCompares(p)
	ctx := context.Background()
	bad, good := session("192.0.2.66"), session("192.0.2.7")
	if err := p.Authenticate(ctx, bad, "alice", "secret"); err != nil {
		t.Fatalf("first login: %v", err) // cached from now on
	}
	steps := []struct {
		name     string
		s        *plugins.Session
		user, pw string
		ok       bool
		compares int64
	}{
		{"failure 1", bad, "alice", "x", false, 1},
		{"failure 2, unknown user", bad, "mallory", "x", false, 1},
		{"failure 3 locks out", bad, "alice", "y", false, 1},
		{"locked: wrong password costs nothing", bad, "alice", "z", false, 0},
		{"locked: unknown user costs nothing", bad, "eve", "z", false, 0},
		{"locked: even a cached password is refused", bad, "alice", "secret", false, 0},
		{"another address: cached", good, "alice", "secret", true, 0},
		{"another address: checked", good, "alice", "nope", false, 1},
	}
	for _, st := range steps {
		before := n.Load()
		err := p.Authenticate(ctx, st.s, st.user, st.pw)
		if (err == nil) != st.ok {
			t.Fatalf("%s: got %v, want ok=%v", st.name, err, st.ok)
		}
		if err != nil && plugins.CodeOf(err) != plugins.CodeAuthRequired {
			t.Fatalf("%s: code %v, want %v", st.name, plugins.CodeOf(err), plugins.CodeAuthRequired)
		}
		if got := n.Load() - before; got != st.compares {
			t.Fatalf("%s: %d bcrypt checks, want %d", st.name, got, st.compares)
		}
	}
	want := Counts{Checks: 5, Failures: 4, Throttled: 3, Lockouts: 1, Tracked: 2}
	if got := p.Counts(); got != want {
		t.Fatalf("counts: got %+v, want %+v", got, want)
	}
	if slept.Load() != 3 {
		t.Fatalf("%d throttled refusals were delayed, want 3", slept.Load())
	}
	out := logs.String()
	if got := strings.Count(out, "client locked out after failed logins"); got != 1 {
		t.Fatalf("%d lockout lines, want 1:\n%s", got, out)
	}
	for _, want := range []string{`"client":"192.0.2.66:40000"`, `"failures":3`, `"lockout":60000`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if got := strings.Count(out, `"authentication failed"`); got != 4 {
		t.Errorf("%d authentication failed lines, want 4 (one per bcrypt refusal)", got)
	}
}

// TestCheckSlots: with max_concurrent_checks = 1, bcrypt checks run one
// at a time, and a cached login does not wait behind a slow one.
func TestCheckSlots(t *testing.T) {
	p := mustBuild(t, fmt.Sprintf("users = { alice = %q }\nmax_concurrent_checks = 1\nmax_failures = 0\n", hashOf(t, "secret")))
	ctx := context.Background()
	if err := p.Authenticate(ctx, testSession, "alice", "secret"); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var running, most atomic.Int64
	p.compare = func(hash, pw []byte) error {
		r := running.Add(1)
		for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
		}
		<-release
		running.Add(-1)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Authenticate(ctx, session(fmt.Sprintf("192.0.2.%d", 10+i)), "alice", "wrong")
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for running.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if err := p.Authenticate(ctx, testSession, "alice", "secret"); err != nil {
		t.Fatalf("cached login while checks run: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("cached login took %v behind the check slot", d)
	}
	close(release)
	wg.Wait()
	if m := most.Load(); m != 1 {
		t.Fatalf("%d bcrypt checks ran at once, want 1", m)
	}
}

// TestCheckSlotsBusy: an attempt that finds no slot within the wait, or
// whose context ends, is refused without a check and not held against
// its address.
func TestCheckSlotsBusy(t *testing.T) {
	p := mustBuild(t, fmt.Sprintf("users = { alice = %q }\nmax_concurrent_checks = 1\nmax_failures = 1\n", hashOf(t, "secret")))
	n := countCompares(p)
	p.slots <- struct{}{} // the only slot is taken
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Authenticate(ctx, testSession, "alice", "wrong"); err == nil {
		t.Fatal("admitted without a check")
	}
	<-p.slots
	if got := n.Load(); got != 0 {
		t.Fatalf("%d bcrypt checks, want 0", got)
	}
	if c := p.Counts(); c.Busy != 1 || c.Lockouts != 0 {
		t.Fatalf("counts %+v, want Busy 1 and no lockout", c)
	}
	if err := p.Authenticate(context.Background(), testSession, "alice", "secret"); err != nil {
		t.Fatalf("a busy refusal counted as a failure: %v", err)
	}
}

// TestTimingPad: the dummy hash has the highest cost among the users, and
// a wrong password for a user with a cheaper hash waits out the
// difference, so a refusal's time tells neither that the user exists nor
// the cost of its hash.
func TestTimingPad(t *testing.T) {
	h5, err := bcrypt.GenerateFromPassword([]byte("b"), 5)
	if err != nil {
		t.Fatal(err)
	}
	p := mustBuild(t, fmt.Sprintf("users = { alice = %q, bob = %q, dev = \"plain:d\" }\nmax_failures = 0\n", hashOf(t, "a"), h5))
	if c, _ := bcrypt.Cost(p.users.Load().dummy); c != 5 {
		t.Fatalf("dummy cost %d, want 5, the highest", c)
	}
	var pads []time.Duration
	p.sleep = func(_ context.Context, d time.Duration) { pads = append(pads, d) }
	took := time.Duration(0)
	p.compare = func(hash, pw []byte) error {
		c, _ := bcrypt.Cost(hash)
		// A clock-free bcrypt; took is what its sleep really took, which
		// a loaded machine stretches (and the pad with it).
		start := time.Now()
		time.Sleep(time.Duration(1<<c) * time.Millisecond)
		took = time.Since(start)
		return bcrypt.ErrMismatchedHashAndPassword
	}
	tests := []struct {
		name, user string
		pad        bool
	}{
		{"unknown user: the dummy at cost 5", "eve", false},
		{"cost 5 user: as slow as the dummy", "bob", false},
		{"plain user: the dummy", "dev", false},
		{"cost 4 user: padded", "alice", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pads = nil
			p.Authenticate(context.Background(), testSession, tt.user, "wrong")
			if (len(pads) > 0) != tt.pad {
				t.Fatalf("pads %v, want padded=%v", pads, tt.pad)
			}
			// cost 4 took 16ms (or what the machine made of it): it owes
			// as much again, what cost 5 takes more.
			if tt.pad && (pads[0] < took || pads[0] > 2*took) {
				t.Fatalf("padded %v after a %v check, want about %v", pads[0], took, took)
			}
		})
	}
}
