// Package log is the access-log plugin: one structured line per finished
// channel (or per plain HTTP request, or per request inside an
// intercepted tunnel) with id, listener, client, protocol,
// target, upstream, bytes each way, duration and close reason.
//
//	[[plugin]]
//	name = "log"
//	file = "/var/log/ferry/access.log" # optional; default: ferry's own log
//
// Lines go to ferry's log (stderr, in its format) unless file is set, in
// which case they are appended to the file as JSON lines. Instances that
// name the same file share one open file (a service). The plugin does not
// rotate files: use logrotate's copytruncate or a new file per reload.
package log

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/rs/zerolog"

	"ferry/plugins"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "log",
		Description: "access log: one line per channel with client, target, bytes, duration, close reason",
		New:         New,
	})
}

// Config is the plugin's TOML table.
type Config struct {
	// File appends access lines, as JSON, to this path. Empty: ferry's log.
	File string `toml:"file"`
}

// Plugin writes access lines.
type Plugin struct {
	name string
	log  zerolog.Logger
}

var (
	_ plugins.Plugin = (*Plugin)(nil)
	_ plugins.Closer = (*Plugin)(nil)
)

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	p := &Plugin{name: env.Name, log: env.Log}
	if cfg.File != "" {
		path := env.Path(cfg.File)
		svc, err := env.Services.Provide("log-file:"+path, func() (plugins.Service, error) {
			return &fileService{path: path}, nil
		})
		if err != nil {
			return nil, err
		}
		p.log = zerolog.New(svc.(io.Writer)).With().Timestamp().Logger()
	}
	return p, nil
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// OnClose implements plugins.Closer.
func (p *Plugin) OnClose(s *plugins.Session, st plugins.Stats) {
	upstream := s.Upstream
	if upstream == "" {
		upstream = "direct"
	}
	// Addresses are appended to one buffer, which the event copies:
	// their String methods allocate three times each.
	var buf [64]byte
	client := appendAddr(buf[:0], s.Client)
	ev := p.log.Info().
		Str("id", s.ID).
		Str("listener", s.Listener).
		Bytes("client", client)
	if s.Peer != s.Client {
		client = appendAddr(buf[:0], s.Peer)
	}
	ev = ev.Bytes("peer", client).
		Str("proto", s.Protocol).
		Str("target", s.Target).
		Str("upstream", upstream)
	if s.Parent != "" {
		ev = ev.Str("parent", s.Parent)
	}
	if s.UpstreamPath != "" {
		ev = ev.Str("chain", s.UpstreamPath)
	}
	if s.User != "" {
		ev = ev.Str("user", s.User)
	}
	if len(s.Groups) > 0 {
		ev = ev.Strs("groups", s.Groups)
	}
	if s.SourceAddr.IsValid() {
		ev = ev.Bytes("source", s.SourceAddr.AppendTo(buf[:0]))
	}
	if s.Intercepted != "" {
		ev = ev.Str("mitm", s.Intercepted)
	}
	if s.Request != nil && s.Protocol == "http" {
		ev = ev.Str("method", s.Request.Method).Str("url", s.Request.URL.String())
	}
	if s.Status != 0 {
		ev = ev.Int("status", s.Status)
	}
	if s.Protocol == plugins.ProtocolSOCKS5UDP {
		ev = ev.Int64("datagrams_up", st.DatagramsUp).Int64("datagrams_down", st.DatagramsDown).
			Int64("datagrams_dropped", st.DatagramsDropped)
	}
	for _, f := range s.LogFields() {
		ev = ev.Str(f.Key, f.Value)
	}
	ev = ev.Int64("up", st.Up).Int64("down", st.Down).
		Float64("duration_ms", float64(st.Duration.Microseconds())/1000).
		Str("reason", st.Reason.String())
	if st.Err != nil {
		ev = ev.Str("error", st.Err.Error())
	}
	ev.Msg("access")
}

// appendAddr appends a as its String method would write it: without
// allocating for TCP addresses, which nearly every session has.
func appendAddr(b []byte, a net.Addr) []byte {
	if a == nil {
		return b
	}
	if t, ok := a.(*net.TCPAddr); ok && t != nil && t.Port >= 0 && t.Port <= 0xffff {
		// net.IP writes an IPv4-mapped address as IPv4, which netip
		// would not give a zone.
		if ip, ok := netip.AddrFromSlice(t.IP); ok && (t.Zone == "" || !ip.Unmap().Is4()) {
			return netip.AddrPortFrom(ip.Unmap().WithZone(t.Zone), uint16(t.Port)).AppendTo(b)
		}
	}
	return append(b, a.String()...)
}

// fileService is an access-log file shared by the instances that name it.
// It opens on Start and closes on Stop, after the last channel.
type fileService struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (s *fileService) Start(context.Context) error {
	// openNonblock: a FIFO with no reader fails at once (ENXIO) instead
	// of blocking the start or reload that opens it; Go's poller makes the
	// writes wait as usual.
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|openNonblock, 0o640)
	if err != nil {
		return fmt.Errorf("open access log: %w", err)
	}
	s.mu.Lock()
	s.f = f
	s.mu.Unlock()
	return nil
}

func (s *fileService) Stop(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// Write appends one line; zerolog writes each event in one call.
func (s *fileService) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return 0, os.ErrClosed
	}
	return s.f.Write(p)
}
