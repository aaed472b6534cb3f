package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	"ferry/plugins/pkg/throttle"
	"ferry/relay"
)

// frontend is one [[listener]] of one configuration generation: how the
// connections its socket accepts are served (protocols, plugins, PROXY
// header trust, buffers). It does not listen: its socket does. A reload
// makes new frontends and hands them the sockets whose address did not
// change.
type frontend struct {
	srv     *Server
	gen     *generation
	sock    *socket // set when the frontend starts serving
	cfg     config.Listener
	set     config.Settings
	chain   *plugins.Chain
	buffers *relay.BufferPool
	log     zerolog.Logger

	http, socks5, socks4 bool
	h2c                  bool // HTTP/2 with prior knowledge (h2.go)
	// h2Buffers are what HTTP/2 tunnels read their clients into (h2Chunk).
	h2Buffers *relay.BufferPool
	tcpTarget string

	// guardLocal: refuse destinations on the proxy host (bound beyond
	// loopback, without allow_local_destinations). refuseDst is refuseDial
	// as a func value made once: DialInfo takes it on every dial without
	// an allocation.
	guardLocal bool
	refuseDst  func(netip.AddrPort) error

	proxyMode int            // ppOff, ppOptional, ppRequired
	trusted   []netip.Prefix // peers allowed to send a PROXY header
	sendProxy int            // PROXY version sent to a tcp target; 0: none
	passTLVs  []byte         // TLV types forwarded in that header
	tls       *tlsFront      // nil: plain TCP

	// readers and writers recycle plain HTTP's buffer_size buffers
	// between requests and connections.
	readers, writers sync.Pool
}

// boundedIdle is the listener's idle timeout, or its handshake timeout
// when idle timeouts are off: for waits that must end even then (a
// client kept alive between requests, an answer it does not read, a
// flow's silent peer).
func (l *frontend) boundedIdle() time.Duration {
	if d := l.set.IdleTimeout; d > 0 {
		return d
	}
	return l.set.HandshakeTimeout
}

func (l *frontend) getReader(r io.Reader) *bufio.Reader {
	br, ok := l.readers.Get().(*bufio.Reader)
	if !ok {
		return bufio.NewReaderSize(r, l.set.BufferSize)
	}
	br.Reset(r)
	return br
}

func (l *frontend) putReader(br *bufio.Reader) {
	if br != nil {
		br.Reset(nil)
		l.readers.Put(br)
	}
}

func (l *frontend) getWriter(w io.Writer) *bufio.Writer {
	bw, ok := l.writers.Get().(*bufio.Writer)
	if !ok {
		return bufio.NewWriterSize(w, l.set.BufferSize)
	}
	bw.Reset(w)
	return bw
}

func (l *frontend) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	l.writers.Put(bw)
}

func newFrontend(s *Server, gen *generation, lc config.Listener, set config.Settings, chain *plugins.Chain) *frontend {
	l := &frontend{
		srv:     s,
		gen:     gen,
		cfg:     lc,
		set:     set,
		chain:   chain,
		buffers: relay.NewGrowingPool(set.BufferSize, set.MaxBufferSize),
		// A stream's reader holds its buffer while it waits: see h2Chunk.
		h2Buffers: relay.NewBufferPool(min(set.BufferSize, h2Chunk)),
		log:       s.log.With().Str("listener", lc.Name).Logger(),
		http:      slices.Contains(lc.Protocols, "http"),
		socks5:    slices.Contains(lc.Protocols, "socks5"),
		socks4:    slices.Contains(lc.Protocols, "socks4"),
		h2c:       lc.H2C && lc.TLS == nil && slices.Contains(lc.Protocols, "http"),
	}
	if slices.Contains(lc.Protocols, "tcp") {
		l.tcpTarget = lc.Target
	}
	l.guardLocal = !lc.AllowLocalDestinations && l.tcpTarget == "" && !loopbackListen(lc.Listen)
	l.refuseDst = l.refuseDial
	l.proxyMode = proxyMode(lc.ProxyProtocol)
	l.trusted = prefixes(lc.TrustedProxies)
	switch lc.SendProxyProtocol {
	case "v1":
		l.sendProxy = 1
	case "v2":
		l.sendProxy = 2
	}
	for _, t := range lc.PassTLVs {
		l.passTLVs = append(l.passTLVs, byte(t))
	}
	if lc.TLS != nil {
		l.tls = newTLSFront(lc.TLS, listenerALPN(serveH2(lc)), l.log)
	}
	return l
}

