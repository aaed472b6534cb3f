package server

import (
	"context"
	"slices"
	"strings"
	"time"

	"ferry/plugins"
	"ferry/relay"
)

// ChannelInfo describes a live channel: a CONNECT, SOCKS or tcp tunnel,
// an upgraded (101) HTTP connection or a SOCKS5 UDP association (Up and
// Down its payload bytes), from the moment its relay starts.
type ChannelInfo struct {
	ID       string `json:"id"`
	Listener string `json:"listener"`
	Protocol string `json:"protocol"`
	Client   string `json:"client"`
	User     string `json:"user,omitempty"`
	// Groups are the user's groups, as the authenticating plugin gave
	// them.
	Groups []string `json:"groups,omitempty"`
	Target string   `json:"target"`
	// Upstream is the upstream's name, "direct" without one;
	// UpstreamAddr the dialed address.
	Upstream     string `json:"upstream"`
	UpstreamAddr string `json:"upstream_addr,omitempty"`
	// Chain is the upstream proxies traversed ("tiny>dante"), empty for
	// a direct dial.
	Chain string `json:"chain,omitempty"`
	// Intercepted is the TLS server name a mitm plugin terminated, when
	// the channel relays decrypted bytes.
	Intercepted string `json:"intercepted,omitempty"`
	// Parent is the id of the HTTP/2 connection a CONNECT stream rides
	// in, which its sibling streams share.
	Parent string `json:"parent,omitempty"`
	// Up and Down are bytes delivered so far to the upstream and to the
	// client.
	Up      int64     `json:"up"`
	Down    int64     `json:"down"`
	Started time.Time `json:"started"`
}

// liveChannel is what Channels reports of a live relay. It holds the
// session rather than a copy of its fields, which would cost every idle
// tunnel about 300 bytes that only the admin API reads: the server sets
// them before the relay starts and leaves them, but for the upstream a
// SOCKS5 UDP association changes with each destination, which is why
// those two are kept as they were. Addresses are formatted when asked
// for, not for every tunnel.
type liveChannel struct {
	sess            *plugins.Session
	ch              liveRelay
	started         time.Time
	upstream, chain string
}

// liveRelay is what the admin API needs of a live channel: a
// *relay.Channel, or a SOCKS5 UDP association.
type liveRelay interface {
	Bytes() (up, down int64)
	// Close ends it with plugins.ReasonAdminClosed.
	Close()
}

var _ liveRelay = (*relay.Channel)(nil)

// track registers ch as live until untrack(sess.ID).
func (s *Server) track(sess *plugins.Session, ch liveRelay) {
	lc := &liveChannel{sess: sess, ch: ch, started: time.Now(), upstream: upstreamName(sess), chain: sess.UpstreamPath}
	s.chMu.Lock()
	if s.channels == nil {
		s.channels = make(map[string]*liveChannel)
		// One registration for all channels, where each would cost an
		// entry among hardCtx's children (see shutdownChannels).
		context.AfterFunc(s.hardCtx, s.shutdownChannels)
	}
	s.channels[sess.ID] = lc
	late := s.channelsShut
	s.chMu.Unlock()
	if sd, ok := ch.(shutdowner); ok && late {
		sd.Shutdown()
	}
}

// shutdowner is a live relay that the server ends itself when hardCtx
// ends: a relay.Channel started with a context that is never cancelled
// (context.WithoutCancel), which spares a registration per tunnel.
type shutdowner interface{ Shutdown() }

var _ shutdowner = (*relay.Channel)(nil)

// shutdownChannels ends every live channel that is a shutdowner once
// hardCtx has ended, and those tracked after (see track).
func (s *Server) shutdownChannels() {
	s.chMu.Lock()
	s.channelsShut = true
	live := make([]shutdowner, 0, len(s.channels))
	for _, lc := range s.channels {
		if sd, ok := lc.ch.(shutdowner); ok {
			live = append(live, sd)
		}
	}
	s.chMu.Unlock()
	for _, sd := range live {
		sd.Shutdown()
	}
}

func (s *Server) untrack(id string) {
	s.chMu.Lock()
	delete(s.channels, id)
	s.chMu.Unlock()
}

// Channels returns the live channels, oldest first, with their byte
// counts so far.
func (s *Server) Channels() []ChannelInfo {
	s.chMu.Lock()
	out := make([]ChannelInfo, 0, len(s.channels))
	for _, lc := range s.channels {
		out = append(out, lc.info())
	}
	s.chMu.Unlock()
	slices.SortFunc(out, func(a, b ChannelInfo) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// info describes lc now.
func (lc *liveChannel) info() ChannelInfo {
	s := lc.sess
	info := ChannelInfo{
		ID: s.ID, Listener: s.Listener, Protocol: s.Protocol, User: s.User, Groups: s.Groups,
		Target: s.Target, Upstream: lc.upstream, Chain: lc.chain, Intercepted: s.Intercepted,
		Parent: s.Parent, Started: lc.started,
	}
	if s.Client != nil {
		info.Client = s.Client.String()
	}
	if s.UpstreamAddr != nil {
		info.UpstreamAddr = s.UpstreamAddr.String()
	}
	info.Up, info.Down = lc.ch.Bytes()
	return info
}

// CloseChannel ends the live channel id with plugins.ReasonAdminClosed and
// reports whether there was one.
func (s *Server) CloseChannel(id string) bool {
	s.chMu.Lock()
	lc, ok := s.channels[id]
	s.chMu.Unlock()
	if ok {
		lc.ch.Close()
	}
	return ok
}

// ListenerStats are one listening socket's counters.
type ListenerStats struct {
	// Name is the listener currently serving the socket.
	Name, Addr                string
	Active, Accepted, Refused int64
}

// ListenerStats returns each open socket's counters, in config order.
func (s *Server) ListenerStats() []ListenerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ListenerStats, 0, len(s.sockets))
	for _, k := range s.sockets {
		out = append(out, ListenerStats{
			Name: k.current().cfg.Name, Addr: k.ln.Addr().String(),
			Active: k.active.Load(), Accepted: k.accepted.Load(), Refused: k.refused.Load(),
		})
	}
	return out
}

// Ready reports whether the server is serving: started, with its
// listeners open, and not shutting down.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drainCtx.Err() == nil && len(s.sockets) > 0
}
