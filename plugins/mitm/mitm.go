// Package mitm terminates TLS on both sides of the tunnels in its scope,
// so that the data hooks of a listener see, and may change, the plaintext
// of HTTPS (and any TLS) traffic. Certificates for the client side are
// made on the fly by a CA of the operator's (ferry ca init).
//
//	[[plugin]]
//	name = "mitm"
//	ca_cert = "ca/ca.pem"          # made by `ferry ca init --out ca`
//	ca_key = "ca/ca-key.pem"
//	intercept = [".example.com"]   # names in scope; "*" for every name
//	bypass = ["bank.example.com"]  # never intercepted
//	upstream_ca_file = ""          # roots for targets; default the system's
//	insecure_upstream = false      # accept any target certificate
//	handshake_timeout = "10s"
//	cache_size = 1024              # leaf certificates kept
//
// For a tunnel whose target name is in scope, the plugin reads the
// client's first bytes; a TLS ClientHello (its server name, or else the
// tunnel's target, decides the scope again) makes it connect to the target
// with TLS first, offering the client's ALPN protocols and verifying the
// target's certificate, then finish the client's handshake with a leaf for
// that name and the protocol the target chose. Anything else (not TLS, not
// in scope, a client that stays silent for peekTimeout because the server
// speaks first) is relayed untouched, spliced when the listener has no
// data hooks. A server name that is no DNS host name (a wildcard, an IP
// literal) never becomes a leaf: the client gets a TLS alert and the
// tunnel closes.
//
// mitm is a plugin (an Interceptor) rather than a listener setting: scope
// is per name, a listener may mix intercepted and untouched tunnels, and
// the plugin chain decides what sees plaintext. Data hooks run on the
// channel's two connections, so every data hook of the listener, before
// or after mitm in the list, sees intercepted tunnels decrypted.
package mitm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
	"ferry/plugins/pkg/netx"
	"ferry/plugins/pkg/safefile"
	"ferry/plugins/pkg/units"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "mitm",
		Description: "terminates TLS of tunnels in scope with certificates from a local CA, so data hooks see plaintext",
		New:         New,
	})
}

// Config is the plugin's TOML table.
type Config struct {
	// CACert and CAKey are the CA's PEM files (relative to the config
	// file). Required.
	CACert string `toml:"ca_cert"`
	CAKey  string `toml:"ca_key"`
	// Intercept lists the names in scope: "example.com", "*.example.com",
	// ".example.com", or "*" for all. Required.
	Intercept []string `toml:"intercept"`
	// Bypass lists names never intercepted, whatever Intercept says.
	Bypass []match.Domain `toml:"bypass"`
	// UpstreamCAFile is a PEM file of roots the targets' certificates must
	// chain to; default the system roots.
	UpstreamCAFile string `toml:"upstream_ca_file"`
	// InsecureUpstream accepts any certificate from targets. Default false.
	InsecureUpstream bool `toml:"insecure_upstream"`
	// HandshakeTimeout bounds both TLS handshakes. Default 10s.
	HandshakeTimeout *units.Duration `toml:"handshake_timeout"`
	// CacheSize is how many leaf certificates are kept. Default 1024.
	CacheSize int `toml:"cache_size"`
	// HTTP serves intercepted HTTP (h2, http/1.1, plaintext HTTP/1 in a
	// tunnel to a name in scope) as flows that pass the HTTP hooks.
	// Default true; false relays the plaintext as bytes.
	HTTP *bool `toml:"http"`
}

// peekTimeout is how long an in-scope tunnel waits for the client's first
// bytes. A server-first protocol (SMTP, FTP) gets its greeting relayed
// this much later; a TLS client speaks at once.
const peekTimeout = time.Second

// Plugin is one instance.
type Plugin struct {
	name      string
	log       zerolog.Logger
	ca        *CA
	all       bool
	intercept match.Domains
	bypass    match.Domains
	roots     *x509.CertPool // nil: the system's
	insecure  bool
	timeout   time.Duration
	http      bool
}

