package server

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	"ferry/state"
)

// stores keeps the [state] stores a server opened, by location (the
// embedded store's directory or the Redis URL), so that a reload that
// keeps the location keeps the store: its counters, its pending counts
// and, for the embedded file, its lock, which a second open of the same
// file in the process would wait for. Generations hold references; a
// store closes (flushing what is pending) when the last one that used it
// is closed. A plugins.Service of each generation (storeService) opens
// the backend when the generation starts, so that building one (ferry
// check, a reload that fails) opens nothing; the store itself outlives
// the generation's services.
type stores struct {
	log  zerolog.Logger
	mu   sync.Mutex
	open map[string]*heldStore
}

type heldStore struct {
	st     *state.Store
	name   string // the location for logs and metrics, without a password
	refs   int
	opened bool // the backend is open (start)
}

// storeCloseTimeout bounds the final flush of a store.
const storeCloseTimeout = 10 * time.Second

// location names where cfg's store lives; two configurations with the
// same location share one open store. The directory is made absolute, so
// that the same directory reached by another relative path is one store
// (opening its file twice would wait on our own lock).
func location(cfg *config.Config) string {
	if cfg.State.URL != "" {
		return "redis " + cfg.State.URL
	}
	dir := cfg.StateDir()
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	return "dir " + dir
}

// acquire returns the store cfg configures, making it unless there is
// one already (then taking on cfg's on_error), and the function that
// gives the reference back. The store's backend opens at start (see
// start), not here.
func (k *stores) acquire(cfg *config.Config) (*heldStore, func(), error) {
	onErr, err := state.ParseOnError(cfg.State.OnError)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.Where("state.on_error"), err)
	}
	loc := location(cfg)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.open == nil {
		k.open = make(map[string]*heldStore)
	}
	h, ok := k.open[loc]
	if !ok {
		name := redactedLocation(cfg)
		st := state.New(state.Config{OnError: onErr, FlushEvery: cfg.State.FlushInterval.D(),
			LeaseTime: cfg.State.Lease.D(), Shared: cfg.State.URL != "",
			Log: k.log.With().Str("state", name).Logger()})
		h = &heldStore{st: st, name: name}
		k.open[loc] = h
	}
	h.st.SetOnError(onErr)
	h.refs++
	var once sync.Once
	return h, func() { once.Do(func() { k.release(loc, h) }) }, nil
}

// start opens h's backend, the first time: the embedded file (creating
// its directory) or the Redis client.
func (k *stores) start(h *heldStore, cfg *config.Config) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if h.opened {
		return nil
	}
	b, err := openBackend(cfg)
	if err != nil {
		return err
	}
	h.st.Start(b)
	h.opened = true
	return nil
}

// storeService opens a generation's store when the server starts the
// generation (plugins.Service). Stop does nothing: the store outlives the
// generation when the next one keeps it, and the generation gives its
// reference back when it is closed.
type storeService struct {
	k   *stores
	h   *heldStore
	cfg *config.Config
}

func (s storeService) Start(context.Context) error { return s.k.start(s.h, s.cfg) }
func (s storeService) Stop(context.Context) error  { return nil }

// release drops a reference and closes the store with the last one.
func (k *stores) release(loc string, h *heldStore) {
	k.mu.Lock()
	h.refs--
	last := h.refs == 0
	if last {
		delete(k.open, loc)
	}
	k.mu.Unlock()
	if !last {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeCloseTimeout)
	defer cancel()
	if err := h.st.Close(ctx); err != nil {
		k.log.Warn().Err(err).Msg("closing the state store")
	}
}

// openBackend opens the backend cfg names; its errors name the key.
func openBackend(cfg *config.Config) (state.Backend, error) {
	if cfg.State.URL != "" {
		b, err := state.OpenRedis(cfg.State.URL)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Where("state.url"), err)
		}
		return b, nil
	}
	b, err := state.OpenBolt(cfg.StateDir())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Where("state.dir"), err)
	}
	return b, nil
}

// redactedLocation is the store's location for logs, without a Redis
// password.
func redactedLocation(cfg *config.Config) string {
	if cfg.State.URL == "" {
		return cfg.StateDir()
	}
	u, err := url.Parse(cfg.State.URL)
	if err != nil {
		return "redis"
	}
	return u.Redacted()
}

// stateOpener returns what plugins.Env.State calls for one generation:
// it acquires the store the first time, has g's services open it at start
// and records the release in g.
func (k *stores) stateOpener(cfg *config.Config, g *generation) func() (*state.Store, error) {
	var mu sync.Mutex
	var st *state.Store
	return func() (*state.Store, error) {
		mu.Lock()
		defer mu.Unlock()
		if st != nil {
			return st, nil
		}
		h, release, err := k.acquire(cfg)
		if err != nil {
			return nil, err
		}
		g.releases = append(g.releases, release)
		_, err = g.services.Provide("state", func() (plugins.Service, error) {
			return storeService{k: k, h: h, cfg: cfg}, nil
		})
		if err != nil {
			return nil, err
		}
		st = h.st
		return st, nil
	}
}

// checkStateOpener is stateOpener for `ferry check`: a store in memory,
// which takes no lock and opens no connection, closed by the caller.
func checkStateOpener() (func() (*state.Store, error), func()) {
	var mu sync.Mutex
	var st *state.Store
	open := func() (*state.Store, error) {
		mu.Lock()
		defer mu.Unlock()
		if st == nil {
			st = state.New(state.Config{Backend: state.NewMemory(), Log: zerolog.Nop()})
		}
		return st, nil
	}
	closeFn := func() {
		mu.Lock()
		defer mu.Unlock()
		if st != nil {
			_ = st.Close(context.Background())
		}
	}
	return open, closeFn
}
