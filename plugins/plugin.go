// Package plugins is ferry's extension contract and the registry of
// compiled-in plugin types.
//
// A plugin type registers a factory from init():
//
//	func init() {
//		plugins.Register(plugins.Registration{
//			Type:        "deny-port",
//			Description: "rejects targets on listed ports",
//			New: func(env plugins.Env) (plugins.Plugin, error) {
//				var cfg struct{ Ports []int `toml:"ports"` }
//				if err := env.Decode(&cfg); err != nil {
//					return nil, err
//				}
//				return &denyPort{ports: cfg.Ports}, nil
//			},
//		})
//	}
//
// The factory runs once per [[plugin]] table; the instance it returns serves
// every channel of every listener that names it, concurrently. An instance
// implements Plugin and any of the hook interfaces (Connector, Reader,
// Writer, Closer, io.Closer); the relay asks which ones once, when it builds
// a Chain, never per chunk. An instance whose data hooks depend on its
// configuration (rules for one direction only) also implements
// DataDirector, so that the direction it leaves alone keeps the kernel
// splice path. Per-channel state belongs in the Session
// (Session.Value/SetValue), not in the plugin.
//
// This package does not dial, listen or copy: server and relay drive it.
package plugins

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Plugin is the one method every plugin has.
type Plugin interface {
	// Name is the instance name from the config, used in logs and errors.
	Name() string
}

// Connector sees a channel before its target is dialed. It may rewrite
// s.Target, set s.Upstream, or reject by returning an error; a *RejectError
// (see Reject) chooses what the client is told, any other error is a 502 /
// SOCKS general failure. Hooks run in config order; the first error stops
// the chain.
type Connector interface {
	OnConnect(ctx context.Context, s *Session) error
}

// Reader sees each chunk read from the client before it goes upstream, in
// config order. It returns the bytes to pass on: p itself, a modified or
// new slice, or an empty one to hold or drop them (a hook that holds bytes
// releases them by returning them with a later chunk, or by
// Session.SendUpstream). p is only valid during the call: a hook that keeps
// bytes must copy them. Returning an error ends the channel; ErrClose ends
// it without logging an error.
type Reader interface {
	OnRead(s *Session, p []byte) ([]byte, error)
}

// Writer is Reader for the way back: chunks read from the upstream before
// they reach the client, in reverse config order.
//
// A plugin that has both hooks but needs only one for its configuration
// declares which with DataDirector rather than wrapping itself in a type
// per direction.
type Writer interface {
	OnWrite(s *Session, p []byte) ([]byte, error)
}

// Meter counts a channel's bytes without seeing them: a plugin whose
// only per-chunk work is counting (a quota, accounting) implements it
// instead of Reader and Writer, and the channel keeps the kernel splice
// path. OnBytes is told that n bytes are about to go d, after the data
// hooks (what is delivered), on every path: spliced tunnels, hooked
// copies, plain HTTP messages. It returns how many of them may go: n, or
// fewer to cut the stream at a budget. The bytes kept are delivered even
// when err is set; err then ends the channel (ErrClose as an orderly
// plugin close, anything else as a plugin error), and a cut (keep < n)
// ends it with ErrClose when err is nil. Meters run in config order for
// both directions; each sees what the earlier ones kept. A DataDirector
// narrows the directions a Meter is told about, as it does for data
// hooks.
//
// OnBytes runs on the copying goroutine, once per chunk (up to 1 MiB on
// the spliced path): it must not block, and should be an atomic add or
// two.
type Meter interface {
	OnBytes(s *Session, d Direction, n int) (keep int, err error)
}

// ChunkLimiter caps the chunks its data hooks are handed. The hooked
// copy reads in buffer_size chunks and, during a bulk transfer, grows its
// reads up to max_buffer_size (1 MiB by default); a hook that paces
// bytes (a rate limit) or wants small pieces says how large a chunk may
// get. The Chain asks once, when it is built; the smallest answer wins,
// and 0 sets no cap. A chunk is never cut below buffer_size.
type ChunkLimiter interface {
	MaxChunk() int
}

