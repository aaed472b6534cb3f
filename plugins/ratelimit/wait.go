package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"ferry/plugins"
	"ferry/state"
)

// flow is one direction of a channel: the limiters that apply to it
// (channel, client, user) and the largest piece all of them can grant at
// once, the smallest burst.
type flow struct {
	lims  []*rate.Limiter
	piece int
	// shared are the fleet's buckets of the channel's client and user
	// (see shared.go), taken from after the local limiters.
	shared []*state.Bucket
}

func newFlow(lims []*rate.Limiter) flow {
	f := flow{lims: lims}
	for i, l := range lims {
		if i == 0 || l.Burst() < f.piece {
			f.piece = l.Burst()
		}
	}
	return f
}

// wait returns once every limiter of f has granted n bytes. It reserves
// them in pieces of at most f.piece (a limiter cannot grant more than its
// burst at once) and sleeps until the slowest limiter allows each piece.
//
// The sleep ends early when ctx ends, the channel's context (see
// plugins.Session.Context): wait then gives back the piece it holds and
// returns plugins.ErrClose. After each piece it had to sleep for, it calls
// touch, a zero-byte write toward the side the bytes go to, because the
// relay's idle timeout counts only bytes that move and a channel held
// back by its limit must not look idle. When that write fails the
// connection is gone although ctx has not ended (a plain HTTP request's
// context ends only with its exchange, after the hooks return), and wait
// returns plugins.ErrClose too.
func (p *Plugin) wait(ctx context.Context, f *flow, n int, touch func([]byte) error) error {
	if len(f.lims) == 0 && len(f.shared) == 0 {
		return nil
	}
	var held [3]*rate.Reservation
	for n > 0 {
		piece := min(n, f.piece)
		now := p.now()
		var delay time.Duration
		rs := held[:0]
		for _, l := range f.lims {
			r := l.ReserveN(now, piece)
			if !r.OK() {
				// Not reached: piece is within every burst.
				cancelAll(rs, now)
				return fmt.Errorf("reserve %d bytes: over a burst of %d", piece, l.Burst())
			}
			rs = append(rs, r)
			delay = max(delay, r.DelayFrom(now))
		}
		if delay > 0 {
			if err := p.sleep(ctx, delay); err != nil {
				cancelAll(rs, p.now())
				return plugins.ErrClose
			}
			if gone(touch(nil)) {
				return plugins.ErrClose
			}
		}
		if err := p.takeShared(ctx, f, piece); err != nil {
			return err
		}
		n -= piece
	}
	return nil
}

// sleep waits for d or until ctx ends, whichever comes first, and returns
// ctx's error in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gone reads a touch's result: an error other than ErrNotConnected (no
// link to write through) means the connection is closed.
func gone(err error) bool {
	return err != nil && !errors.Is(err, plugins.ErrNotConnected)
}

// cancelAll gives back reservations whose bytes will not be sent, so that
// a shared limiter does not make other channels pay for a dead one.
func cancelAll(rs []*rate.Reservation, now time.Time) {
	for _, r := range rs {
		r.CancelAt(now)
	}
}
