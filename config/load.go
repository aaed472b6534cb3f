package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"ferry/plugins/pkg/match"
	"ferry/plugins/pkg/safefile"
	"ferry/plugins/pkg/units"
)

// Defaults applied by Load to keys the file does not set.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultDrainTimeout     = 30 * time.Second
	DefaultBufferSize       = 128 * units.KiB
	DefaultMaxBufferSize    = units.MiB
	DefaultMaxConnections   = 10000

	DefaultMaxClientHandshakes    = 64
	DefaultMaxHeaderBytes         = 64 * units.KiB
	DefaultMaxHeaders             = 100
	DefaultMaxResponseHeaderBytes = 64 * units.KiB
	DefaultMaxBufferedBodyBytes   = 8 * units.MiB
)

// DefaultProtocols returns what a listener serves when it lists none:
// http, socks5 and socks4.
func DefaultProtocols() []string { return []string{"http", "socks5", "socks4"} }

//go:embed default.toml
var defaultTOML []byte

// Default returns ferry's built-in configuration (default.toml), used when
// no file is given. Its File is "<embedded>". It fails only if default.toml
// is broken; a plugin type it names that is not compiled in is reported by
// the code that builds the plugins.
func Default() (*Config, error) {
	return Parse("<embedded>", defaultTOML)
}

