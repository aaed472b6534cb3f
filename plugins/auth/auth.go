// Package auth is the authentication plugin: a listener that lists it
// admits only clients that present a known user name and password, through
// HTTP Proxy-Authorization Basic or SOCKS5 username/password (RFC 1929).
//
//	[[plugin]]
//	name = "auth"
//	realm = "ferry"                 # the 407 challenge's realm; default "ferry"
//	htpasswd = "/etc/ferry/users"   # lines user:bcrypt-hash, as htpasswd -B writes
//	reload_interval = "2s"          # look for file changes this often; "0s": never
//	[plugin.users]                  # inline users, with or without a file
//	alice = "$2y$10$..."            # bcrypt, from htpasswd -nB alice
//	dev = "plain:secret"            # plain text: tests and development only
//
// Passwords are bcrypt hashes ($2y$, $2a$, $2b$); other hash types in the
// file are errors naming the file and line. The server extracts the
// credentials, answers 407 or the SOCKS5 failure, and sets Session.User;
// this package only says yes or no.
//
// A success is cached (an HMAC of user, password and hash, never the
// password) so a known user pays bcrypt once rather than per connection.
// Every refusal costs about one bcrypt check, unknown users included, so
// timing does not tell which users exist. The file is polled by a service
// and swapped in whole when it parses; a bad file keeps the users
// before it. Refusals are logged at warn with client and user name.
//
// The package does not throttle failed attempts, lock accounts, or
// authorize: every known user may use every target the listener allows.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"ferry/config"
	"ferry/plugins"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "auth",
		Description: "requires a user name and password (HTTP Basic, SOCKS5); users inline or in an htpasswd file",
		New:         New,
	})
}

// Defaults and bounds of the settings.
const (
	defaultRealm          = "ferry"
	defaultReloadInterval = 2 * time.Second
	minReloadInterval     = 100 * time.Millisecond
)

// Config is the plugin's TOML table. Users and Htpasswd may be used
// together; at least one must be set.
type Config struct {
	// Realm names the protection space in HTTP 407 challenges
	// (Proxy-Authenticate: Basic realm="..."). Default "ferry"; printable
	// ASCII.
	Realm string `toml:"realm"`
	// Users maps user names to a bcrypt hash, or to "plain:" and the
	// password in plain text (for tests and development: anyone who can
	// read the config has it).
	Users map[string]string `toml:"users"`
	// Htpasswd is a file of "user:hash" lines with bcrypt hashes (htpasswd
	// -B). It must exist and parse when ferry starts; later changes are
	// picked up without a restart. A user may not be in both Users and the
	// file. Relative paths are from the config file's directory.
	Htpasswd string `toml:"htpasswd"`
	// ReloadInterval is how often the file's modification time and size
	// are checked. Default 2s; at least 100ms; "0s" never re-reads it. Only
	// with Htpasswd.
	ReloadInterval *config.Duration `toml:"reload_interval"`
}

// Plugin checks credentials. Safe for concurrent use.
type Plugin struct {
	name   string
	realm  string
	log    zerolog.Logger
	path   string           // htpasswd file; empty: inline users only
	inline map[string]entry // never changed after New

	users atomic.Pointer[table]
	cache *cache

	// compare checks a password against a bcrypt hash; tests count calls.
	compare func(hash, password []byte) error

	// mu serializes reloads and guards what they keep between runs.
	mu      sync.Mutex
	seen    fileState     // the file as last read, good or bad
	settle  time.Duration // leave a file this recently modified for later
	lastErr string        // the last reload error logged, to log it once

	dmu     sync.Mutex
	dummies map[int][]byte // dummy hash per bcrypt cost, made once each
}

var (
	_ plugins.Authenticator = (*Plugin)(nil)
	_ plugins.Realmer       = (*Plugin)(nil)
)

