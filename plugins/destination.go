package plugins

import "net/netip"

// ProtocolSOCKS5UDP is the Session.Protocol of a SOCKS5 UDP association
// (RFC 1928 §7): one session for the association, whose Target is the
// address the client declared it sends from, not a destination. Each
// datagram names its own destination, which DestinationCheckers decide.
const ProtocolSOCKS5UDP = "socks5-udp"

// DestinationChecker decides each destination of a session that has many:
// a SOCKS5 UDP association. It is called once per new destination of the
// association, with target as the client named it (host:port) and addr
// the address the datagrams will go to, after resolution; addr is
// invalid when they go through an upstream proxy, which resolves names
// itself (as a TCP dial through one is not checked per address). It is
// the whole decision that OnConnect and OnDial make for one TCP target.
// An error drops the destination's datagrams. A plugin that is a
// Connector and restricts destinations should implement it, and let
// OnConnect admit a ProtocolSOCKS5UDP session on client and user alone.
type DestinationChecker interface {
	OnDestination(s *Session, target string, addr netip.AddrPort) error
}

// CheckDestination runs the DestinationCheckers, in config order, on one
// destination of s. It is called once per destination, not per datagram,
// so it finds the checkers as it goes.
func (c *Chain) CheckDestination(s *Session, target string, addr netip.AddrPort) error {
	if c == nil {
		return nil
	}
	for _, p := range c.plugins {
		if _, ok := p.(DestinationChecker); !ok {
			continue
		}
		if err := callDestinationCheck(p, s, target, addr); err != nil {
			return err
		}
	}
	return nil
}

func callDestinationCheck(p Plugin, s *Session, target string, addr netip.AddrPort) (err error) {
	defer recoverHook(p, "OnDestination", &err)
	if e := p.(DestinationChecker).OnDestination(s, target, addr); e != nil {
		return &HookError{Plugin: p.Name(), Hook: "OnDestination", Err: e}
	}
	return nil
}
