// Package auth is the authentication plugin: a listener that lists it
// admits only clients that present a known user name and password, through
// HTTP Proxy-Authorization Basic or SOCKS5 username/password (RFC 1929).
//
//	[[plugin]]
//	name = "auth"
//	realm = "ferry"                 # the 407 challenge's realm; default "ferry"
//	htpasswd = "/etc/ferry/users"   # lines user:bcrypt-hash, as htpasswd -B writes
//	reload_interval = "2s"          # look for file changes this often; "0s": never
//	max_failures = 5                # failed logins per client address within
//	failure_window = "1m"           # this window lock the address out for
//	lockout = "1s"                  # this long, doubling per lockout up to
//	max_lockout = "5m"              # this; max_failures = 0 turns it off
//	max_concurrent_checks = 2       # bcrypt checks at once; default GOMAXPROCS
//	[plugin.users]                  # inline users, with or without a file
//	alice = "$2y$10$..."            # bcrypt, from htpasswd -nB alice
//	dev = "plain:secret"            # plain text: tests and development only
//	groups_file = "/etc/ferry/groups"  # lines "group: user1 user2" (Apache's AuthGroupFile)
//	[plugin.groups]                 # inline groups, with or without a file
//	admins = ["alice"]
//
// Passwords are bcrypt hashes ($2y$, $2a$, $2b$); other hash types in the
// file are errors naming the file and line. The server extracts the
// credentials, answers 407 or the SOCKS5 failure, and sets Session.User;
// this package only says yes or no, and on yes gives the user's groups
// (Session.Groups) for acl rules and routes.
//
// A success is cached (an HMAC of user, password and hash, never the
// password) so a known user pays bcrypt once rather than per connection;
// a refusal is remembered for negative_cache_ttl per client address, so
// a client retrying a wrong stored password pays it once too (cache.go).
// Every refusal that reaches a password check costs about one bcrypt
// check at the highest cost among the users, unknown users included, so
// timing does not tell which users exist. Refusals are logged at warn
// with client and user name.
//
// Failures are cheap to refuse: a client address (an IPv6 /64) with
// max_failures failed logins within failure_window is locked out, and
// its attempts are refused before the cache or any bcrypt until the
// lockout ends; lockouts double up to max_lockout. At most
// max_concurrent_checks bcrypt checks run at once (default GOMAXPROCS);
// cached logins never wait for them. The files are polled by a service
// and swapped in whole when they parse; a bad file keeps the users or
// groups before it (the backend's outage), logged once and counted. A
// reload with the same settings keeps the caches and the lockouts
// (carry.go).
//
// With backend = "http" a service the operator runs answers instead, by
// JSON over HTTPS, with the user's groups and upstream (httpbackend.go);
// with backend = "ldap" a directory does, by a bind as the user over
// TLS, with the groups from the user's entry or a group search
// (ldapbackend.go).
//
// The package does not lock accounts (only addresses), and does not
// authorize: every known user may use every target the listener allows,
// unless an acl or a [[route]] decides by user or group.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"ferry/plugins"
)

func init() {
	plugins.Register(plugins.Registration{
		Type:        "auth",
		Description: "requires a user name and password (HTTP Basic, SOCKS5); users inline, in an htpasswd file, checked by an HTTP service or an LDAP directory",
		New:         New,
	})
}

// Defaults and bounds of the settings.
const (
	defaultRealm          = "ferry"
	defaultReloadInterval = 2 * time.Second
	minReloadInterval     = 100 * time.Millisecond

	defaultMaxFailures   = 5
	defaultFailureWindow = time.Minute
	defaultLockout       = time.Second
	defaultMaxLockout    = 5 * time.Minute

	// maxCheckWait bounds how long an attempt waits for a bcrypt slot
	// before it is refused: under a flood from many addresses the queue
	// would otherwise outlive the clients that wait in it.
	maxCheckWait = 10 * time.Second

	// throttledDelay holds the answer to a refusal without a password
	// check: the refusal costs no CPU, and a client looping on it does not
	// make ferry spin through handshakes (16 clients on loopback took half
	// a core without it). Only the client's own connection waits, counted
	// against its address's handshakes.
	throttledDelay = 500 * time.Millisecond
)

