package upstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUpstreamBackoff(t *testing.T) {
	u := &Node{Name: "u"}
	if u.Down() || !u.Available(time.Now()) {
		t.Fatal("a new upstream is not up")
	}
	// check marks u down once more and expects the backoff to be want.
	check := func(want time.Duration) {
		t.Helper()
		before := time.Now()
		u.MarkDown(errors.New("boom"))
		after := time.Now()
		if !u.Down() {
			t.Fatal("not down")
		}
		if u.Available(before.Add(want - 10*time.Millisecond)) {
			t.Fatalf("available before its %v backoff ran out", want)
		}
		if !u.Available(after.Add(want)) {
			t.Fatalf("not available after its %v backoff", want)
		}
		if !u.Down() {
			t.Fatal("Available changed Down")
		}
	}
	for _, want := range []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60} {
		check(want * time.Second)
	}
	u.MarkUp()
	if u.Down() || !u.Available(time.Now()) {
		t.Fatal("MarkUp did not end the backoff")
	}
	check(time.Second) // the backoff starts over
	if !strings.Contains(u.downReason(time.Now()), "u (boom; next try in 1s)") {
		t.Fatalf("downReason = %q", u.downReason(time.Now()))
	}
}

func TestUpstreamHealthTransitions(t *testing.T) {
	u, h := member("u", &stubDialer{name: "u"})
	e1, e2, e3 := errors.New("e1"), errors.New("e2"), errors.New("e3")
	steps := []struct {
		do   func()
		want []healthEvent
	}{
		{u.MarkUp, nil},
		{func() { u.MarkDown(e1) }, []healthEvent{{false, e1}}},
		{func() { u.MarkDown(e2) }, []healthEvent{{false, e1}}},
		{u.MarkUp, []healthEvent{{false, e1}, {true, nil}}},
		{u.MarkUp, []healthEvent{{false, e1}, {true, nil}}},
		{func() { u.MarkDown(e3) }, []healthEvent{{false, e1}, {true, nil}, {false, e3}}},
	}
	for i, s := range steps {
		s.do()
		got := h.get()
		if len(got) != len(s.want) {
			t.Fatalf("step %d: events %+v, want %+v", i, got, s.want)
		}
		for j := range got {
			if got[j] != s.want[j] {
				t.Fatalf("step %d: events %+v, want %+v", i, got, s.want)
			}
		}
	}
	// No OnHealth: no call, no panic.
	v := &Node{Name: "v"}
	v.MarkDown(e1)
	v.MarkUp()
}

// waitAvailable waits for u's backoff to run out.
func waitAvailable(t *testing.T, u *Node) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !u.Available(time.Now()) {
		if time.Now().After(deadline) {
			t.Fatal("backoff never ran out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUpstreamProbe(t *testing.T) {
	socks := func(f *socksFake) func(t *testing.T) Dialer {
		return func(t *testing.T) Dialer {
			d, err := SOCKS5("p", startSOCKS(t, f).addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	tests := []struct {
		name     string
		d        func(t *testing.T) Dialer
		timeout  time.Duration
		wasDown  bool
		wantErr  bool
		wantDown bool
		health   []bool
	}{
		{"works", socks(&socksFake{}), 10 * time.Second, false, false, false, nil},
		{"works again", socks(&socksFake{}), 10 * time.Second, true, false, false, []bool{false, true}},
		{"target refused beyond a working upstream", socks(&socksFake{reply: 0x05}), 10 * time.Second, true, true, false, []bool{false, true}},
		{"proxy down", func(t *testing.T) Dialer {
			d, _ := SOCKS5("p", closedAddr(t), nil, Direct())
			return d
		}, 10 * time.Second, false, true, true, []bool{false}},
		{"proxy silent", socks(&socksFake{silent: true}), 300 * time.Millisecond, false, true, true, []bool{false}},
		{"direct, target refused", func(t *testing.T) Dialer { return DirectTarget() }, 10 * time.Second, false, true, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, h := member("p", tt.d(t))
			if tt.wasDown {
				u.MarkDown(errors.New("earlier"))
			}
			target := "example.test:80"
			if tt.name == "direct, target refused" {
				target = closedAddr(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			err := u.Probe(ctx, target)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Probe: %v", err)
			}
			if u.Down() != tt.wantDown {
				t.Fatalf("Down = %v, want %v (probe error %v)", u.Down(), tt.wantDown, err)
			}
			if !boolsEqual(h.ups(), tt.health) {
				t.Fatalf("health %v, want %v", h.ups(), tt.health)
			}
		})
	}
}

func TestUpstreamDialIgnoresHealth(t *testing.T) {
	d := &stubDialer{name: "u"}
	u, _ := member("u", d)
	u.MarkDown(errors.New("boom"))
	c, err := u.DialContext(context.Background(), "tcp", "example.test:80")
	if err != nil || connName(t, c) != "u" {
		t.Fatalf("dial: %v", err)
	}
	if !u.Down() || u.Active() != 0 {
		t.Fatal("a direct dial through the upstream changed its health or count")
	}
}
