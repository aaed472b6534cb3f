package config

import (
	"fmt"
	"net/netip"
	"slices"

	"ferry/plugins/pkg/netx"
)

// Source strategies of a route's source_address array.
const (
	SourceSticky     = "sticky"
	SourceRandom     = "random"
	SourceRoundRobin = "round-robin"
)

// MaxSourceAddresses bounds one route's source_address array: a sticky
// pick hashes every entry, once per session.
const MaxSourceAddresses = 256

// routeSources checks every route's source_address and source_strategy
// and fills in Sources.
func (l *loader) routeSources(rs []Route) {
	host := &netx.HostAddrs{}
	for i := range rs {
		l.routeSource(indexKey("route", i), &rs[i], host)
	}
}

// routeSource checks one route's source settings at path p.
func (l *loader) routeSource(p string, r *Route, host *netx.HostAddrs) {
	key := p + ".source_address"
	list := false
	var texts []any
	switch v := r.SourceAddress.(type) {
	case nil:
	case string:
		texts = []any{v}
	case []any:
		list = true
		texts = v
		if len(v) == 0 {
			l.errorf(key, "empty: list addresses, or leave source_address out to let the kernel pick")
		} else if len(v) > MaxSourceAddresses {
			l.errorf(key, "%d addresses: at most %d", len(v), MaxSourceAddresses)
			return
		}
	default:
		l.errorf(key, "must be an address or an array of addresses, not %s", valueWords(v))
		return
	}
	switch {
	case r.SourceStrategy != "" && !list:
		l.errorf(p+".source_strategy", "only an array of source_address has a strategy")
	case list:
		if r.SourceStrategy == "" {
			r.SourceStrategy = SourceSticky
		}
		l.oneOf(p+".source_strategy", r.SourceStrategy, SourceSticky, SourceRandom, SourceRoundRobin)
	}
	if len(texts) > 0 && r.Reject {
		l.errorf(key, "a rejected request is not dialed: remove source_address or reject")
	}
	r.Sources = l.sourceList(key, list, texts, host)
}

// sourceList parses and checks the addresses; nil when any is bad.
func (l *loader) sourceList(key string, list bool, texts []any, host *netx.HostAddrs) []netip.Addr {
	var out []netip.Addr
	bad := false
	for j, t := range texts {
		kj := key
		if list {
			kj = indexKey(key, j)
		}
		a, err := parseSource(t, host)
		if err == nil {
			if k := slices.Index(out, a); k >= 0 {
				err = fmt.Errorf("%s is listed twice (also %s)", a, indexKey(key, k))
			} else if len(out) > 0 && out[0].Is4() != a.Is4() {
				err = fmt.Errorf("%s mixes IPv6 and IPv4 in one array: a dial leaves from one family and could not reach targets of the other; split the addresses into routes by match", a)
			}
		}
		if err != nil {
			l.errorf(kj, "%v", err)
			bad = true
			continue
		}
		out = append(out, a)
	}
	if bad {
		return nil
	}
	return out
}

// parseSource parses one source address and checks that a dial can bind
// it.
func parseSource(t any, host *netx.HostAddrs) (netip.Addr, error) {
	s, ok := t.(string)
	if !ok {
		return netip.Addr{}, fmt.Errorf(`must be a string, like "192.0.2.10", not %s`, valueWords(t))
	}
	return host.ParseSource(s)
}