// Plugin checks credentials. Safe for concurrent use.
type Plugin struct {
	name   string
	realm  string
	log    zerolog.Logger
	inline map[string]entry // never changed after New
	// inlineGroups are the config's groups (user -> groups); never
	// changed after New.
	inlineGroups groupSet

	users atomic.Pointer[table]
	cache *cache
	// denied remembers refusals (htpasswd backend); nil: none.
	denied *denials
	// conf is what the instance was built from, for CarryFrom.
	conf settings
	now  func() time.Time // tests move time

	// compare checks a password against a bcrypt hash; tests count calls.
	compare func(hash, password []byte) error
	// sleep waits d or until ctx ends; tests record it.
	sleep func(ctx context.Context, d time.Duration)

	throttle *throttle     // nil: failures are not counted
	slots    chan struct{} // a token per bcrypt check running
	counts   counters
	remote   *remote // backend = "http"; nil for htpasswd

	// mu serializes reloads and guards what they keep between runs.
	mu         sync.Mutex
	htpasswd   *watched         // nil: inline users only
	groupsFile *watched         // nil: inline groups only
	fileUsers  map[string]entry // the htpasswd file's last good users
	fileGroups groupSet         // the groups file's last good groups
	settle     time.Duration    // leave a file this recently modified for later
	lastErr    string           // the last reload error logged, to log it once

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
	switch cfg.Backend {
	case "http":
		if err := notLDAP(cfg); err != nil {
			return nil, err
		}
		return newHTTP(env, cfg)
	case "ldap":
		return newLDAP(env, cfg)
	case "", "htpasswd":
	default:
		return nil, plugins.Errorf("backend", "want \"htpasswd\", \"http\" or \"ldap\", not %q", cfg.Backend)
	}
	rc := cfg.RemoteConfig
	rc.NegativeCacheTTL = nil // the htpasswd backend has a negative cache too
	if rc.set() || cfg.URL != "" || cfg.CAFile != "" {
		return nil, plugins.Errorf("backend", "url and the other remote settings need backend = \"http\" or \"ldap\"")
	}
	if err := notLDAP(cfg); err != nil {
		return nil, err
	}
	every := defaultReloadInterval
	if cfg.ReloadInterval != nil {
		every = cfg.ReloadInterval.D()
	}
	if err := checkHtpasswdConfig(cfg, every); err != nil {
		return nil, err
	}
	inline, err := parseInline(cfg.Users)
	if err != nil {
		return nil, err
	}
	inlineGroups, err := parseInlineGroups(cfg.Groups)
	if err != nil {
		return nil, err
	}
	th, slots, err := limits(cfg)
	if err != nil {
		return nil, err
	}
	p := &Plugin{
		name:     env.Name,
		realm:    cfg.Realm,
		log:      env.Log,
		inline:   inline,
		htpasswd: watch(env.Path(cfg.Htpasswd)),
		cache:    newCache(cacheSize),
		denied:   newDenials(dur(cfg.NegativeCacheTTL, defaultDeniedTTL)),
		conf:     settings{cfg: cfg, dir: env.ConfigDir},
		now:      time.Now,
		compare:  bcrypt.CompareHashAndPassword,
		sleep:    sleepCtx,
		throttle: th,
		slots:    make(chan struct{}, slots),
		dummies:  make(map[int][]byte),

		inlineGroups: inlineGroups,
		groupsFile:   watch(env.Path(cfg.GroupsFile)),
	}
	if err := p.load(); err != nil {
		return nil, err
	}
	if err := p.startReload(env, every); err != nil {
		return nil, err
	}
	p.warnPlain()
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
	errLockedOut     = errors.New("client locked out after failed logins")
	errTooMany       = errors.New("too many logins in progress from the client")
	errBusy          = errors.New("no password check slot free")
)

// Authenticate implements plugins.Authenticator. A refusal after a
// password check is logged at warn with the client address and user
// name, never the password, and returned as a 407 / SOCKS5 failure that
// does not say which part was wrong. A refusal without a check (a
// locked-out address) looks the same to the client but is only counted:
// the log has one line per lockout, not one per attempt.
func (p *Plugin) Authenticate(ctx context.Context, s *plugins.Session, user, password string) error {
	ip := s.ClientIP()
	if p.throttle.locked(ip) {
		// Before the cache: a locked-out client must not go on guessing
		// the passwords of users who logged in lately at HMAC speed.
		p.counts.throttled.Add(1)
		p.log.Debug().Str("id", s.ID).Str("client", addrString(s.Client)).Msg("authentication refused: client locked out")
		p.sleep(ctx, throttledDelay)
		return refusal()
	}
	l, locked, err := p.verify(ctx, s, ip, user, password)
	if err == nil {
		return nil
	}
	switch err {
	case errLockedOut, errTooMany:
		p.counts.throttled.Add(1)
		p.log.Debug().Str("id", s.ID).Str("client", addrString(s.Client)).Str("reason", err.Error()).Msg("authentication refused")
		p.sleep(ctx, throttledDelay)
		return refusal()
	case errBusy:
		p.counts.busy.Add(1)
	case context.Canceled, context.DeadlineExceeded:
		return refusal() // the client left while its login waited
	default:
		if errors.Is(err, errBackend) { // counted as backend_errors
			p.logOutage(s, user, err, "auth backend failed: login refused")
			return refusal()
		}
		p.counts.failures.Add(1)
	}
	ev := p.log.Warn()
	if s.ID != "" { // a session not yet numbered has no id to give
		ev = ev.Str("id", s.ID)
	}
	ev.Str("client", addrString(s.Client)).Str("proto", s.Protocol).
		Str("user", clip(user)).Str("reason", err.Error()).Msg("authentication failed")
	if locked {
		p.counts.lockouts.Add(1)
		p.log.Warn().Str("client", addrString(s.Client)).Stringer("key", key(ip)).Int("failures", l.fails).
			Dur("lockout", l.d).Int("refused_before", l.refused).Msg("client locked out after failed logins")
	}
	return refusal()
}