var _ plugins.Interceptor = (*Plugin)(nil)

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.CACert == "" || cfg.CAKey == "" {
		return nil, errors.New("ca_cert and ca_key are required (make them with `ferry ca init --out DIR`)")
	}
	if len(cfg.Intercept) == 0 {
		return nil, plugins.Errorf("intercept", `missing: list the names to intercept, or "*" for every name`)
	}
	ca, err := LoadCA(env.Path(cfg.CACert), env.Path(cfg.CAKey), cfg.CacheSize)
	if err != nil {
		return nil, err
	}
	p := &Plugin{name: env.Name, log: env.Log, ca: ca, insecure: cfg.InsecureUpstream, timeout: 10 * time.Second, http: cfg.HTTP == nil || *cfg.HTTP}
	for i, s := range cfg.Intercept {
		if s == "*" {
			p.all = true
			continue
		}
		d, err := match.ParseDomain(s)
		if err != nil {
			return nil, plugins.KeyErr(fmt.Sprintf("intercept[%d]", i), err)
		}
		p.intercept.Add(d)
	}
	for _, d := range cfg.Bypass {
		p.bypass.Add(d)
	}
	if cfg.HandshakeTimeout != nil {
		if *cfg.HandshakeTimeout <= 0 {
			return nil, plugins.Errorf("handshake_timeout", "must be positive")
		}
		p.timeout = time.Duration(*cfg.HandshakeTimeout)
	}
	if cfg.UpstreamCAFile != "" {
		pem, err := safefile.ReadFile(env.Path(cfg.UpstreamCAFile), safefile.MaxCert)
		if err != nil {
			return nil, plugins.KeyErr("upstream_ca_file", err)
		}
		p.roots = x509.NewCertPool()
		if !p.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream_ca_file %s: no PEM certificate in it", cfg.UpstreamCAFile)
		}
	}
	if p.insecure {
		env.Log.Warn().Msg("mitm: insecure_upstream: targets' certificates are not verified")
	}
	return p, nil
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// CA returns the instance's certificate authority.
func (p *Plugin) CA() *CA { return p.ca }

// inScope reports whether name is to be intercepted.
func (p *Plugin) inScope(name string) bool {
	if name == "" || p.bypass.Match(name) {
		return false
	}
	return p.all || p.intercept.Match(name)
}

// Intercept implements plugins.Interceptor.
func (p *Plugin) Intercept(ctx context.Context, s *plugins.Session, t *plugins.Tunnel) error {
	name, hello, err := p.scope(s, t)
	if err != nil {
		return err
	}
	if hello == nil {
		if p.http && name != "" && p.sniffHTTP(t) {
			t.HTTP, t.Scheme = "http/1.1", "http"
		}
		return nil
	}
	if err := p.terminate(ctx, s, t, name, hello.SupportedProtos); err != nil {
		return err
	}
	if p.http {
		p.serveHTTP(s, t, name)
	}
	return nil
}

// scope decides a tunnel's fate from its target and, where that may be in
// scope, the client's ClientHello: leave it untouched (nil hello and
// error), refuse it (the error refuse returns), or intercept it with a
// leaf for name (hello set).
func (p *Plugin) scope(s *plugins.Session, t *plugins.Tunnel) (name string, hello *tls.ClientHelloInfo, err error) {
	host, _, err := net.SplitHostPort(s.Target)
	if err != nil {
		return "", nil, nil
	}
	_, isIP := match.ParseLiteral(host)
	// A name out of scope is left alone before reading a byte, so it keeps
	// the fast path and server-first protocols are not delayed. An IP
	// target may still be in scope by its server name.
	if !isIP && !p.inScope(host) {
		return "", nil, nil
	}
	hello, err = p.peekHello(t)
	if hello == nil {
		if !isIP && malformed(err) {
			// A TLS record for a name in scope that crypto/tls cannot
			// parse ("name.example." as server name, say): relaying it
			// untouched would let a client step around interception.
			return "", nil, p.refuse(s, t, host, alertDecodeError, fmt.Sprintf("unreadable ClientHello: %v", err))
		}
		if err == nil && !isIP {
			return host, nil, nil // not TLS, or silent: relayed, or plaintext HTTP
		}
		return "", nil, nil
	}
	name = hello.ServerName
	switch {
	case name != "" && !validServerName(name):
		// A wildcard, an IP literal or no host name at all never becomes
		// a leaf's name. Out of scope for an IP target, as any name is.
		if isIP && !p.inScope(name) {
			return "", nil, nil
		}
		return "", nil, p.refuse(s, t, name, alertUnrecognizedName, "the client's server name is not a DNS host name (RFC 6066 section 3)")
	case name == "":
		name = host
		if !isIP && !ValidHostName(name) {
			return "", nil, p.refuse(s, t, name, alertUnrecognizedName, "the target is not a DNS host name, and the client sent no server name")
		}
	}
	if !p.inScope(name) {
		return "", nil, nil
	}
	return name, hello, nil
}

