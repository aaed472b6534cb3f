package headers

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

// scoped is a compiled [[plugin.rule]]: the requests it covers and its
// edits.
type scoped struct {
	hosts *match.Domains // nil: any host
	paths []string       // normal-form prefixes; empty: any path
	req   rules
	resp  rules
}

// covers reports whether the rule's scope holds for a request to host
// whose normal-form path path() returns.
func (r *scoped) covers(host string, path func() string) bool {
	if r.hosts != nil && !r.hosts.Match(host) {
		return false
	}
	return len(r.paths) == 0 || match.HasPathPrefix(path(), r.paths)
}

// parseScoped validates and compiles the rules, reporting every bad one.
func parseScoped(rcs []RuleConfig) ([]scoped, error) {
	var errs []error
	out := make([]scoped, 0, len(rcs))
	for i, rc := range rcs {
		key := fmt.Sprintf("rule[%d]", i)
		before := len(errs)
		r := scoped{}
		if len(rc.Host) > 0 {
			r.hosts = new(match.Domains)
			for _, d := range rc.Host {
				r.hosts.Add(d)
			}
		}
		for j, s := range rc.Path {
			p, err := match.ParsePathPrefix(s)
			if err != nil {
				errs = append(errs, plugins.Errorf(fmt.Sprintf("%s.path[%d]", key, j), "%v", err))
			}
			r.paths = append(r.paths, p)
		}
		var err error
		if r.req, err = parseRules(key+".", rc.Remove, rc.Set, rc.Add); err != nil {
			errs = append(errs, err)
		}
		res := rc.Response
		if r.resp, err = parseRules(key+".response.", res.Remove, res.Set, res.Add); err != nil {
			errs = append(errs, err)
		}
		if len(errs) == before && r.req.empty() && r.resp.empty() {
			errs = append(errs, plugins.Errorf(key, "no edits: set remove, set or add, or response"))
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// matchedKey keys, in a request's session, the rules with response edits
// that the request matched, so its response gets them even when a later
// plugin rewrote the request's URL.
type matchedKey struct{}

type matched struct {
	req *http.Request
	idx []int
}

// applyScoped makes the edits of every rule covering req, in order.
func (p *Plugin) applyScoped(s *plugins.Session, req *http.Request) {
	var resp []int
	p.eachCovering(req, func(i int, r *scoped) {
		r.req.apply(req.Header)
		if !r.resp.empty() {
			resp = append(resp, i)
		}
	})
	if p.scopedResp {
		s.SetValue(matchedKey{}, matched{req: req, idx: resp})
	}
}

// applyScopedResponse makes the response edits of the rules req matched.
func (p *Plugin) applyScopedResponse(s *plugins.Session, req *http.Request, resp *http.Response) {
	if m, ok := s.Value(matchedKey{}).(matched); ok && m.req == req {
		for _, i := range m.idx {
			p.scoped[i].resp.apply(resp.Header)
		}
		return
	}
	// OnHTTPRequest did not see req: decide on it as it is.
	p.eachCovering(req, func(_ int, r *scoped) { r.resp.apply(resp.Header) })
}

// eachCovering calls f with each rule covering req, in order.
func (p *Plugin) eachCovering(req *http.Request, f func(int, *scoped)) {
	host := requestHost(req)
	path := ""
	cleaned := func() string {
		if path == "" {
			path = match.URLPath(req.URL)
		}
		return path
	}
	for i := range p.scoped {
		if r := &p.scoped[i]; r.covers(host, cleaned) {
			f(i, r)
		}
	}
}

// requestHost is req's host without port: the URL's (absolute-form
// target, or :authority), else the Host field's.
func requestHost(req *http.Request) string {
	h := req.Host
	if req.URL != nil && req.URL.Host != "" {
		h = req.URL.Host
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}
