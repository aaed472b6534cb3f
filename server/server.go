// Package server runs ferry's listeners: it accepts connections, reads each
// client's proxy handshake (HTTP CONNECT, plain HTTP, SOCKS5, SOCKS4/4a, or
// a fixed tcp target), runs the listener's plugins, dials the target and
// hands both connections to a relay.Channel.
//
//	srv, err := server.New(cfg, logger) // builds plugins; opens nothing
//	if err := srv.Start(); err != nil { ... }
//	<-signal
//	srv.Shutdown(drainTimeout) // stop accepting, drain, close
//
// It does not parse configuration (package config) or copy bytes (package
// relay), and it does not serve the admin HTTP service: package
// server/admin does, importing this one and seeing the server through
// Observer and the read-only accessors; this package never imports it.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	"ferry/plugins/pkg/throttle"
	"ferry/relay"
	"ferry/server/memtrim"
)

// Server is a set of listeners sharing plugins and services.
type Server struct {
	log zerolog.Logger

	// mu guards gen and sockets, which Start, Reload and Shutdown change.
	mu      sync.Mutex
	gen     *generation // the configuration new connections get
	sockets []*socket   // open sockets, in the current config's order
	retired sync.WaitGroup

	// drainCtx ends when shutdown begins: accept loops stop and idle
	// keep-alive clients are let go. hardCtx ends when the drain time is
	// up: every live channel is closed.
	drainCtx    context.Context
	drainCancel context.CancelFunc
	hardCtx     context.Context
	hardCancel  context.CancelFunc

	conns     sync.WaitGroup
	accepts   sync.WaitGroup
	idPrefix  string
	idCounter atomic.Uint64
	closeOnce sync.Once
	abortOnce sync.Once
	forced    atomic.Int64 // connections still open when the drain ended
	// ended counts client connections that have ended, for Shutdown's
	// summary.
	ended atomic.Int64

	obs Observer // never nil; set before Start

	chMu         sync.Mutex
	channels     map[string]*liveChannel // live relays by session id
	channelsShut bool                    // hardCtx has ended: see shutdownChannels

	// self is where the listeners and the admin service accept, for
	// refusing loops and dials to the admin (safety.go).
	self      atomic.Pointer[selfAddrs]
	adminAddr netip.AddrPort               // guarded by mu; invalid: no admin service
	host      hostAddrs                    // this host's interface addresses
	selfLog   [selfAdmin + 1]throttle.Gate // "refused a dial back into ferry" warnings, per selfKind

	// active counts client connections over all listeners.
	active     atomic.Int64
	handshakes handshakes

	// parker takes the goroutines of idle tunnels; nil where the
	// platform has none (they keep waiting in their goroutines).
	parker *relay.Parker

	// stores are the [state] stores the generations use.
	stores stores

	// dialHook replaces every dial when set (tests only).
	dialHook atomic.Pointer[dialFunc]
}

// New builds every plugin instance and listener from cfg without opening
// sockets, so it also serves `ferry check`. Call Close if Start is never
// called.
func New(cfg *config.Config, log zerolog.Logger) (*Server, error) {
	s := &Server{log: log, obs: nopObserver{}, stores: stores{log: log}}
	for i := range s.selfLog {
		s.selfLog[i].Period = selfLogPeriod
	}
	s.drainCtx, s.drainCancel = context.WithCancel(context.Background())
	s.hardCtx, s.hardCancel = context.WithCancel(context.Background())
	var b [3]byte
	_, _ = rand.Read(b[:])
	s.idPrefix = hex.EncodeToString(b[:])
	gen, err := s.build(cfg)
	if err != nil {
		return nil, err
	}
	s.gen = gen
	return s, nil
}

// Start starts the services, then opens every listener and serves them.
// If any step fails, what was started is stopped again.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.gen.services.Start(s.hardCtx); err != nil {
		return err
	}
	socks, err := s.socketsFor(s.gen, nil)
	if err != nil {
		_ = s.gen.services.Stop(context.Background())
		return err
	}
	if p, err := relay.NewParker(relay.DefaultParkAfter); err == nil {
		s.parker = p
	} else if !errors.Is(err, errors.ErrUnsupported) {
		s.log.Warn().Err(err).Msg("idle tunnels keep their goroutines")
	}
	s.gen.ups.Start()
	s.serve(s.gen, socks, socks)
	// After a burst (thousands of tunnels opened at once), give the
	// memory it left behind back once ferry goes quiet: see memtrim.
	go memtrim.New().Run(s.hardCtx)
	return nil
}

// socketsFor returns a socket for each listener of g: an old one with the
// same address, or a new one. On error the new ones are closed again.
func (s *Server) socketsFor(g *generation, old []*socket) ([]*socket, error) {
	out := make([]*socket, len(g.listeners))
	var opened []*socket
	for i, l := range g.listeners {
		for _, k := range old {
			if k.reusable(l.cfg.Listen) {
				out[i] = k
				break
			}
		}
		if out[i] != nil {
			continue
		}
		k, err := openSocket(i, l)
		if err != nil {
			for _, o := range opened {
				o.ln.Close()
			}
			return nil, err
		}
		opened = append(opened, k)
		out[i] = k
	}
	return out, nil
}

// serve points each socket at its frontend of g and starts accept loops
// on the sockets in fresh.
func (s *Server) serve(g *generation, socks, fresh []*socket) {
	for i, l := range g.listeners {
		socks[i].serveWith(l)
	}
	for _, k := range fresh {
		s.accepts.Add(1)
		go k.acceptLoop(s)
	}
	s.gen, s.sockets = g, socks
	s.self.Store(newSelfAddrs(socks, s.adminAddr))
	s.host.refresh()
	for _, w := range openProxyWarnings(g) {
		s.log.Warn().Msg(w)
	}
}

