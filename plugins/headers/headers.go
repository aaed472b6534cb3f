// Package headers edits the headers of HTTP requests on their way
// upstream: set, add and remove headers, and optionally add Via and
// X-Forwarded-For; and the headers of their responses, set, add and
// remove, under [plugin.response]. Rules ([[plugin.rule]]) scope more
// edits to requests by host and path, and to those requests' responses.
//
//	[[plugin]]
//	name = "headers"
//	remove = ["Cookie"]
//	set = { "X-Env" = "prod" }
//	via = true
//	x_forwarded_for = true
//	[plugin.response]
//	remove = ["Server"]
//	set = { "X-Frame-Options" = "DENY" }
//	[[plugin.rule]]
//	host = ["api.example.com"]
//	set = { "X-Debug" = "1" }
//
// It uses the HTTPRequester and HTTPResponder hooks, so it sees plain
// http:// exchanges and the requests of tunnels that an interceptor
// (mitm) serves as HTTP; other tunnels' headers pass untouched.
package headers

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"golang.org/x/net/http/httpguts"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "headers",
		Description: "edits HTTP request and response headers, everywhere or by host and path: set, add, remove, Via, X-Forwarded-For",
		New:         New,
	})
}

// Config is the plugin's TOML table.
type Config struct {
	// Remove deletes these headers (case-insensitive), first.
	Remove []string `toml:"remove"`
	// Set replaces each header with one value, after Remove.
	Set map[string]string `toml:"set"`
	// Add appends a value to each header, keeping existing ones.
	Add map[string]string `toml:"add"`
	// Via appends "1.1 <via_name>" to the Via header (RFC 9110 7.6.3).
	Via bool `toml:"via"`
	// ViaName is the pseudonym in Via. Default "ferry".
	ViaName string `toml:"via_name"`
	// XForwardedFor appends the client's IP address to X-Forwarded-For.
	XForwardedFor bool `toml:"x_forwarded_for"`
	// Response edits the headers of the responses, in the same order.
	Response ResponseConfig `toml:"response"`
	// Rules are scoped edits: each rule whose scope covers a request
	// makes its edits, in order, after the ones above (and after Via and
	// X-Forwarded-For); its response edits apply to that request's
	// response, after the top-level ones.
	Rules []RuleConfig `toml:"rule"`
}

// RuleConfig is one [[plugin.rule]]: a scope and the edits made within.
type RuleConfig struct {
	// Host lists host patterns, as acl's domain: "example.com",
	// "*.example.com" (names under it), ".example.com" (both). The
	// request's URL host (the Host field or :authority), without port,
	// must match one. If empty, any host.
	Host []match.Domain `toml:"host"`
	// Path lists URL path prefixes ("/v1/"), compared with the path in
	// normal form (see match.CleanPath). If empty, any path.
	Path []string `toml:"path"`
	// Remove, Set and Add edit the request, as the top-level keys do.
	Remove []string          `toml:"remove"`
	Set    map[string]string `toml:"set"`
	Add    map[string]string `toml:"add"`
	// Response edits the response to a request the rule covered.
	Response ResponseConfig `toml:"response"`
}

// ResponseConfig is the [plugin.response] table: the edits made to
// response headers.
type ResponseConfig struct {
	Remove []string          `toml:"remove"`
	Set    map[string]string `toml:"set"`
	Add    map[string]string `toml:"add"`
}

type header struct{ name, value string }

// rules are one message direction's edits, made in this order.
type rules struct {
	remove   []string
	set, add []header
}

func (r *rules) empty() bool { return len(r.remove)+len(r.set)+len(r.add) == 0 }

func (r *rules) apply(h http.Header) {
	for _, name := range r.remove {
		h.Del(name)
	}
	for _, f := range r.set {
		h.Set(f.name, f.value)
	}
	for _, f := range r.add {
		h.Add(f.name, f.value)
	}
}

// Plugin edits request headers.
type Plugin struct {
	name    string
	req     rules
	via     string // empty: no Via
	forward bool
	scoped  []scoped
	// scopedResp: some scoped rule edits responses, so the rules a
	// request matched are remembered for its response.
	scopedResp bool
}

