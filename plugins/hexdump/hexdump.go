// Package hexdump is a debugging plugin: it logs the bytes of each channel
// as a hex dump, both ways, up to a limit per channel.
//
//	[[plugin]]
//	name = "hexdump"
//	max_bytes = "4KiB" # per channel, both directions together; default 4KiB
//
// It passes data through unchanged. Like every plugin with data hooks it
// turns off the kernel splice fast path for its listener, so keep it to
// debugging.
package hexdump

import (
	"encoding/hex"
	"sync/atomic"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/units"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "hexdump",
		Description: "debug: logs channel data as hex dumps, up to max_bytes per channel",
		New:         New,
	})
}

// Config is the plugin's TOML table.
type Config struct {
	// MaxBytes caps what is dumped per channel, both ways together.
	// Default 4KiB; must be positive.
	MaxBytes *units.Size `toml:"max_bytes"`
}

// Plugin dumps data chunks.
type Plugin struct {
	name string
	max  int64
	log  zerolog.Logger
}

var (
	_ plugins.Reader = (*Plugin)(nil)
	_ plugins.Writer = (*Plugin)(nil)
)

// New builds an instance from its config table.
func New(env plugins.Env) (plugins.Plugin, error) {
	var cfg Config
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	limit := int64(4 << 10)
	if cfg.MaxBytes != nil {
		limit = int64(*cfg.MaxBytes)
	}
	if limit <= 0 {
		return nil, plugins.Errorf("max_bytes", "must be positive")
	}
	return &Plugin{name: env.Name, max: limit, log: env.Log}, nil
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

type budgetKey struct{}

// OnRead implements plugins.Reader.
func (p *Plugin) OnRead(s *plugins.Session, b []byte) ([]byte, error) {
	p.dump(s, "up", b)
	return b, nil
}

// OnWrite implements plugins.Writer.
func (p *Plugin) OnWrite(s *plugins.Session, b []byte) ([]byte, error) {
	p.dump(s, "down", b)
	return b, nil
}

func (p *Plugin) dump(s *plugins.Session, dir string, b []byte) {
	used := s.LoadOrStore(budgetKey{}, new(atomic.Int64)).(*atomic.Int64)
	n := int64(len(b))
	after := used.Add(n)
	before := after - n
	if before >= p.max {
		return
	}
	show := b[:min(n, p.max-before)]
	p.log.Info().Str("id", s.ID).Str("dir", dir).Int("len", len(b)).
		Bool("truncated", int64(len(show)) < n).
		Msg("hexdump\n" + hex.Dump(show))
}
