package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ferry/state"
)

// State configures the store of the counters that quotas keep: usage per
// user, group or client address; with URL (Redis) also connlimit's
// leases and ratelimit's shared buckets, so that a fleet shares them.
// ferry opens it only when a plugin uses it. A reload that keeps dir (or
// url) keeps the open store.
type State struct {
	// Dir is the directory of the embedded store's file (ferry.db),
	// relative to the configuration file's directory. Default "state"
	// there; /var/lib/ferry for the built-in configuration. Ignored with
	// URL.
	Dir string `toml:"dir"`
	// URL selects a Redis, shared by every ferry pointed at it:
	// redis://[user:password@]host:port[/db], rediss:// for TLS, or
	// redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]
	// for the master Redis Sentinels name. Default empty: the embedded
	// store.
	URL string `toml:"url"`
	// OnError is what quotas do while the store is unreachable:
	// fail_open (the default) lets traffic through, counted in memory
	// until the store is back; fail_closed refuses what it cannot check.
	OnError string `toml:"on_error"`
	// FlushInterval is how often counts gathered in memory go to the
	// store, and how often a shared store's counts are read again: what
	// one instance may overshoot by. Default 1s; 100ms to 1m.
	FlushInterval Duration `toml:"flush_interval"`
	// Lease is how long a connlimit slot held through a shared store
	// (Redis) lives unless its ferry refreshes it, which it does every
	// third of it: how long the slots of a ferry that died stay taken.
	// Default 15s; 3s to 10m.
	Lease Duration `toml:"lease"`
}

// Defaults and bounds of [state].
const (
	DefaultStateDir      = "state"
	DefaultSystemState   = "/var/lib/ferry"
	DefaultFlushInterval = time.Second
	MinFlushInterval     = 100 * time.Millisecond
	MaxFlushInterval     = time.Minute
	DefaultLease         = 15 * time.Second
	MinLease             = 3 * time.Second
	MaxLease             = 10 * time.Minute
)

// StateDir is the embedded store's directory, resolved: absolute, or
// relative to the working directory for a relative configuration path.
func (c *Config) StateDir() string {
	dir := c.State.Dir
	if dir == "" {
		dir = DefaultStateDir
	}
	if filepath.IsAbs(dir) {
		return dir
	}
	if c.File == "" || strings.HasPrefix(c.File, "<") {
		if c.State.Dir == "" {
			return DefaultSystemState
		}
		return dir
	}
	return filepath.Join(filepath.Dir(c.File), dir)
}

// stateDefaults fills in what [state] leaves out.
func (l *loader) stateDefaults(st *State) {
	if st.OnError == "" {
		st.OnError = "fail_open"
	}
	if !l.x.has("state.flush_interval") {
		st.FlushInterval = Duration(DefaultFlushInterval)
	}
	if !l.x.has("state.lease") {
		st.Lease = Duration(DefaultLease)
	}
}

// state checks [state], its defaults applied.
func (l *loader) state(c *Config) {
	st := c.State
	l.oneOf("state.on_error", st.OnError, "fail_open", "fail_closed")
	if d := st.FlushInterval.D(); d < MinFlushInterval || d > MaxFlushInterval {
		l.errorf("state.flush_interval", "must be between %v and %v, got %v", MinFlushInterval, MaxFlushInterval, d)
	}
	if d := st.Lease.D(); d < MinLease || d > MaxLease {
		l.errorf("state.lease", "must be between %v and %v, got %v", MinLease, MaxLease, d)
	}
	if st.URL != "" {
		if st.Dir != "" {
			l.errorf("state.dir", "has no effect with state.url: give one of them")
		}
		if err := checkRedisURL(st.URL); err != nil {
			l.errorf("state.url", "%v", err)
		}
		return
	}
	if st.Dir != "" {
		if err := checkWritableDir(c.StateDir()); err != nil {
			l.errorf("state.dir", "%v", err)
		}
	}
}

// checkRedisURL accepts redis:// and rediss:// URLs with a host and an
// optional database number, and redis+sentinel:// URLs with Sentinel
// addresses and the master's name.
func checkRedisURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", errors.Unwrap(err))
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("takes no query or fragment")
	}
	switch u.Scheme {
	case "redis", "rediss":
		if db := strings.Trim(u.Path, "/"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				return fmt.Errorf("database %q: want a number, like /0", db)
			}
		}
		if u.Host == "" {
			return errors.New(`missing host: like "redis://127.0.0.1:6379/0"`)
		}
		hp := u.Host
		if u.Port() == "" {
			hp = net.JoinHostPort(u.Hostname(), "6379")
		}
		return checkHostPort(hp, false, 1)
	case "redis+sentinel":
		if _, _, err := state.SentinelPath(u.Path); err != nil {
			return err
		}
		for _, h := range strings.Split(u.Host, ",") {
			if err := checkHostPort(h, false, 1); err != nil {
				return fmt.Errorf("sentinel: %w", err)
			}
		}
		return nil
	}
	return fmt.Errorf("scheme %q: want redis://, rediss:// or redis+sentinel://", u.Scheme)
}

// checkWritableDir says why ferry could not create its store file in
// dir: dir, or the nearest existing directory above it (which ferry would
// create dir in), must be a writable directory.
func checkWritableDir(dir string) error {
	p := filepath.Clean(dir)
	for i := 0; i < 256; i++ {
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("%s is not a directory", p)
		case err == nil:
			if !writable(p) {
				return fmt.Errorf("directory %s is not writable", p)
			}
			return nil
		case !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return fmt.Errorf("stat %s: %w", p, err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	return fmt.Errorf("no existing directory above %s", dir)
}
