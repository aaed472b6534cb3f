//go:build !linux

package relay

import (
	"errors"
	"syscall"
	"time"

	"ferry/plugins"
)

// Parker is Linux only; elsewhere idle copies keep their goroutines.
type Parker struct {
	After time.Duration
}

// DefaultParkAfter is the wait before an idle copy parks.
const DefaultParkAfter = 100 * time.Millisecond

// NewParker reports that parking is not supported here.
func NewParker(after time.Duration) (*Parker, error) {
	return nil, errors.ErrUnsupported
}

// Close does nothing.
func (p *Parker) Close() error { return nil }

// Parked is always 0.
func (p *Parker) Parked() int64 { return 0 }

func (p *Parker) park(c *Channel, dir plugins.Direction, src syscall.RawConn) bool { return false }
func (p *Parker) unpark(c *Channel, dir plugins.Direction)                         {}

var errParked = errors.New("parked")
