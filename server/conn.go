package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/proxyproto"
	"ferry/relay"
	"ferry/relay/upstream"
)

// conn is one accepted client connection.
type conn struct {
	l     *frontend
	c     net.Conn
	rc    *rollingConn // c, as br reads it: &rcv while the handshake runs
	rcv   rollingConn
	br    *bufio.Reader
	start time.Time
	// peer is the socket's remote address; client is who the connection
	// is for: the peer, or the source of a trusted PROXY header.
	peer, client net.Addr
	proxyHeader  *proxyproto.Header
	// user authenticated in the SOCKS5 handshake or by a client
	// certificate (certUser).
	user     string
	certUser bool
	// groups are user's groups, from the SOCKS5 login's Authenticator.
	groups []string
	// alpn is the protocol the client picked in a TLS listener's ALPN
	// (see listenerALPN); empty without TLS or without ALPN.
	alpn string
	// id is the session id taken for a SOCKS5 login, which the session
	// keeps; empty until one is taken.
	id string
	// linger: an error answer was written while the client may still be
	// sending; close gently so the answer is not lost to a reset.
	linger bool
	// headReq: the request being served is a HEAD, whose answer has no
	// body.
	headReq bool
	// handedOff: a channel took the connection over, and ends it.
	handedOff bool
	// hsIP is the address whose handshake count this connection holds
	// until its handshake is done; invalid when it holds none.
	hsIP netip.Addr
	// scratch holds SOCKS fields and replies: conn is on the heap anyway,
	// where stack arrays passed to io functions would each be allocated.
	scratch [256]byte
}

// handshakeBufSize bounds what the handshake buffers: an HTTP request
// line, a SOCKS request or a PROXY header (up to its 4 KiB default limit)
// fits; bytes past it wait in the socket.
const handshakeBufSize = proxyproto.DefaultMaxHeaderLen

func (h *conn) serve() {
	defer h.handshakeDone()
	defer func() {
		if h.handedOff {
			return // the channel owns the connection now
		}
		if h.linger {
			lingerClose(h.c)
		}
		h.c.Close()
	}()
	if h.l.set.HandshakeTimeout > 0 {
		h.c.SetDeadline(h.start.Add(h.l.set.HandshakeTimeout))
	}
	h.rcv = rollingConn{Conn: h.c}
	h.rc = &h.rcv
	h.br = handshakeReaders.Get().(*bufio.Reader)
	h.br.Reset(h.rc)
	defer h.releaseReader()
	h.peer = h.c.RemoteAddr()
	h.client = h.peer
	if h.l.proxyMode != ppOff && !h.readProxyHeader() {
		return
	}
	if h.l.tls != nil && !h.startTLS() {
		return
	}
	if h.alpn == "h2" {
		h.serveH2(h.c)
		return
	}
	if h.l.tcpTarget != "" {
		h.tunnel(h.newSession("tcp", h.l.tcpTarget), nopReplier{})
		return
	}
	first, err := h.br.Peek(1)
	if err != nil {
		h.debugHandshake("", err)
		return
	}
	switch {
	case first[0] == 0x05 && h.l.socks5:
		h.serveSOCKS5()
	case first[0] == 0x04 && h.l.socks4:
		h.serveSOCKS4()
	case h.l.h2c && first[0] == h2Preface[0] && h.sawH2Preface():
		h.serveH2(h.c)
	case h.l.http && isTokenByte(first[0]):
		h.serveHTTP()
	default:
		h.l.srv.obs.Handshake("unknown", "error")
		h.l.log.Debug().Str("client", h.c.RemoteAddr().String()).Hex("first_byte", first).
			Msg("handshake: protocol not recognised or not enabled")
	}
}

// handshakeReaders recycles handshake buffers: a tunnel needs its buffer
// only until the handshake is done.
var handshakeReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, handshakeBufSize) }}

// releaseReader gives the handshake buffer back; the conn must not read
// through it afterwards.
func (h *conn) releaseReader() {
	if h.br != nil {
		h.br.Reset(nil)
		handshakeReaders.Put(h.br)
		h.br, h.rc = nil, nil
	}
}

// lingerClose sends FIN, then reads and discards what the client still
// sends for a short while. Closing a socket with unread input makes the
// kernel send a reset, which can destroy the answer before the client
// reads it.
func lingerClose(c net.Conn) {
	cw, ok := c.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c, lingerBytes)
}

