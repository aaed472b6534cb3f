package upstream

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"ferry/config"
	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

// route is one [[route]]: the first whose rule matches a session picks
// its upstream, or rejects it.
type route struct {
	idx      int
	rule     *match.Rule
	upstream string // "direct" or an [[upstream]]; empty with reject
	reject   bool
	source   *sourcePool // nil: the kernel picks the local address
}

// Choice is what the routes decided for a session.
type Choice struct {
	// Upstream is "direct" or an [[upstream]].
	Upstream string
	// Pinned are the addresses a route on destination addresses resolved
	// the target to, for the direct dial to use.
	Pinned []netip.Addr
	// Source is the local address to dial from (the route's
	// source_address); the zero Addr lets the kernel pick.
	Source netip.Addr
}

// Route is Choose without the source address, for callers that bind no
// dial (SOCKS5 UDP).
func (u *Table) Route(ctx context.Context, s *plugins.Session, resolveTimeout time.Duration) (name string, pinned []netip.Addr, err error) {
	c, err := u.Choose(ctx, s, resolveTimeout)
	return c.Upstream, c.Pinned, err
}

// Choose picks the session's upstream by the first route that matches
// it, "direct" when none does, and the local address the route's
// source_address gives the session. A route on destination addresses
// resolves a name destination (once per session, within resolveTimeout);
// the addresses are returned so a direct dial goes where the route
// decided.
func (u *Table) Choose(ctx context.Context, s *plugins.Session, resolveTimeout time.Duration) (Choice, error) {
	if len(u.routes) == 0 {
		return Choice{Upstream: config.Direct}, nil
	}
	host, portStr, err := net.SplitHostPort(s.Target)
	if err != nil {
		return Choice{}, fmt.Errorf("route: target %q: %w", s.Target, err)
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	q := match.Query{Host: host, Port: uint16(port), Client: s.ClientIP(), User: s.User, Groups: s.Groups, Listener: s.Listener}
	resolved := false
	var pinned []netip.Addr
	for _, r := range u.routes {
		res := r.rule.Eval(q)
		if res == match.NeedIP {
			if !resolved {
				resolved = true
				rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
				pinned, err = net.DefaultResolver.LookupNetIP(rctx, "ip", host)
				cancel()
				if err != nil {
					s.Log.Debug().Err(err).Str("host", host).Msg("route: resolve failed; routes on addresses do not match")
				}
				for i := range pinned {
					pinned[i] = pinned[i].Unmap()
				}
			}
			res = match.No
			for _, ip := range pinned {
				q.IP = ip
				if r.rule.Eval(q) == match.Yes {
					res = match.Yes
					break
				}
			}
			q.IP = netip.Addr{}
		}
		if res != match.Yes {
			continue
		}
		if r.reject {
			return Choice{}, &plugins.RejectError{Code: plugins.CodeForbidden, Msg: fmt.Sprintf("rejected by route[%d]", r.idx)}
		}
		return Choice{Upstream: r.upstream, Pinned: pinned, Source: r.source.pick(stickyKey(s.User, q.Client))}, nil
	}
	return Choice{Upstream: config.Direct, Pinned: pinned}, nil
}