// Reload switches to cfg without dropping anyone: sockets whose address is
// unchanged keep accepting throughout, new connections get cfg's
// listeners, plugins and services, removed listeners stop accepting, and
// live connections finish under the configuration they started with,
// whose plugins and services are closed after the last of them. If cfg
// cannot be applied, nothing changes and the error says why.
func (s *Server) Reload(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drainCtx.Err() != nil {
		return errors.New("reload: server is shutting down")
	}
	g, err := s.build(cfg)
	if err != nil {
		return err
	}
	carryState(s.gen, g)
	if err := g.services.Start(s.hardCtx); err != nil {
		g.close()
		return err
	}
	socks, err := s.socketsFor(g, s.sockets)
	if err != nil {
		g.close()
		return err
	}
	var fresh []*socket
	for _, k := range socks {
		if !slices.Contains(s.sockets, k) {
			fresh = append(fresh, k)
		}
	}
	for _, k := range s.sockets {
		if !slices.Contains(socks, k) {
			k.ln.Close() // its accept loop ends
			k.current().log.Info().Str("addr", k.ln.Addr().String()).Msg("listener removed")
		}
	}
	old := s.gen
	g.ups.Start()
	s.serve(g, socks, fresh)
	s.retired.Add(1)
	go func() {
		defer s.retired.Done()
		old.conns.Wait()
		if err := old.close(); err != nil {
			s.log.Warn().Err(err).Msg("closing the previous configuration's plugins")
		}
	}()
	return nil
}

// Addrs returns the bound address of each listener, in config order (useful
// with port 0).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, 0, len(s.sockets))
	for _, k := range s.sockets {
		out = append(out, k.ln.Addr())
	}
	return out
}

// ShutdownSummary says how a shutdown went.
type ShutdownSummary struct {
	// Drained counts connections that finished by themselves during the
	// drain; Forced those still open when the drain time ran out.
	Drained, Forced int64
	Took            time.Duration
}

// Shutdown stops accepting at once, lets live connections finish for up to
// drain, then closes the rest, waits for every connection goroutine, stops
// services and closes plugins.
func (s *Server) Shutdown(drain time.Duration) ShutdownSummary {
	start := time.Now()
	// Drained counts the connections that end during the shutdown on
	// their own, not those active once the accept loops have stopped: a
	// client may end its connection before they notice the closed
	// listeners.
	ended := s.ended.Load()
	s.mu.Lock()
	s.drainCancel()
	for _, k := range s.sockets {
		k.ln.Close()
	}
	s.mu.Unlock()
	s.accepts.Wait()

	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	timer := time.NewTimer(drain)
	select {
	case <-done:
		timer.Stop()
	case <-timer.C:
		s.Abort()
		<-done
	case <-s.hardCtx.Done(): // Abort
		timer.Stop()
		<-done
	}
	forced := s.forced.Load()
	s.Close()
	return ShutdownSummary{Drained: s.ended.Load() - ended - forced, Forced: forced, Took: time.Since(start)}
}

// Abort ends the drain of a running Shutdown now: live channels close at
// once.
func (s *Server) Abort() {
	s.abortOnce.Do(func() {
		// Count before cancelling: those still open now are the forced.
		s.forced.Store(s.activeConns())
		s.hardCancel()
	})
}

// Close stops services and closes plugin instances, of the current
// configuration and of retired ones once their connections are gone.
// Shutdown calls it; call it directly only for a server that was never
// started.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.drainCancel()
		s.hardCancel()
		s.retired.Wait()
		if s.parker != nil {
			// After the channels: every one has ended by now, parked or
			// not, so none is left waiting on it.
			s.parker.Close()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		err = s.gen.close()
	})
	return err
}

func (s *Server) activeConns() int64 {
	return s.Stats().Active
}

// nextID returns a channel id unique within this process.
func (s *Server) nextID() string {
	// One allocation, the string, where a concatenation made two.
	var b [32]byte
	buf := append(append(b[:0], s.idPrefix...), '-')
	return string(strconv.AppendUint(buf, s.idCounter.Add(1), 36))
}

// Stats are counters for tests and the summary log.
type Stats struct {
	Active, Accepted, RefusedOverLimit int64
	// Parked counts tunnel directions idle without a goroutine.
	Parked int64
	// Pipes counts the splice path's pipes (two descriptors each), in
	// use or kept empty for a while.
	Pipes int64
}

// PluginEvent is one running total a plugin instance counts.
type PluginEvent struct {
	Plugin, Event string
	Value         uint64
}

// PluginEvents collects the counters of the current configuration's
// plugin instances that keep any (plugins.Counter).
func (s *Server) PluginEvents() []PluginEvent {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	var out []PluginEvent
	for _, p := range g.instances {
		c, ok := p.(plugins.Counter)
		if !ok {
			continue
		}
		for ev, v := range c.Counters() {
			out = append(out, PluginEvent{Plugin: p.Name(), Event: ev, Value: v})
		}
	}
	return out
}

// Stats sums the sockets' counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	for _, k := range s.sockets {
		st.Active += k.active.Load()
		st.Accepted += k.accepted.Load()
		st.RefusedOverLimit += k.refused.Load()
	}
	st.Parked = s.parker.Parked()
	st.Pipes = relay.SplicePipes()
	return st
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}
