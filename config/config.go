// Package config defines ferry's TOML configuration schema and loads it.
//
// Load reads a file, decodes it strictly (unknown keys are errors), applies
// defaults and validates it. Every error it returns names the file, line,
// column and key path, and all problems found are reported at once:
//
//	cfg, err := config.Load("ferry.toml")
//	if err != nil {
//		fmt.Fprintln(os.Stderr, err) // ferry.toml:12:1: listener[0].lisen: unknown key
//	}
//
// Plugin settings are kept undecoded: each plugin's factory decodes its own
// table strictly with PluginConfig.Decode, which reports positions in the
// original file too. The package does not open sockets or build plugins,
// and never looks at the plugin registry: it checks the shape of the
// [[plugin]] tables (a unique name, listeners naming them), and the code
// that builds plugins reports a type that is not compiled in, at the
// position PluginConfig.TypeKey names.
package config

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"ferry/plugins/pkg/match"
)

// Config is a whole ferry configuration.
type Config struct {
	// File is the path the configuration was read from ("<embedded>" for the
	// built-in default). It is not a TOML key.
	File string `toml:"-"`

	Log       Log            `toml:"log"`
	Defaults  Defaults       `toml:"defaults"`
	Listeners []Listener     `toml:"listener"`
	Upstreams []Upstream     `toml:"upstream"`
	Routes    []Route        `toml:"route"`
	Admin     Admin          `toml:"admin"`
	Limits    Limits         `toml:"limits"`
	State     State          `toml:"state"`
	Plugins   []PluginConfig `toml:"-"` // decoded from [[plugin]] by Load

	idx *index // positions in File; nil for a Config not parsed from one
	// listenFlags is set when OverrideListen replaced the listeners.
	listenFlags bool
}

// Where returns "FILE:LINE:COL: key" for a key path like
// "listener[0].listen", to prefix a problem found after loading (a port
// that is busy, say): the key's position, or that of the nearest table
// that holds it. A listener given by --listen is "--listen: key"; a Config
// not read from a file gives "FILE: key".
func (c *Config) Where(key string) string {
	if c.listenFlags && strings.HasPrefix(key, "listener[") {
		return "--listen: " + key
	}
	if c.idx == nil {
		return c.File + ": " + key
	}
	line, col := c.idx.lineCol(c.idx.offsetOf(key, false))
	return fmt.Sprintf("%s:%d:%d: %s", c.File, line, col, key)
}

// Admin configures the admin HTTP service: metrics, health, live channels
// and reload. It is read at start only; a reload does not move it.
type Admin struct {
	// Listen is host:port for the admin service. Default empty: off.
	Listen string `toml:"listen"`
	// Token, when set, is required as "Authorization: Bearer TOKEN" on
	// every endpoint but /healthz. Default empty: no authentication.
	Token string `toml:"token"`
	// Pprof serves net/http/pprof under /debug/pprof/. Default false.
	Pprof bool `toml:"pprof"`
}

// Limits bound what clients can make ferry hold, over all listeners.
type Limits struct {
	// MaxConnections caps concurrent client connections over all
	// listeners; 0 means unlimited. Default (key absent): derived from the
	// process's open-file limit at start, six descriptors per connection
	// (two sockets and a splice pipe each way) with a reserve, so that
	// ferry refuses connections before it runs out of descriptors.
	MaxConnections *int `toml:"max_connections"`
	// MaxClientHandshakes caps the connections from one client address
	// that have not finished their handshake, so one address cannot fill
	// the accept path with slow handshakes; 0 means unlimited. Peers a
	// listener trusts for the PROXY protocol are exempt. Default 64.
	MaxClientHandshakes *int `toml:"max_client_handshakes"`
	// MaxHeaderBytes bounds an HTTP request head (request line and
	// headers); a larger one is answered 431. Default 64KiB.
	MaxHeaderBytes Size `toml:"max_header_bytes"`
	// MaxHeaders bounds the header fields of an HTTP request (more are
	// answered 431) and of an origin's response (more are answered 502).
	// Default 100.
	MaxHeaders int `toml:"max_headers"`
	// MaxResponseHeaderBytes bounds a plain HTTP response head (status
	// line and headers) from an origin or parent; a larger one is
	// answered 502 and its connection closed. Default 64KiB.
	MaxResponseHeaderBytes Size `toml:"max_response_header_bytes"`
	// MaxBufferedBodyBytes bounds an HTTP message body that a plugin's
	// body hook asked to see whole, and the same body decoded: a larger
	// one streams through unchanged, unseen by the hook. Default 8MiB.
	MaxBufferedBodyBytes Size `toml:"max_buffered_body_bytes"`
}