// terminate runs TLS with the target as name, offering the client's
// protos, then with the client under a leaf for name, and swaps the
// tunnel's connections for the two TLS ones. Both handshakes share one
// timeout.
func (p *Plugin) terminate(ctx context.Context, s *plugins.Session, t *plugins.Tunnel, name string, protos []string) error {
	hctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	// The target first: its certificate is checked, and its choice of
	// protocol is what the client is offered.
	up, err := p.handshakeTarget(hctx, s, t.Upstream, name, protos)
	if err != nil {
		return err
	}
	alpn := up.ConnectionState().NegotiatedProtocol
	client, err := p.handshakeClient(hctx, s, t, name, alpn)
	if err != nil {
		up.Close()
		return err
	}
	s.Log.Debug().Str("plugin", p.name).Str("sni", name).Str("alpn", alpn).Msg("mitm: intercepting")
	t.Client, t.Upstream, t.ClientPending = client, up, nil
	s.Intercepted = name
	return nil
}

// handshakeTarget runs TLS with the target as name, verifying its
// certificate (unless insecure_upstream) and offering protos by ALPN.
func (p *Plugin) handshakeTarget(ctx context.Context, s *plugins.Session, raw net.Conn, name string, protos []string) (*tls.Conn, error) {
	up := tls.Client(raw, &tls.Config{
		ServerName:         name,
		NextProtos:         protos,
		RootCAs:            p.roots,
		InsecureSkipVerify: p.insecure,
		MinVersion:         tls.VersionTLS12,
	})
	if err := up.HandshakeContext(ctx); err != nil {
		s.Log.Warn().Str("plugin", p.name).Str("target", s.Target).Str("sni", name).Err(err).
			Msg("mitm: TLS to the target failed; tunnel closed")
		return nil, fmt.Errorf("mitm: TLS to %s (%s): %w", s.Target, name, err)
	}
	return up, nil
}

// handshakeClient answers the client's ClientHello (still pending in t)
// with a leaf for name, offering only alpn, the protocol the target chose.
func (p *Plugin) handshakeClient(ctx context.Context, s *plugins.Session, t *plugins.Tunnel, name, alpn string) (*tls.Conn, error) {
	leaf, err := p.ca.Leaf(name)
	if err != nil {
		return nil, fmt.Errorf("mitm: certificate for %s: %w", name, err)
	}
	srvCfg := &tls.Config{Certificates: []tls.Certificate{*leaf}, MinVersion: tls.VersionTLS12}
	if alpn != "" {
		srvCfg.NextProtos = []string{alpn}
	}
	client := tls.Server(&netx.PrefixConn{Conn: t.Client, Prefix: t.ClientPending}, srvCfg)
	if err := client.HandshakeContext(ctx); err != nil {
		// Clients that refuse the leaf say so in different ways (an alert,
		// or an unencrypted one Go reads as a bad record MAC).
		hint := "a client that does not trust ferry's CA fails here: install the CA in it (ferry ca show prints how)"
		if untrusted(err) {
			hint = "the client does not trust ferry's CA: install it (ferry ca show prints how)"
		}
		s.Log.Warn().Str("plugin", p.name).Str("target", s.Target).Str("sni", name).Err(err).
			Str("hint", hint).Msg("mitm: TLS with the client failed; tunnel closed")
		return nil, fmt.Errorf("mitm: TLS with the client for %s: %w", name, err)
	}
	return client, nil
}

