// Package acl is the access-control plugin: ordered allow/deny rules on
// the destination (name, address, port), the client address, the user,
// the user's groups and the listener, and on HTTP requests' method, URL path (in a normal form
// that spellings cannot get around), scheme and header fields, the first
// match deciding; and an optional refusal of private destinations
// (loopback, RFC 1918, link-local, cloud metadata...) checked on the
// address each name resolves to.
//
//	[[plugin]]
//	name = "acl"
//	default = "deny"                  # required: "allow" or "deny"
//	deny_private_destinations = true  # checked on resolved addresses
//
//	[[plugin.rule]]
//	action = "deny"
//	domain = ["*.ads.example"]
//
//	[[plugin.rule]]
//	action = "allow"
//	port = [80, 443]
//
// Refused requests get HTTP 403, SOCKS5 reply 0x02, SOCKS4 0x5B, and an
// info log line naming the rule.
//
// Rules are decided in two phases. OnConnect matches the request as the
// client named it; a rule with a dest condition cannot be decided on a
// name, so evaluation stops at the first such rule whose other conditions
// hold, unless every verdict still possible is the same. OnDial then
// evaluates the rules again, in order, with the address about to be
// connected to (each one, when a name has several): the verdict is the
// one first-match over all rules gives with the address known, so
// dest = ["10.0.0.0/8"] cannot be bypassed with a name that resolves into
// it. ferry runs OnDial for a plain HTTP request served on a reused
// upstream connection too, with that connection's address. Dials through
// upstream proxies resolve at the proxy and are not checked at dial time.
//
// Rules with HTTP conditions (http.go) match HTTP requests only: plain
// http:// ones at OnConnect and OnDial, and the requests of intercepted
// tunnels at OnHTTPRequest; a tunnel's connection never.
//
// The plugin does not resolve names itself, reload its domain files, or
// look inside TLS (mitm does, and hands it the requests).
package acl

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "acl",
		Description: "allow/deny rules on destination name, address and port, client, user, group, listener, HTTP method, path, scheme, header; blocks private destinations",
		New:         New,
	})
}

// ACL is one instance: its rules, compiled.
type ACL struct {
	name        string
	def         Action
	denyPrivate bool
	rules       []rule
	needIP      bool // some rule has a dest condition
	// hasHTTP: some rule has an HTTP condition. Without one, an
	// intercepted tunnel's requests get the tunnel's verdict, so
	// OnHTTPRequest has nothing to decide.
	hasHTTP bool
	// denyStatus and body make the answer to a refused HTTP request;
	// body "" is the default text naming the rule.
	denyStatus int
	body       string
}

type rule struct {
	action Action
	m      *match.Rule
	http   *httpCond // nil: no condition on the HTTP request
}

// eval matches the rule against q and, for an HTTP request, hv (nil for
// a tunnel's connection, which no HTTP condition matches).
func (r *rule) eval(q match.Query, hv *httpView) match.Result {
	if r.http != nil && !r.http.match(hv) {
		return match.No
	}
	return r.m.Eval(q)
}

var (
	_ plugins.Plugin      = (*ACL)(nil)
	_ plugins.Connector   = (*ACL)(nil)
	_ plugins.DialChecker = (*ACL)(nil)

	_ plugins.ClientRestrictor = (*ACL)(nil)
)

// Name implements plugins.Plugin.
func (p *ACL) Name() string { return p.name }

// RestrictsClients implements plugins.ClientRestrictor: with default deny
// and a client, user or group condition on every allow rule, a client
// nobody listed cannot use the proxy.
func (p *ACL) RestrictsClients() bool {
	if p.def != Deny {
		return false
	}
	for _, r := range p.rules {
		if r.action == Allow && r.m.Client == nil && len(r.m.User) == 0 && len(r.m.Group) == 0 {
			return false
		}
	}
	return true
}

// noRule is verdict.rule when the default decided.
const noRule = -1

// verdict is the outcome of the rules for one query.
type verdict struct {
	action Action
	// rule is the index of the deciding rule, or of the first undecided
	// one when early or pending; noRule for the default.
	rule int
	// pending: the verdict depends on the resolved address.
	pending bool
	// early: decided before resolution because every rule that could
	// still match, and the default, agree.
	early bool
}

// decide runs the rules in order on q and, for an HTTP request, hv. With
// q's destination address unknown, rules that need it are undecided: the
// verdict is pending unless every outcome still possible is the same.
func (p *ACL) decide(q match.Query, hv *httpView) verdict {
	first := noRule
	allowPossible, denyPossible := false, false
	possible := func(a Action) {
		if a == Allow {
			allowPossible = true
		} else {
			denyPossible = true
		}
	}
	certain := false // a rule after first matches whatever the address
rules:
	for i, r := range p.rules {
		switch r.eval(q, hv) {
		case match.Yes:
			if first == noRule {
				return verdict{action: r.action, rule: i}
			}
			possible(r.action)
			certain = true
			break rules
		case match.NeedIP:
			if first == noRule {
				first = i
			}
			possible(r.action)
		}
	}
	if first == noRule {
		return verdict{action: p.def, rule: noRule}
	}
	if !certain {
		possible(p.def)
	}
	switch {
	case allowPossible && denyPossible:
		return verdict{rule: first, pending: true}
	case allowPossible:
		return verdict{action: Allow, rule: first, early: true}
	}
	return verdict{action: Deny, rule: first, early: true}
}