// Log configures ferry's own log output (stderr).
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `toml:"level"`
	// Format is console (human, coloured on a terminal) or json. Default console.
	Format string `toml:"format"`
}

// Defaults apply to every listener that does not set its own value.
type Defaults struct {
	// HandshakeTimeout bounds the time a client gets, from accept, to name its
	// target. Default 10s.
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	// DialTimeout bounds a dial to the target or first upstream. Default 10s.
	DialTimeout Duration `toml:"dial_timeout"`
	// IdleTimeout closes a channel with no bytes either way for this long.
	// Default 5m; "0s" disables it.
	IdleTimeout Duration `toml:"idle_timeout"`
	// DrainTimeout is how long live channels may finish on shutdown. Default 30s.
	DrainTimeout Duration `toml:"drain_timeout"`
	// BufferSize is the read size of the copy loops that run plugin data
	// hooks, and of plain HTTP's. A buffer is held only while a chunk is
	// handled, never by an idle channel. Default 128KiB.
	BufferSize Size `toml:"buffer_size"`
	// MaxBufferSize is what a tunnel's hooked reads grow to while they
	// fill their buffers (a bulk transfer), doubling from BufferSize:
	// each read and write costs a system call, and on a 2-core VM 1MiB
	// reads cost 1.0-1.4x the spliced path's CPU per GB where 128KiB
	// cost 1.3-2.6x (BenchmarkRelayCPU). At most 32MiB of grown buffers
	// are out per listener at once. Default 1MiB, and never below
	// BufferSize; equal to it, reads do not grow.
	MaxBufferSize Size `toml:"max_buffer_size"`
}

// Listener is one listening socket and what it serves.
type Listener struct {
	// Name identifies the listener in logs; unique. Default "listener-N".
	Name string `toml:"name"`
	// Listen is host:port; IPv6 as "[::1]:8080". Required.
	Listen string `toml:"listen"`
	// Protocols lists what the listener detects per connection: any of http,
	// socks5, socks4; or exactly ["tcp"] with Target set. Default all three.
	Protocols []string `toml:"protocols"`
	// H2C serves HTTP/2 with prior knowledge (RFC 9113 section 3.3) on a
	// plaintext listener that serves http: a connection that opens with
	// the HTTP/2 preface speaks HTTP/2. Default false.
	H2C bool `toml:"h2c"`
	// HTTP2 offers h2 in a TLS listener's ALPN, before http/1.1, when it
	// serves http (RFC 9113 section 3.2). Default true; only with tls.
	HTTP2 *bool `toml:"http2"`
	// MaxStreamsPerConnection is the SETTINGS_MAX_CONCURRENT_STREAMS an
	// HTTP/2 connection is given: its open streams (tunnels and requests)
	// at once, 1 to 10000. Default (key absent) 100.
	MaxStreamsPerConnection *int `toml:"max_streams_per_connection"`
	// MaxClientStreams caps the HTTP/2 streams one client address has
	// open at once over all its connections to the listener; more are
	// answered 429. 0 means unlimited. Default (key absent) 1000.
	MaxClientStreams *int `toml:"max_client_streams"`
	// Target is the fixed destination of a tcp listener (host:port).
	Target string `toml:"target"`
	// SOCKS5UDP serves SOCKS5 UDP ASSOCIATE (RFC 1928 §7) on a listener
	// with socks5. Default true; false answers the command with 0x07.
	SOCKS5UDP *bool `toml:"socks5_udp"`
	// SOCKS5UDPAdvertise is the IP address the SOCKS5 reply names as the
	// UDP relay's (BND.ADDR), for a ferry behind NAT. Default: the local
	// address of the client's control connection, the one it reached.
	SOCKS5UDPAdvertise IPAddr `toml:"socks5_udp_advertise"`
	// ProxyProtocol is off, optional or required (PROXY protocol v1/v2 from
	// a load balancer). Default off.
	ProxyProtocol string `toml:"proxy_protocol"`
	// TrustedProxies lists CIDRs allowed to send a PROXY header.
	TrustedProxies []CIDR `toml:"trusted_proxies"`
	// SendProxyProtocol, on a tcp listener, writes a PROXY header (v1 or
	// v2) with the client's address to the target before any payload.
	// Default off.
	SendProxyProtocol string `toml:"send_proxy_protocol"`
	// PassTLVs lists TLV types received in the load balancer's PROXY
	// header to forward in the v2 header sent to the target.
	PassTLVs []TLVType `toml:"pass_tlvs"`
	// Plugins names [[plugin]] instances, run in this order.
	Plugins []string `toml:"plugins"`
	// Socks5Bind serves the SOCKS5 BIND command (RFC 1928 section 4): ferry
	// opens a port for one incoming connection and tunnels it to the
	// client. Default false: BIND is answered 0x07, since it opens ports.
	Socks5Bind bool `toml:"socks5_bind"`
	// Socks5BindPorts is the range BIND's listening port is taken from,
	// like "40000-40999". Default: any free port the kernel picks.
	Socks5BindPorts *match.PortRange `toml:"socks5_bind_ports"`
	// Socks5BindTimeout bounds the wait for BIND's incoming connection,
	// from the first reply. Default 2m.
	Socks5BindTimeout *Duration `toml:"socks5_bind_timeout"`
	// PAC, when set, makes the listener answer GET /proxy.pac with a proxy
	// auto-config file generated from it. Only for listeners with http.
	PAC *PAC `toml:"pac"`
	// MaxConnections caps concurrent connections; 0 means unlimited.
	// Default 10000.
	MaxConnections *int `toml:"max_connections"`
	// AllowLocalDestinations lets a listener bound beyond loopback relay
	// to destinations on the proxy host itself: 127.0.0.0/8, ::1, the
	// unspecified addresses and every address of the host's interfaces.
	// Default false: such a listener refuses them (403, SOCKS 0x02), as
	// squid's `http_access deny to_localhost` does, so that its clients
	// cannot reach services that trust the host's loopback. A listener
	// bound to loopback always relays to them (its clients are on the
	// host already), and so does a tcp listener (its target is the
	// operator's). ferry's own listeners and admin service are refused
	// whatever this says.
	AllowLocalDestinations bool `toml:"allow_local_destinations"`
	// TLS, when set, makes clients speak TLS to the listener before their
	// protocol; see ListenerTLS. Default nil: plain TCP.
	TLS *ListenerTLS `toml:"tls"`

	// Per-listener overrides of [defaults], with the same units and limits;
	// nil (key absent) means the [defaults] value. An explicit "0s"
	// idle_timeout disables the idle timeout for this listener only.
	HandshakeTimeout *Duration `toml:"handshake_timeout"`
	DialTimeout      *Duration `toml:"dial_timeout"`
	IdleTimeout      *Duration `toml:"idle_timeout"`
	BufferSize       *Size     `toml:"buffer_size"`
	MaxBufferSize    *Size     `toml:"max_buffer_size"`
}

