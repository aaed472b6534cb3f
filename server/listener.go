package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	"ferry/relay"
)

// listener is one listening socket and the settings of its connections.
type listener struct {
	srv     *Server
	cfg     config.Listener
	set     config.Settings
	chain   *plugins.Chain
	buffers *relay.BufferPool
	log     zerolog.Logger

	http, socks5, socks4 bool
	tcpTarget            string

	proxyMode int            // ppOff, ppOptional, ppRequired
	trusted   []netip.Prefix // peers allowed to send a PROXY header
	sendProxy int            // PROXY version sent to a tcp target; 0: none
	passTLVs  []byte         // TLV types forwarded in that header

	ln net.Listener

	active, accepted, refused atomic.Int64
	lastRefusalLog            atomic.Int64 // unix nanos
}

func newListener(s *Server, lc config.Listener, set config.Settings, chain *plugins.Chain) *listener {
	l := &listener{
		srv:     s,
		cfg:     lc,
		set:     set,
		chain:   chain,
		buffers: relay.NewBufferPool(set.BufferSize),
		log:     s.log.With().Str("listener", lc.Name).Logger(),
		http:    slices.Contains(lc.Protocols, "http"),
		socks5:  slices.Contains(lc.Protocols, "socks5"),
		socks4:  slices.Contains(lc.Protocols, "socks4"),
	}
	if slices.Contains(lc.Protocols, "tcp") {
		l.tcpTarget = lc.Target
	}
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
	return l
}

func (l *listener) open() error {
	ln, err := net.Listen("tcp", l.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listener %s: %w", l.cfg.Name, err)
	}
	l.ln = ln
	ev := l.log.Info().Str("addr", ln.Addr().String()).Strs("protocols", l.cfg.Protocols)
	if l.tcpTarget != "" {
		ev = ev.Str("target", l.tcpTarget)
	}
	ev.Msg("listening")
	return nil
}

func (l *listener) closeListener() {
	if l.ln != nil {
		l.ln.Close()
	}
}

// acceptLoop serves until the listener is closed. Temporary accept errors
// (out of file descriptors, say) back off instead of spinning.
func (l *listener) acceptLoop() {
	defer l.srv.accepts.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.srv.drainCtx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		l.accepted.Add(1)
		if max := int64(l.set.MaxConnections); max > 0 && l.active.Load() >= max {
			l.refuse(c)
			continue
		}
		l.active.Add(1)
		l.srv.conns.Add(1)
		go l.serve(c)
	}
}

// refuse closes a connection over the listener's limit at once. The log
// is throttled to a line a second so a flood cannot flood the log too.
func (l *listener) refuse(c net.Conn) {
	c.Close()
	n := l.refused.Add(1)
	now := time.Now().UnixNano()
	last := l.lastRefusalLog.Load()
	if now-last >= int64(time.Second) && l.lastRefusalLog.CompareAndSwap(last, now) {
		l.log.Warn().Int("max_connections", l.set.MaxConnections).Int64("refused_total", n).
			Str("client", c.RemoteAddr().String()).Msg("connection refused: listener at max_connections")
	}
}

func (l *listener) serve(c net.Conn) {
	defer l.srv.conns.Done()
	defer l.active.Add(-1)
	h := &conn{l: l, c: c, start: time.Now()}
	h.serve()
}
