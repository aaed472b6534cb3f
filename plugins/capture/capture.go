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
// checksums, each chunk acknowledged by the other end, each side's FIN
// when its stream ends (OnReadEnd, OnWriteEnd: a half-close shows where it
// happened), and the FINs still missing when the channel closes. A target
// given as a name is shown at the address ferry connected to
// (Session.UpstreamAddr), or, when there is none, at a stable stand-in
// address from the benchmarking ranges (198.18.0.0/15, 2001:2::/48);
// packet comments carry the channel id, listener, protocol, real client
// and target name, and how the channel ended.
//
// It records what passes through its place in the listener's chain:
// listed first it sees the client's side of the plugins, listed last the
// target's. It does not see bytes other plugins inject with SendUpstream
// or SendClient, nor the proxy handshake (CONNECT, SOCKS) itself, and it
// does not capture real packets: there are no retransmissions and no
// timings of the network. Channels that carried no data and failed
// (rejected, dial failed) are not written. Like every plugin with data
// hooks it turns off the kernel splice fast path for its listener.
package capture

import (
	"net/http"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/units"
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
	DefaultMaxBytes   = units.MiB
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
	MaxBytes *units.Size `toml:"max_bytes"`
	// RotateSize moves the file to FILE.1 (older ones to FILE.2...) and
	// starts a new one when the next packet would make it larger. Zero or
	// unset: never rotate.
	RotateSize *units.Size `toml:"rotate_size"`
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
	_ plugins.Reader     = (*Plugin)(nil)
	_ plugins.Writer     = (*Plugin)(nil)
	_ plugins.ReadEnder  = (*Plugin)(nil)
	_ plugins.WriteEnder = (*Plugin)(nil)
	_ plugins.Closer     = (*Plugin)(nil)
)

// New builds an instance from its config table. It opens nothing: the
// file opens when the server starts its services.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	if cfg.File == "" {
		return nil, plugins.Errorf("file", "required, the path of the pcapng file")
	}
	limit := int64(DefaultMaxBytes)
	if cfg.MaxBytes != nil {
		limit = int64(*cfg.MaxBytes)
	}
	if limit < 0 {
		return nil, plugins.Errorf("max_bytes", "must not be negative")
	}
	var rotateSize int64
	if cfg.RotateSize != nil {
		rotateSize = int64(*cfg.RotateSize)
	}
	if rotateSize < 0 {
		return nil, plugins.Errorf("rotate_size", "must not be negative")
	}
	keep := DefaultRotateKeep
	if cfg.RotateKeep != nil {
		keep = *cfg.RotateKeep
		if keep < 0 {
			return nil, plugins.Errorf("rotate_keep", "must not be negative")
		}
		if rotateSize == 0 {
			return nil, plugins.Errorf("rotate_keep", "needs rotate_size")
		}
	}
	path := filepath.Clean(env.Path(cfg.File))
	svc, err := env.Services.Provide("capture-file:"+path, func() (plugins.Service, error) {
		return newFileService(path, rotateSize, keep, env.Log), nil
	})
	if err != nil {
		return nil, err
	}
	fs, ok := svc.(*fileService)
	if !ok {
		return nil, plugins.Errorf("file", "service for %s is a %T", path, svc)
	}
	if !fs.sameSettings(rotateSize, keep) {
		return nil, plugins.Errorf("file", "%s is shared with another capture instance that rotates it differently", path)
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

// OnReadEnd implements plugins.ReadEnder: the client has finished
// sending, and its FIN is written now, where it happened.
func (p *Plugin) OnReadEnd(s *plugins.Session) ([]byte, error) {
	p.end(s, fromClient)
	return nil, nil
}

// OnWriteEnd implements plugins.WriteEnder: the target has finished
// sending.
func (p *Plugin) OnWriteEnd(s *plugins.Session) ([]byte, error) {
	p.end(s, fromTarget)
	return nil, nil
}

// end writes the FIN of end d when its stream ends. In a plain HTTP
// session the end of a request or response message is the end of that
// side, except around an upgrade: the end of a request that asks to
// upgrade is held until the response says whether a tunnel follows, and
// a 101 response ends neither side (the tunnel's own ends come later).
func (p *Plugin) end(s *plugins.Session, d side) {
	st := p.stream(s)
	f := p.file
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.writable() {
		return
	}
	now := time.Now()
	st.open(f, now)
	if s.Protocol == "http" && !st.upgraded {
		switch {
		case d == fromClient && upgradeRequested(s.Request):
			st.heldEnd = true
			return
		case d == fromTarget && s.Status == http.StatusSwitchingProtocols:
			st.upgraded, st.heldEnd = true, false
			return
		case d == fromTarget && st.heldEnd:
			st.heldEnd = false
			st.finish(f, now, fromClient)
		}
	}
	st.finish(f, now, d)
}

// upgradeRequested reports whether a plain HTTP request, as sent
// upstream, asks to switch protocols.
func upgradeRequested(req *http.Request) bool {
	return req != nil && req.Header.Get("Upgrade") != ""
}

// OnClose implements plugins.Closer: it writes the FINs not written yet
// (a channel that ended on an error, a reset, a timeout) and the last ACK,
// with a comment that says how the channel ended.
func (p *Plugin) OnClose(s *plugins.Session, stats plugins.Stats) {
	st, _ := s.Value(streamKey{p}).(*stream)
	if st == nil {
		if stats.Reason == plugins.ReasonRejected || stats.Reason == plugins.ReasonDialFailed || stats.Err != nil {
			return // never connected, or gone before a byte moved
		}
		st = newStream(s)
	}
	// When neither side ended, a guess at which one went first.
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
