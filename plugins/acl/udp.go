package acl

import (
	"fmt"
	"net/netip"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

var _ plugins.DestinationChecker = (*ACL)(nil)

// OnDestination implements plugins.DestinationChecker: the rules and
// deny_private_destinations on one destination of a SOCKS5 UDP
// association, with the address ferry sends to when it sends there itself
// (invalid through an upstream proxy: a verdict that waits for the
// address then allows, as a TCP dial through one does).
func (p *ACL) OnDestination(s *plugins.Session, target string, addr netip.AddrPort) error {
	host, port, err := splitTarget(target)
	if err != nil {
		return p.refuse(s, nil, "bad target", err.Error(), netip.Addr{})
	}
	q := match.Query{Host: host, Port: port, Client: clientAddr(s.Client), User: s.User, Listener: s.Listener}
	if a, ok := match.ParseLiteral(host); ok {
		q.IP = a.Unmap().WithZone("")
	}
	if addr.IsValid() {
		q.IP = addr.Addr().Unmap().WithZone("")
	}
	if p.denyPrivate && q.IP.IsValid() {
		if err := p.checkPrivate(s, q.IP); err != nil {
			return err
		}
	}
	v := p.decide(q, nil)
	if v.pending || v.action == Allow {
		p.fields(s.Log.Debug(), s, v.by(), q.IP).Str("dest", target).Msg("acl allowed udp destination")
		return nil
	}
	return p.refuse(s, nil, v.by(), "destination "+target, q.IP)
}

// admitAssociation decides a SOCKS5 UDP association, which names no
// destination yet: refused when the rules deny this client every
// destination (a rule on client, user or listener alone that denies it
// before any that could allow, or default deny with no allow rule that
// can match it), so that a client the acl keeps out gets no relay
// socket; admitted otherwise, for OnDestination to decide each
// destination.
func (p *ACL) admitAssociation(s *plugins.Session) error {
	q := match.Query{Client: clientAddr(s.Client), User: s.User, Listener: s.Listener}
	for i, r := range p.rules {
		if r.http != nil {
			continue // an HTTP rule matches no datagram
		}
		who := match.Rule{Client: r.m.Client, User: r.m.User, Listener: r.m.Listener}
		if who.Eval(q) != match.Yes {
			continue // never matches this client
		}
		anyDest := len(r.m.Port) == 0 && r.m.Domain == nil && r.m.Dest == nil
		switch {
		case r.action == Allow:
			return nil
		case anyDest:
			return p.refuse(s, nil, fmt.Sprintf("rule[%d]", i), "every destination of a UDP association", netip.Addr{})
		}
	}
	if p.def == Allow {
		return nil
	}
	return p.refuse(s, nil, "default", "every destination of a UDP association", netip.Addr{})
}
