// Package capture writes the bytes of each channel to a pcapng file as a
// synthesized TCP connection, so that Wireshark or tshark show the
// conversation (Follow TCP Stream, protocol dissectors, statistics), and
// HTTP flows, plain and intercepted, to a HAR 1.2 file for browsers'
// devtools and HAR viewers (har.go, harflow.go, harfile.go).
//
//	[[plugin]]
//	name = "capture"
//	file = "/var/tmp/ferry.pcapng"  # set file, har or both
//	har = "/var/tmp/ferry.har"      # one entry per HTTP request
//	har_max_body = "1MiB"           # body text recorded per message
//	max_bytes = "1MiB"              # data recorded per channel; "0": no limit
//	rotate_size = "100MiB"          # start file.1, file.2... past this; default never
//	rotate_keep = 5                 # old files kept when rotating
//
//	$ tshark -r /var/tmp/ferry.pcapng -q -z follow,tcp,ascii,0
//
// The HAR file is one JSON document, valid after every entry: each
// entry is written over the closing "]}}" with a new one, in one write,
// when its flow ends (OnClose). To see bodies the plugin asks for them
// (HTTPBodyHook) only when they are small or textual, so that it never
// makes ferry buffer a download.
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
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/units"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "capture",
		Description: "writes each channel's data to a pcapng file for Wireshark, and HTTP requests to a HAR file for devtools",
		New:         New,
	})
}

// Defaults.
const (
	DefaultMaxBytes   = units.MiB
	DefaultRotateKeep = 5
	DefaultHarMaxBody = units.MiB
	// maxHarMaxBody bounds har_max_body; ferry buffers no body over
	// [limits] max_buffered_body_bytes (at most 1GiB) anyway.
	maxHarMaxBody = units.GiB
)

// Config is the plugin's TOML table.
type Config struct {
	// File is the pcapng file's path. Set file, har or both. Created on
	// start if missing; a capture already there is kept and a new
	// section appended. Instances naming the same file share it.
	File string `toml:"file"`
	// Har is the HAR 1.2 file's path: one entry per HTTP request, plain
	// and intercepted. Created on start if missing; a HAR file this
	// plugin wrote goes on with its entries. Instances naming the same
	// file share it.
	Har string `toml:"har"`
	// HarMaxBody is the most of each request and response body, decoded,
	// that a HAR entry records; a larger body is left out, with a
	// comment. Default 1MiB; 0: no bodies.
	HarMaxBody *units.Size `toml:"har_max_body"`
	// MaxBytes caps the pcapng data recorded per channel, both ways
	// together; later data passes unrecorded, and the capture shows it
	// as missing bytes before the FIN. Default 1MiB; 0: no limit.
	MaxBytes *units.Size `toml:"max_bytes"`
	// RotateSize moves each file (pcapng, HAR) to FILE.1 (older ones to
	// FILE.2...) and starts a new one when the next packet or entry would
	// make it larger. Zero or unset: never rotate.
	RotateSize *units.Size `toml:"rotate_size"`
	// RotateKeep is how many rotated files are kept. Default 5; 0: none,
	// the file starts over. Needs rotate_size.
	RotateKeep *int `toml:"rotate_keep"`
}

// settings are a Config checked, with defaults applied.
type settings struct {
	file, har  string // cleaned paths; empty when not set
	limit      int64
	harMax     int64
	rotateSize int64
	rotateKeep int
}

// Plugin records channels into its pcapng file service and HTTP flows
// into its HAR file service; either may be nil.
type Plugin struct {
	name   string
	limit  int64 // max_bytes; 0: no limit
	file   *fileService
	har    *harService
	harMax int64
}

var (
	_ plugins.Reader        = (*Plugin)(nil)
	_ plugins.Writer        = (*Plugin)(nil)
	_ plugins.ReadEnder     = (*Plugin)(nil)
	_ plugins.WriteEnder    = (*Plugin)(nil)
	_ plugins.Closer        = (*Plugin)(nil)
	_ plugins.DataDirector  = (*Plugin)(nil)
	_ plugins.HTTPRequester = (*Plugin)(nil)
	_ plugins.HTTPResponder = (*Plugin)(nil)
	_ plugins.HTTPBodyHook  = (*Plugin)(nil)
)

