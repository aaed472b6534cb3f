package plugins

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/rs/zerolog"

	"ferry/proxyproto"
)

// Session is one client connection's request and the channel that serves
// it. Server fills it before OnConnect; Connectors may change Target and
// Upstream. For plain HTTP proxying every request is its own Session.
type Session struct {
	// ID is unique within the process; every log line about the channel
	// carries it.
	ID string
	// Parent is the ID of the HTTP/2 connection whose stream this session
	// is; empty for a session that has its client connection to itself.
	Parent string
	// Listener is the name of the listener that accepted the client.
	Listener string
	// Client is the client's address: the PROXY protocol source when a
	// trusted load balancer sent one, else the TCP peer.
	Client net.Addr
	// Peer is the socket's remote address: the load balancer when a PROXY
	// header named the client, else the same as Client.
	Peer net.Addr
	// ProxyHeader is the PROXY protocol header the load balancer sent, with
	// its TLVs (ALPN, authority, SSL, unique id...); nil when none came.
	ProxyHeader *proxyproto.Header
	// Protocol is "http" (plain proxying), "connect", "socks5", "socks4" or
	// "tcp".
	Protocol string
	// Target is the destination as host:port; host may be a name.
	Target string
	// User is the authenticated user name, if any.
	User string
	// Groups are the authenticated user's groups, set by the
	// Authenticator that admitted the user (see Authenticator); nil
	// without a user or when it knows of none. The slice may be shared
	// with other sessions of the same user: read it, never change it.
	Groups []string
	// Upstream names the upstream chosen for the dial: "direct" or an
	// [[upstream]]. A Connector may set it; when none does, the first
	// [[route]] that matches decides (direct when none does).
	Upstream string
	// UpstreamPath is the upstream proxies the dial went through, first
	// hop first, joined by ">" ("tiny>dante"; for a group, the member that
	// served); empty for a direct dial. Set once the dial was tried.
	UpstreamPath string
	// UpstreamAddr is the remote address of the dialed connection (the
	// target's resolved address, or the first upstream proxy's), set once
	// the dial succeeded; nil before.
	UpstreamAddr net.Addr
	// SourceAddr is the local address the dial leaves from, chosen by the
	// matching route's source_address (for an upstream, the address of
	// the first hop); the zero Addr when the kernel picks. A Connector
	// may set it; a route's choice applies only when none did.
	SourceAddr netip.Addr
	// UserRate is the bandwidth the user's authentication gave all of
	// the user's channels together (an auth service's answer, say); nil
	// when it gave none. The Authenticator's own OnConnect sets it, so
	// plugins listed after it see it; a ratelimit instance with
	// user_from_auth applies it. Shared by the user's sessions: read it,
	// never change it.
	UserRate *Rate
	// Request is the client's HTTP request (CONNECT or plain) with its
	// original headers, nil for SOCKS and tcp. Connectors may read it (for
	// example Proxy-Authorization); the body must not be touched. For
	// CONNECT it is dropped (nil) once the tunnel is open, so that idle
	// tunnels do not keep header maps: a plugin that needs a header later
	// copies it into a value (SetValue) in OnConnect.
	Request *http.Request
	// Intercepted is the server name whose TLS an Interceptor terminated
	// on both sides (mitm), so that later data hooks see plaintext; empty
	// when the tunnel is relayed as it is.
	Intercepted string
	// Status is the HTTP status ferry sent the client for plain HTTP and
	// CONNECT sessions, 0 for others.
	Status int
	// Log is the channel's logger; it carries the channel id.
	Log zerolog.Logger

	mu     sync.Mutex
	values map[any]any
	fields []LogField
	link   Link
	ctx    context.Context
}

// Rate is a bandwidth each way, in bytes per second; 0 leaves that
// direction unlimited.
type Rate struct {
	Up   int64 // from the client to the target
	Down int64 // from the target to the client
}

// LogField is a key and value a plugin adds to the channel's access line.
type LogField struct{ Key, Value string }

// SetLogField adds key = value to the channel's access line (the log
// plugin writes such fields after its own), or changes the value of a key
// set before. Keys are the plugin's to choose: its type name ("quota"),
// so that two plugins do not write the same one.
func (s *Session) SetLogField(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.fields {
		if s.fields[i].Key == key {
			s.fields[i].Value = value
			return
		}
	}
	s.fields = append(s.fields, LogField{key, value})
}

// LogFields returns the fields plugins added with SetLogField, in the
// order they were first set.
func (s *Session) LogFields() []LogField {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]LogField(nil), s.fields...)
}

// Context ends when the session's channel ends (or the server stops).
// Hooks that wait, such as rate limits, wait on it so that nothing stays
// blocked after the connection is gone.
func (s *Session) Context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return context.Background()
	}
	return s.ctx
}

// BindContext sets what Context returns. Called by the server and relay
// only.
func (s *Session) BindContext(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
}

// ClientIP is the client's IP address (IPv4-mapped addresses as IPv4,
// no zone), or the zero Addr when Client is not an IP address.
func (s *Session) ClientIP() netip.Addr {
	var ip netip.Addr
	switch a := s.Client.(type) {
	case *net.TCPAddr:
		if a != nil {
			ip, _ = netip.AddrFromSlice(a.IP)
		}
	case *net.UDPAddr:
		if a != nil {
			ip, _ = netip.AddrFromSlice(a.IP)
		}
	case nil:
	default:
		host, _, err := net.SplitHostPort(a.String())
		if err != nil {
			host = a.String()
		}
		ip, _ = netip.ParseAddr(host)
	}
	return ip.Unmap().WithZone("")
}

// Value returns the per-channel value stored under key, or nil. Use an
// unexported key type, as with context.Context.
func (s *Session) Value(key any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[key]
}

// SetValue stores per-channel state under key. Safe for concurrent use.
func (s *Session) SetValue(key, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = make(map[any]any)
	}
	s.values[key] = v
}

// LoadOrStore returns the value under key, storing v first if there is
// none: the way for hooks running on both directions at once to share one
// per-channel value.
func (s *Session) LoadOrStore(key, v any) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.values[key]; ok {
		return old
	}
	if s.values == nil {
		s.values = make(map[any]any)
	}
	s.values[key] = v
	return v
}

// ErrNotConnected is returned by SendUpstream and SendClient before the
// channel runs or after it has ended.
var ErrNotConnected = errors.New("channel not connected")

// Link is what the relay gives a Session once both sides are connected, so
// hooks can inject bytes. Plugins do not implement it.
type Link interface {
	// SendUpstream writes p to the upstream, bypassing Reader hooks.
	SendUpstream(p []byte) error
	// SendClient writes p to the client, bypassing Writer hooks.
	SendClient(p []byte) error
}

// Attach connects s to its relay; nil detaches. Called by the relay only.
func (s *Session) Attach(l Link) {
	s.mu.Lock()
	s.link = l
	s.mu.Unlock()
}

func (s *Session) currentLink() Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.link
}

// SendUpstream injects p toward the upstream, after any bytes already
// written that way and before later ones. It bypasses Reader hooks.
func (s *Session) SendUpstream(p []byte) error {
	l := s.currentLink()
	if l == nil {
		return ErrNotConnected
	}
	return l.SendUpstream(p)
}

// SendClient injects p toward the client. It bypasses Writer hooks.
func (s *Session) SendClient(p []byte) error {
	l := s.currentLink()
	if l == nil {
		return ErrNotConnected
	}
	return l.SendClient(p)
}
