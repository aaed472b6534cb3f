package auth

// What a remote backend's allow gives a session besides its groups: an
// upstream, a source address, a rate; what the operator lets answers
// choose; and how they reach the session (remotePlugin.OnConnect).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"ferry/plugins"
	"ferry/plugins/pkg/netx"
)

// maxRate bounds a rate in an answer, each way: 1 TiB/s, far above any
// link, and far from the limits of the rate limiter's arithmetic.
const maxRate = 1 << 40

// attrs are what an allow gives a session besides its groups; the zero
// attrs give nothing.
type attrs struct {
	upstream string
	source   netip.Addr
	rate     *plugins.Rate
}

func (res result) attrs() attrs {
	return attrs{upstream: res.upstream, source: res.source, rate: res.rate}
}

// allowLists reads upstreams and source_addresses, what answers may
// choose, and reports every bad entry at its position: an upstream the
// config does not have (env.Upstreams, or "direct"), an address this
// host cannot bind (the check of routes' source_address).
func (r *remote) allowLists(env plugins.Env, h RemoteConfig) error {
	var errs []error
	known := map[string]bool{"direct": true}
	for _, u := range env.Upstreams {
		known[u] = true
	}
	for i, u := range h.Upstreams {
		key := fmt.Sprintf("upstreams[%d]", i)
		switch {
		case u == "":
			errs = append(errs, plugins.Errorf(key, "empty upstream name"))
		case !known[u]:
			errs = append(errs, plugins.Errorf(key, "no [[upstream]] named %q", u))
		case r.upstreams[u]:
			errs = append(errs, plugins.Errorf(key, "%q is listed twice", u))
		}
		r.upstreams[u] = true
	}
	var host netx.HostAddrs
	for i, s := range h.SourceAddresses {
		key := fmt.Sprintf("source_addresses[%d]", i)
		a, err := host.ParseSource(s)
		switch {
		case err != nil:
			errs = append(errs, plugins.KeyErr(key, err))
		case r.sources[a]:
			errs = append(errs, plugins.Errorf(key, "%s is listed twice", a))
		}
		r.sources[a] = true
	}
	return errors.Join(errs...)
}

// validAttrs checks an answer's upstream (in upstreams), source address
// (in source_addresses) and rate (0 to maxRate each way).
func (r *remote) validAttrs(a attrs) error {
	switch {
	case a.upstream != "" && !r.upstreams[a.upstream]:
		return fmt.Errorf("answer upstream %q is not in upstreams", clip(a.upstream))
	case a.source.IsValid() && !r.sources[a.source]:
		return fmt.Errorf("answer source_address %s is not in source_addresses", a.source)
	case a.rate == nil:
		return nil
	case a.rate.Up < 0 || a.rate.Down < 0:
		return fmt.Errorf("answer rate %+v: must not be negative", *a.rate)
	case a.rate.Up > maxRate || a.rate.Down > maxRate:
		return fmt.Errorf("answer rate %+v: at most %d bytes/s each way", *a.rate, int64(maxRate))
	}
	return nil
}

// attrsKey holds, in the session, the attributes of the login's answer;
// the plugin's OnConnect applies them (Authenticate runs before the
// server resets s.Upstream for the Connectors).
type attrsKey struct{}

// remotePlugin is the plugin with a remote backend: it also applies the
// attributes the backend gave.
type remotePlugin struct{ *Plugin }

var (
	_ plugins.Connector = remotePlugin{}
	_ plugins.Closer    = remotePlugin{}
)

// OnConnect implements plugins.Connector: the upstream and source
// address of the login's answer, unless an earlier plugin chose them,
// and its rate (s.UserRate). A SOCKS5 login authenticates a provisional
// session whose values are not carried over; it has the id the session
// will have, so a SOCKS5 session takes its login's attributes by id.
// Other sessions never do: an HTTP session carries its own, and a user
// named by a client certificate has none.
func (h remotePlugin) OnConnect(_ context.Context, s *plugins.Session) error {
	if s.User == "" {
		return nil
	}
	a, ok := s.Value(attrsKey{}).(attrs)
	if !ok && socks5(s.Protocol) {
		a, ok = h.remote.pending.take(s.ID)
	}
	if !ok {
		return nil
	}
	if s.Upstream == "" {
		s.Upstream = a.upstream
	}
	if !s.SourceAddr.IsValid() {
		s.SourceAddr = a.source
	}
	if a.rate != nil {
		s.UserRate = a.rate
	}
	return nil
}

// OnClose implements plugins.Closer: a SOCKS5 session that ended before
// its OnConnect (an earlier plugin refused it) lets its login's
// attributes go.
func (h remotePlugin) OnClose(s *plugins.Session, _ plugins.Stats) {
	if socks5(s.Protocol) {
		h.remote.pending.take(s.ID)
	}
}

// socks5 reports whether a session of protocol proto comes from a SOCKS5
// login: a connection or a UDP association.
func socks5(proto string) bool {
	return proto == "socks5" || proto == plugins.ProtocolSOCKS5UDP
}

// maxPending bounds the SOCKS5 logins whose attributes wait for their
// session's OnConnect (about 100 bytes each). A login whose session never
// comes (the client left after its login) is dropped with the oldest
// once maxPending/2 newer ones came.
const maxPending = 65536

// admit gives the session the answer's groups and attributes. A SOCKS5
// login's attributes wait for its session by id.
func (r *remote) admit(s *plugins.Session, res result) {
	s.Groups = res.groups
	a := res.attrs()
	if a == (attrs{}) {
		return
	}
	s.SetValue(attrsKey{}, a)
	if s.Protocol == "socks5" && s.ID != "" {
		r.pending.put(s.ID, a)
	}
}
