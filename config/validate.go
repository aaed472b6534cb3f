package config

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"ferry/plugins/pkg/match"
	"ferry/plugins/pkg/units"
)

// Limits of buffer_size.
const (
	MinBufferSize = 512
	MaxBufferSize = 16 * units.MiB
)

// validate records every semantic problem of c, whose defaults are
// applied, each at the position of its key.
func (l *loader) validate(c *Config) {
	l.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	l.oneOf("log.format", c.Log.Format, "console", "json")

	d := c.Defaults
	l.positive("defaults.handshake_timeout", d.HandshakeTimeout)
	l.positive("defaults.dial_timeout", d.DialTimeout)
	l.notNegative("defaults.idle_timeout", d.IdleTimeout)
	l.notNegative("defaults.drain_timeout", d.DrainTimeout)
	l.bufferSize("defaults.buffer_size", d.BufferSize)
	l.bufferSize("defaults.max_buffer_size", d.MaxBufferSize)

	instances := map[string]bool{}
	for _, p := range c.Plugins {
		instances[p.Name] = true
	}
	l.listeners(c.Listeners, instances)
	l.checkPlugins(c.Plugins)
	upstreams := l.upstreams(c.Upstreams)
	l.routes(c.Routes, upstreams)
	l.limits(c.Limits)
	l.state(c)
	if c.Admin.Listen != "" {
		if err := checkListen(c.Admin.Listen); err != nil {
			l.errorf("admin.listen", "%v", err)
		}
	}
}

// Bounds of [limits] sizes.
const (
	MinHeaderBytes = 1 * units.KiB
	MaxHeaderBytes = 1 * units.MiB
)

func (l *loader) limits(lim Limits) {
	if lim.MaxConnections != nil && *lim.MaxConnections < 0 {
		l.errorf("limits.max_connections", "must not be negative (0 means unlimited)")
	}
	if lim.MaxClientHandshakes != nil && *lim.MaxClientHandshakes < 0 {
		l.errorf("limits.max_client_handshakes", "must not be negative (0 means unlimited)")
	}
	if lim.MaxHeaderBytes < MinHeaderBytes || lim.MaxHeaderBytes > MaxHeaderBytes {
		l.errorf("limits.max_header_bytes", "must be between %v and %v, got %v", Size(MinHeaderBytes), Size(MaxHeaderBytes), lim.MaxHeaderBytes)
	}
	if lim.MaxResponseHeaderBytes < MinHeaderBytes || lim.MaxResponseHeaderBytes > MaxHeaderBytes {
		l.errorf("limits.max_response_header_bytes", "must be between %v and %v, got %v", Size(MinHeaderBytes), Size(MaxHeaderBytes), lim.MaxResponseHeaderBytes)
	}
	if lim.MaxBufferedBodyBytes < 1 || lim.MaxBufferedBodyBytes > 1<<30 {
		l.errorf("limits.max_buffered_body_bytes", "must be between 1B and 1GiB, got %v", lim.MaxBufferedBodyBytes)
	}
	if lim.MaxHeaders < 1 || lim.MaxHeaders > 10000 {
		l.errorf("limits.max_headers", "must be between 1 and 10000, got %d", lim.MaxHeaders)
	}
}

func (l *loader) listeners(ls []Listener, instances map[string]bool) {
	if len(ls) == 0 {
		l.errorf("listener", "missing: at least one [[listener]] is required")
	}
	names := map[string]int{}
	addrs := map[string]int{}
	for i, ln := range ls {
		p := indexKey("listener", i)
		if j, dup := names[ln.Name]; dup {
			l.errorf(p+".name", "duplicate name %q (also listener[%d])", ln.Name, j)
		} else {
			names[ln.Name] = i
		}
		l.listen(p, ln.Listen, i, addrs)
		l.protocols(p, ln)
		l.socks5Bind(p, ln)
		l.pac(p, ln)
		l.socks5UDP(p, ln)
		l.proxyProtocol(p, ln)
		l.listenerPlugins(p, ln.Plugins, instances)
		if ln.TLS != nil {
			l.listenerTLS(p, ln.TLS)
		}
		l.listenerLimits(p, ln)
		l.http2(p, ln)
	}
}

