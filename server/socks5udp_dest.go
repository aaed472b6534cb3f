package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"ferry/plugins"
	"ferry/relay/upstream"
)

// udpMaxDestinations bounds the destinations an association decides and
// remembers. Past it, datagrams to a destination not yet seen are
// dropped (and counted) rather than evicting one: an association that
// sprays destinations is a scan, not a client, and eviction would let it
// make ferry resolve and check without end.
const udpMaxDestinations = 256

// udpResolveTimeout bounds the resolution of one destination name (and
// dial_timeout does, when shorter). The relay socket's reader waits for
// it, which is why it is short.
const udpResolveTimeout = 5 * time.Second

// udpDest is the decision about one destination, kept for the
// association's life.
type udpDest struct {
	err       error          // non-nil: refused, its datagrams dropped
	addr      netip.AddrPort // direct: where its datagrams go
	viaParent bool           // through the association's upstream parent
}

// destTable maps destinations as the client names them to decisions, and
// the addresses datagrams went to back to theirs, for the answers.
type destTable struct {
	byAddr map[netip.AddrPort]*udpDest
	byName map[string]*udpDest // "name:port"
	byFrom map[netip.AddrPort]*udpDest
	key    []byte // scratch for byName lookups, which then do not allocate
	full   bool   // the bound was reached and logged
}

func (t *destTable) init() {
	t.byAddr = map[netip.AddrPort]*udpDest{}
	t.byName = map[string]*udpDest{}
	t.byFrom = map[netip.AddrPort]*udpDest{}
}

// parentLink is the association's association at a SOCKS5 parent.
type parentLink struct {
	p     *upstream.UDPParent
	assoc *upstream.UDPAssociation
}

// destination returns the decision for the header's destination, deciding
// it the first time; nil past udpMaxDestinations.
func (a *association) destination(ctx context.Context, h upstream.UDPHeader) *udpDest {
	t := &a.dests
	var lit netip.AddrPort
	if h.Host == nil {
		lit = netip.AddrPortFrom(h.Addr.Addr().Unmap(), h.Port)
		if d, ok := t.byAddr[lit]; ok {
			return d
		}
	} else {
		t.key = strconv.AppendUint(append(append(t.key[:0], h.Host...), ':'), uint64(h.Port), 10)
		if d, ok := t.byName[string(t.key)]; ok {
			return d
		}
	}
	if len(t.byAddr)+len(t.byName) >= udpMaxDestinations {
		if !t.full {
			t.full = true
			a.s.Log.Info().Int("limit", udpMaxDestinations).
				Msg("socks5 udp: association reached its destination bound; datagrams to new destinations are dropped")
		}
		return nil
	}
	var d *udpDest
	if h.Host == nil {
		d = a.decide(ctx, lit.String(), "", lit)
		t.byAddr[lit] = d
	} else {
		host := string(h.Host)
		d = a.decide(ctx, string(t.key), host, netip.AddrPortFrom(netip.Addr{}, h.Port))
		t.byName[string(t.key)] = d
	}
	if d.err == nil && !d.viaParent {
		t.byFrom[d.addr] = d
	}
	if d.err != nil {
		a.s.Log.Debug().Str("dest", destString(h)).Err(d.err).Msg("socks5 udp: destination refused")
	}
	return d
}

// destString names h's destination for a log line.
func destString(h upstream.UDPHeader) string {
	if h.Host != nil {
		return net.JoinHostPort(string(h.Host), strconv.Itoa(int(h.Port)))
	}
	return h.Addr.String()
}

// decide runs, for one destination (target; host when it is a name, else
// lit), what a TCP dial to it gets: its route, and for a direct one the
// resolution and, on the address, ferry's own refusals and the plugins'
// DestinationCheckers. Through a parent only the plugins decide, on the
// name, as a TCP dial through an upstream is not checked per address.
func (a *association) decide(ctx context.Context, target, host string, lit netip.AddrPort) *udpDest {
	if host != "" && !validHostName(host) {
		return &udpDest{err: fmt.Errorf("destination %q is not a host name", host)}
	}
	name, pinned, err := a.route(ctx, target)
	if err != nil {
		return &udpDest{err: err}
	}
	parent, err := a.l.gen.ups.UDP(name)
	if err != nil {
		return &udpDest{err: err}
	}
	if parent != nil {
		if err := a.l.chain.CheckDestination(a.s, target, netip.AddrPort{}); err != nil {
			return &udpDest{err: err}
		}
		if err := a.useParent(ctx, parent); err != nil {
			return &udpDest{err: err}
		}
		return &udpDest{viaParent: true}
	}
	ips := pinned
	if host == "" {
		ips = []netip.Addr{lit.Addr()}
	} else if len(ips) == 0 {
		rctx, cancel := context.WithTimeout(ctx, min(udpResolveTimeout, a.l.set.DialTimeout))
		ips, err = net.DefaultResolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil {
			return &udpDest{err: fmt.Errorf("resolve %s: %w", host, err)}
		}
	}
	var first error
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip.Unmap().WithZone(""), lit.Port())
		if b := a.bindIP; b.IsValid() && b.Is4() != ap.Addr().Is4() {
			if first == nil {
				first = fmt.Errorf("%s: the relay socket is bound to %s, which cannot reach it", ap, b)
			}
			continue
		}
		err := a.l.refuseDst(ap)
		if err == nil {
			err = a.l.chain.CheckDestination(a.s, target, ap)
		}
		if err == nil {
			return &udpDest{addr: ap}
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = errors.New("no address")
	}
	return &udpDest{err: first}
}

// route picks the upstream of one destination: the plugin's choice for
// the association, else the first [[route]] that matches the destination
// (as a session of its own would be routed), else direct.
func (a *association) route(ctx context.Context, target string) (string, []netip.Addr, error) {
	if a.fixed != "" {
		return a.fixed, nil, nil
	}
	view := &plugins.Session{ID: a.s.ID, Listener: a.s.Listener, Client: a.s.Client, Peer: a.s.Peer,
		Protocol: a.s.Protocol, Target: target, User: a.s.User, Groups: a.s.Groups, Log: a.s.Log}
	return a.l.gen.ups.Route(ctx, view, min(udpResolveTimeout, a.l.set.DialTimeout))
}

// useParent opens the association's own association at parent p, the
// first time a destination goes through it. An association goes through
// one parent: a destination routed to a second one is refused.
func (a *association) useParent(ctx context.Context, p *upstream.UDPParent) error {
	if a.parent != nil {
		if a.parent.p == p {
			return nil
		}
		return fmt.Errorf("association already goes through upstream %s, not %s", a.parent.p.Name, p.Name)
	}
	dctx, cancel := context.WithTimeout(ctx, a.l.set.DialTimeout)
	defer cancel()
	// Datagrams to the parent leave from the relay socket, from the
	// address the control connection leaves from: declare only the port.
	from := netip.AddrPortFrom(netip.IPv4Unspecified(), a.bound.Port())
	as, err := p.Associate(dctx, from)
	if err != nil {
		a.l.gen.ups.LogFailure(a.s, err)
		return fmt.Errorf("udp associate at upstream %s: %w", p.Name, err)
	}
	a.parent = &parentLink{p: p, assoc: as}
	a.s.Upstream, a.s.UpstreamPath = p.Name, p.Name
	return nil
}
