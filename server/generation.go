package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	"ferry/relay/upstream"
	"ferry/state"
)

// generation is what one configuration built: its plugin instances,
// services and listeners. Connections keep the generation they were
// accepted under until they end; a reload retires the old generation,
// which is closed when its last connection is gone.
type generation struct {
	cfg       *config.Config
	services  *plugins.Services
	instances []plugins.Plugin
	// byName are the instances by their [[plugin]] name.
	byName    map[string]plugins.Plugin
	listeners []*frontend
	ups       *upstream.Table
	conns     sync.WaitGroup
	closeOnce sync.Once
	// maxConns caps client connections over all listeners; 0: none.
	maxConns int64
	// releases give back the [state] store the plugins opened, if they
	// did (see stores); run after the plugins are closed.
	releases []func()
}

// close stops the generation's services and closes its plugins.
func (g *generation) close() error {
	var errs []error
	g.closeOnce.Do(func() {
		if g.ups != nil {
			g.ups.Stop()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errs = append(errs, g.services.Stop(ctx))
		for i := len(g.instances) - 1; i >= 0; i-- {
			if c, ok := g.instances[i].(interface{ Close() error }); ok {
				if err := c.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close plugin %s: %w", g.instances[i].Name(), err))
				}
			}
		}
		for _, release := range g.releases {
			release()
		}
	})
	return errors.Join(errs...)
}

// build makes a generation from cfg: plugin instances (not started) and
// listeners (without sockets).
func (s *Server) build(cfg *config.Config) (*generation, error) {
	ups, err := upstream.Build(cfg, s.log)
	if err != nil {
		return nil, err
	}
	g := &generation{cfg: cfg, services: plugins.NewServices(), ups: ups, maxConns: maxConnections(cfg)}
	names, instances, err := buildPlugins(cfg, s.log, g.services, s.stores.stateOpener(cfg, g))
	g.instances = instances
	if err != nil {
		g.close()
		return nil, err
	}
	byName := make(map[string]plugins.Plugin)
	for i, p := range instances {
		byName[names[i]] = p
	}
	g.byName = byName
	for i := range cfg.Listeners {
		lc := cfg.Listeners[i]
		var ps []plugins.Plugin
		for _, name := range lc.Plugins {
			p, ok := byName[name]
			if !ok {
				g.close()
				return nil, fmt.Errorf("listener %s: no plugin instance %q", lc.Name, name)
			}
			ps = append(ps, p)
		}
		g.listeners = append(g.listeners, newFrontend(s, g, lc, cfg.Effective(&lc), plugins.NewChain(ps)))
	}
	return g, nil
}

// carryState lets each instance of g that implements plugins.Carrier
// adopt the state of old's instance of the same name, type and settings
// (see plugins.Carrier; a plugins.SettingsCarrier whatever its settings),
// and each upstream of g the health of old's upstream of the same name
// and settings (upstream.Table.CarryFrom). It runs on a reload, before g
// serves anyone or starts its health checks.
func carryState(old, g *generation) {
	if old == nil {
		return
	}
	oldDir, dir := configDir(old.cfg.File), configDir(g.cfg.File)
	if oldDir == dir { // ca_file paths may be relative to it
		g.ups.CarryFrom(old.ups)
	}
	for i := range g.cfg.Plugins {
		pc := &g.cfg.Plugins[i]
		c, ok := g.byName[pc.Name].(plugins.Carrier)
		if !ok {
			continue
		}
		_, anySettings := c.(plugins.SettingsCarrier)
		prev := old.pluginConfig(pc.Name)
		if prev == nil || prev.Type != pc.Type || oldDir != dir || !anySettings && !sameSettings(prev, pc) {
			continue
		}
		if p, ok := old.byName[pc.Name]; ok {
			c.CarryFrom(p)
		}
	}
}

// pluginConfig returns the [[plugin]] table of g named name, or nil.
func (g *generation) pluginConfig(name string) *config.PluginConfig {
	for i := range g.cfg.Plugins {
		if g.cfg.Plugins[i].Name == name {
			return &g.cfg.Plugins[i]
		}
	}
	return nil
}

// sameSettings reports whether two [[plugin]] tables decode to the same
// values; a table that does not decode is never the same.
func sameSettings(a, b *config.PluginConfig) bool {
	var va, vb map[string]any
	if a.Decode(&va) != nil || b.Decode(&vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// buildPlugins creates every [[plugin]] instance of cfg. It goes on past a
// failing one so that all problems are reported at once; on error the
// instances built are returned too, in config order, for the caller to
// close.
func buildPlugins(cfg *config.Config, log zerolog.Logger, svcs *plugins.Services, st func() (*state.Store, error)) (names []string, out []plugins.Plugin, err error) {
	var errs []error
	upstreamNames := make([]string, len(cfg.Upstreams))
	for i, u := range cfg.Upstreams {
		upstreamNames[i] = u.Name
	}
	for i := range cfg.Plugins {
		pc := &cfg.Plugins[i]
		reg, ok := plugins.Lookup(pc.Type)
		if !ok {
			errs = append(errs, unknownType(pc))
			continue
		}
		env := plugins.NewEnv(pc.Name, log.With().Str("plugin", pc.Name).Logger(), svcs, pc.Decode)
		env.ConfigDir = configDir(cfg.File)
		env.State = st
		env.StateShared = cfg.State.URL != ""
		env.Upstreams = upstreamNames
		p, err := reg.New(env)
		if err != nil {
			errs = append(errs, pc.WrapError(err))
			continue
		}
		names = append(names, pc.Name)
		out = append(out, p)
	}
	return names, out, config.Join(errs...)
}

// unknownType reports a [[plugin]] whose type is not compiled in, at the
// key that names the type; nil when config has already reported that key.
// config does not look at the registry: this is where types are checked,
// for `ferry check` and `ferry run` alike.
func unknownType(pc *config.PluginConfig) error {
	key := pc.TypeKey()
	if key == "" {
		return nil
	}
	return pc.WrapError(plugins.Errorf(key, "unknown plugin type %q (%s)", pc.Type, knownTypes()))
}

// knownTypes lists the compiled-in plugin types for messages.
func knownTypes() string {
	regs := plugins.Registered()
	if len(regs) == 0 {
		return "no plugin types are compiled in"
	}
	names := make([]string, len(regs))
	for i, r := range regs {
		names[i] = r.Type
	}
	return "known types: " + strings.Join(names, ", ")
}

// CheckPlugins builds and closes every plugin instance of cfg, returning
// all their problems, unknown types included. For `ferry check` on a file
// whose other problems stop it from being built whole
// (config.Error.Partial).
func CheckPlugins(cfg *config.Config) error {
	st, closeState := checkStateOpener()
	_, built, err := buildPlugins(cfg, zerolog.Nop(), plugins.NewServices(), st)
	for _, p := range built {
		if cl, ok := p.(interface{ Close() error }); ok {
			cl.Close()
		}
	}
	closeState()
	return err
}

// configDir is the directory relative plugin paths start from: the config
// file's, or none for the embedded default.
func configDir(file string) string {
	if file == "" || strings.HasPrefix(file, "<") {
		return ""
	}
	return filepath.Dir(file)
}