// Upstream is a parent proxy, a chain of them (via) or a group of them
// (members). It has either URL or Members.
type Upstream struct {
	// Name identifies the upstream for routes, via and members; unique.
	// "direct" is reserved for the built-in direct dial. Required.
	Name string `toml:"name"`
	// URL is "direct" or scheme://[user:pass@]host:port with scheme socks5,
	// socks5h (an alias: the target name is always sent unresolved), http
	// (CONNECT) or https (CONNECT over TLS).
	URL string `toml:"url"`
	// Via names another upstream to reach this one through (a chain).
	// Only for an upstream with a URL; chains must not loop.
	Via string `toml:"via"`
	// CAFile, for https, is a PEM file of CAs the parent's certificate must
	// chain to instead of the system roots; relative to the config file.
	CAFile string `toml:"ca_file"`
	// InsecureSkipVerify, for https, accepts any certificate from the
	// parent. Default false.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
	// HealthCheck probes the upstream periodically by dialing a target
	// through it; a group skips members found down.
	HealthCheck *HealthCheck `toml:"health_check"`
	// SendProxyProtocol is off, v1 or v2: send a PROXY header carrying the
	// client's address to this upstream. Default off.
	SendProxyProtocol string `toml:"send_proxy_protocol"`
	// PassTLVs lists TLV types of a received PROXY header to forward in
	// the v2 header sent to this upstream.
	PassTLVs []TLVType `toml:"pass_tlvs"`
	// Members makes this upstream a group of other upstreams.
	Members []string `toml:"members"`
	// Strategy picks a group member: failover, round-robin, random or
	// least-connections. Default failover; only for groups.
	Strategy string `toml:"strategy"`

	// RootCAs holds CAFile's certificates once loaded; nil means the
	// system roots.
	RootCAs *x509.CertPool `toml:"-"`
}

