package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"ferry/config"
	"ferry/plugins"
)

func pool4() []netip.Addr {
	return []netip.Addr{
		netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
		netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5"),
	}
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user%d", i)
	}
	return out
}

// TestSticky: a user keeps the address over picks and over pools built
// anew (a reload), users spread over the addresses, and a change of the
// list moves only the users it must.
func TestSticky(t *testing.T) {
	users := names(1000)
	addrs := pool4()
	before := map[string]netip.Addr{}
	count := map[netip.Addr]int{}
	p := newSourcePool(addrs, config.SourceSticky)
	for _, u := range users {
		a := p.pick(stickyKey(u, netip.Addr{}))
		before[u] = a
		count[a]++
		again := newSourcePool(slices.Clone(addrs), "").pick(stickyKey(u, netip.Addr{}))
		if again != a {
			t.Fatalf("%s: got %v from a new pool, want %v as before", u, again, a)
		}
	}
	// 250 expected per address; 200-300 is over 3.6 standard deviations.
	for _, a := range addrs {
		if count[a] < 200 || count[a] > 300 {
			t.Errorf("address %v took %d of 1000 users, want 200-300 (all: %v)", a, count[a], count)
		}
	}
	tests := []struct {
		name     string
		addrs    []netip.Addr
		movedMin int // users that change address, at least and at most
		movedMax int
	}{
		{name: "same list reordered", addrs: []netip.Addr{addrs[3], addrs[1], addrs[0], addrs[2]}, movedMax: 0},
		{name: "one removed", addrs: addrs[:3], movedMin: count[addrs[3]], movedMax: count[addrs[3]]},
		{name: "one added", addrs: append(slices.Clone(addrs), netip.MustParseAddr("127.0.0.6")), movedMin: 150, movedMax: 250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newSourcePool(tt.addrs, config.SourceSticky)
			moved := 0
			for _, u := range users {
				a := p.pick(stickyKey(u, netip.Addr{}))
				if a == before[u] {
					continue
				}
				moved++
				// A user moves only off a removed address, or onto an added one.
				if slices.Contains(tt.addrs, before[u]) && slices.Contains(addrs, a) {
					t.Fatalf("%s moved from %v to %v, both in the old and new lists", u, before[u], a)
				}
			}
			t.Logf("%d of 1000 users moved", moved)
			if moved < tt.movedMin || moved > tt.movedMax {
				t.Fatalf("%d of 1000 users moved, want %d-%d", moved, tt.movedMin, tt.movedMax)
			}
		})
	}
}

func TestStickyKey(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.1")
	tests := []struct {
		name   string
		user   string
		client netip.Addr
		want   string
	}{
		{name: "user wins over client", user: "alice", client: ip, want: "user:alice"},
		{name: "client without user", client: ip, want: "ip:10.0.0.1"},
		{name: "user named like an address", user: "10.0.0.1", client: ip, want: "user:10.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stickyKey(tt.user, tt.client); got != tt.want {
				t.Fatalf("stickyKey(%q, %v): got %q, want %q", tt.user, tt.client, got, tt.want)
			}
		})
	}
}

func TestSourceStrategies(t *testing.T) {
	addrs := pool4()
	t.Run("round-robin cycles in order", func(t *testing.T) {
		p := newSourcePool(addrs, config.SourceRoundRobin)
		for i := range 12 {
			if got, want := p.pick("user:same"), addrs[i%4]; got != want {
				t.Fatalf("pick %d: got %v, want %v", i, got, want)
			}
		}
	})
	t.Run("random stays in the list and uses all of it", func(t *testing.T) {
		p := newSourcePool(addrs, config.SourceRandom)
		seen := map[netip.Addr]int{}
		for range 400 {
			a := p.pick("user:same")
			if !slices.Contains(addrs, a) {
				t.Fatalf("got %v, not in the list", a)
			}
			seen[a]++
		}
		if len(seen) != 4 {
			t.Fatalf("400 random picks used %v, want all 4 addresses", seen)
		}
	})
	t.Run("one address", func(t *testing.T) {
		for _, s := range []string{config.SourceSticky, config.SourceRandom, config.SourceRoundRobin} {
			if got := newSourcePool(addrs[:1], s).pick("k"); got != addrs[0] {
				t.Fatalf("%s: got %v, want %v", s, got, addrs[0])
			}
		}
	})
	t.Run("no pool", func(t *testing.T) {
		var p *sourcePool = newSourcePool(nil, config.SourceSticky)
		if got := p.pick("k"); got.IsValid() {
			t.Fatalf("got %v, want the zero Addr", got)
		}
	})
}