// lingerTime and lingerBytes bound lingerClose.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 4 << 20
)

type closeWriter interface{ CloseWrite() error }

// debugHandshake logs a handshake that ended without a request. These are
// scanners, health checks and impatient clients: debug, not warnings.
func (h *conn) debugHandshake(proto string, err error) {
	if proto == "" {
		h.l.srv.obs.Handshake("unknown", handshakeOutcome(err))
	} else {
		h.l.srv.obs.Handshake(proto, handshakeOutcome(err))
	}
	ev := h.l.log.Debug().Str("client", h.c.RemoteAddr().String()).Str("proto", proto)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		ev.Msg("handshake timeout")
		return
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		ev.Msg("client closed during handshake")
		return
	}
	ev.Err(err).Msg("handshake failed")
}

func (h *conn) newSession(proto, target string) *plugins.Session {
	h.handshakeDone() // the client named its target
	id := h.id
	if id == "" {
		id = h.l.srv.nextID()
	}
	s := &plugins.Session{
		ID:          id,
		Listener:    h.l.cfg.Name,
		Client:      h.client,
		Peer:        h.peer,
		ProxyHeader: h.proxyHeader,
		Protocol:    proto,
		Target:      target,
		User:        h.user,
		Groups:      h.groups,
	}
	s.Log = h.l.log.Hook(idHook{s})
	s.BindContext(h.l.srv.hardCtx)
	return s
}

// idHook adds the session's id to each event of its logger. A hook
// costs a few words per session where With().Str() would set aside a
// 500-byte context buffer for every tunnel, idle ones included; holding
// the session rather than the id string keeps the hook pointer-shaped,
// so that making it an interface value allocates nothing. The id is set
// before the hook and never changes.
type idHook struct{ s *plugins.Session }

func (h idHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) { e.Str("id", h.s.ID) }

// replier answers the client in its protocol once the dial is decided.
type replier interface {
	// fail tells the client the request failed with code. Errors writing
	// it do not matter: the connection closes next.
	fail(s *plugins.Session, code plugins.Code, err error)
	// ok tells the client its tunnel is open; bound is the local address of
	// the upstream connection.
	ok(s *plugins.Session, bound net.Addr) error
}

type nopReplier struct{}

func (nopReplier) fail(*plugins.Session, plugins.Code, error) {}
func (nopReplier) ok(*plugins.Session, net.Addr) error        { return nil }

// tunnel runs a session that becomes a byte stream: CONNECT, SOCKS, tcp.
func (h *conn) tunnel(s *plugins.Session, r replier) {
	st := &plugins.Stats{Start: h.start}
	ctx := h.l.srv.hardCtx
	up, info, err := h.connect(ctx, s)
	h.l.srv.obs.Handshake(s.Protocol, handshakeOutcome(err))
	if err != nil {
		r.fail(s, failCode(err), err)
		st.Reason, st.Err = reasonFor(err), err
		h.l.finish(s, st)
		return
	}
	if err := r.ok(s, up.LocalAddr()); err != nil {
		up.Close()
		info.Release()
		st.Reason, st.Err = plugins.ReasonClientClosed, fmt.Errorf("reply to client: %w", err)
		h.l.finish(s, st)
		return
	}
	h.startChannel(ctx, s, st, up, info)
}

// deferredKeepAlive is the keep-alive the relay turns on on the tunnel's
// upstream when it goes idle, if the dial left it off (nil if not). When
// an interceptor took the socket (TLS over it, or HTTP flows), the relay
// cannot reach it, so keep-alive goes on at once.
func deferredKeepAlive(info *upstream.DialInfo, up net.Conn, t *plugins.Tunnel) *net.KeepAliveConfig {
	if !info.KeepAliveDeferred() {
		return nil
	}
	if tc, ok := up.(*net.TCPConn); ok && (t.HTTP != "" || t.Upstream != up) {
		_ = tc.SetKeepAliveConfig(upstream.TargetKeepAlive)
		return nil
	}
	ka := upstream.TargetKeepAlive
	return &ka
}