// HealthCheck is an upstream's periodic probe.
type HealthCheck struct {
	// Interval between probes. Required.
	Interval Duration `toml:"interval"`
	// Target is the host:port dialed through the upstream. Required.
	Target string `toml:"target"`
	// Timeout bounds one probe. Default the smaller of interval and 5s.
	Timeout Duration `toml:"timeout"`
}

// Route sends matching requests to an upstream, or rejects them. Every
// condition it sets must hold; each holds when any of its entries does.
// A route that sets no condition matches every request.
type Route struct {
	// Match lists destination host names ("example.com"), wildcards
	// ("*.example.com": names under it; ".example.com": the name and names
	// under it), IP addresses and CIDRs. A name destination is resolved to
	// match a CIDR only when the route needs it.
	Match []string `toml:"match"`
	// Port lists destination ports and ranges: 443, "8000-8999".
	Port []match.PortRange `toml:"port"`
	// Client lists client CIDRs or addresses.
	Client []match.Prefix `toml:"client"`
	// User lists authenticated user names.
	User []string `toml:"user"`
	// Group lists groups of the authenticated user (as the auth plugin's
	// groups give them); requests without a user do not match.
	Group []match.Group `toml:"group"`
	// Listener lists listener names.
	Listener []string `toml:"listener"`
	// Upstream names the [[upstream]] to use, or "direct". Exactly one of
	// Upstream and Reject is set.
	Upstream string `toml:"upstream"`
	// Reject refuses matching requests (HTTP 403, SOCKS not allowed).
	Reject bool `toml:"reject"`
	// SourceAddress is the local address that dials for matching
	// requests leave from: an address ("192.0.2.10"), or an array of
	// them that SourceStrategy picks from for each session. It binds a
	// direct dial and the first hop to an upstream proxy. Every address
	// must be assigned to this host (anything in 127.0.0.0/8 and ::1
	// counts) and an array holds one family. A string or an array, so it
	// is decoded as any and checked by Load (see Sources). Default
	// empty: the kernel picks.
	SourceAddress any `toml:"source_address"`
	// SourceStrategy picks from a source_address array: "sticky" (the
	// same user, or without one the same client address, keeps the same
	// address while it stays in the array), "random" or "round-robin".
	// Default sticky; only with an array.
	SourceStrategy string `toml:"source_strategy"`
	// Sources is SourceAddress parsed by Load; nil when unset.
	Sources []netip.Addr `toml:"-"`

	// Rule is the compiled condition, set by Load.
	Rule *match.Rule `toml:"-"`
}

// MatchesAll reports whether the route sets no condition: it takes every
// request that reaches it.
func (r *Route) MatchesAll() bool {
	return len(r.Match) == 0 && len(r.Port) == 0 && len(r.Client) == 0 && len(r.User) == 0 && len(r.Listener) == 0 &&
		len(r.Group) == 0
}

// Direct is the reserved upstream name of the direct dial.
const Direct = "direct"

// Effective returns the listener's timeouts and sizes with defaults applied.
func (c *Config) Effective(l *Listener) Settings {
	s := Settings{
		HandshakeTimeout: c.Defaults.HandshakeTimeout.D(),
		DialTimeout:      c.Defaults.DialTimeout.D(),
		IdleTimeout:      c.Defaults.IdleTimeout.D(),
		BufferSize:       int(c.Defaults.BufferSize),
		MaxBufferSize:    int(c.Defaults.MaxBufferSize),
	}
	if l.HandshakeTimeout != nil {
		s.HandshakeTimeout = l.HandshakeTimeout.D()
	}
	if l.DialTimeout != nil {
		s.DialTimeout = l.DialTimeout.D()
	}
	if l.IdleTimeout != nil {
		s.IdleTimeout = l.IdleTimeout.D()
	}
	if l.BufferSize != nil {
		s.BufferSize = int(*l.BufferSize)
	}
	if l.MaxBufferSize != nil {
		s.MaxBufferSize = int(*l.MaxBufferSize)
	}
	s.MaxBufferSize = max(s.MaxBufferSize, s.BufferSize)
	if l.MaxConnections != nil {
		s.MaxConnections = *l.MaxConnections
	}
	return s
}

// Settings are a listener's resolved knobs.
type Settings struct {
	HandshakeTimeout time.Duration
	DialTimeout      time.Duration
	IdleTimeout      time.Duration // 0: no idle timeout
	BufferSize       int
	MaxBufferSize    int // at least BufferSize
	MaxConnections   int // 0: unlimited
}
