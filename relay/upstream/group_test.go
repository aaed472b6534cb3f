package upstream

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ferry/plugins"
)

// stubDialer succeeds with a stubConn naming it (adding its hop), or runs
// fn when set.
type stubDialer struct {
	name  string
	calls atomic.Int32
	fn    func(ctx context.Context) (net.Conn, error)
}

func (d *stubDialer) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	d.calls.Add(1)
	if d.fn != nil {
		return d.fn(ctx)
	}
	dialInfoFrom(ctx).addHop(d.name)
	return &stubConn{name: d.name}, nil
}

type stubConn struct {
	net.Conn
	name string
}

func (*stubConn) Close() error { return nil }

func connName(t *testing.T, c net.Conn) string {
	t.Helper()
	sc, ok := c.(*stubConn)
	if !ok {
		t.Fatalf("conn is %T, want *stubConn", c)
	}
	return sc.name
}

// failWith returns a stub fn failing with err.
func failWith(err error) func(context.Context) (net.Conn, error) {
	return func(context.Context) (net.Conn, error) { return nil, err }
}

// countDialer counts the dials through d.
type countDialer struct {
	d     Dialer
	calls atomic.Int32
}

func (c *countDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c.calls.Add(1)
	return c.d.DialContext(ctx, network, address)
}

type healthEvent struct {
	up  bool
	err error
}

type healthLog struct {
	mu     sync.Mutex
	events []healthEvent
}

func (h *healthLog) record(up bool, err error) {
	h.mu.Lock()
	h.events = append(h.events, healthEvent{up, err})
	h.mu.Unlock()
}

func (h *healthLog) get() []healthEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]healthEvent(nil), h.events...)
}

// ups returns the up flags of the events.
func (h *healthLog) ups() []bool {
	var out []bool
	for _, e := range h.get() {
		out = append(out, e.up)
	}
	return out
}

func member(name string, d Dialer) (*Node, *healthLog) {
	h := &healthLog{}
	return &Node{Name: name, Dialer: d, OnHealth: h.record}, h
}