// query describes s for the rules; an IP literal target fills q.IP.
func (p *ACL) query(s *plugins.Session) (match.Query, error) {
	host, port, err := splitTarget(s.Target)
	if err != nil {
		return match.Query{}, err
	}
	q := match.Query{Host: host, Port: port, Client: clientAddr(s.Client), User: s.User, Groups: s.Groups, Listener: s.Listener}
	if a, ok := match.ParseLiteral(host); ok {
		q.IP = a.Unmap().WithZone("")
	}
	return q, nil
}

// OnConnect implements plugins.Connector: it refuses private IP literals
// and decides every rule it can without the destination's address.
func (p *ACL) OnConnect(_ context.Context, s *plugins.Session) error {
	if s.Protocol == plugins.ProtocolSOCKS5UDP {
		return p.admitAssociation(s) // OnDestination decides each destination
	}
	req := httpRequestOf(s)
	hv := newHTTPView(req)
	if req != nil && p.hasHTTP {
		s.SetValue(decidedKey{}, decidedOf(req)) // OnHTTPRequest need not decide again
	}
	q, err := p.query(s)
	if err != nil {
		return p.refuse(s, nil, "bad target", err.Error(), netip.Addr{})
	}
	if p.denyPrivate && q.IP.IsValid() {
		if err := p.checkPrivate(s, q.IP); err != nil {
			return err
		}
	}
	v := p.decide(q, hv)
	if v.pending {
		p.fields(s.Log.Debug(), s, v.by(), netip.Addr{}).Msg("acl verdict waits for the resolved address")
		return nil
	}
	return p.apply(s, hv, v, netip.Addr{})
}

// OnDial implements plugins.DialChecker: it refuses private addresses and
// decides the rules again with the address about to be connected to, or,
// for a plain HTTP request on a reused upstream connection, the address
// that connection goes to.
func (p *ACL) OnDial(s *plugins.Session, ap netip.AddrPort) error {
	a := ap.Addr().Unmap().WithZone("")
	if p.denyPrivate {
		if err := p.checkPrivate(s, a); err != nil {
			return err
		}
	}
	if !p.needIP {
		return nil // OnConnect decided: no rule depends on the address
	}
	hv := newHTTPView(httpRequestOf(s))
	q, err := p.query(s)
	if err != nil {
		return p.refuse(s, nil, "bad target", err.Error(), a)
	}
	q.IP, q.Port = a, ap.Port()
	return p.apply(s, hv, p.decide(q, hv), a)
}

// checkPrivate refuses a when it is a private destination.
func (p *ACL) checkPrivate(s *plugins.Session, a netip.Addr) error {
	pr, why, ok := match.PrivateRange(a)
	if !ok {
		return nil
	}
	detail := why
	if pr.IsValid() {
		detail = fmt.Sprintf("%s is in %s, %s", a, pr, why)
	}
	return p.refuse(s, nil, "deny_private_destinations", detail, a)
}

// apply turns a decided verdict into nil or a refusal, logging it; hv is
// the HTTP request, nil for a tunnel.
func (p *ACL) apply(s *plugins.Session, hv *httpView, v verdict, a netip.Addr) error {
	if v.action == Allow {
		p.fields(s.Log.Debug(), s, v.by(), a).Msg("acl allowed")
		return nil
	}
	return p.refuse(s, hv, v.by(), "", a)
}

// by names what decided v, for logs and the client: "rule[2]",
// "default", or for an early verdict "rule[2] or later".
func (v verdict) by() string {
	switch {
	case v.rule == noRule:
		return "default"
	case v.early || v.pending:
		return fmt.Sprintf("rule[%d] or later", v.rule)
	}
	return fmt.Sprintf("rule[%d]", v.rule)
}

// refuse logs a refusal at info and returns the error that tells the
// client 403 / SOCKS "not allowed", or, for an HTTP request (hv not nil),
// the deny answer (deny_status, deny_body). by names the rule (or
// setting) that refused, detail says more when there is more to say.
func (p *ACL) refuse(s *plugins.Session, hv *httpView, by, detail string, a netip.Addr) error {
	ev := p.fields(s.Log.Info(), s, by, a)
	msg := "acl: denied by " + by
	if detail != "" {
		ev = ev.Str("detail", detail)
		msg += ": " + detail
	}
	ev.Msg("acl denied")
	if hv != nil {
		return plugins.Block(p.denyStatus, p.denyBody(by), msg)
	}
	return plugins.Reject(plugins.CodeForbidden, msg)
}

// fields adds what a log line about s needs: plugin, client, user,
// target, the address being checked and what decided.
func (p *ACL) fields(ev *zerolog.Event, s *plugins.Session, by string, a netip.Addr) *zerolog.Event {
	if ev == nil {
		return nil // level disabled
	}
	ev = ev.Str("plugin", p.name).Str("client", addrString(s.Client)).Str("target", s.Target)
	if s.User != "" {
		ev = ev.Str("user", s.User)
	}
	if len(s.Groups) > 0 {
		ev = ev.Strs("groups", s.Groups)
	}
	if a.IsValid() {
		ev = ev.Stringer("addr", a)
	}
	return ev.Str("rule", by)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// clientAddr is the client's IP, the zero Addr when unknown.
func clientAddr(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case nil:
		return netip.Addr{}
	case *net.TCPAddr:
		return v.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// splitTarget splits host:port with a numeric port.
func splitTarget(target string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("target %q: bad port", target)
	}
	return host, uint16(n), nil
}
