// Package headers edits the headers of plain HTTP requests on their way
// upstream: set, add and remove headers, and optionally add Via and
// X-Forwarded-For.
//
//	[[plugin]]
//	name = "headers"
//	remove = ["Cookie"]
//	set = { "X-Env" = "prod" }
//	via = true
//	x_forwarded_for = true
//
// It uses the HTTPRequester hook, so it sees plain http:// requests only:
// inside CONNECT tunnels (HTTPS) the headers are encrypted and pass
// untouched. Responses are not edited.
package headers

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"golang.org/x/net/http/httpguts"

	"ferry/plugins"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "headers",
		Description: "edits plain HTTP request headers: set, add, remove, Via, X-Forwarded-For",
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
}

type header struct{ name, value string }

// Plugin edits request headers.
type Plugin struct {
	name    string
	remove  []string
	set     []header
	add     []header
	via     string // empty: no Via
	forward bool
}

var _ plugins.HTTPRequester = (*Plugin)(nil)

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	p := &Plugin{name: env.Name, forward: cfg.XForwardedFor}
	for i, name := range cfg.Remove {
		if !httpguts.ValidHeaderFieldName(name) {
			return nil, plugins.Errorf(fmt.Sprintf("remove[%d]", i), "%q is not a valid header name", name)
		}
		p.remove = append(p.remove, http.CanonicalHeaderKey(name))
	}
	var err error
	if p.set, err = headerList("set", cfg.Set); err != nil {
		return nil, err
	}
	if p.add, err = headerList("add", cfg.Add); err != nil {
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
	return p, nil
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
	for _, name := range p.remove {
		req.Header.Del(name)
	}
	for _, h := range p.set {
		req.Header.Set(h.name, h.value)
	}
	for _, h := range p.add {
		req.Header.Add(h.name, h.value)
	}
	if p.via != "" {
		appendList(req.Header, "Via", strconv.Itoa(req.ProtoMajor)+"."+strconv.Itoa(req.ProtoMinor)+" "+p.via)
	}
	if p.forward {
		if ip := s.ClientIP(); ip.IsValid() {
			appendList(req.Header, "X-Forwarded-For", ip.String())
		}
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