func mustGroup(t *testing.T, strategy string, members ...*Node) *Group {
	t.Helper()
	g, err := NewGroup("g", strategy, members)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func boolsEqual(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNewGroup(t *testing.T) {
	one := []*Node{{Name: "a", Dialer: &stubDialer{name: "a"}}}
	tests := []struct {
		strategy string
		members  []*Node
		err      string
	}{
		{Failover, one, ""},
		{RoundRobin, one, ""},
		{Random, one, ""},
		{LeastConnections, one, ""},
		{"fastest", one, `upstream grp: unknown strategy "fastest"`},
		{"", one, "unknown strategy"},
		{Failover, nil, "upstream grp: a group needs members"},
	}
	for _, tt := range tests {
		t.Run(tt.strategy+"/"+tt.err, func(t *testing.T) {
			g, err := NewGroup("grp", tt.strategy, tt.members)
			if tt.err == "" {
				if err != nil || g == nil || g.Name != "grp" || g.Strategy != tt.strategy {
					t.Fatalf("NewGroup: %+v, %v", g, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("got %v, want error %q", err, tt.err)
			}
		})
	}
}

func TestGroupFailoverSkipsDeadMember(t *testing.T) {
	tests := []struct {
		name  string
		dead  func(t *testing.T) Dialer
		stage Stage
	}{
		{"proxy down", func(t *testing.T) Dialer {
			d, err := SOCKS5("a", closedAddr(t), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}, StageConnect},
		{"proxy accepts and hangs up", func(t *testing.T) Dialer {
			d, err := SOCKS5("a", hangupServer(t).addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}, StageHandshake},
		{"proxy refuses credentials", func(t *testing.T) Dialer {
			return HTTPConnect("a", startHTTP(t, &httpFake{user: "u", pass: "p"}).addr(), "", "", nil, Direct())
		}, StageAuth},
		{"chain whose second hop refuses credentials", func(t *testing.T) Dialer {
			// The first hop succeeds and reports itself; the group must
			// take that hop back when the member fails.
			a1, err := SOCKS5("a1", startSOCKS(t, &socksFake{relay: true}).addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			return HTTPConnect("a", startHTTP(t, &httpFake{user: "u", pass: "p"}).addr(), "", "", nil, a1)
		}, StageAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dead := &countDialer{d: tt.dead(t)}
			live, err := SOCKS5("b", startSOCKS(t, &socksFake{greeting: "via b\n"}).addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			liveC := &countDialer{d: live}
			a, ha := member("a", dead)
			b, hb := member("b", liveC)
			g := mustGroup(t, Failover, a, b)

			for i := 1; i <= 2; i++ {
				ctx, info := dialCtx(t, 10*time.Second)
				c, err := g.DialContext(ctx, "tcp", "example.test:80")
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				mustTCPConn(t, c)
				if got := readN(t, c, len("via b\n")); got != "via b\n" {
					t.Fatalf("dial %d: greeting %q", i, got)
				}
				c.Close()
				if info.Path() != "b" {
					t.Fatalf("dial %d: Path = %q, want b", i, info.Path())
				}
				info.Release()
				if n := dead.calls.Load(); n != 1 {
					t.Fatalf("dial %d: the dead member was tried %d times, want once", i, n)
				}
				if n := liveC.calls.Load(); n != int32(i) {
					t.Fatalf("dial %d: b dialed %d times", i, n)
				}
			}
			if !a.Down() || a.Available(time.Now()) {
				t.Fatal("the dead member is not marked down")
			}
			if b.Down() {
				t.Fatal("b is marked down")
			}
			ev := ha.get()
			if len(ev) != 1 || ev[0].up {
				t.Fatalf("a's health events %+v, want one down", ev)
			}
			upstreamErr(t, ev[0].err, "a", tt.stage, DialCode(ev[0].err))
			if len(hb.get()) != 0 {
				t.Fatalf("b's health events %+v, want none (it never changed)", hb.get())
			}
		})
	}
}

func TestGroupTargetErrorNotRetried(t *testing.T) {
	tests := []struct {
		name string
		a    func(t *testing.T) Dialer
		code plugins.Code
	}{
		{"SOCKS host unreachable", func(t *testing.T) Dialer {
			d, err := SOCKS5("a", startSOCKS(t, &socksFake{reply: 0x04}).addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}, plugins.CodeHostUnreachable},
		{"SOCKS connection refused", func(t *testing.T) Dialer {
			d, err := SOCKS5("a", startSOCKS(t, &socksFake{reply: 0x05}).addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}, plugins.CodeConnRefused},
		{"SOCKS TTL expired", func(t *testing.T) Dialer {
			d, err := SOCKS5("a", startSOCKS(t, &socksFake{reply: 0x06}).addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}, plugins.CodeTimeout},
		{"HTTP 403", func(t *testing.T) Dialer {
			return HTTPConnect("a", startHTTP(t, &httpFake{status: 403}).addr(), "", "", nil, Direct())
		}, plugins.CodeForbidden},
		{"HTTP 504", func(t *testing.T) Dialer {
			return HTTPConnect("a", startHTTP(t, &httpFake{status: 504}).addr(), "", "", nil, Direct())
		}, plugins.CodeTimeout},
	}
	for _, tt := range tests {
		for _, strategy := range []string{Failover, RoundRobin} {
			t.Run(tt.name+"/"+strategy, func(t *testing.T) {
				a, ha := member("a", tt.a(t))
				bd := &stubDialer{name: "b"}
				b, _ := member("b", bd)
				g := mustGroup(t, strategy, a, b) // round-robin starts at a
				ctx, info := dialCtx(t, 10*time.Second)
				c, err := g.DialContext(ctx, "tcp", "example.test:80")
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				upstreamErr(t, err, "a", StageTarget, tt.code)
				if a.Down() || len(ha.get()) != 0 {
					t.Fatalf("a target failure marked the member down (%+v)", ha.get())
				}
				if n := bd.calls.Load(); n != 0 {
					t.Fatalf("the next member was tried %d times for a target failure", n)
				}
				if info.Path() != "" {
					t.Fatalf("Path = %q", info.Path())
				}
				if a.Active() != 0 {
					t.Fatalf("Active = %d after a failed dial", a.Active())
				}
			})
		}
	}
}

func TestGroupPlainErrors(t *testing.T) {
	// An error that is no Error is the target's (a direct
	// member): returned as is, unless it is the member's share of the
	// deadline running out.
	weird := errors.New("weird")
	tests := []struct {
		name     string
		err      error
		failover bool
	}{
		{"plain error", weird, false},
		{"rejected", plugins.Reject(plugins.CodeForbidden, "no"), false},
		{"timeout of the member's share", &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, true},
		{"deadline exceeded", context.DeadlineExceeded, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ad := &stubDialer{name: "a", fn: failWith(tt.err)}
			bd := &stubDialer{name: "b"}
			a, _ := member("a", ad)
			b, _ := member("b", bd)
			g := mustGroup(t, Failover, a, b)
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := g.DialContext(ctx, "tcp", "example.test:80")
			if !tt.failover {
				if err != tt.err {
					t.Fatalf("got %v, want %v as is", err, tt.err)
				}
				if a.Down() || bd.calls.Load() != 0 {
					t.Fatal("a target error failed over")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if connName(t, c) != "b" || info.Path() != "b" || !a.Down() {
				t.Fatalf("got %s chain %q, a down %v", connName(t, c), info.Path(), a.Down())
			}
		})
	}
}

func TestGroupEveryMemberDown(t *testing.T) {
	ad, bd := &stubDialer{name: "a"}, &stubDialer{name: "b"}
	a, _ := member("a", ad)
	b, _ := member("b", bd)
	a.MarkDown(errors.New("boom-a"))
	b.MarkDown(errors.New("boom-b"))
	for _, strategy := range []string{Failover, RoundRobin, Random, LeastConnections} {
		t.Run(strategy, func(t *testing.T) {
			g := mustGroup(t, strategy, a, b)
			ctx, _ := dialCtx(t, 10*time.Second)
			c, err := g.DialContext(ctx, "tcp", "example.test:80")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "g", StageDown, plugins.CodeGeneral)
			for _, want := range []string{"every member is down", "a (boom-a; next try in ", "b (boom-b; next try in "} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q lacks %q", err, want)
				}
			}
			if !memberFailed(err) {
				t.Fatal("a group with every member down does not count as failed in an outer group")
			}
			if ad.calls.Load() != 0 || bd.calls.Load() != 0 {
				t.Fatal("a member marked down was dialed")
			}
		})
	}
}

func TestGroupEveryMemberFails(t *testing.T) {
	errA := &Error{Upstream: "a", Stage: StageConnect, Code: plugins.CodeConnRefused, Err: errors.New("refused-a")}
	errB := &Error{Upstream: "b", Stage: StageHandshake, Code: plugins.CodeTimeout, Err: errors.New("slow-b")}
	a, ha := member("a", &stubDialer{name: "a", fn: failWith(errA)})
	b, hb := member("b", &stubDialer{name: "b", fn: failWith(errB)})
	g := mustGroup(t, Failover, a, b)
	ctx, _ := dialCtx(t, 10*time.Second)
	_, err := g.DialContext(ctx, "tcp", "example.test:80")
	upstreamErr(t, err, "g", StageConnect, plugins.CodeTimeout) // the last member's code
	for _, want := range []string{"every member failed", "refused-a", "slow-b", "upstream a", "upstream b"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
	if !a.Down() || !b.Down() {
		t.Fatal("failed members not marked down")
	}
	if !boolsEqual(ha.ups(), []bool{false}) || !boolsEqual(hb.ups(), []bool{false}) {
		t.Fatalf("health events %v %v", ha.ups(), hb.ups())
	}
	// Next dial: every member is down.
	_, err = g.DialContext(ctx, "tcp", "example.test:80")
	upstreamErr(t, err, "g", StageDown, plugins.CodeGeneral)
}

func TestGroupBackoffExpiryRetries(t *testing.T) {
	t.Run("member back up", func(t *testing.T) {
		ad, bd := &stubDialer{name: "a"}, &stubDialer{name: "b"}
		a, ha := member("a", ad)
		b, _ := member("b", bd)
		g := mustGroup(t, Failover, a, b)
		a.MarkDown(errors.New("boom"))

		c, err := g.DialContext(context.Background(), "tcp", "example.test:80")
		if err != nil || connName(t, c) != "b" || ad.calls.Load() != 0 {
			t.Fatalf("dial while a is down: %v, a tried %d times", err, ad.calls.Load())
		}
		waitAvailable(t, a)
		c, err = g.DialContext(context.Background(), "tcp", "example.test:80")
		if err != nil || connName(t, c) != "a" || ad.calls.Load() != 1 {
			t.Fatalf("dial after the backoff: %v, a tried %d times", err, ad.calls.Load())
		}
		if a.Down() || !boolsEqual(ha.ups(), []bool{false, true}) {
			t.Fatalf("a down %v, health %v", a.Down(), ha.ups())
		}
	})
	t.Run("member still down", func(t *testing.T) {
		ad := &stubDialer{name: "a", fn: failWith(&Error{Upstream: "a", Stage: StageConnect, Err: errors.New("refused")})}
		bd := &stubDialer{name: "b"}
		a, ha := member("a", ad)
		b, _ := member("b", bd)
		g := mustGroup(t, Failover, a, b)

		if _, err := g.DialContext(context.Background(), "tcp", "example.test:80"); err != nil {
			t.Fatal(err)
		}
		waitAvailable(t, a)
		if _, err := g.DialContext(context.Background(), "tcp", "example.test:80"); err != nil {
			t.Fatal(err)
		}
		if ad.calls.Load() != 2 || bd.calls.Load() != 2 {
			t.Fatalf("a tried %d times, b %d, want 2 and 2", ad.calls.Load(), bd.calls.Load())
		}
		if !a.Down() || !boolsEqual(ha.ups(), []bool{false}) {
			t.Fatalf("a down %v, health %v", a.Down(), ha.ups())
		}
		// The second failure in a row doubled the backoff.
		if a.Available(time.Now().Add(1500 * time.Millisecond)) {
			t.Fatal("backoff did not double")
		}
	})
}

func TestGroupRoundRobin(t *testing.T) {
	ad, bd := &stubDialer{name: "a"}, &stubDialer{name: "b"}
	a, _ := member("a", ad)
	b, _ := member("b", bd)
	g := mustGroup(t, RoundRobin, a, b)
	var names []string
	for range 6 {
		c, err := g.DialContext(context.Background(), "tcp", "example.test:80")
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, connName(t, c))
	}
	for i := 1; i < len(names); i++ {
		if names[i] == names[i-1] {
			t.Fatalf("round-robin did not alternate: %v", names)
		}
	}
	if ad.calls.Load() != 3 || bd.calls.Load() != 3 {
		t.Fatalf("calls a=%d b=%d", ad.calls.Load(), bd.calls.Load())
	}

	// A member down is skipped: every dial goes to the other.
	a.MarkDown(errors.New("boom"))
	for range 4 {
		c, err := g.DialContext(context.Background(), "tcp", "example.test:80")
		if err != nil || connName(t, c) != "b" {
			t.Fatalf("with a down: %v", err)
		}
	}
	if ad.calls.Load() != 3 {
		t.Fatal("a member down was dialed")
	}

	// A member failing: the dial moves on to the next in turn.
	a.MarkUp()
	ad.fn = failWith(&Error{Upstream: "a", Stage: StageConnect, Err: errors.New("refused")})
	for range 2 {
		c, err := g.DialContext(context.Background(), "tcp", "example.test:80")
		if err != nil || connName(t, c) != "b" {
			t.Fatalf("with a failing: %v", err)
		}
	}
}

func TestGroupRandom(t *testing.T) {
	ad, bd := &stubDialer{name: "a"}, &stubDialer{name: "b"}
	a, _ := member("a", ad)
	b, _ := member("b", bd)
	g := mustGroup(t, Random, a, b)
	for range 50 {
		c, err := g.DialContext(context.Background(), "tcp", "example.test:80")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	na, nb := ad.calls.Load(), bd.calls.Load()
	if na+nb != 50 || na == 0 || nb == 0 {
		t.Fatalf("random over 50 dials: a=%d b=%d", na, nb)
	}
}

func TestGroupLeastConnections(t *testing.T) {
	ad, bd := &stubDialer{name: "a"}, &stubDialer{name: "b"}
	a, _ := member("a", ad)
	b, _ := member("b", bd)
	byName := map[string]*Node{"a": a, "b": b}
	g := mustGroup(t, LeastConnections, a, b)
	dial := func() (string, *DialInfo) {
		t.Helper()
		info := &DialInfo{}
		c, err := g.DialContext(WithDialInfo(context.Background(), info), "tcp", "example.test:80")
		if err != nil {
			t.Fatal(err)
		}
		return connName(t, c), info
	}

	held, heldInfo := dial()
	other := "a"
	if held == "a" {
		other = "b"
	}
	if byName[held].Active() != 1 || byName[other].Active() != 0 {
		t.Fatalf("Active a=%d b=%d after one dial", a.Active(), b.Active())
	}
	// While held has a connection open, every dial goes to other.
	for i := range 5 {
		name, info := dial()
		if name != other {
			t.Fatalf("dial %d went to %s, which has %d connections, not %s with %d",
				i, name, byName[name].Active()-1, other, byName[other].Active())
		}
		info.Release()
	}
	if byName[other].Active() != 0 {
		t.Fatalf("Release did not decrement: %d", byName[other].Active())
	}
	// Two open on other now: held (one) gets the next.
	_, o1 := dial()
	_, o2 := dial() // tie 1:1, either
	if a.Active()+b.Active() != 3 {
		t.Fatalf("Active a=%d b=%d", a.Active(), b.Active())
	}
	heldInfo.Release()
	heldInfo.Release() // once only
	o1.Release()
	o2.Release()
	if a.Active() != 0 || b.Active() != 0 {
		t.Fatalf("Active a=%d b=%d after every release", a.Active(), b.Active())
	}

	// Without DialInfo nothing is held.
	for range 3 {
		if _, err := g.DialContext(context.Background(), "tcp", "example.test:80"); err != nil {
			t.Fatal(err)
		}
	}
	if a.Active() != 0 || b.Active() != 0 {
		t.Fatalf("Active a=%d b=%d after dials without DialInfo", a.Active(), b.Active())
	}
}

func TestGroupLeastConnectionsPrefersFewer(t *testing.T) {
	// Deterministic: a holds two, b holds one, c none: c, then b and c
	// (tied), never a.
	ad, bd, cd := &stubDialer{name: "a"}, &stubDialer{name: "b"}, &stubDialer{name: "c"}
	a, _ := member("a", ad)
	b, _ := member("b", bd)
	c, _ := member("c", cd)
	a.health().active.Store(2)
	b.health().active.Store(1)
	g := mustGroup(t, LeastConnections, a, b, c)
	info := &DialInfo{}
	conn, err := g.DialContext(WithDialInfo(context.Background(), info), "tcp", "example.test:80")
	if err != nil || connName(t, conn) != "c" {
		t.Fatalf("first dial: %v", err)
	}
	for range 4 {
		info := &DialInfo{}
		conn, err := g.DialContext(WithDialInfo(context.Background(), info), "tcp", "example.test:80")
		if err != nil || connName(t, conn) == "a" {
			t.Fatalf("dial went to a, which has the most connections (%v)", err)
		}
		info.Release()
	}
	info.Release()
	if a.Active() != 2 || b.Active() != 1 || c.Active() != 0 {
		t.Fatalf("Active a=%d b=%d c=%d", a.Active(), b.Active(), c.Active())
	}
}

func TestGroupDeadlineShare(t *testing.T) {
	var mu sync.Mutex
	deadlines := map[string]time.Time{}
	failing := func(name string) *stubDialer {
		return &stubDialer{name: name, fn: func(ctx context.Context) (net.Conn, error) {
			dl, ok := ctx.Deadline()
			mu.Lock()
			if ok {
				deadlines[name] = dl
			}
			mu.Unlock()
			return nil, &Error{Upstream: name, Stage: StageHandshake, Code: plugins.CodeTimeout, Err: context.DeadlineExceeded}
		}}
	}
	last := &stubDialer{name: "c"}
	last.fn = func(ctx context.Context) (net.Conn, error) {
		dl, ok := ctx.Deadline()
		mu.Lock()
		if ok {
			deadlines["c"] = dl
		}
		mu.Unlock()
		return &stubConn{name: "c"}, nil
	}
	a, _ := member("a", failing("a"))
	b, _ := member("b", failing("b"))
	c, _ := member("c", last)
	g := mustGroup(t, Failover, a, b, c)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	end, _ := ctx.Deadline()
	conn, err := g.DialContext(ctx, "tcp", "example.test:80")
	if err != nil || connName(t, conn) != "c" {
		t.Fatalf("dial: %v", err)
	}
	mu.Lock()
	da, db, dc := deadlines["a"], deadlines["b"], deadlines["c"]
	mu.Unlock()
	if da.IsZero() || db.IsZero() || dc.IsZero() {
		t.Fatalf("a member dialed without a deadline: %v", deadlines)
	}
	// a gets a third of the time, b half of what is left, c the rest.
	if !da.Before(start.Add(end.Sub(start) / 2)) {
		t.Fatalf("a's share runs to %v of %v", da.Sub(start), end.Sub(start))
	}
	if !da.Before(db) || !db.Before(end) {
		t.Fatalf("shares a=%v b=%v of %v", da.Sub(start), db.Sub(start), end.Sub(start))
	}
	if !dc.Equal(end) {
		t.Fatalf("the last member's deadline %v is not the dial's %v", dc, end)
	}

	// Without a deadline, no member gets one.
	a.MarkUp()
	b.MarkUp()
	mu.Lock()
	clear(deadlines)
	mu.Unlock()
	if _, err := g.DialContext(context.Background(), "tcp", "example.test:80"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deadlines) != 0 {
		t.Fatalf("deadlines without one: %v", deadlines)
	}
}

func TestGroupSilentMemberGetsItsShare(t *testing.T) {
	silent, err := SOCKS5("a", silentServer(t).addr(), nil, Direct())
	if err != nil {
		t.Fatal(err)
	}
	live, err := SOCKS5("b", startSOCKS(t, &socksFake{greeting: "via b\n"}).addr(), nil, Direct())
	if err != nil {
		t.Fatal(err)
	}
	a, ha := member("a", silent)
	b, _ := member("b", live)
	g := mustGroup(t, Failover, a, b)
	ctx, info := dialCtx(t, 3*time.Second)
	c, err := g.DialContext(ctx, "tcp", "example.test:80")
	if err != nil {
		t.Fatalf("the second member did not get the rest of the deadline: %v", err)
	}
	defer c.Close()
	if readN(t, c, len("via b\n")) != "via b\n" || info.Path() != "b" {
		t.Fatalf("not through b: chain %q", info.Path())
	}
	if !a.Down() {
		t.Fatal("the silent member is not marked down")
	}
	ev := ha.get()
	if len(ev) != 1 {
		t.Fatalf("health events %+v", ev)
	}
	upstreamErr(t, ev[0].err, "a", StageHandshake, plugins.CodeTimeout)
}

func TestGroupNested(t *testing.T) {
	ad := &stubDialer{name: "a", fn: failWith(&Error{Upstream: "a", Stage: StageConnect, Err: errors.New("refused")})}
	bd, cd := &stubDialer{name: "b"}, &stubDialer{name: "c"}
	a, _ := member("a", ad)
	b, _ := member("b", bd)
	c, _ := member("c", cd)
	inner, err := NewGroup("inner", Failover, []*Node{a, b})
	if err != nil {
		t.Fatal(err)
	}
	in, hin := member("inner", inner)
	g := mustGroup(t, Failover, in, c)

	ctx, info := dialCtx(t, 10*time.Second)
	conn, err := g.DialContext(ctx, "tcp", "example.test:80")
	if err != nil || connName(t, conn) != "b" || info.Path() != "b" {
		t.Fatalf("dial: %v, chain %q", err, info.Path())
	}
	if b.Active() != 1 || in.Active() != 1 {
		t.Fatalf("Active b=%d inner=%d", b.Active(), in.Active())
	}
	info.Release()
	if b.Active() != 0 || in.Active() != 0 {
		t.Fatalf("after Release: Active b=%d inner=%d", b.Active(), in.Active())
	}

	// Every member of inner down: the outer group moves on to c.
	b.MarkDown(errors.New("boom"))
	ctx, info = dialCtx(t, 10*time.Second)
	conn, err = g.DialContext(ctx, "tcp", "example.test:80")
	if err != nil || connName(t, conn) != "c" || info.Path() != "c" {
		t.Fatalf("dial: %v, chain %q", err, info.Path())
	}
	if !in.Down() || !boolsEqual(hin.ups(), []bool{false}) {
		t.Fatalf("inner down %v, health %v", in.Down(), hin.ups())
	}
}

// A client that gives up (or whose dial budget is already spent) says
// nothing about the member being dialed: the member must not be marked
// down, which would push every other client off a healthy upstream for its
// backoff, and the next member must not be tried.
func TestGroupClientGaveUpDoesNotMarkDown(t *testing.T) {
	tests := []struct {
		name string
		a    func(t *testing.T) Dialer
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"canceled during the handshake", func(t *testing.T) Dialer {
			d, err := SOCKS5("a", silentServer(t).addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(200*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline already passed", func(t *testing.T) Dialer {
			d, err := SOCKS5("a", startSOCKS(t, &socksFake{}).addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}, func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, ha := member("a", tt.a(t))
			bd := &stubDialer{name: "b"}
			b, _ := member("b", bd)
			g := mustGroup(t, Failover, a, b)
			ctx, cancel := tt.ctx()
			defer cancel()
			c, err := g.DialContext(ctx, "tcp", "example.test:80")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			if a.Down() || len(ha.get()) != 0 {
				t.Errorf("the client giving up marked member a down: %v", err)
			}
			if bd.calls.Load() != 0 {
				t.Error("the next member was tried after the client gave up")
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v does not say %v", err, tt.want)
			}
		})
	}
}
