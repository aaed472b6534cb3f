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
}

// Route picks the session's upstream by the first route that matches it,
// "direct" when none does. A route on destination addresses resolves a
// name destination (once per session, within resolveTimeout); the
// addresses are returned so a direct dial goes where the route decided.
func (u *Table) Route(ctx context.Context, s *plugins.Session, resolveTimeout time.Duration) (name string, pinned []netip.Addr, err error) {
	if len(u.routes) == 0 {
		return config.Direct, nil, nil
	}
	host, portStr, err := net.SplitHostPort(s.Target)
	if err != nil {
		return "", nil, fmt.Errorf("route: target %q: %w", s.Target, err)
	}
	port, _ := strconv.ParseUint(portStr, 10, 16)
	q := match.Query{Host: host, Port: uint16(port), Client: s.ClientIP(), User: s.User, Groups: s.Groups, Listener: s.Listener}
	resolved := false
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
			return "", nil, &plugins.RejectError{Code: plugins.CodeForbidden, Msg: fmt.Sprintf("rejected by route[%d]", r.idx)}
		}
		return r.upstream, pinned, nil
	}
	return config.Direct, pinned, nil
}