// TestChooseSource: the matching route's pool gives the session its
// address, sticky by user, else by client address.
func TestChooseSource(t *testing.T) {
	ups := buildRoutes(t, `
[[listener]]
listen = "127.0.0.1:0"
[[route]]
port = [81]
upstream = "direct"
source_address = "127.0.0.9"
[[route]]
upstream = "direct"
source_address = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
`)
	client := netip.MustParseAddr("10.0.0.7")
	tests := []struct {
		name, target, user string
		want               netip.Addr
	}{
		{name: "single address", target: "a.test:81", user: "bob", want: netip.MustParseAddr("127.0.0.9")},
		{name: "sticky by user", target: "a.test:80", user: "bob", want: StickySource(pool4(), "bob", client)},
		{name: "sticky by client", target: "a.test:80", want: StickySource(pool4(), "", client)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &plugins.Session{Target: tt.target, User: tt.user, Listener: "listener-0",
				Client: net.TCPAddrFromAddrPort(netip.AddrPortFrom(client, 5000))}
			c, err := ups.Choose(context.Background(), s, time.Second)
			if err != nil || c.Source != tt.want {
				t.Fatalf("Choose: got source %v, %v; want %v", c.Source, err, tt.want)
			}
		})
	}
}

// TestDialFromSource: dials leave from DialInfo.Source; one that cannot
// bind, or whose target is of the other family, is a SourceError that
// tells the client of a general failure.
func TestDialFromSource(t *testing.T) {
	target := hangupServer(t).addr()
	tests := []struct {
		name   string
		d      Dialer
		src    string
		target string
		pinned []string
		fail   bool // a SourceError; else the dial succeeds from src
		family bool // the SourceError is ErrSourceFamily
	}{
		{name: "direct target", d: DirectTarget(), src: "127.0.0.3", target: target},
		{name: "first hop", d: Direct(), src: "127.0.0.4", target: target},
		{name: "pinned of both families", d: DirectTarget(), src: "127.0.0.5", target: "name.test:" + port(target),
			pinned: []string{"::1", "127.0.0.1"}},
		{name: "unassigned", d: DirectTarget(), src: "192.0.2.1", target: target, fail: true},
		{name: "unassigned first hop", d: Direct(), src: "192.0.2.1", target: target, fail: true},
		{name: "literal of the other family", d: DirectTarget(), src: "127.0.0.2", target: "[::1]:1", fail: true, family: true},
		{name: "pinned of the other family only", d: DirectTarget(), src: "::1", target: "name.test:1",
			pinned: []string{"127.0.0.1"}, fail: true, family: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := &DialInfo{Source: netip.MustParseAddr(tt.src)}
			if tt.pinned != nil {
				info.PinnedHost, _, _ = net.SplitHostPort(tt.target)
				for _, p := range tt.pinned {
					info.Pinned = append(info.Pinned, netip.MustParseAddr(p))
				}
			}
			ctx, cancel := context.WithTimeout(WithDialInfo(context.Background(), info), 5*time.Second)
			defer cancel()
			c, err := tt.d.DialContext(ctx, "tcp", tt.target)
			if !tt.fail {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.Close()
				if got := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr(); got.String() != tt.src {
					t.Fatalf("local address: got %v, want %v", got, tt.src)
				}
				return
			}
			var se *SourceError
			if !errors.As(err, &se) || se.Source != info.Source {
				t.Fatalf("dial: got %v, want a SourceError for %v", err, info.Source)
			}
			if errors.Is(err, ErrSourceFamily) != tt.family {
				t.Fatalf("dial: got %v, want ErrSourceFamily %v", err, tt.family)
			}
			if code := DialCode(err); code != plugins.CodeGeneral {
				t.Fatalf("DialCode: got %v, want %v", code, plugins.CodeGeneral)
			}
		})
	}
}

func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// BenchmarkStickyPick is the cost a sticky pick adds to a session's
// routing, for a pool of 4 and of MaxSourceAddresses addresses.
func BenchmarkStickyPick(b *testing.B) {
	for _, n := range []int{4, config.MaxSourceAddresses} {
		addrs := make([]netip.Addr, n)
		for i := range addrs {
			addrs[i] = netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)})
		}
		p := newSourcePool(addrs, config.SourceSticky)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				p.pick("user:alice")
			}
		})
	}
}