// socket is a listening socket. It outlives configuration generations:
// a reload that keeps the address keeps the socket, so no connection
// attempt is refused, and only swaps the frontend that serves it.
type socket struct {
	ln   net.Listener
	addr string // as configured

	mu  sync.RWMutex
	cur *frontend

	active, accepted, refused atomic.Int64
	refusalLog                throttle.Gate
	// streams counts HTTP/2 streams per client address, for
	// max_client_streams.
	streams handshakes
	// spares runs the connections' goroutines and their channels'
	// second copies (nil: go statements).
	spares *spares
}

// reusable reports whether a new configuration's listen address may take
// over this socket: the same string, and not a port-0 request for a fresh
// port.
func (k *socket) reusable(listen string) bool {
	return k.addr == listen && !strings.HasSuffix(listen, ":0")
}

// ListenError is a listener whose address could not be bound, from Start
// or Reload. Index is the listener's place in the configuration.
type ListenError struct {
	Index int
	Name  string
	Err   error
}

func (e *ListenError) Error() string { return fmt.Sprintf("listener %s: %v", e.Name, e.Err) }
func (e *ListenError) Unwrap() error { return e.Err }

func openSocket(i int, l *frontend) (*socket, error) {
	ln, err := listenTCP(l.cfg.Listen)
	if err != nil {
		return nil, &ListenError{Index: i, Name: l.cfg.Name, Err: err}
	}
	return &socket{ln: ln, addr: l.cfg.Listen, spares: newSpares()}, nil
}

// serveWith makes l the frontend of k's new connections.
func (k *socket) serveWith(l *frontend) {
	k.mu.Lock()
	k.cur = l
	l.sock = k
	k.mu.Unlock()
	ev := l.log.Info().Str("addr", k.ln.Addr().String()).Strs("protocols", l.cfg.Protocols)
	if l.tcpTarget != "" {
		ev = ev.Str("target", l.tcpTarget)
	}
	ev.Msg("listening")
}

// acceptLoop serves until the socket is closed. Temporary accept errors
// (out of file descriptors, say) back off instead of spinning.
func (k *socket) acceptLoop(s *Server) {
	defer s.accepts.Done()
	defer k.spares.close()
	var backoff time.Duration
	for {
		c, err := k.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.drainCtx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			k.current().log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		k.accepted.Add(1)
		// The read lock orders this connection's registration with its
		// generation before a reload retires that generation.
		k.mu.RLock()
		l := k.cur
		if limit := int64(l.set.MaxConnections); limit > 0 && k.active.Load() >= limit {
			k.mu.RUnlock()
			l.refuse(c, "max_connections", "listener at max_connections", limit)
			continue
		}
		if limit := l.gen.maxConns; limit > 0 && s.active.Load() >= limit {
			k.mu.RUnlock()
			l.refuse(c, "limits_max_connections", "server at [limits] max_connections", limit)
			continue
		}
		h := &conn{l: l, c: c}
		if !l.admitHandshake(h) {
			k.mu.RUnlock()
			l.refuse(c, "max_client_handshakes", "client at [limits] max_client_handshakes",
				int64(*l.gen.cfg.Limits.MaxClientHandshakes))
			continue
		}
		s.obs.ConnAccepted(l.cfg.Name)
		k.active.Add(1)
		s.active.Add(1)
		s.conns.Add(1)
		l.gen.conns.Add(1)
		k.mu.RUnlock()
		k.spares.run(func() { l.serve(h) })
	}
}

func (k *socket) current() *frontend {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.cur
}

// refuse closes a connection over a limit at once. The log is throttled
// to a line a second per listener so a flood cannot flood the log too.
func (l *frontend) refuse(c net.Conn, reason, why string, limit int64) {
	// Counted before the close: a client that saw its connection end
	// must find the refusal in the stats and metrics it reads next.
	l.srv.obs.ConnRefused(l.cfg.Name, reason)
	k := l.sock
	n := k.refused.Add(1)
	c.Close()
	if ok, suppressed := k.refusalLog.Pass(time.Now()); ok {
		l.log.Warn().Str("reason", reason).Int64("limit", limit).Int64("refused_total", n).
			Int("suppressed", suppressed).Str("client", c.RemoteAddr().String()).
			Msg("connection refused: " + why)
	}
}

func (l *frontend) serve(h *conn) {
	h.start = time.Now()
	h.serve()
	if !h.handedOff {
		l.release()
	}
}
