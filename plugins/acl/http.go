package acl

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

// HTTP rules. A rule with a method, path, path_regexp, scheme or header
// condition matches HTTP requests only: plain http:// requests, decided
// at OnConnect (and OnDial) like any request, and the requests of
// intercepted tunnels, decided at OnHTTPRequest. A tunnel's own OnConnect
// (CONNECT, SOCKS, tcp) has no request, so such a rule never matches it.

var _ plugins.HTTPRequester = (*ACL)(nil)

// httpCond is a rule's conditions on the HTTP request; nil when it has
// none.
type httpCond struct {
	methods []string
	paths   []string // normal-form prefixes (match.ParsePathPrefix)
	regexps []*regexp.Regexp
	schemes []string // lower case
	headers []string // canonical names
}

// httpView is one HTTP request as the rules see it; the normal-form path
// is computed once per evaluation, when a rule first needs it.
type httpView struct {
	req      *http.Request
	path     string
	withQ    string
	pathDone bool
}

func newHTTPView(req *http.Request) *httpView {
	if req == nil || req.URL == nil {
		return nil
	}
	return &httpView{req: req}
}

// cleanPath is the normal-form path, and pathQuery the same with "?query"
// when the request has one.
func (v *httpView) cleanPath() (path, pathQuery string) {
	if !v.pathDone {
		v.path, v.withQ, v.pathDone = match.URLPath(v.req.URL), "", true
		v.withQ = v.path
		if v.req.URL.RawQuery != "" || v.req.URL.ForceQuery {
			v.withQ = v.path + "?" + v.req.URL.RawQuery
		}
	}
	return v.path, v.withQ
}

// match reports whether the request meets every condition of c.
func (c *httpCond) match(v *httpView) bool {
	if v == nil {
		return false // not an HTTP request: a tunnel's connection
	}
	r := v.req
	if len(c.methods) > 0 && !slices.Contains(c.methods, r.Method) {
		return false
	}
	if len(c.schemes) > 0 && !slices.Contains(c.schemes, strings.ToLower(r.URL.Scheme)) {
		return false
	}
	if len(c.headers) > 0 && !c.hasHeader(r) {
		return false
	}
	if len(c.paths) > 0 || len(c.regexps) > 0 {
		path, withQ := v.cleanPath()
		if len(c.paths) > 0 && !match.HasPathPrefix(path, c.paths) {
			return false
		}
		if len(c.regexps) > 0 && !slices.ContainsFunc(c.regexps, func(re *regexp.Regexp) bool { return re.MatchString(withQ) }) {
			return false
		}
	}
	return true
}

// hasHeader reports whether r has a field named like one of c's, in any
// case: server-built headers are canonical, but a hook may have added a
// field under another spelling. Host, which net/http keeps apart from
// the other fields, counts when r names a host.
func (c *httpCond) hasHeader(r *http.Request) bool {
	for _, name := range c.headers {
		if _, ok := r.Header[name]; ok || (name == "Host" && r.Host != "") {
			return true
		}
	}
	for k := range r.Header {
		if slices.ContainsFunc(c.headers, func(name string) bool { return strings.EqualFold(k, name) }) {
			return true
		}
	}
	return false
}

// compileHTTP builds a rule's HTTP conditions; key starts the key path of
// errors ("rule[1]").
func compileHTTP(key string, rc RuleConfig) (*httpCond, []error) {
	if len(rc.Method)+len(rc.Path)+len(rc.PathRegexp)+len(rc.Scheme)+len(rc.Header) == 0 {
		return nil, nil
	}
	var errs []error
	bad := func(list string, i int, format string, args ...any) {
		errs = append(errs, plugins.Errorf(fmt.Sprintf("%s.%s[%d]", key, list, i), format, args...))
	}
	c := &httpCond{}
	for i, m := range rc.Method {
		if !httpguts.ValidHeaderFieldName(m) { // a method is a token, like a field name
			bad("method", i, "%q is not a valid method (a token such as GET or POST)", m)
		}
		c.methods = append(c.methods, m)
	}
	for i, s := range rc.Path {
		p, err := match.ParsePathPrefix(s)
		if err != nil {
			bad("path", i, "%v", err)
		}
		c.paths = append(c.paths, p)
	}
	for i, s := range rc.PathRegexp {
		re, err := regexp.Compile(s)
		if err != nil {
			bad("path_regexp", i, "%v", err)
			continue
		}
		c.regexps = append(c.regexps, re)
	}
	for i, s := range rc.Scheme {
		if s != "http" && s != "https" {
			bad("scheme", i, `invalid scheme %q: want "http" or "https"`, s)
		}
		c.schemes = append(c.schemes, s)
	}
	for i, name := range rc.Header {
		if !httpguts.ValidHeaderFieldName(name) {
			bad("header", i, "%q is not a valid header name", name)
		}
		c.headers = append(c.headers, http.CanonicalHeaderKey(name))
	}
	return c, errs
}

