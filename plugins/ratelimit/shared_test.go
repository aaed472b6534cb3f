package ratelimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/state"
	"ferry/state/statetest"
)

// sharing makes an instance named "p" with opts over each Store of sts,
// its buckets shared through it, as the ferrys of a fleet.
func sharing(t *testing.T, sts []*state.Store, opts string) []*Plugin {
	ps := make([]*Plugin, len(sts))
	for i, st := range sts {
		ps[i] = mustLoad(t, opts, nil, zerolog.Nop())
		ps[i].share(st)
	}
	return ps
}

// TestSharedRate: one client's channels through two instances share the
// client rate: 2 x 128 KiB at 256 KiB/s (16 KiB burst) take about 0.94 s,
// not the 0.47 s of two separate buckets.
func TestSharedRate(t *testing.T) {
	const rate, burst, each, chunk = 256 << 10, 16 << 10, 128 << 10, 8 << 10
	sts, _ := statetest.Fleet(t, 2, state.FailOpen)
	ps := sharing(t, sts, `client = { down = "256KiB", burst = "16KiB" }`)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		s := session("s", "10.0.0.1:1", "")
		s.Attach(&link{})
		if err := p.OnConnect(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer p.OnClose(s, plugins.Stats{})
			for n := 0; n < each && errs[i] == nil; n += chunk {
				_, errs[i] = p.OnWrite(s, make([]byte, chunk))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := time.Duration(float64(2*each-burst) / rate * float64(time.Second))
	if got := time.Since(start); got < want*9/10 || got > want*13/10 {
		t.Fatalf("2 x %d bytes at a shared %d B/s took %v, want about %v", each, rate, got, want)
	}
}

// TestSharedDown: with Redis down, fail_open passes data at the local
// rate and fail_closed ends the channel.
func TestSharedDown(t *testing.T) {
	tests := []struct {
		name    string
		onErr   state.OnError
		wantErr error
	}{
		{name: "fail_open", onErr: state.FailOpen},
		{name: "fail_closed", onErr: state.FailClosed, wantErr: plugins.ErrClose},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts, r := statetest.Fleet(t, 1, tt.onErr)
			ps := sharing(t, sts, `user = { down = "1MiB" }`)
			s := session("s", "10.0.0.1:1", "alice")
			s.Attach(&link{})
			if err := ps[0].OnConnect(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			defer ps[0].OnClose(s, plugins.Stats{})
			r.Stop()
			if _, err := ps[0].OnWrite(s, make([]byte, 1000)); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Redis down: got %v, want %v", err, tt.wantErr)
			}
		})
	}
}