// Load reads, decodes, completes with defaults and validates the file at
// path. Problems with the content are reported all at once as a *Error.
func Load(path string) (*Config, error) {
	data, err := safefile.ReadFile(path, safefile.MaxList)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for data already read; file names it in errors.
func Parse(file string, data []byte) (*Config, error) {
	if off, msg := guard(data); off >= 0 {
		line := bytes.Count(data[:off], []byte("\n")) + 1
		col := off - (bytes.LastIndexByte(data[:off], '\n') + 1) + 1
		return nil, &Error{Problems: []Problem{{File: file, Line: line, Col: col, Msg: msg}}}
	}
	var generic map[string]any
	if err := toml.Unmarshal(data, &generic); err != nil {
		return nil, syntaxError(file, data, err)
	}
	x, err := buildIndex(data)
	if err != nil {
		// go-toml's decoder accepted what its parser rejects: unlikely.
		return nil, syntaxError(file, data, err)
	}

	var doc document
	res := decodeStrict(data, x, generic, &doc)
	l := &loader{file: file, x: x, suppress: pathSet{}}
	for _, p := range res.removed {
		l.suppress.add(p)
	}
	for _, p := range res.problems {
		l.add(p)
		if p.path != "" {
			l.suppress.add(p.path)
		}
	}
	cfg := &Config{
		File:      file,
		idx:       x,
		Log:       doc.Log,
		Defaults:  doc.Defaults,
		Listeners: doc.Listeners,
		Upstreams: doc.Upstreams,
		Routes:    doc.Routes,
		Admin:     doc.Admin,
		Limits:    doc.Limits,
		State:     doc.State,
	}
	if res.complete {
		cfg.Plugins = l.plugins(doc.Plugins)
		l.applyDefaults(cfg)
		l.validate(cfg)
	}
	if len(l.problems) > 0 {
		sortProblems(l.problems)
		e := &Error{Problems: l.problems}
		if res.complete {
			e.Partial = cfg
		}
		return nil, e
	}
	return cfg, nil
}

// document is the file's layout as go-toml decodes it.
type document struct {
	Log       Log              `toml:"log"`
	Defaults  Defaults         `toml:"defaults"`
	Listeners []Listener       `toml:"listener"`
	Upstreams []Upstream       `toml:"upstream"`
	Routes    []Route          `toml:"route"`
	Admin     Admin            `toml:"admin"`
	Limits    Limits           `toml:"limits"`
	State     State            `toml:"state"`
	Plugins   []map[string]any `toml:"plugin"`
}

// syntaxError reports a document that is not valid TOML.
func syntaxError(file string, data []byte, err error) error {
	line, col := 1, 1
	var de *toml.DecodeError
	var pe *unstable.ParserError
	switch {
	case errors.As(err, &de):
		line, col = de.Position()
	case errors.As(err, &pe):
		// The highlight is a subslice of data: its capacity tells where.
		if off := cap(data) - cap(pe.Highlight); cap(pe.Highlight) > 0 && off >= 0 && off <= len(data) {
			line, col = newIndex(data).lineCol(off)
		}
	}
	msg := "toml syntax: " + strings.TrimPrefix(err.Error(), "toml: ")
	return &Error{Problems: []Problem{{File: file, Line: max(line, 1), Col: max(col, 1), Msg: msg}}}
}

// loader collects the problems of one file.
type loader struct {
	file     string
	x        *index
	problems []Problem
	// suppress lists paths already reported or removed during decoding:
	// validation says nothing more about them.
	suppress pathSet
}

// add records a problem found while decoding.
func (l *loader) add(p problem) {
	off := p.off
	if p.path != "" {
		// The index knows the exact key or value; a decoder offset beats
		// the header of an enclosing table.
		if e, exact := l.x.lookup(p.path); e != nil && (exact || off < 0) {
			off = e.key
			if exact && p.atValue && e.val >= 0 {
				off = e.val
			}
		}
	}
	line, col := l.x.lineCol(off)
	l.problems = append(l.problems, Problem{File: l.file, Line: line, Col: col, Key: p.path, Msg: p.msg})
}

// errorf records a validation problem about the key at path, or about the
// table holding it when the file does not set it.
func (l *loader) errorf(path, format string, args ...any) {
	if l.suppress.covers(path) {
		return
	}
	line, col := l.x.lineCol(l.x.offsetOf(path, false))
	l.problems = append(l.problems, Problem{File: l.file, Line: line, Col: col, Key: path, Msg: fmt.Sprintf(format, args...)})
}

// plugins turns the [[plugin]] tables into PluginConfigs.
func (l *loader) plugins(tables []map[string]any) []PluginConfig {
	var out []PluginConfig
	for i, t := range tables {
		path := indexKey("plugin", i)
		pc := PluginConfig{file: l.file, path: path, idx: l.x, table: map[string]any{}}
		for k, v := range t {
			switch k {
			case "name", "type":
				s, ok := v.(string)
				if !ok {
					l.errorf(joinKey(path, k), "must be a string, not %s", valueWords(v))
					l.suppress.add(joinKey(path, k))
					pc.badType = true
				}
				if k == "name" {
					pc.Name = s
				} else {
					pc.Type = s
				}
			default:
				pc.table[k] = v
			}
		}
		out = append(out, pc)
	}
	return out
}

// applyDefaults fills in what the file leaves out.
func (l *loader) applyDefaults(c *Config) {
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "console"
	}
	d := &c.Defaults
	for _, def := range []struct {
		key string
		v   *Duration
		def time.Duration
	}{
		{"handshake_timeout", &d.HandshakeTimeout, DefaultHandshakeTimeout},
		{"dial_timeout", &d.DialTimeout, DefaultDialTimeout},
		{"idle_timeout", &d.IdleTimeout, DefaultIdleTimeout},
		{"drain_timeout", &d.DrainTimeout, DefaultDrainTimeout},
	} {
		if !l.x.has("defaults." + def.key) {
			*def.v = Duration(def.def)
		}
	}
	if !l.x.has("defaults.buffer_size") {
		d.BufferSize = DefaultBufferSize
	}
	if !l.x.has("defaults.max_buffer_size") {
		d.MaxBufferSize = DefaultMaxBufferSize
	}
	l.stateDefaults(&c.State)
	lim := &c.Limits
	if lim.MaxClientHandshakes == nil {
		n := DefaultMaxClientHandshakes
		lim.MaxClientHandshakes = &n
	}
	if !l.x.has("limits.max_header_bytes") {
		lim.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if !l.x.has("limits.max_headers") {
		lim.MaxHeaders = DefaultMaxHeaders
	}
	if !l.x.has("limits.max_response_header_bytes") {
		lim.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	if !l.x.has("limits.max_buffered_body_bytes") {
		lim.MaxBufferedBodyBytes = DefaultMaxBufferedBodyBytes
	}
	for i := range c.Listeners {
		ln := &c.Listeners[i]
		if ln.Name == "" {
			ln.Name = "listener-" + strconv.Itoa(i)
		}
		if len(ln.Protocols) == 0 {
			ln.Protocols = DefaultProtocols()
		}
		if ln.SendProxyProtocol == "" {
			ln.SendProxyProtocol = "off"
		}
		if ln.ProxyProtocol == "" {
			ln.ProxyProtocol = "off"
		}
		if ln.MaxConnections == nil {
			n := DefaultMaxConnections
			ln.MaxConnections = &n
		}
	}
	for i := range c.Plugins {
		if c.Plugins[i].Type == "" {
			c.Plugins[i].Type = c.Plugins[i].Name
		}
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if u.SendProxyProtocol == "" {
			u.SendProxyProtocol = "off"
		}
		if u.Strategy == "" && len(u.Members) > 0 {
			u.Strategy = "failover"
		}
	}
}

// OverrideListen replaces the listeners with one per address (the CLI's
// repeatable --listen), each a copy of the first listener's settings. They
// are named like the first listener, then "<name>-2", "<name>-3", and so
// on. Nothing changes when addrs is empty or an address is invalid.
func (c *Config) OverrideListen(addrs []string) error {
	if len(addrs) == 0 {
		return nil
	}
	var errs []error
	seen := map[string]bool{}
	for _, a := range addrs {
		if err := checkListen(a); err != nil {
			errs = append(errs, fmt.Errorf("--listen %q: %w", a, err))
		} else if seen[a] && !strings.HasSuffix(a, ":0") {
			errs = append(errs, fmt.Errorf("--listen %q: given twice", a))
		}
		seen[a] = true
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	n := DefaultMaxConnections
	base := Listener{Name: "main", Protocols: DefaultProtocols(), ProxyProtocol: "off", MaxConnections: &n}
	if len(c.Listeners) > 0 {
		base = c.Listeners[0]
	}
	out := make([]Listener, len(addrs))
	for i, a := range addrs {
		l := base.clone()
		l.Listen = a
		if i > 0 {
			l.Name = base.Name + "-" + strconv.Itoa(i+1)
		}
		out[i] = l
	}
	c.Listeners = out
	c.listenFlags = true
	return nil
}

// UpstreamsFromFlags makes the chain of proxy URLs given on the command line
// (first hop first) the default route: requests no [[route]] matches go
// through it. Its upstreams are named "cli1", "cli2"... in that order.
func (c *Config) UpstreamsFromFlags(urls []string) error {
	if len(urls) == 0 {
		return nil
	}
	var errs []error
	for i, u := range urls {
		if err := checkUpstreamURL(u); err != nil {
			errs = append(errs, fmt.Errorf("--upstream #%d: %w", i+1, err))
		} else if u == Direct || u == "direct://" {
			errs = append(errs, fmt.Errorf("--upstream #%d: direct is already the default", i+1))
		}
	}
	for i := range c.Routes {
		if r := &c.Routes[i]; r.Rule != nil && r.MatchesAll() {
			errs = append(errs, fmt.Errorf("--upstream: route[%d] in %s already matches every request", i, c.File))
		}
	}
	taken := map[string]bool{}
	for _, u := range c.Upstreams {
		taken[u.Name] = true
	}
	var prev string
	var added []Upstream
	for i, u := range urls {
		name := "cli" + strconv.Itoa(i+1)
		if taken[name] {
			errs = append(errs, fmt.Errorf("--upstream: the config already has an upstream named %q", name))
		}
		added = append(added, Upstream{Name: name, URL: u, Via: prev, SendProxyProtocol: "off"})
		prev = name
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	c.Upstreams = append(c.Upstreams, added...)
	c.Routes = append(c.Routes, Route{Upstream: prev, Rule: &match.Rule{}})
	return nil
}

// clone returns a deep copy of l.
func (l Listener) clone() Listener {
	l.Protocols = append([]string(nil), l.Protocols...)
	l.TrustedProxies = append([]CIDR(nil), l.TrustedProxies...)
	l.Plugins = append([]string(nil), l.Plugins...)
	l.MaxConnections = clonePtr(l.MaxConnections)
	l.SOCKS5UDP = clonePtr(l.SOCKS5UDP)
	l.HandshakeTimeout = clonePtr(l.HandshakeTimeout)
	l.DialTimeout = clonePtr(l.DialTimeout)
	l.IdleTimeout = clonePtr(l.IdleTimeout)
	l.BufferSize = clonePtr(l.BufferSize)
	l.MaxBufferSize = clonePtr(l.MaxBufferSize)
	l.Socks5BindPorts = clonePtr(l.Socks5BindPorts)
	l.Socks5BindTimeout = clonePtr(l.Socks5BindTimeout)
	l.PAC = l.PAC.clone()
	return l
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// Summary describes c in one line, for `ferry check`:
//
//	ferry.toml: ok: 2 listeners (main 127.0.0.1:8080 http,socks5,socks4; fwd 127.0.0.1:9000 tcp->db:5432), 1 plugin, 0 upstreams, 0 routes
func (c *Config) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ok: %s", c.File, plural(len(c.Listeners), "listener"))
	if len(c.Listeners) > 0 {
		b.WriteString(" (")
		for i, l := range c.Listeners {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s %s %s", l.Name, l.Listen, strings.Join(l.Protocols, ","))
			if l.Target != "" {
				b.WriteString("->" + l.Target)
			}
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, ", %s, %s, %s", plural(len(c.Plugins), "plugin"),
		plural(len(c.Upstreams), "upstream"), plural(len(c.Routes), "route"))
	return b.String()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
