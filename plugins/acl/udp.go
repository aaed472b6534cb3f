package acl

import (
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
		return p.refuse(s, "bad target", err.Error(), netip.Addr{})
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
	v := p.decide(q)
	if v.pending || v.action == Allow {
		p.fields(s.Log.Debug(), s, v.by(), q.IP).Str("dest", target).Msg("acl allowed udp destination")
		return nil
	}
	return p.refuse(s, v.by(), "destination "+target, q.IP)
}