// startChannel relays between the client and up, whose dial info is
// released when the channel ends; the client has had its success reply.
func (h *conn) startChannel(ctx context.Context, s *plugins.Session, st *plugins.Stats, up net.Conn, info *upstream.DialInfo) {
	h.c.SetDeadline(time.Time{})
	client, upConn, pending := h.c, up, h.takeBuffered()
	// The tunnel reads the socket directly from here on: let the
	// handshake buffer go, which matters for many idle tunnels.
	h.releaseReader()
	t, err := h.intercept(ctx, s, client, upConn, pending)
	if err != nil {
		info.Release()
		st.Reason, st.Err = reasonFor(err), err
		h.l.finish(s, st)
		return
	}
	keepAlive := deferredKeepAlive(info, up, t)
	if t.HTTP != "" {
		h.handedOff = true // serveFlows closes both connections
		h.serveFlows(ctx, s, st, t)
		info.Release()
		h.l.finish(s, st)
		h.l.release()
		return
	}
	client, upConn, pending = t.Client, t.Upstream, t.ClientPending
	ch := &relay.Channel{
		Client:        client,
		Upstream:      upConn,
		Session:       s,
		Chain:         h.l.chain,
		Buffers:       h.l.buffers,
		IdleTimeout:   h.l.set.IdleTimeout,
		ClientPending: pending,
		Parker:        h.l.srv.parker,
		Go:            h.l.sock.spares.goFunc(),

		UpstreamKeepAlive: keepAlive,
	}
	h.l.srv.track(s, ch)
	// An open tunnel's request is not needed any more (see
	// Session.Request); its header map is most of an idle tunnel's heap.
	s.Request = nil
	// The channel may outlive this goroutine (an idle one parks without
	// any), so what follows its end runs when it ends, on whichever
	// goroutine ends it. It holds the frontend, not the conn with its
	// handshake state.
	h.handedOff = true
	l, start := h.l, st.Start
	// The server ends its tracked channels itself at shutdown
	// (shutdownChannels), so the channel need not watch ctx. The stats
	// are made at the end, from their start, rather than kept by every
	// idle tunnel.
	ch.Start(context.WithoutCancel(ctx), func(res relay.Result) {
		l.srv.untrack(s.ID)
		info.Release()
		st := plugins.Stats{Start: start, Up: res.Up, Down: res.Down, Reason: res.Reason, Err: res.Err}
		l.finish(s, &st)
		l.release()
	})
}

// release ends a connection's accounting: the listener's count, the
// generation's and the server's.
func (l *frontend) release() {
	l.sock.active.Add(-1)
	l.srv.active.Add(-1)
	l.srv.ended.Add(1)
	l.gen.conns.Done()
	l.srv.conns.Done()
}

// dialError marks dial failures apart from plugin rejections, and
// carries what the client is told.
type dialError struct {
	target string
	code   plugins.Code
	err    error
}

func (e *dialError) Error() string { return fmt.Sprintf("dial %s: %v", e.target, e.err) }
func (e *dialError) Unwrap() error { return e.err }

// failCode is what the client is told of err: a failed dial's own code,
// else the code of a plugin's rejection (CodeGeneral without one).
func failCode(err error) plugins.Code {
	var de *dialError
	if errors.As(err, &de) {
		return de.code
	}
	return plugins.CodeOf(err)
}

// connect runs the OnConnect hooks and routes, then dials the (possibly
// rewritten) target within dial_timeout. On failure, failCode(err) is
// what to tell the client. The DialInfo is to be released when the
// connection ends.
func (h *conn) connect(ctx context.Context, s *plugins.Session) (net.Conn, *upstream.DialInfo, error) {
	if err := h.admit(ctx, s); err != nil {
		return nil, nil, err
	}
	up, info, err := h.dialTarget(ctx, s, true)
	if err != nil {
		return nil, nil, err
	}
	if err := h.sendProxyHeader(up); err != nil {
		up.Close()
		info.Release()
		return nil, nil, &dialError{target: s.Target, code: plugins.CodeGeneral, err: err}
	}
	return up, info, nil
}

var errShuttingDown = errors.New("server shutting down")