// listen checks a listener's address; addrs maps the addresses seen to
// their listener's index.
func (l *loader) listen(p, listen string, i int, addrs map[string]int) {
	switch err := checkListen(listen); {
	case listen == "":
		l.errorf(p+".listen", `missing: set the address to listen on, like "127.0.0.1:8080"`)
	case err != nil:
		l.errorf(p+".listen", "%v", err)
	case strings.HasSuffix(listen, ":0"):
		// Each gets its own free port: not a duplicate.
	default:
		if j, dup := addrs[listen]; dup {
			l.errorf(p+".listen", "duplicate address %q (also listener[%d])", listen, j)
		} else {
			addrs[listen] = i
		}
	}
}

// proxyProtocol checks the PROXY protocol settings of a listener, and
// allow_local_destinations, which like send_proxy_protocol depends on
// whether it is a tcp listener.
func (l *loader) proxyProtocol(p string, ln Listener) {
	l.oneOf(p+".proxy_protocol", ln.ProxyProtocol, "off", "optional", "required")
	if (ln.ProxyProtocol == "optional" || ln.ProxyProtocol == "required") && len(ln.TrustedProxies) == 0 {
		l.errorf(p+".trusted_proxies", "missing: proxy_protocol = %q needs the addresses of the load balancers allowed to send a PROXY header", ln.ProxyProtocol)
	}
	l.oneOf(p+".send_proxy_protocol", ln.SendProxyProtocol, "off", "v1", "v2")
	isTCP := len(ln.Protocols) == 1 && ln.Protocols[0] == "tcp"
	if ln.SendProxyProtocol != "off" && !isTCP {
		l.errorf(p+".send_proxy_protocol", `only a tcp listener sends a PROXY header to its target; proxy listeners set it on an [[upstream]]`)
	}
	l.passTLVs(p, ln.PassTLVs, ln.SendProxyProtocol)
	if ln.AllowLocalDestinations && isTCP {
		l.errorf(p+".allow_local_destinations", "only proxy listeners check destinations: a tcp listener's target is the operator's and always allowed")
	}
}

// listenerPlugins checks that a listener's plugins exist, once each.
func (l *loader) listenerPlugins(p string, names []string, instances map[string]bool) {
	seen := map[string]bool{}
	for j, name := range names {
		pj := indexKey(p+".plugins", j)
		switch {
		case !instances[name]:
			l.errorf(pj, "no [[plugin]] named %q", name)
		case seen[name]:
			l.errorf(pj, "plugin %q is listed twice", name)
		}
		seen[name] = true
	}
}

// listenerLimits checks a listener's connection bound, timeouts and
// buffer size.
func (l *loader) listenerLimits(p string, ln Listener) {
	if ln.MaxConnections != nil && *ln.MaxConnections < 0 {
		l.errorf(p+".max_connections", "must not be negative (0 means unlimited)")
	}
	if ln.HandshakeTimeout != nil {
		l.positive(p+".handshake_timeout", *ln.HandshakeTimeout)
	}
	if ln.DialTimeout != nil {
		l.positive(p+".dial_timeout", *ln.DialTimeout)
	}
	if ln.IdleTimeout != nil {
		l.notNegative(p+".idle_timeout", *ln.IdleTimeout)
	}
	if ln.BufferSize != nil {
		l.bufferSize(p+".buffer_size", *ln.BufferSize)
	}
	if ln.MaxBufferSize != nil {
		l.bufferSize(p+".max_buffer_size", *ln.MaxBufferSize)
	}
}

// protocols checks a listener's protocols and target.
func (l *loader) protocols(p string, ln Listener) {
	tcp := false
	seen := map[string]bool{}
	for j, proto := range ln.Protocols {
		pj := indexKey(p+".protocols", j)
		switch proto {
		case "http", "socks5", "socks4":
		case "tcp":
			tcp = true
		default:
			l.errorf(pj, "unknown protocol %q: want http, socks5, socks4, or tcp alone", proto)
			continue
		}
		if seen[proto] {
			l.errorf(pj, "%q is listed twice", proto)
		}
		seen[proto] = true
	}
	switch {
	case tcp && len(ln.Protocols) > 1:
		l.errorf(p+".protocols", `"tcp" forwards to a fixed target and cannot be combined with other protocols`)
	case tcp && ln.Target == "":
		l.errorf(p+".target", `missing: a tcp listener needs target = "host:port"`)
	case tcp:
		if err := checkHostPort(ln.Target, false, 1); err != nil {
			l.errorf(p+".target", "%v", err)
		}
	case ln.Target != "":
		l.errorf(p+".target", `only a tcp listener has a target: set protocols = ["tcp"]`)
	}
}

