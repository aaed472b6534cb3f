package plugins

import (
	"fmt"
	"path/filepath"
	"sort"
	"sync"

	"github.com/rs/zerolog"

	"ferry/state"
)

// Registration describes a compiled-in plugin type.
type Registration struct {
	// Type is the name [[plugin]] tables select with `type` (or `name`).
	Type string
	// Description is one line for `ferry plugins`.
	Description string
	// New builds an instance from its config table. It must decode with
	// env.Decode (strict: unknown keys are errors) and validate before
	// returning. An error about one key is a *KeyError (see Errorf), so
	// that it is shown at that key's position; any other error is shown
	// at the table's. Join several with errors.Join to report them all.
	New func(env Env) (Plugin, error)
}

// Env is what a factory gets to build one instance.
type Env struct {
	// Name is the instance name from the config.
	Name string
	// Log is a logger tagged with the plugin name.
	Log zerolog.Logger
	// Services holds the shared components of this server; a factory may
	// Provide one and keep it.
	Services *Services
	// ConfigDir is the directory of the configuration file; empty for the
	// embedded default. Relative paths in plugin settings are relative to
	// it (see Path), as an operator reading the file expects.
	ConfigDir string
	// Upstreams are the names of the config's [[upstream]] tables, for a
	// plugin that checks at load the names it may set as s.Upstream
	// ("direct" is always one).
	Upstreams []string
	// State returns the store of usage counters that [state] configures,
	// opening it the first time a plugin asks (see package state); nil
	// when there is none to give, as in some tests. Call it from the
	// factory: a failure is a configuration error.
	State func() (*state.Store, error)
	// StateShared says [state] names a store shared by a fleet (Redis),
	// known without opening it: connlimit and ratelimit then count
	// through State, and otherwise keep to the process.
	StateShared bool
	decode      func(v any) error
}

// Path resolves a path from the plugin's settings: absolute paths and
// empty ones stay as they are, relative ones are taken from ConfigDir.
func (e Env) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || e.ConfigDir == "" {
		return p
	}
	return filepath.Join(e.ConfigDir, p)
}

// NewEnv is used by the server (and tests) to hand a factory its config.
// decode fills a struct from the plugin's table, rejecting unknown keys.
func NewEnv(name string, log zerolog.Logger, svcs *Services, decode func(v any) error) Env {
	return Env{Name: name, Log: log, Services: svcs, decode: decode}
}

// Decode fills v (a pointer to a struct with toml tags) from the plugin's
// config table. Unknown keys are errors that name the file position.
func (e Env) Decode(v any) error {
	if e.decode == nil {
		return nil
	}
	return e.decode(v)
}

var (
	regMu    sync.RWMutex
	registry = map[string]Registration{}
)

// Register adds a plugin type. Call it from init(); it panics on a
// duplicate or empty type, a programming error found at start-up.
func Register(r Registration) {
	regMu.Lock()
	defer regMu.Unlock()
	if r.Type == "" || r.New == nil {
		panic("plugins: Register needs a Type and New")
	}
	if _, dup := registry[r.Type]; dup {
		panic(fmt.Sprintf("plugins: type %q registered twice", r.Type))
	}
	registry[r.Type] = r
}

// Lookup returns the registration of a type.
func Lookup(typ string) (Registration, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	r, ok := registry[typ]
	return r, ok
}

// Registered lists all types, sorted by name.
func Registered() []Registration {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]Registration, 0, len(registry))
	for _, r := range registry {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}