// verify checks with the backend and on success gives s the groups.
func (p *Plugin) verify(ctx context.Context, s *plugins.Session, ip netip.Addr, user, password string) (lock, bool, error) {
	if p.remote != nil {
		return p.checkRemote(ctx, s, ip, user, password)
	}
	l, locked, err := p.checkFrom(ctx, ip, user, password)
	if err == nil {
		s.Groups = p.users.Load().groups[user]
	}
	return l, locked, err
}

// refusal is what every refused client is told.
func refusal() error {
	return plugins.Reject(plugins.CodeAuthRequired, "invalid user name or password")
}

// check is Authenticate without the logging and the throttle.
func (p *Plugin) check(user, password string) error {
	_, _, err := p.checkFrom(context.Background(), netip.Addr{}, user, password)
	return err
}

// checkFrom checks a password from the client at ip: the caches first,
// then, when a bcrypt check is needed, the throttle, the negative cache
// and a check slot. When the failure locks ip out, it also returns the
// lockout.
func (p *Plugin) checkFrom(ctx context.Context, ip netip.Addr, user, password string) (l lock, locked bool, err error) {
	t := p.users.Load()
	e, known := t.users[user]
	if known && e.plain != nil {
		sum := sha256.Sum256([]byte(password))
		if subtle.ConstantTimeCompare(sum[:], e.plain) == 1 {
			return lock{}, false, nil
		}
	}
	// Unknown users take the same steps as known ones: an HMAC of as
	// many bytes (the dummy is a bcrypt hash too, which no success entry
	// has) and a lookup in each cache, so no step tells which users exist.
	hash, want := t.dummy, errUnknownUser
	if known {
		want = errWrongPassword
		if e.hash != nil {
			hash = e.hash
		}
	}
	k := p.cache.sum(user, password, hash)
	if p.cache.hit(k) {
		return lock{}, false, nil
	}

	// A bcrypt check is needed: the throttle first, so that a locked-out
	// address or one with its budget in flight costs none.
	if err := refused(p.throttle.begin(ip)); err != nil {
		return lock{}, false, err
	}
	failed := true
	defer func() { l, locked = p.throttle.end(ip, failed) }()

	dk := p.cache.deniedKey(k, ip)
	if p.denied.hit(dk, p.now()) {
		// The same refusal, from the same client, as a bcrypt check
		// gave lately: it still counts as a failure.
		p.counts.deniedCached.Add(1)
		return lock{}, false, want
	}
	if !p.acquire(ctx) {
		failed = false // the client is not to blame
		return lock{}, false, errBusy
	}
	p.counts.checks.Add(1)
	start := time.Now()
	ok := p.compare(hash, []byte(password)) == nil
	took := time.Since(start)
	<-p.slots
	if ok && known && e.hash != nil {
		failed = false
		p.cache.add(k, user, e.hash)
		return lock{}, false, nil
	}
	p.denied.add(dk, p.now())
	// A user whose hash is cheaper than the dummy would be told apart
	// from an unknown one by a faster refusal: wait out the difference,
	// asleep, outside the check slot.
	if known && e.hash != nil {
		if c, _ := bcrypt.Cost(e.hash); c < t.dummyCost {
			p.sleep(ctx, took*time.Duration(1<<(t.dummyCost-c)-1))
		}
	}
	return lock{}, false, want
}

// acquire takes a check slot; false when none came free within
// maxCheckWait or ctx ended.
func (p *Plugin) acquire(ctx context.Context) bool {
	select {
	case p.slots <- struct{}{}:
		return true
	default:
	}
	tm := time.NewTimer(maxCheckWait)
	defer tm.Stop()
	select {
	case p.slots <- struct{}{}:
		return true
	case <-tm.C:
	case <-ctx.Done():
	}
	return false
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// newTable publishes users with a dummy hash at their highest cost.
func (p *Plugin) newTable(users map[string]entry) (*table, error) {
	cost := maxCost(users)
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
	return &table{users: users, dummy: d, dummyCost: cost}, nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// clip shortens a client-chosen user name for the log.
func clip(s string) string {
	const maxLen = 64
	if len(s) <= maxLen {
		return s
	}
	return s[:maxLen] + "..."
}