// checkPlugins checks the shape of the [[plugin]] tables: each has a
// unique name. Whether its type is compiled in is for the code that builds
// plugins to say (PluginConfig.TypeKey gives the position).
func (l *loader) checkPlugins(ps []PluginConfig) {
	names := map[string]int{}
	for i, pc := range ps {
		p := indexKey("plugin", i)
		if pc.Name == "" {
			l.errorf(p+".name", "missing: every [[plugin]] needs a name, which listeners use in plugins = [...]")
			continue
		}
		if j, dup := names[pc.Name]; dup {
			l.errorf(p+".name", "duplicate name %q (also plugin[%d])", pc.Name, j)
		} else {
			names[pc.Name] = i
		}
	}
}

func (l *loader) routes(rs []Route, upstreams map[string]int) {
	catchAll := -1
	for i := range rs {
		r := &rs[i]
		p := indexKey("route", i)
		if catchAll >= 0 {
			l.errorf(p, "unreachable: route[%d] before it matches every request", catchAll)
		}
		if l.x.has(p+".match") && len(r.Match) == 0 {
			l.errorf(p+".match", "empty: list destinations, or leave match out to match every destination")
		}
		if l.x.has(p+".group") && len(r.Group) == 0 {
			l.errorf(p+".group", "empty: list groups, or leave group out to match every user")
		}
		r.Rule = l.routeRule(p, r)
		// An explicit empty match is reported above, not taken for a catch-all.
		if r.Rule != nil && !l.x.has(p+".match") && r.MatchesAll() && catchAll < 0 {
			catchAll = i
		}
		switch {
		case r.Upstream != "" && r.Reject:
			l.errorf(p+".reject", "set upstream or reject = true, not both")
		case r.Upstream == "" && !r.Reject:
			l.errorf(p+".upstream", `missing: set upstream = "NAME" (or "direct") or reject = true`)
		case r.Upstream != "" && r.Upstream != Direct:
			if _, ok := upstreams[r.Upstream]; !ok {
				l.errorf(p+".upstream", "no [[upstream]] named %q", r.Upstream)
			}
		}
	}
	l.routeSources(rs)
}

// routeRule compiles a route's conditions; nil when an entry is bad,
// which it reports at the entry.
func (l *loader) routeRule(p string, r *Route) *match.Rule {
	rule := &match.Rule{}
	if len(r.Match) > 0 {
		var err error
		rule, err = match.Compile(match.Spec{Target: r.Match})
		if err != nil {
			for _, e := range splitJoined(err) {
				var ee *match.EntryError
				if errors.As(e, &ee) {
					l.errorf(indexKey(p+".match", ee.Index), "%v", ee.Err)
				} else {
					l.errorf(p+".match", "%v", e)
				}
			}
			return nil
		}
	}
	rule.Port = r.Port
	if len(r.Client) > 0 {
		ps := make([]netip.Prefix, len(r.Client))
		for i, c := range r.Client {
			ps[i] = netip.Prefix(c)
		}
		rule.Client = match.NewPrefixes(ps...)
	}
	rule.User = r.User
	rule.Group = r.Group
	rule.Listener = r.Listener
	return rule
}

// splitJoined undoes errors.Join.
func splitJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// oneOf checks that v is one of the allowed values.
func (l *loader) oneOf(path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	l.errorf(path, "unknown value %q: want %s", v, orList(allowed))
}

// orList formats ["a", "b", "c"] as `"a", "b" or "c"`.
func orList(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func (l *loader) positive(path string, d Duration) {
	if d <= 0 {
		l.errorf(path, "must be greater than 0")
	}
}

func (l *loader) notNegative(path string, d Duration) {
	if d < 0 {
		l.errorf(path, "must not be negative")
	}
}

func (l *loader) bufferSize(path string, s Size) {
	if s < MinBufferSize || s > MaxBufferSize {
		l.errorf(path, "%s is out of range: want %s to %s", s, Size(MinBufferSize), Size(MaxBufferSize))
	}
}

// passTLVs checks that forwarded TLVs go out in a header that can carry
// them.
func (l *loader) passTLVs(p string, tlvs []TLVType, send string) {
	if len(tlvs) > 0 && send != "v2" {
		l.errorf(p+".pass_tlvs", `TLVs travel only in a v2 header: set send_proxy_protocol = "v2"`)
	}
}