// New builds an instance from its config table. It reads the htpasswd
// file, so `ferry check` reports a missing or bad one.
func New(env plugins.Env) (plugins.Plugin, error) {
	cfg := Config{Realm: defaultRealm}
	if err := env.Decode(&cfg); err != nil {
		return nil, err
	}
	every := defaultReloadInterval
	if cfg.ReloadInterval != nil {
		every = cfg.ReloadInterval.D()
	}
	switch {
	case cfg.Realm == "":
		return nil, errors.New("realm: must not be empty")
	case strings.ContainsFunc(cfg.Realm, func(r rune) bool { return r < 0x20 || r > 0x7e }):
		return nil, errors.New("realm: use printable ASCII only")
	case len(cfg.Users) == 0 && cfg.Htpasswd == "":
		return nil, errors.New("users: none given; set users, htpasswd, or both")
	case cfg.ReloadInterval != nil && cfg.Htpasswd == "":
		return nil, errors.New("reload_interval: only applies with htpasswd")
	case every != 0 && every < minReloadInterval:
		return nil, fmt.Errorf("reload_interval: must be at least %v, or \"0s\" to never reload", minReloadInterval)
	}
	inline, err := parseInline(cfg.Users)
	if err != nil {
		return nil, err
	}
	p := &Plugin{
		name:    env.Name,
		realm:   cfg.Realm,
		log:     env.Log,
		path:    env.Path(cfg.Htpasswd),
		inline:  inline,
		cache:   newCache(cacheSize),
		compare: bcrypt.CompareHashAndPassword,
		dummies: make(map[int][]byte),
	}
	if p.path == "" {
		t, err := p.newTable(inline)
		if err != nil {
			return nil, err
		}
		p.users.Store(t)
	} else {
		// At start the file is read as it is: there are no users to keep.
		if _, err := p.reload(); err != nil {
			return nil, fmt.Errorf("htpasswd: %w", err)
		}
		p.settle = settleDelay
		if every > 0 && env.Services != nil {
			// Instance names are unique, so each instance has its own.
			_, err := env.Services.Provide("auth-reload:"+env.Name, func() (plugins.Service, error) {
				return &poller{p: p, every: every}, nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	var plain []string
	for name, e := range inline {
		if e.plain != nil {
			plain = append(plain, name)
		}
	}
	if len(plain) > 0 {
		p.log.Warn().Strs("users", plain).Msg("plain text passwords in the config: for tests and development only")
	}
	return p, nil
}

// Name implements plugins.Plugin.
func (p *Plugin) Name() string { return p.name }

// Realm implements plugins.Realmer.
func (p *Plugin) Realm() string { return p.realm }

// The reasons a check fails, for the log; the client is told neither.
var (
	errUnknownUser   = errors.New("unknown user")
	errWrongPassword = errors.New("wrong password")
)

// Authenticate implements plugins.Authenticator. A refusal is logged at
// warn with the client address and user name, never the password, and
// returned as a 407 / SOCKS5 failure that does not say which part was
// wrong.
func (p *Plugin) Authenticate(_ context.Context, s *plugins.Session, user, password string) error {
	err := p.check(user, password)
	if err == nil {
		return nil
	}
	ev := p.log.Warn()
	if s.ID != "" { // a session not yet numbered has no id to give
		ev = ev.Str("id", s.ID)
	}
	ev.Str("client", addrString(s.Client)).Str("proto", s.Protocol).
		Str("user", clip(user)).Str("reason", err.Error()).Msg("authentication failed")
	return plugins.Reject(plugins.CodeAuthRequired, "invalid user name or password")
}

// check is Authenticate without the logging.
func (p *Plugin) check(user, password string) error {
	t := p.users.Load()
	e, ok := t.users[user]
	if !ok {
		_ = p.compare(t.dummy, []byte(password))
		return errUnknownUser
	}
	if e.plain != nil {
		sum := sha256.Sum256([]byte(password))
		if subtle.ConstantTimeCompare(sum[:], e.plain) == 1 {
			return nil
		}
		_ = p.compare(t.dummy, []byte(password))
		return errWrongPassword
	}
	k := p.cache.sum(user, password, e.hash)
	if p.cache.hit(k) {
		return nil
	}
	if p.compare(e.hash, []byte(password)) != nil {
		return errWrongPassword
	}
	p.cache.add(k, user, e.hash)
	return nil
}

// newTable publishes users with a dummy hash at their usual cost.
func (p *Plugin) newTable(users map[string]entry) (*table, error) {
	cost := usualCost(users)
	p.dmu.Lock()
	defer p.dmu.Unlock()
	d, ok := p.dummies[cost]
	if !ok {
		var err error
		if d, err = dummyHash(cost); err != nil {
			return nil, fmt.Errorf("make dummy hash: %w", err)
		}
		p.dummies[cost] = d
	}
	return &table{users: users, dummy: d}, nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// clip shortens a client-chosen user name for the log.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