// ReadEnder is told when the client has finished sending (its stream
// toward the upstream reached EOF, or, for plain HTTP, the request was
// written): the last chance to release bytes a Reader held back. What it
// returns passes through the later Readers and goes upstream before the
// half-close. It runs in config order, after OnRead, once per stream end:
// for plain HTTP once per message, again when a bodiless request is
// retried on a fresh upstream connection (its bytes pass the Readers
// again), and once more for the tunnel after a 101 upgrade.
type ReadEnder interface {
	OnReadEnd(s *Session) ([]byte, error)
}

// WriteEnder is ReadEnder for the way back: the upstream finished
// sending (or the plain HTTP response was written).
type WriteEnder interface {
	OnWriteEnd(s *Session) ([]byte, error)
}

// Closer sees a channel end, once, after both sides are closed, in reverse
// config order (like defers). It also runs for channels that a Connector
// rejected or whose dial failed.
type Closer interface {
	OnClose(s *Session, st Stats)
}

// Authenticator checks the credentials a client offers: SOCKS5
// username/password (RFC 1929) and HTTP Proxy-Authorization Basic. A
// listener whose chain has one requires credentials: its SOCKS5 handshake
// offers only method 0x02, SOCKS4 (which has no password) is refused, and
// HTTP requests without valid credentials get 407. Authenticators run in
// config order before OnConnect; the first that returns nil admits the
// client and ferry sets s.User. An error refuses it; the error should not
// repeat the password.
//
// An Authenticator that knows the user's groups sets s.Groups when it
// admits the client, and leaves it alone when it refuses: the groups
// travel with the session (ferry copies them to the sessions of a SOCKS5
// login, of HTTP/2 streams and of intercepted flows) for acl rules,
// [[route]] group conditions and the access log. The slice is shared and
// must not change once set. ferry clears s.Groups before the
// Authenticators run and after a refusal, so a refusing Authenticator's
// groups never leak into the session.
type Authenticator interface {
	Authenticate(ctx context.Context, s *Session, user, password string) error
}

// Realmer names the realm of the 407 challenge (Proxy-Authenticate: Basic
// realm="..."). The first Authenticator that implements it decides;
// default "ferry".
type Realmer interface {
	Realm() string
}

// DialChecker sees every address a direct dial is about to connect to,
// after name resolution, so a rule on destination addresses cannot be
// bypassed with a name that resolves somewhere else (DNS rebinding). It is
// called once per address tried, in config order; an error refuses that
// address, and a *RejectError's code reaches the client when no address
// is left. Dials through upstream proxies resolve names at the proxy and
// are not checked here.
type DialChecker interface {
	OnDial(s *Session, addr netip.AddrPort) error
}

// Interceptor may take over an open tunnel's byte streams after the
// client was told the tunnel is open and the upstream is connected, and
// before the relay starts: to terminate TLS on both sides (mitm), for
// example. Interceptors run in config order; each sees what the previous
// one left in t. A plugin that does not take the tunnel leaves t as it
// is, except that bytes it read from t.Client must be put back in
// t.ClientPending. Replacing the connections costs the kernel splice
// path, so take only what is in scope. An error ends the tunnel
// (reason "plugin error" for a HookError, else "error"): the plugin logs
// why. Only byte-stream tunnels (CONNECT, SOCKS, tcp) are offered.
type Interceptor interface {
	Intercept(ctx context.Context, s *Session, t *Tunnel) error
}

