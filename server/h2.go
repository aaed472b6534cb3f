package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"ferry/config"
	"ferry/plugins/pkg/netx"
)

// HTTP/2 defaults of a listener's max_streams_per_connection and
// max_client_streams.
const (
	defaultH2Streams       = 100
	defaultH2ClientStreams = 1000
)

// h2StreamWindow is the flow-control window each HTTP/2 stream gets for
// what the client sends (SETTINGS_INITIAL_WINDOW_SIZE). The connection's
// window is this times the stream limit: a tunnel whose target stops
// reading holds at most its own window, never the connection's, so the
// other tunnels keep moving (RFC 9113 section 5.2). 256 KiB keeps a
// stream at full speed over a 20 ms path at 100 Mbit/s.
const h2StreamWindow = 256 << 10

// h2Preface is what an HTTP/2 client sends first (RFC 9113 section 3.4).
var h2Preface = []byte(http2.ClientPreface)

// sawH2Preface reports whether the connection opens with the HTTP/2
// client preface. It waits only for bytes that still match, so an
// HTTP/1 request starting with "P" (POST, PUT) is told apart as soon as
// a byte differs, without waiting for 24 bytes it may never send.
func (h *conn) sawH2Preface() bool {
	for n := 1; ; {
		b, err := h.br.Peek(n)
		if err != nil || !bytes.HasPrefix(h2Preface, b) {
			return false
		}
		if n == len(h2Preface) {
			return true
		}
		n = min(max(n+1, h.br.Buffered()), len(h2Preface))
	}
}

// h2Conn is one client connection that speaks HTTP/2: each stream is a
// session of its own, a CONNECT tunnel (h2connect.go) or a plain request
// (h2forward.go), whose access line names the connection as its parent.
type h2Conn struct {
	h  *conn
	id string
	// ip is the client address max_client_streams counts against.
	ip        netip.Addr
	maxClient int

	firstOnce sync.Once

	// Handlers in flight: serveH2 waits for them before the connection
	// is released, and refuses those that start after it has ended.
	mu      sync.Mutex
	running int
	ended   bool
	idle    chan struct{}
}

// serveH2 serves an HTTP/2 connection on c, which the handshake buffer
// has read the first bytes of. It returns when the connection has ended
// and every stream's session is finished.
func (h *conn) serveH2(c net.Conn) {
	hc := &h2Conn{h: h, id: h.l.srv.nextID(), ip: addrIP(h.client), maxClient: h2ClientLimit(&h.l.cfg)}
	// Over TLS nothing was read past the handshake: c is the TLS
	// connection itself, whose state the HTTP/2 server checks (RFC 9113
	// section 9.2) and gives requests; its reads come from whole records.
	// Over plain TCP a buffer saves the HTTP/2 server a read of its own for
	// each 9-byte frame header.
	if h.l.tls == nil {
		pc := &netx.PrefixConn{Conn: c, Prefix: h.takeBuffered()}
		c = &bufferedConn{Conn: c, r: bufio.NewReaderSize(pc, h2ReadBuffer)}
	}
	h.releaseReader()
	base, srv := hc.servers()
	// Shutdown sends GOAWAY: streams under way finish within the drain,
	// new ones are refused (RFC 9113 section 6.8).
	stopDrain := context.AfterFunc(h.l.srv.drainCtx, func() { base.Shutdown(context.Background()) })
	defer stopDrain()
	stopHard := context.AfterFunc(h.l.srv.hardCtx, func() { c.Close() })
	defer stopHard()
	h.l.log.Debug().Str("id", hc.id).Str("client", h.client.String()).Msg("http2 connection")
	h.l.srv.obs.Handshake("h2", "ok")
	srv.ServeConn(c, &http2.ServeConnOpts{Context: h.l.srv.hardCtx, BaseConfig: base, Handler: hc})
	hc.wait()
}

// servers configures the HTTP/2 server of one connection from the
// listener: stream limit, windows, header size, timeouts.
func (hc *h2Conn) servers() (*http.Server, *http2.Server) {
	l := hc.h.l
	streams := h2StreamLimit(&l.cfg)
	lim := &l.gen.cfg.Limits
	base := &http.Server{
		// x/net adds room for 10 fields of HTTP/2's 32-byte overhead
		// and answers a larger header block 431 (RFC 9113 section 10.5.1).
		MaxHeaderBytes: int(lim.MaxHeaderBytes),
		ErrorLog:       log.New(debugWriter{l}, "", 0),
	}
	srv := &http2.Server{
		MaxConcurrentStreams:         uint32(streams),
		MaxUploadBufferPerStream:     h2StreamWindow,
		MaxUploadBufferPerConnection: int32(min(int64(streams)*h2StreamWindow, math.MaxInt32)),
		IdleTimeout:                  l.set.IdleTimeout,
		// A client that stops reading its connection would hold every
		// stream's writer: it is closed after the idle timeout.
		WriteByteTimeout: l.boundedIdle(),
		CountError: func(kind string) {
			l.log.Debug().Str("id", hc.id).Str("error", kind).Msg("http2: protocol error from client")
		},
	}
	if err := http2.ConfigureServer(base, srv); err != nil {
		l.log.Error().Err(err).Msg("http2: configure server")
	}
	return base, srv
}