// admit authenticates an HTTP client when the listener requires it (SOCKS5
// clients did in their handshake, a client certificate in TLS's), runs the OnConnect hooks, then picks
// the upstream by the routes unless a plugin chose one.
func (h *conn) admit(ctx context.Context, s *plugins.Session) error {
	if h.l.chain.RequiresAuth() && s.Request != nil && !h.certUser {
		user, pass, ok := proxyBasicAuth(s.Request)
		if !ok {
			return &plugins.RejectError{Code: plugins.CodeAuthRequired, Msg: "proxy authentication required"}
		}
		s.Groups = nil
		if err := h.l.chain.Authenticate(ctx, s, user, pass); err != nil {
			s.Groups = nil
			return err
		}
		s.User = user
	}
	s.Upstream = ""
	if err := h.l.chain.Connect(ctx, s); err != nil {
		return err
	}
	if s.Upstream != "" {
		if _, ok := h.l.gen.ups.Node(s.Upstream); !ok {
			return fmt.Errorf("a plugin chose upstream %q, which the config does not have", s.Upstream)
		}
		return nil
	}
	c, err := h.l.gen.ups.Choose(ctx, s, h.l.set.DialTimeout)
	if err != nil {
		return err
	}
	s.Upstream = c.Upstream
	if !s.SourceAddr.IsValid() {
		s.SourceAddr = c.Source
	}
	if len(c.Pinned) > 0 {
		s.SetValue(pinnedKey{}, pinnedAddrs{target: s.Target, ips: c.Pinned})
	}
	return nil
}

// pinnedKey holds the addresses a route resolved the target to.
type pinnedKey struct{}

type pinnedAddrs struct {
	target string
	ips    []netip.Addr
}

// dialTarget dials the session's target through its upstream within
// dial_timeout. On failure, failCode(err) is what to tell the client.
//
// With lazyKeepAlive (a tunnel, whose relay turns keep-alive on when it
// first goes idle), a direct dial leaves the target connection's
// keep-alive off: see upstream.DialInfo.LazyKeepAlive.
func (h *conn) dialTarget(ctx context.Context, s *plugins.Session, lazyKeepAlive bool) (net.Conn, *upstream.DialInfo, error) {
	if h.l.srv.drainCtx.Err() != nil {
		// A request that finished its handshake during shutdown is not
		// started: the drain is for channels already running.
		return nil, nil, errShuttingDown
	}
	var d upstream.Dialer
	if f := h.l.srv.dialHook.Load(); f != nil {
		d = *f
	} else if n, ok := h.l.gen.ups.Node(upstreamName(s)); ok {
		d = n
	} else {
		return nil, nil, fmt.Errorf("no upstream %q", s.Upstream)
	}
	info := &upstream.DialInfo{Refuse: h.l.refuseDst, Source: s.SourceAddr, LazyKeepAlive: lazyKeepAlive}
	if h.l.gen.ups.SendsHeader() {
		info.ProxyHeader = h.clientHeader()
	}
	if h.l.chain.HasDialCheckers() {
		info.CheckDial = func(ap netip.AddrPort) error { return h.l.chain.CheckDial(s, ap) }
	}
	if p, ok := s.Value(pinnedKey{}).(pinnedAddrs); ok && p.target == s.Target {
		info.Pinned = p.ips
		info.PinnedHost, _, _ = net.SplitHostPort(p.target)
	}
	dctx, cancel := context.WithTimeout(upstream.WithDialInfo(ctx, info), h.l.set.DialTimeout)
	defer cancel()
	t0 := time.Now()
	up, err := d.DialContext(dctx, "tcp", s.Target)
	h.l.srv.obs.Dialed(upstreamName(s), time.Since(t0), dialResult(err))
	s.UpstreamPath = info.Path()
	if err != nil {
		info.Release()
		h.l.gen.ups.LogFailure(s, err)
		return nil, nil, &dialError{target: s.Target, code: upstream.DialCode(err), err: err}
	}
	s.UpstreamAddr = up.RemoteAddr()
	return up, info, nil
}

func reasonFor(err error) plugins.CloseReason {
	var de *dialError
	var re *plugins.RejectError
	switch {
	case errors.As(err, &re):
		return plugins.ReasonRejected
	case errors.As(err, &de):
		return plugins.ReasonDialFailed
	case errors.Is(err, errShuttingDown):
		return plugins.ReasonShutdown
	}
	var he *plugins.HookError
	if errors.As(err, &he) {
		return plugins.ReasonPluginError
	}
	return plugins.ReasonError
}

// takeBuffered returns a copy of the bytes the handshake reader holds past
// the request, which belong to the tunnel.
func (h *conn) takeBuffered() []byte {
	n := h.br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := h.br.Peek(n)
	out := append([]byte(nil), b...)
	h.br.Discard(n)
	return out
}

// isTokenByte reports whether b can start an HTTP method.
func isTokenByte(b byte) bool {
	return b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z'
}