// TLS alert descriptions refuse sends (RFC 8446 section 6).
const (
	alertDecodeError      = 50
	alertUnrecognizedName = 112
)

// refuse ends a tunnel whose ClientHello ferry will not answer with a
// leaf: it sends the client a fatal TLS alert, logs a warning with the
// (clipped) name and returns the error that closes the tunnel.
func (p *Plugin) refuse(s *plugins.Session, t *plugins.Tunnel, name string, alert byte, why string) error {
	t.Client.SetWriteDeadline(time.Now().Add(p.timeout))
	// An alert record: type 21, version TLS 1.2 (what every version's
	// first server records carry), length 2, level fatal, description.
	t.Client.Write([]byte{21, 3, 3, 0, 2, 2, alert})
	t.Client.SetWriteDeadline(time.Time{})
	t.ClientPending = nil
	s.Log.Warn().Str("plugin", p.name).Str("target", s.Target).Str("sni", clip(name)).Str("reason", why).
		Msg("mitm: ClientHello refused; tunnel closed")
	return plugins.Reject(plugins.CodeForbidden, "mitm: "+why)
}

// validServerName reports whether a ClientHello's server name may become
// a leaf's name: a DNS host name, not an IP literal (RFC 6066 section 3
// forbids those) nor a wildcard.
func validServerName(name string) bool {
	if _, err := netip.ParseAddr(name); err == nil {
		return false
	}
	return ValidHostName(name)
}

// malformed reports whether peekHello's error is a TLS record that could
// not be parsed, rather than a client that went away or stayed silent.
// crypto/tls reports its own alerts as a *net.OpError "local error".
func malformed(err error) bool {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var op *net.OpError
	return !errors.As(err, &op) || op.Op == "local error"
}

// untrusted reports a client's refusal of the leaf certificate.
func untrusted(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "unknown certificate authority") || strings.Contains(msg, "bad certificate") ||
		strings.Contains(msg, "certificate unknown") || strings.Contains(msg, "unknown_ca")
}

// errProbed ends the probe handshake once the ClientHello is read.
var errProbed = errors.New("client hello read")

// peekHello reads the client's first bytes into t.ClientPending and, if
// they start a TLS handshake, parses the ClientHello with crypto/tls
// itself: a server handshake over a connection that replays what was read,
// records what it reads from the client and writes nowhere, stopped as
// soon as the hello is known. It returns nil when the client is not
// speaking TLS or said nothing within peekTimeout.
func (p *Plugin) peekHello(t *plugins.Tunnel) (*tls.ClientHelloInfo, error) {
	if len(t.ClientPending) == 0 {
		first := make([]byte, 1)
		t.Client.SetReadDeadline(time.Now().Add(peekTimeout))
		n, err := t.Client.Read(first)
		t.Client.SetReadDeadline(time.Time{})
		t.ClientPending = first[:n]
		if n == 0 {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, nil
			}
			return nil, err
		}
	}
	if t.ClientPending[0] != 0x16 { // TLS handshake record
		return nil, nil
	}
	rec := &recordConn{Conn: t.Client, replay: bytes.NewReader(t.ClientPending)}
	var hello *tls.ClientHelloInfo
	probe := tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		// The slices belong to the handshake: keep copies.
		c := *h
		c.SupportedProtos = append([]string(nil), h.SupportedProtos...)
		hello = &c
		return nil, errProbed
	}})
	t.Client.SetReadDeadline(time.Now().Add(p.timeout))
	err := probe.Handshake()
	t.Client.SetReadDeadline(time.Time{})
	t.ClientPending = append(t.ClientPending, rec.read.Bytes()...)
	if hello == nil {
		return nil, err
	}
	return hello, nil
}

// recordConn serves reads first from replay, then from Conn, keeping a
// copy of what it read from Conn; writes are dropped (the probe's alert
// must not reach the client).
type recordConn struct {
	net.Conn
	replay *bytes.Reader
	read   bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	if c.replay.Len() > 0 {
		return c.replay.Read(p)
	}
	n, err := c.Conn.Read(p)
	c.read.Write(p[:n])
	return n, err
}

func (c *recordConn) Write(p []byte) (int, error) { return len(p), nil }