// Tunnel is an open tunnel as an Interceptor gets it.
type Tunnel struct {
	// Client and Upstream are the two ends ferry relays between.
	Client, Upstream net.Conn
	// ClientPending are bytes already read from Client, which go
	// upstream first (through the data hooks).
	ClientPending []byte
	// HTTP, set by an Interceptor, asks ferry to serve the tunnel as HTTP
	// flows rather than relay it as bytes: "h2" or "http/1.1", the
	// protocol both Client and Upstream speak. Each request then becomes
	// a session of its own (Parent is the tunnel's ID) that passes the
	// HTTP hooks; the data hooks still see the tunnel's plaintext bytes.
	HTTP string
	// Scheme is the flows' URL scheme: "https" when TLS was terminated,
	// "http" for plaintext HTTP in a tunnel.
	Scheme string
	// Redial connects to the target again as Upstream was connected, for
	// flows that outlive Upstream (an origin closes an idle connection).
	// ferry sets it to a plain dial of the tunnel's target; an
	// Interceptor that changes Upstream wraps it (mitm adds the TLS
	// handshake). It is called only while the tunnel is open.
	Redial func(ctx context.Context) (net.Conn, error)
}

// ClientRestrictor is implemented by plugins that can keep unknown
// clients out (an acl whose every allow needs a client address or user).
// ferry warns at start about a listener reachable beyond loopback that
// neither authenticates nor has such a plugin: an open proxy.
type ClientRestrictor interface {
	RestrictsClients() bool
}

// Counter is a plugin that counts its own events (failed logins,
// lockouts...) for the admin service, which exports them as
// ferry_plugin_events_total{plugin, event}. Counters are running totals;
// they start again from zero with the instance (a reload).
type Counter interface {
	Counters() map[string]uint64
}

// HTTPRequester sees each plain HTTP request (not CONNECT) after OnConnect
// and before it is sent upstream, in config order, with hop-by-hop and
// Proxy-* headers already removed. It sees the requests of intercepted
// tunnels too (see Tunnel.HTTP): there OnConnect ran once for the tunnel,
// s is the flow's own session (Parent is the tunnel's id) and req.URL is
// the full https:// URL. It may change the headers, method or
// URL path (not the target: that is s.Target, fixed by OnConnect). An
// error refuses the request like OnConnect's.
type HTTPRequester interface {
	OnHTTPRequest(s *Session, req *http.Request) error
}

// HTTPResponder sees the final response to each plain HTTP request (not
// CONNECT) and each request of an intercepted flow, after its head came
// from the origin and before it goes to the
// client, in config order, with req as the HTTPRequesters left it. It
// sees the status and the end-to-end fields (hop-by-hop ones are already
// gone) and may set, add or remove fields in resp.Header; changes to
// Content-Length and Transfer-Encoding, and hop-by-hop fields it adds,
// are ignored, since the framing is ferry's to keep (RFC 9110 section
// 7.6.1). resp.Body is nil: the body is not read before the hook (body
// hooks are HTTPBodyHook's) and streams through. 1xx responses,
// 101 included, do not go through the hook; HEAD answers and 304 do.
//
// An error blocks the response: the client gets an error answer instead
// (a *RejectError chooses its status, CodeForbidden is 403; any other
// error is a 502 and ends the client connection), and the origin
// connection is closed with the body unread.
type HTTPResponder interface {
	OnHTTPResponse(s *Session, req *http.Request, resp *http.Response) error
}

// Stats describe a finished channel.
type Stats struct {
	// Up counts bytes delivered to the upstream, Down bytes delivered to the
	// client, after plugin hooks.
	Up, Down int64
	Start    time.Time
	Duration time.Duration
	Reason   CloseReason
	// Err is the error behind Reason, if any (nil for orderly closes).
	Err error

	// DatagramsUp and DatagramsDown count the datagrams of a SOCKS5 UDP
	// association (Up and Down count their payload bytes);
	// DatagramsDropped those it did not relay: fragments, malformed ones,
	// denied or unknown destinations, strangers' and past the bounds.
	DatagramsUp, DatagramsDown, DatagramsDropped int64
}
