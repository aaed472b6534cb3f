package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"ferry/plugins"
)

// An association's reader holds a 64 KiB buffer (a datagram may be that
// long, and one read must take it whole) only while datagrams flow. After
// udpParkAfter without one it gives the buffer back and waits for the
// socket to become readable without any, as idle tunnels park
// (relay/park_linux.go): a client that keeps an association open for an
// occasional DNS query costs a goroutine and a socket, not 64 KiB.

// udpParkAfter is how long a reader keeps its buffer after the last
// datagram relayed.
const udpParkAfter = 100 * time.Millisecond

// udpBuffers recycles associations' datagram buffers.
var udpBuffers = sync.Pool{New: func() any {
	b := make([]byte, udpHeadroom+udpMaxDatagram)
	return &b
}}

// readLoop relays datagrams until the socket is closed or the association
// idles out, alternating bursts (with a buffer) and waits (without). It
// sets a.reason when it ends the association itself.
func (a *association) readLoop(ctx context.Context) {
	rc, err := a.sock.SyscallConn()
	if err != nil {
		a.reason, a.err = plugins.ReasonError, err
		return
	}
	a.last = time.Now()
	for {
		err := a.waitReadable(rc)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) && a.idle > 0 && time.Since(a.last) >= a.idle:
			a.reason = plugins.ReasonIdleTimeout
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // something was relayed since the deadline was set
		case errors.Is(err, net.ErrClosed):
			return
		case err != nil:
			a.reason, a.err = plugins.ReasonError, err
			return
		}
		if !a.burst(ctx) {
			return
		}
	}
}

// waitReadable waits, holding no buffer, until the socket has a datagram
// or the idle deadline passes. RawConn.Read calls its function until it
// returns true, waiting for the poller between calls; the function peeks
// (the poller's readiness is reset when the wait starts, so a datagram
// already queued would not wake it).
func (a *association) waitReadable(rc syscall.RawConn) error {
	var deadline time.Time
	if a.idle > 0 {
		deadline = a.last.Add(a.idle)
	}
	a.sock.SetReadDeadline(deadline)
	return rc.Read(udpReadable)
}

// burst reads and relays datagrams with a buffer from the pool until none
// was relayed for udpParkAfter since the burst began or the last one was
// (or the idle deadline comes first), and reports whether the association
// goes on.
func (a *association) burst(ctx context.Context) bool {
	bp := udpBuffers.Get().(*[]byte)
	defer udpBuffers.Put(bp)
	buf := *bp
	start := time.Now()
	park := min(udpParkAfter, a.idleOr(udpParkAfter))
	// The deadline moves only when it fires, not per datagram.
	a.sock.SetReadDeadline(start.Add(park))
	for {
		n, from, err := a.sock.ReadFromUDPAddrPort(buf[udpHeadroom:])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			last := a.last
			if last.Before(start) {
				last = start
			}
			switch {
			case a.idle > 0 && time.Since(a.last) >= a.idle:
				a.reason = plugins.ReasonIdleTimeout
				return false
			case time.Since(last) < park:
				a.sock.SetReadDeadline(last.Add(park)) // relayed since the deadline was set
				continue
			}
			return true // park
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				a.reason, a.err = plugins.ReasonError, err
			}
			return false
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		a.handle(ctx, buf, n, from)
	}
}

// idleOr is idle_timeout, or d when there is none.
func (a *association) idleOr(d time.Duration) time.Duration {
	if a.idle > 0 {
		return a.idle
	}
	return d
}
