// Package capture writes the bytes of each channel to a pcapng file as a
// synthesized TCP connection, so that Wireshark or tshark show the
// conversation (Follow TCP Stream, protocol dissectors, statistics).
//
//	[[plugin]]
//	name = "capture"
//	file = "/var/tmp/ferry.pcapng"  # required
//	max_bytes = "1MiB"              # data recorded per channel; "0": no limit
//	rotate_size = "100MiB"          # start file.1, file.2... past this; default never
//	rotate_keep = 5                 # old files kept when rotating
//
//	$ tshark -r /var/tmp/ferry.pcapng -q -z follow,tcp,ascii,0
//
// Each channel becomes one TCP connection from the client's address to the
// target's: a three-way handshake when its first byte passes, data
// segments with consistent sequence and acknowledgment numbers and valid
// checksums, each chunk acknowledged by the other end, and a FIN exchange
// when the channel ends, opened by the side that closed first. A target
// given as a name gets a stable stand-in address from the benchmarking
// ranges (198.18.0.0/15, 2001:2::/48); packet comments carry the channel
// id, listener, protocol, real client and target, and how the channel
// ended.
//
// It records what passes through its place in the listener's chain:
// listed first it sees the client's side of the plugins, listed last the
// target's. It does not see bytes other plugins inject with SendUpstream
// or SendClient, nor the proxy handshake (CONNECT, SOCKS) itself, and it
// does not capture real packets: there are no retransmissions, no
// timings of the network, and a half-close shows up only when the channel
// ends. Channels that carried no data and failed (rejected, dial failed)
// are not written. Like every plugin with data hooks it turns off the
// kernel splice fast path for its listener.
package capture

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "capture",
		Description: "writes each channel's data to a pcapng file as a synthetic TCP connection, for Wireshark",
		New:         New,
	})
}

// Defaults.
const (
	DefaultMaxBytes   = config.MiB
	DefaultRotateKeep = 5
)

// Config is the plugin's TOML table.
type Config struct {
	// File is the pcapng file's path. Required. Created on start if
	// missing; a capture already there is kept and a new section
	// appended. Instances naming the same file share it.
	File string `toml:"file"`
	// MaxBytes caps the data recorded per channel, both ways together;
	// later data passes unrecorded, and the capture shows it as missing
	// bytes before the FIN. Default 1MiB; 0: no limit.
	MaxBytes *config.Size `toml:"max_bytes"`
	// RotateSize moves the file to FILE.1 (older ones to FILE.2...) and
	// starts a new one when the next packet would make it larger. Zero or
	// unset: never rotate.
	RotateSize *config.Size `toml:"rotate_size"`
	// RotateKeep is how many rotated files are kept. Default 5; 0: none,
	// the file starts over. Needs rotate_size.
	RotateKeep *int `toml:"rotate_keep"`
}

// Plugin records channels into its file service.
type Plugin struct {
	name  string
	limit int64 // max_bytes; 0: no limit
	file  *fileService
}

var (
	_ plugins.Reader = (*Plugin)(nil)
	_ plugins.Writer = (*Plugin)(nil)
	_ plugins.Closer = (*Plugin)(nil)
)

// New builds an instance from its config table. It opens nothing: the
// file opens when the server starts its services.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.File == "" {
		return nil, fmt.Errorf("file: required, the path of the pcapng file")
	}
	limit := int64(DefaultMaxBytes)
	if cfg.MaxBytes != nil {
		limit = int64(*cfg.MaxBytes)
	}
	if limit < 0 {
		return nil, fmt.Errorf("max_bytes: must not be negative")
	}
	var rotateSize int64
	if cfg.RotateSize != nil {
		rotateSize = int64(*cfg.RotateSize)
	}
	if rotateSize < 0 {
		return nil, fmt.Errorf("rotate_size: must not be negative")
	}
	keep := DefaultRotateKeep
	if cfg.RotateKeep != nil {
		keep = *cfg.RotateKeep
		if keep < 0 {
			return nil, fmt.Errorf("rotate_keep: must not be negative")
		}
		if rotateSize == 0 {
			return nil, fmt.Errorf("rotate_keep: needs rotate_size")
		}
	}
	path := filepath.Clean(cfg.File)
	svc, err := env.Services.Provide("capture-file:"+path, func() (plugins.Service, error) {
		return newFileService(path, rotateSize, keep, env.Log), nil
	})
	if err != nil {
		return nil, err
	}
	fs, ok := svc.(*fileService)
	if !ok {
		return nil, fmt.Errorf("file: service for %s is a %T", path, svc)
	}
	if !fs.sameSettings(rotateSize, keep) {
		return nil, fmt.Errorf("file: %s is shared with another capture instance that rotates it differently", path)
	}
	return &Plugin{name: env.Name, limit: limit, file: fs}, nil
}

func newFileService(path string, rotateSize int64, keep int, log zerolog.Logger) *fileService {
	return &fileService{path: path, rotateSize: rotateSize, rotateKeep: keep, log: log}
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// streamKey keys an instance's stream in the session, so two capture
// instances on one listener keep their own.
type streamKey struct{ p *Plugin }

func (p *Plugin) stream(s *plugins.Session) *stream {
	if st, ok := s.Value(streamKey{p}).(*stream); ok {
		return st
	}
	return s.LoadOrStore(streamKey{p}, newStream(s)).(*stream)
}

// OnRead implements plugins.Reader: b goes from the client to the target.
func (p *Plugin) OnRead(s *plugins.Session, b []byte) ([]byte, error) {
	p.record(s, fromClient, b)
	return b, nil
}

// OnWrite implements plugins.Writer: b goes from the target to the client.
func (p *Plugin) OnWrite(s *plugins.Session, b []byte) ([]byte, error) {
	p.record(s, fromTarget, b)
	return b, nil
}

func (p *Plugin) record(s *plugins.Session, d side, b []byte) {
	st := p.stream(s)
	f := p.file
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.writable() {
		return
	}
	now := time.Now() // under the lock, so the file's packets are in time order
	st.open(f, now)
	st.data(f, now, d, b, p.limit)
}

// OnClose implements plugins.Closer: it writes the FIN exchange.
func (p *Plugin) OnClose(s *plugins.Session, stats plugins.Stats) {
	st, _ := s.Value(streamKey{p}).(*stream)
	if st == nil {
		if stats.Reason == plugins.ReasonRejected || stats.Reason == plugins.ReasonDialFailed || stats.Err != nil {
			return // never connected, or gone before a byte moved
		}
		st = newStream(s)
	}
	first := fromClient
	if stats.Reason == plugins.ReasonUpstreamClosed {
		first = fromTarget
	}
	f := p.file
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.writable() {
		return
	}
	now := time.Now()
	st.open(f, now)
	st.close(f, now, first, st.summary(stats, p.limit))
}
