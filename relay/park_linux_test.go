package relay

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"ferry/plugins"
)

// copyGoroutines counts goroutines running a channel's copies.
func copyGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "relay.(*Channel).run(")
}

func TestParkedChannelHasNoGoroutines(t *testing.T) {
	p := newTestParker(t)
	client, target, ch := setup(t)
	ch.Parker = p
	done := make(chan Result, 1)
	go ch.Start(context.Background(), func(r Result) { done <- r })

	for round := range 3 {
		exchange(t, client, target, strings.Repeat("x", 1+round*1000))
		waitParked(t, p, 2)
		if n := copyGoroutines(); n != 0 {
			t.Fatalf("round %d: %d goroutines copy for a parked channel, want 0", round, n)
		}
	}
	// Half-close while parked: the EOF wakes the copy, which passes it on;
	// the way back still works and parks again.
	client.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadAll(target); err != nil {
		t.Fatalf("target read to EOF: %v", err)
	}
	waitParked(t, p, 1)
	if _, err := target.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "late" {
		t.Fatalf("after half-close: %q, %v", got, err)
	}
	target.Close()
	select {
	case r := <-done:
		if r.Reason != plugins.ReasonClientClosed {
			t.Fatalf("reason %v, want %v", r.Reason, plugins.ReasonClientClosed)
		}
		if want := int64(1 + 1001 + 2001); r.Up != want || r.Down != want+4 {
			t.Fatalf("bytes up %d down %d, want %d and %d", r.Up, r.Down, want, want+4)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel did not end")
	}
	if p.Parked() != 0 {
		t.Fatalf("%d still parked", p.Parked())
	}
}

func TestParkedChannelEnds(t *testing.T) {
	for _, tt := range []struct {
		name string
		end  func(ch *Channel, cancel context.CancelFunc)
		want plugins.CloseReason
	}{
		{"admin close", func(ch *Channel, _ context.CancelFunc) { ch.Close() }, plugins.ReasonAdminClosed},
		{"shutdown", func(_ *Channel, cancel context.CancelFunc) { cancel() }, plugins.ReasonShutdown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestParker(t)
			client, target, ch := setup(t)
			ch.Parker = p
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan Result, 1)
			go ch.Start(ctx, func(r Result) { done <- r })
			exchange(t, client, target, "hello")
			waitParked(t, p, 2)
			tt.end(ch, cancel)
			select {
			case r := <-done:
				if r.Reason != tt.want {
					t.Fatalf("reason %v, want %v", r.Reason, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("parked channel did not end")
			}
			if p.Parked() != 0 {
				t.Fatalf("%d still parked", p.Parked())
			}
		})
	}
}

func TestParkerIdleTimeout(t *testing.T) {
	p := newTestParker(t)
	client, target, ch := setup(t)
	ch.Parker = p
	ch.IdleTimeout = 200 * time.Millisecond
	done := make(chan Result, 1)
	go ch.Start(context.Background(), func(r Result) { done <- r })
	exchange(t, client, target, "hi")
	select {
	case r := <-done:
		if r.Reason != plugins.ReasonIdleTimeout {
			t.Fatalf("reason %v, want %v", r.Reason, plugins.ReasonIdleTimeout)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("idle timeout did not end a parked channel")
	}
}

// Many channels parking and waking at random keep every byte in order.
func TestParkerManyChannels(t *testing.T) {
	p := newTestParker(t)
	const n = 50
	type pair struct{ client, target net.Conn }
	pairs := make([]pair, n)
	results := make(chan Result, n)
	for i := range pairs {
		client, target, ch := setup(t)
		ch.Parker = p
		pairs[i] = pair{client, target}
		go ch.Start(context.Background(), func(r Result) { results <- r })
	}
	errs := make(chan error, n)
	for i, pr := range pairs {
		go func() {
			var sent bytes.Buffer
			for round := range 4 {
				msg := bytes.Repeat([]byte{byte('a' + i%26)}, 100*(round+1)+i)
				sent.Write(msg)
				if _, err := pr.client.Write(msg); err != nil {
					errs <- err
					return
				}
				// Some wait long enough to park, some do not.
				time.Sleep(time.Duration((i+round)%3) * 15 * time.Millisecond)
			}
			pr.client.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(pr.target)
			if err == nil && !bytes.Equal(got, sent.Bytes()) {
				err = io.ErrShortWrite
			}
			pr.target.Close()
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		select {
		case <-results:
		case <-time.After(5 * time.Second):
			t.Fatal("channels did not end")
		}
	}
	waitParked(t, p, 0)
}

// TestParkerSlots: a token wakes the copy it was given for, once; a
// slot filled again gets a token of its own, so the event of a copy
// taken since (a stale one) misses its successor; a channel that never
// parked has no copy to take.
func TestParkerSlots(t *testing.T) {
	p := &Parker{}
	a, b := &Channel{}, &Channel{}
	take := func(token uint64, want *Channel) {
		t.Helper()
		w, ok := p.take(token)
		switch {
		case want == nil && ok:
			t.Fatalf("token %#x took a copy of %p, want none", token, w.c)
		case want != nil && (!ok || w.c != want):
			t.Fatalf("token %#x took %p (%v), want %p", token, w.c, ok, want)
		}
	}
	p.mu.Lock()
	ta := p.fill(a, plugins.Up)
	p.mu.Unlock()
	if got := a.parkToken[plugins.Up]; got != ta {
		t.Fatalf("channel's token %#x, want %#x", got, ta)
	}
	take(b.parkToken[plugins.Down], nil) // never parked
	take(ta, a)
	take(ta, nil) // taken already
	p.mu.Lock()
	tb := p.fill(b, plugins.Down)
	p.mu.Unlock()
	if uint32(tb) != uint32(ta) || tb == ta {
		t.Fatalf("tokens %#x then %#x: want the slot reused with another gen", ta, tb)
	}
	take(ta, nil) // stale: the slot is b's now
	take(tb, b)
	p.mu.Lock()
	p.slots[0].gen = ^uint32(0)
	tc := p.fill(a, plugins.Down)
	p.mu.Unlock()
	if tc>>32 == 0 {
		t.Fatalf("token %#x: gen wrapped to 0, the token of a copy never parked", tc)
	}
	if len(p.slots) != 1 {
		t.Fatalf("%d slots for one parked copy at a time, want 1", len(p.slots))
	}
}