// New builds an instance from its config table. It opens nothing: the
// files open when the server starts its services.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	set, err := check(env, cfg)
	if err != nil {
		return nil, err
	}
	p := &Plugin{name: env.Name, limit: set.limit, harMax: set.harMax}
	if set.file != "" {
		if p.file, err = providePcapng(env, set); err != nil {
			return nil, err
		}
	}
	if set.har != "" {
		if p.har, err = provideHar(env, set); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// check validates cfg and applies the defaults.
func check(env plugins.Env, cfg Config) (settings, error) {
	set := settings{limit: int64(DefaultMaxBytes), harMax: int64(DefaultHarMaxBody), rotateKeep: DefaultRotateKeep}
	if cfg.File == "" && cfg.Har == "" {
		return set, plugins.Errorf("file", "set file (a pcapng file), har (a HAR file) or both")
	}
	if cfg.File != "" {
		set.file = filepath.Clean(env.Path(cfg.File))
	}
	if cfg.Har != "" {
		set.har = filepath.Clean(env.Path(cfg.Har))
	}
	if set.file != "" && set.file == set.har {
		return set, plugins.Errorf("har", "%s is the pcapng file too: name another file", set.har)
	}
	if cfg.MaxBytes != nil {
		set.limit = int64(*cfg.MaxBytes)
	}
	if set.limit < 0 {
		return set, plugins.Errorf("max_bytes", "must not be negative")
	}
	if cfg.HarMaxBody != nil {
		set.harMax = int64(*cfg.HarMaxBody)
	}
	if set.harMax < 0 || set.harMax > int64(maxHarMaxBody) {
		return set, plugins.Errorf("har_max_body", "must be between 0 and %v", maxHarMaxBody)
	}
	if cfg.HarMaxBody != nil && set.har == "" {
		return set, plugins.Errorf("har_max_body", "needs har")
	}
	return checkRotation(cfg, set)
}

func checkRotation(cfg Config, set settings) (settings, error) {
	if cfg.RotateSize != nil {
		set.rotateSize = int64(*cfg.RotateSize)
	}
	if set.rotateSize < 0 {
		return set, plugins.Errorf("rotate_size", "must not be negative")
	}
	if cfg.RotateKeep != nil {
		set.rotateKeep = *cfg.RotateKeep
		if set.rotateKeep < 0 {
			return set, plugins.Errorf("rotate_keep", "must not be negative")
		}
		if set.rotateSize == 0 {
			return set, plugins.Errorf("rotate_keep", "needs rotate_size")
		}
	}
	return set, nil
}

// fileKind names the services of one kind of file; a path is a pcapng
// file or a HAR file, not both.
type fileKind struct{ service, label string }

var (
	pcapngKind = fileKind{"capture-file:", "pcapng"}
	harKind    = fileKind{"capture-har:", "HAR"}
)

func providePcapng(env plugins.Env, set settings) (*fileService, error) {
	return provide(env, "file", pcapngKind, harKind, set, set.file, func() *fileService {
		return newFileService(set.file, set.rotateSize, set.rotateKeep, env.Log)
	})
}

func provideHar(env plugins.Env, set settings) (*harService, error) {
	return provide(env, "har", harKind, pcapngKind, set, set.har, func() *harService {
		return &harService{path: set.har, version: creatorVersion(), rotateSize: set.rotateSize, rotateKeep: set.rotateKeep, log: env.Log}
	})
}

// fileSvc is a capture file service: pcapng or HAR.
type fileSvc interface {
	plugins.Service
	sameSettings(rotateSize int64, keep int) bool
}

// provide returns the service of the file at path (key names the
// setting), shared with the instances that name the same file, made by
// create for the first. A file of the other kind must not be at path.
func provide[S fileSvc](env plugins.Env, key string, kind, other fileKind, set settings, path string, create func() S) (S, error) {
	var zero S
	if _, ok := env.Services.Lookup(other.service + path); ok {
		return zero, plugins.Errorf(key, "%s is another capture instance's %s file", path, other.label)
	}
	svc, err := env.Services.Provide(kind.service+path, func() (plugins.Service, error) { return create(), nil })
	if err != nil {
		return zero, err
	}
	fs, ok := svc.(S)
	if !ok {
		return zero, plugins.Errorf(key, "service for %s is a %T", path, svc)
	}
	if !fs.sameSettings(set.rotateSize, set.rotateKeep) {
		return zero, plugins.Errorf(key, "%s is shared with another capture instance that rotates it differently", path)
	}
	return fs, nil
}

// creatorVersion is the HAR creator's version: the main module's, as the
// build recorded it.
func creatorVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func newFileService(path string, rotateSize int64, keep int, log zerolog.Logger) *fileService {
	return &fileService{path: path, rotateSize: rotateSize, rotateKeep: keep, log: log}
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// DataDirections implements plugins.DataDirector: an instance without a
// pcapng file hooks no data, so its tunnels keep the splice path.
func (p *Plugin) DataDirections() plugins.Directions {
	if p.file == nil {
		return plugins.NoData
	}
	return plugins.BothData
}

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
	if p.file == nil {
		return // no pcapng file: DataDirections keeps the chain from calling
	}
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
	if p.file == nil {
		return
	}
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
	if p.har != nil {
		if e := p.harEntryOf(s, stats); e != nil {
			p.har.add(e)
		}
	}
	if p.file != nil {
		p.closePcapng(s, stats)
	}
}

// closePcapng ends the channel's connection in the pcapng file.
func (p *Plugin) closePcapng(s *plugins.Session, stats plugins.Stats) {
	st, _ := s.Value(streamKey{p}).(*stream)
	if st == nil {
		if stats.Reason == plugins.ReasonRejected || stats.Reason == plugins.ReasonDialFailed || stats.Err != nil {
			return // never connected, or gone before a byte moved
		}
		if s.Protocol == "http" && s.Parent != "" {
			// A flow of an intercepted tunnel (its bytes belong to the
			// tunnel's connection, recorded there) or an HTTP/2 stream
			// that carried nothing.
			return
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