// ResponsePlugin is the plugin when it has response rules too. It is a
// type apart so that an instance without them has no HTTPResponder hook,
// and ferry builds no response view for it.
type ResponsePlugin struct {
	*Plugin
	resp rules
}

var (
	_ plugins.HTTPRequester = (*Plugin)(nil)
	_ plugins.HTTPResponder = (*ResponsePlugin)(nil)
)

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	p := &Plugin{name: env.Name, forward: cfg.XForwardedFor}
	var err error
	if p.req, err = parseRules("", cfg.Remove, cfg.Set, cfg.Add); err != nil {
		return nil, err
	}
	if cfg.Via {
		name := cfg.ViaName
		if name == "" {
			name = "ferry"
		}
		if !httpguts.ValidHeaderFieldValue(name) || name == "" {
			return nil, plugins.Errorf("via_name", "%q is not a valid header value", name)
		}
		p.via = name
	} else if cfg.ViaName != "" {
		return nil, plugins.Errorf("via_name", "set via = true to send it")
	}
	if p.scoped, err = parseScoped(cfg.Rules); err != nil {
		return nil, err
	}
	rc := cfg.Response
	resp, err := parseRules("response.", rc.Remove, rc.Set, rc.Add)
	if err != nil {
		return nil, err
	}
	for _, r := range p.scoped {
		p.scopedResp = p.scopedResp || !r.resp.empty()
	}
	if resp.empty() && !p.scopedResp {
		return p, nil
	}
	return &ResponsePlugin{Plugin: p, resp: resp}, nil
}

// parseRules validates one direction's edits; prefix starts the key
// named in errors.
func parseRules(prefix string, remove []string, set, add map[string]string) (rules, error) {
	var r rules
	for i, name := range remove {
		if !httpguts.ValidHeaderFieldName(name) {
			return r, plugins.Errorf(fmt.Sprintf("%sremove[%d]", prefix, i), "%q is not a valid header name", name)
		}
		r.remove = append(r.remove, http.CanonicalHeaderKey(name))
	}
	var err error
	if r.set, err = headerList(prefix+"set", set); err != nil {
		return r, err
	}
	r.add, err = headerList(prefix+"add", add)
	return r, err
}

// headerList validates a table of headers and orders it by name, so that
// the result does not depend on map order.
func headerList(key string, m map[string]string) ([]header, error) {
	out := make([]header, 0, len(m))
	for name, value := range m {
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, plugins.Errorf(key, "%q is not a valid header name", name)
		}
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil, plugins.Errorf(key+"."+name, "value has characters not allowed in a header")
		}
		out = append(out, header{http.CanonicalHeaderKey(name), value})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// OnHTTPRequest implements plugins.HTTPRequester.
func (p *Plugin) OnHTTPRequest(s *plugins.Session, req *http.Request) error {
	p.req.apply(req.Header)
	if p.via != "" {
		appendList(req.Header, "Via", strconv.Itoa(req.ProtoMajor)+"."+strconv.Itoa(req.ProtoMinor)+" "+p.via)
	}
	if p.forward {
		if ip := s.ClientIP(); ip.IsValid() {
			appendList(req.Header, "X-Forwarded-For", ip.String())
		}
	}
	if len(p.scoped) > 0 {
		p.applyScoped(s, req)
	}
	return nil
}

// OnHTTPResponse implements plugins.HTTPResponder. ferry ignores edits
// to the framing and hop-by-hop fields.
func (p *ResponsePlugin) OnHTTPResponse(s *plugins.Session, req *http.Request, resp *http.Response) error {
	p.resp.apply(resp.Header)
	if p.scopedResp {
		p.applyScopedResponse(s, req, resp)
	}
	return nil
}

// appendList adds v to a comma-separated list header, as proxies do with
// Via and X-Forwarded-For, merging earlier lines into one.
func appendList(h http.Header, name, v string) {
	prior := h.Values(name)
	if len(prior) == 0 {
		h.Set(name, v)
		return
	}
	joined := ""
	for _, p := range prior {
		joined += p + ", "
	}
	h.Set(name, joined+v)
}