// serveH2 reports whether a TLS listener serves HTTP/2: http2 (default
// true) and the http protocol.
func serveH2(lc config.Listener) bool {
	return (lc.HTTP2 == nil || *lc.HTTP2) && slices.Contains(lc.Protocols, "http")
}

// h2StreamLimit is the listener's max_streams_per_connection.
func h2StreamLimit(lc *config.Listener) int {
	if lc.MaxStreamsPerConnection != nil {
		return *lc.MaxStreamsPerConnection
	}
	return defaultH2Streams
}

// h2ClientLimit is the listener's max_client_streams; 0: unlimited.
func h2ClientLimit(lc *config.Listener) int {
	if lc.MaxClientStreams != nil {
		return *lc.MaxClientStreams
	}
	return defaultH2ClientStreams
}

// ServeHTTP serves one stream.
func (hc *h2Conn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !hc.enter() {
		panic(http.ErrAbortHandler) // the connection is gone
	}
	defer hc.leave()
	hc.firstOnce.Do(hc.firstStream)
	if fields(r.Header) > hc.h.l.gen.cfg.Limits.MaxHeaders {
		h2Error(w, http.StatusRequestHeaderFieldsTooLarge, "too many header fields", nil, "")
		return
	}
	if !hc.acquire() {
		w.Header().Set("Retry-After", "1")
		h2Error(w, http.StatusTooManyRequests, "client at max_client_streams", nil, "")
		return
	}
	defer hc.release()
	if r.Method == http.MethodConnect {
		hc.serveConnect(w, r)
		return
	}
	hc.forward(w, r)
}

// firstStream ends the connection's handshake: the handshake timeout
// stops, and the idle timeout of the HTTP/2 server takes over between
// streams.
func (hc *h2Conn) firstStream() {
	hc.h.c.SetDeadline(time.Time{})
	hc.h.handshakeDone()
}

// fields counts the field lines of a header.
func fields(hdr http.Header) int {
	n := 0
	for _, vs := range hdr {
		n += len(vs)
	}
	return n
}

// acquire counts a stream against max_client_streams; false: over it.
func (hc *h2Conn) acquire() bool {
	if hc.maxClient == 0 || !hc.ip.IsValid() {
		return true
	}
	return hc.h.l.sock.streams.acquire(hc.ip, hc.maxClient)
}

func (hc *h2Conn) release() {
	if hc.maxClient != 0 && hc.ip.IsValid() {
		hc.h.l.sock.streams.release(hc.ip)
	}
}

// enter counts a handler in; false once the connection has ended.
func (hc *h2Conn) enter() bool {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.ended {
		return false
	}
	hc.running++
	return true
}

func (hc *h2Conn) leave() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.running--
	if hc.running == 0 && hc.idle != nil {
		close(hc.idle)
		hc.idle = nil
	}
}

// wait marks the connection ended and waits for its handlers.
func (hc *h2Conn) wait() {
	hc.mu.Lock()
	hc.ended = true
	if hc.running == 0 {
		hc.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	hc.idle = idle
	hc.mu.Unlock()
	<-idle
}

// sub is a conn for one stream's session: the connection's listener,
// addresses, PROXY header and user, with c standing for the stream.
func (hc *h2Conn) sub(c net.Conn) *conn {
	h := hc.h
	return &conn{
		l: h.l, c: c, start: time.Now(), peer: h.peer, client: h.client, proxyHeader: h.proxyHeader,
		// A client certificate's user is every stream's.
		user: h.user, groups: h.groups, certUser: h.certUser,
	}
}

// h2ReadBuffer is the read buffer of an h2c connection: a DATA frame of
// the default size (16 KiB) and the header of the next.
const h2ReadBuffer = 16<<10 + 64

// bufferedConn reads c through a buffer.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// debugWriter turns the HTTP/2 server's log lines into debug events:
// they are about clients, not about ferry.
type debugWriter struct{ l *frontend }

func (w debugWriter) Write(p []byte) (int, error) {
	w.l.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = debugWriter{}

// stallGuard bounds each write a handler makes to an HTTP/2 stream. A
// client that stops reading holds such a write by flow control, not by
// its connection (which WriteByteTimeout watches), and neither a
// request's context nor a read deadline toward the origin reaches it:
// the stream's write deadline does, resetting the stream. It is set
// idle plus a sixteenth ahead and renewed only once under idle away, so
// a stalled write fails after idle to 17/16 idle, and a transfer sends
// the serve loop one message per sixteenth of idle, not one per write.
type stallGuard struct {
	http.ResponseWriter
	rc    *http.ResponseController
	idle  time.Duration
	until time.Time
}

func newStallGuard(w http.ResponseWriter, idle time.Duration) *stallGuard {
	return &stallGuard{ResponseWriter: w, rc: http.NewResponseController(w), idle: idle}
}

func (g *stallGuard) Write(p []byte) (int, error) {
	g.renew()
	return g.ResponseWriter.Write(p)
}

func (g *stallGuard) FlushError() error {
	g.renew()
	return g.rc.Flush()
}

// Unwrap lets http.ResponseController reach the stream's writer.
func (g *stallGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func (g *stallGuard) renew() {
	if now := time.Now(); g.until.Sub(now) < g.idle {
		g.until = now.Add(g.idle + g.idle/16)
		g.rc.SetWriteDeadline(g.until)
	}
}
