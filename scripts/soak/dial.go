package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"ferry/scripts/internal/load"
)

// path is one way through ferry: a listener and the protocol spoken to it.
type path struct {
	name  string // "connect", "socks5+hook", "tcp": for messages
	proto string // connect (HTTP CONNECT) | socks5 | tcp (the listener forwards to its own target)
	addr  string // the listener
}

// dial opens a tunnel through p to target (ignored for tcp: the listener
// has its own). The handshake must end by deadline, which stays set on the
// returned connection. After a refusal it waits (briefly) for ferry to
// close first, so the TIME_WAIT is ferry's, and returns a *load.Refusal.
func dial(p path, target netip.AddrPort, deadline time.Time) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", p.addr, time.Until(deadline))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", p.name, err)
	}
	c.SetDeadline(deadline)
	var rc net.Conn = c
	switch p.proto {
	case "tcp":
		return c, nil
	case "connect":
		rc, err = load.Connect(c, target)
	case "socks5":
		err = load.SOCKS5(c, target)
	default:
		err = fmt.Errorf("unknown proto %q", p.proto)
	}
	if err != nil {
		var r *load.Refusal
		if errors.As(err, &r) {
			load.WaitClose(c, earliest(deadline, time.Now().Add(2*time.Second)))
		}
		c.Close()
		return nil, err
	}
	return rc, nil
}

// earliest is the earlier of two times.
func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
