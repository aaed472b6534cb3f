package ratelimit

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"ferry/plugins"
)

// flow is one direction of a channel: the limiters that apply to it
// (channel, client, user) and the largest piece all of them can grant at
// once, the smallest burst.
type flow struct {
	lims  []*rate.Limiter
	piece int
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
// Every probeEvery of sleeping it calls probe, a zero-byte write toward
// the side the bytes go to; when that fails the channel has ended, and
// wait gives back the piece it holds and returns plugins.ErrClose.
func (p *Plugin) wait(f *flow, n int, probe func([]byte) error) error {
	if len(f.lims) == 0 {
		return nil
	}
	var held [3]*rate.Reservation
	lastProbe := p.now()
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
		for delay > 0 {
			step := min(delay, probeEvery)
			p.sleep(step)
			delay -= step
			if now := p.now(); now.Sub(lastProbe) >= probeEvery {
				lastProbe = now
				if !alive(probe(nil)) {
					cancelAll(rs, now)
					return plugins.ErrClose
				}
			}
		}
		n -= piece
	}
	return nil
}

// alive reads a probe's result: an error other than ErrNotConnected (no
// link to probe through: keep waiting) means the connection is closed.
func alive(err error) bool {
	return err == nil || errors.Is(err, plugins.ErrNotConnected)
}

// cancelAll gives back reservations whose bytes will not be sent, so that
// a shared limiter does not make other channels pay for a dead one.
func cancelAll(rs []*rate.Reservation, now time.Time) {
	for _, r := range rs {
		r.CancelAt(now)
	}
}
