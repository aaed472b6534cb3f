package acl

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
)

// Config is the plugin's TOML table.
type Config struct {
	// Default is the verdict for requests no rule matches: "allow" or
	// "deny". Required: neither an open proxy nor one that refuses
	// everything should come from a forgotten line.
	Default Action `toml:"default"`
	// DenyPrivateDestinations refuses, before any rule, destinations whose
	// address is loopback, private, link-local, multicast or otherwise not
	// globally reachable (see match.PrivateRange), checked on the address
	// each name resolves to. Default false.
	DenyPrivateDestinations bool `toml:"deny_private_destinations"`
	// Rules are tried in order; the first that matches decides. Written
	// [[plugin.rule]] or rule = [{...}, ...].
	Rules []RuleConfig `toml:"rule"`
	// DenyStatus is the status of the answer to a refused HTTP request
	// (plain http:// or inside an intercepted tunnel), 400 to 599. If
	// zero, 403.
	DenyStatus int `toml:"deny_status"`
	// DenyBody is that answer's text/plain body. If empty, "blocked by
	// <plugin name>: <rule>" and a newline.
	DenyBody string `toml:"deny_body"`
}

// RuleConfig is one rule. Every condition it sets must hold (AND); each
// condition holds when any entry of its list does (OR). A rule that sets
// no condition matches every request.
type RuleConfig struct {
	// Action is "allow" or "deny". Required.
	Action Action `toml:"action"`
	// Client lists client CIDRs or addresses.
	Client []match.Prefix `toml:"client"`
	// User lists authenticated user names, compared exactly. Requests
	// without a user do not match.
	User []string `toml:"user"`
	// Group lists groups of the authenticated user, compared exactly (the
	// groups the authenticating plugin gave, such as auth's groups_file).
	// Requests without a user do not match.
	Group []match.Group `toml:"group"`
	// Domain lists destination name patterns: "example.com" (the name),
	// "*.example.com" (names under it, not example.com), ".example.com"
	// (the name and names under it). IP literal destinations never match.
	Domain []match.Domain `toml:"domain"`
	// DomainFile is a file of patterns, one per line or hosts-file lines,
	// added to Domain. Relative paths are relative to the configuration
	// file's directory. Loaded once, when the plugin is built.
	DomainFile string `toml:"domain_file"`
	// Dest lists destination CIDRs or addresses, matched against the IP
	// literal or, for a name, against each address it resolves to.
	Dest []match.Prefix `toml:"dest"`
	// Port lists destination ports and ranges: 443, "8000-8999".
	Port []match.PortRange `toml:"port"`
	// Listener lists listener names.
	Listener []string `toml:"listener"`

	// The HTTP conditions: a rule that sets one matches HTTP requests
	// only (plain http://, and intercepted tunnels' requests), never a
	// tunnel's connection.

	// Method lists request methods, compared exactly (case-sensitive).
	Method []string `toml:"method"`
	// Path lists URL path prefixes ("/admin/"), compared with the path in
	// normal form (see match.CleanPath).
	Path []string `toml:"path"`
	// PathRegexp lists RE2 regular expressions matched against the path
	// in normal form followed by "?query" when the URL has one.
	PathRegexp []string `toml:"path_regexp"`
	// Scheme lists URL schemes: "http", "https".
	Scheme []string `toml:"scheme"`
	// Header lists header field names (case-insensitive): the request
	// has one of them.
	Header []string `toml:"header"`
}

// Action is what a rule, or the default, does with a request.
type Action string

// Actions.
const (
	Allow Action = "allow"
	Deny  Action = "deny"
)

// UnmarshalText accepts "allow" and "deny".
func (a *Action) UnmarshalText(text []byte) error {
	switch v := Action(text); v {
	case Allow, Deny:
		*a = v
		return nil
	}
	return fmt.Errorf("invalid action %q: want \"allow\" or \"deny\"", text)
}

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	return build(env, cfg)
}

func build(env plugins.Env, cfg Config) (*ACL, error) {
	var errs []error
	if cfg.Default == "" {
		errs = append(errs, plugins.Errorf("default", `missing: set default = "allow" or "deny", the verdict when no rule matches`))
	}
	errs = append(errs, checkDeny(cfg)...)
	p := &ACL{
		name:        env.Name,
		def:         cfg.Default,
		denyPrivate: cfg.DenyPrivateDestinations,
		rules:       make([]rule, 0, len(cfg.Rules)),
		denyStatus:  cfg.DenyStatus,
		body:        cfg.DenyBody,
	}
	if p.denyStatus == 0 {
		p.denyStatus = http.StatusForbidden
	}
	for i, rc := range cfg.Rules {
		key := fmt.Sprintf("rule[%d]", i)
		if rc.Action == "" {
			errs = append(errs, plugins.Errorf(key, `action: missing: set action = "allow" or "deny"`))
		}
		r, err := compile(env, rc)
		if err != nil {
			errs = append(errs, plugins.KeyErr(key+".domain_file", err))
		}
		if r.NeedsIP() {
			p.needIP = true
		}
		hc, herrs := compileHTTP(key, rc)
		errs = append(errs, herrs...)
		p.hasHTTP = p.hasHTTP || hc != nil
		p.rules = append(p.rules, rule{action: rc.Action, m: r, http: hc})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// compile turns a decoded rule into a match.Rule, loading its domain file.
func compile(env plugins.Env, rc RuleConfig) (*match.Rule, error) {
	r := &match.Rule{User: rc.User, Group: rc.Group, Listener: rc.Listener, Port: rc.Port}
	if len(rc.Client) > 0 {
		r.Client = newPrefixes(rc.Client)
	}
	if len(rc.Dest) > 0 {
		r.Dest = newPrefixes(rc.Dest)
	}
	if len(rc.Domain) == 0 && rc.DomainFile == "" {
		return r, nil
	}
	r.Domain = new(match.Domains)
	for _, d := range rc.Domain {
		r.Domain.Add(d)
	}
	if rc.DomainFile == "" {
		return r, nil
	}
	start := time.Now()
	n, err := r.Domain.LoadFile(env.Path(rc.DomainFile))
	if err != nil {
		return r, err
	}
	ev := env.Log.Info()
	if n == 0 {
		ev = env.Log.Warn() // the rule can only match through its domain list
	}
	ev.Str("file", rc.DomainFile).Int("entries", n).Int("names", r.Domain.Len()).
		Dur("took", time.Since(start)).Msg("acl domain file loaded")
	return r, nil
}

func newPrefixes(ps []match.Prefix) *match.Prefixes {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.Prefix(p)
	}
	return match.NewPrefixes(out...)
}