// decidedKey marks, in a plain HTTP request's session, that OnConnect
// decided the request, so that OnHTTPRequest does not decide (and log)
// it again.
type decidedKey struct{}

// decidedOn is what the rules saw when OnConnect decided: a plugin that
// changes the method or URL before acl's OnHTTPRequest makes it decide
// again.
type decidedOn struct {
	req         *http.Request
	method, url string
}

func decidedOf(req *http.Request) decidedOn {
	return decidedOn{req: req, method: req.Method, url: req.URL.String()}
}

// httpRequestOf is s's HTTP request when s is a plain http:// request,
// nil for a tunnel (whose Request is the CONNECT, if any).
func httpRequestOf(s *plugins.Session) *http.Request {
	if s.Protocol != "http" || s.Request == nil || s.Request.Method == http.MethodConnect {
		return nil
	}
	return s.Request
}

// OnHTTPRequest implements plugins.HTTPRequester: the rules, in order,
// on a request of an intercepted tunnel (a flow), or on a plain http://
// request that a plugin before acl changed after OnConnect decided it.
func (p *ACL) OnHTTPRequest(s *plugins.Session, req *http.Request) error {
	if !p.hasHTTP {
		return nil // the same rules on the same query as the tunnel's
	}
	if d, ok := s.Value(decidedKey{}).(decidedOn); ok && d == decidedOf(req) {
		return nil // OnConnect decided on this very request
	}
	hv := newHTTPView(req)
	q, err := p.query(s)
	if err != nil {
		return p.refuse(s, nil, "bad target", err.Error(), netip.Addr{})
	}
	v := p.decide(q, hv)
	a := netip.Addr{}
	if v.pending {
		// The flow's connection went to an address the tunnel's dial
		// checks already saw; decide with it. Through an upstream proxy
		// the address is not known, and a verdict that waits for it
		// allows, as the tunnel's did.
		if a = directAddr(s); a.IsValid() {
			q.IP = a
			v = p.decide(q, hv)
		}
	}
	if v.pending {
		p.fields(s.Log.Debug(), s, v.by(), a).Msg("acl allowed: the address is unknown here")
		return nil
	}
	return p.apply(s, hv, v, a)
}

// directAddr is the address of s's direct upstream connection, the zero
// Addr when it went through an upstream proxy or is not known.
func directAddr(s *plugins.Session) netip.Addr {
	if s.UpstreamPath != "" {
		return netip.Addr{}
	}
	if ta, ok := s.UpstreamAddr.(*net.TCPAddr); ok && ta != nil {
		return ta.AddrPort().Addr().Unmap().WithZone("")
	}
	return netip.Addr{}
}

// denyBody is the body of the deny answer to an HTTP request.
func (p *ACL) denyBody(by string) string {
	if p.body != "" {
		return p.body
	}
	return "blocked by " + p.name + ": " + by + "\n"
}

// checkDeny validates deny_status.
func checkDeny(cfg Config) []error {
	var errs []error
	if cfg.DenyStatus != 0 && (cfg.DenyStatus < 400 || cfg.DenyStatus > 599) {
		errs = append(errs, plugins.Errorf("deny_status", "%d is not an error status: want 400 to 599", cfg.DenyStatus))
	}
	return errs
}
