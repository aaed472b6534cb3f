package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"ferry/plugins"
	"ferry/plugins/pkg/match"
	"ferry/plugins/pkg/units"
)

// Defaults and bounds of the http backend.
const (
	defaultHTTPTimeout    = 2 * time.Second
	defaultHTTPConcurrent = 16
	defaultCacheTTL       = time.Minute
	defaultNegativeTTL    = 5 * time.Second
	defaultGracePeriod    = 5 * time.Minute
	// maxAnswer bounds the service's answer: a list of groups fits.
	maxAnswer = 64 << 10
)

// HTTPConfig are the settings of backend = "http": ferry asks a service
// the operator runs, by a JSON POST per login not in the cache.
type HTTPConfig struct {
	// Backend is "htpasswd" (the default: users, htpasswd) or "http".
	Backend string `toml:"backend"`
	// URL is the service's endpoint: https://, or http:// to a loopback
	// IP address only (the password crosses it).
	URL string `toml:"url"`
	// CAFile holds the PEM certificates that sign the service's
	// certificate; default the system's roots.
	CAFile string `toml:"ca_file"`
	// Timeout bounds one call, and the wait for a call slot. Default 2s.
	Timeout *units.Duration `toml:"timeout"`
	// MaxConcurrent bounds the calls in flight. Default 16.
	MaxConcurrent *int `toml:"max_concurrent"`
	// CacheTTL is how long an allow is reused. Default 1m; "0s": never.
	CacheTTL *units.Duration `toml:"cache_ttl"`
	// NegativeCacheTTL is how long a deny is reused. Default 5s.
	NegativeCacheTTL *units.Duration `toml:"negative_cache_ttl"`
	// OnBackendError is "refuse" (the default) or "grace".
	OnBackendError string `toml:"on_backend_error"`
	// GracePeriod: with "grace", a login whose last allow is this recent
	// is admitted while the service fails. Default 5m.
	GracePeriod *units.Duration `toml:"grace_period"`
	// Upstreams are the upstream names the service may choose.
	Upstreams []string `toml:"upstreams"`
}

// remote is the state of the http backend.
type remote struct {
	url        string
	client     *http.Client
	timeout    time.Duration
	ttl, neg   time.Duration
	grace      time.Duration // 0: refuse on backend errors
	upstreams  map[string]bool
	slots      chan struct{} // a token per call in flight
	results    *results
	flights    *flights
	lastOutage atomic.Int64 // unix nanoseconds of the last outage log line
	now        func() time.Time

	umu    sync.Mutex
	byUser map[string]string // user -> upstream of the last allow
}

// errBackend marks a failure of the service (not a denial).
var errBackend = errors.New("auth service failed")

// newHTTP builds an instance with backend = "http".
func newHTTP(env plugins.Env, cfg Config) (plugins.Plugin, error) {
	r, err := newRemote(env, cfg)
	if err != nil {
		return nil, err
	}
	th, _, err := limits(cfg)
	if err != nil {
		return nil, err
	}
	p := &Plugin{name: env.Name, realm: cfg.Realm, log: env.Log, cache: newCache(cacheSize),
		sleep: sleepCtx, throttle: th, remote: r}
	if env.Services != nil {
		if _, err := env.Services.Provide("auth-http:"+env.Name, func() (plugins.Service, error) {
			return stopRemote{r: r}, nil
		}); err != nil {
			return nil, err
		}
	}
	return httpPlugin{p}, nil
}

// newRemote checks the http backend's settings.
func newRemote(env plugins.Env, cfg Config) (*remote, error) {
	h := cfg.HTTPConfig
	switch {
	case len(cfg.Users) > 0 || cfg.Htpasswd != "":
		return nil, plugins.Errorf("backend", "users and htpasswd do not apply to backend \"http\"")
	case cfg.GroupsFile != "" || len(cfg.Groups) > 0:
		return nil, plugins.Errorf("backend", "groups come from the service with backend \"http\"")
	case cfg.MaxConcurrentChecks != nil:
		return nil, plugins.Errorf("max_concurrent_checks", "use max_concurrent with backend \"http\"")
	}
	if err := checkURL(h.URL); err != nil {
		return nil, plugins.KeyErr("url", err)
	}
	r := &remote{url: h.URL, timeout: dur(h.Timeout, defaultHTTPTimeout), ttl: dur(h.CacheTTL, defaultCacheTTL),
		neg: dur(h.NegativeCacheTTL, defaultNegativeTTL), upstreams: map[string]bool{}, byUser: map[string]string{},
		results: newResults(cacheSize * 4), flights: &flights{m: map[[32]byte]*flight{}}, now: time.Now}
	n := defaultHTTPConcurrent
	if h.MaxConcurrent != nil {
		n = *h.MaxConcurrent
	}
	switch {
	case r.timeout <= 0:
		return nil, plugins.Errorf("timeout", "must be more than 0s")
	case n < 1 || n > 1024:
		return nil, plugins.Errorf("max_concurrent", "must be 1 to 1024")
	}
	r.slots = make(chan struct{}, n)
	if err := r.onError(h); err != nil {
		return nil, err
	}
	for i, u := range h.Upstreams {
		if u == "" {
			return nil, plugins.Errorf(fmt.Sprintf("upstreams[%d]", i), "empty upstream name")
		}
		r.upstreams[u] = true
	}
	tc, err := tlsConfig(env.Path(h.CAFile))
	if err != nil {
		return nil, plugins.KeyErr("ca_file", err)
	}
	r.client = &http.Client{
		// No Proxy: the service is asked directly, never through the
		// environment's proxy; no redirects: a 3xx is a backend error.
		Transport:     &http.Transport{TLSClientConfig: tc, MaxIdleConnsPerHost: n, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return r, nil
}

// onError reads on_backend_error and grace_period.
func (r *remote) onError(h HTTPConfig) error {
	switch h.OnBackendError {
	case "", "refuse":
		if h.GracePeriod != nil {
			return plugins.Errorf("grace_period", "only applies with on_backend_error = \"grace\"")
		}
	case "grace":
		r.grace = dur(h.GracePeriod, defaultGracePeriod)
		if r.grace <= 0 {
			return plugins.Errorf("grace_period", "must be more than 0s")
		}
	default:
		return plugins.Errorf("on_backend_error", "want \"refuse\" or \"grace\", not %q", h.OnBackendError)
	}
	return nil
}

func dur(d *units.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.D()
}

// checkURL allows https://, and http:// to a loopback IP address only:
// the password goes in the body.
func checkURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return errors.New("required with backend \"http\"")
	case err != nil:
		return err
	case u.User != nil:
		return errors.New("must not hold credentials")
	case u.Host == "":
		return errors.New("has no host")
	case u.Scheme == "https":
		return nil
	case u.Scheme != "http":
		return fmt.Errorf("want https://, not %s://", u.Scheme)
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err != nil || !ip.IsLoopback() {
		return errors.New("http:// only to a loopback IP address (127.0.0.1, [::1]); use https://")
	}
	return nil
}

// tlsConfig trusts the certificates of caFile, or the system's roots.
func tlsConfig(caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// request is the JSON ferry posts.
type request struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Client   string `json:"client"`
	Listener string `json:"listener"`
	Target   string `json:"target,omitempty"`
}

// answer is the JSON the service returns; unknown fields are ignored.
type answer struct {
	Allow    *bool    `json:"allow"`
	Groups   []string `json:"groups"`
	Upstream string   `json:"upstream"`
}

// call asks the service, within the timeout and a call slot. Every
// failure wraps errBackend.
func (r *remote) call(ctx context.Context, req request) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return result{}, fmt.Errorf("%w: no call slot free within %v", errBackend, r.timeout)
	}
	defer func() { <-r.slots }()
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return result{}, fmt.Errorf("%w: %v", errBackend, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(hr)
	if err != nil {
		return result{}, fmt.Errorf("%w: %v", errBackend, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return result{}, fmt.Errorf("%w: status %d", errBackend, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return result{}, fmt.Errorf("%w: read answer: %v", errBackend, err)
	}
	if len(data) > maxAnswer {
		return result{}, fmt.Errorf("%w: answer over %d bytes", errBackend, maxAnswer)
	}
	res, err := r.parse(data)
	if err != nil {
		return result{}, fmt.Errorf("%w: %v", errBackend, err)
	}
	return res, nil
}

// parse checks an answer: allow present, groups valid and at most
// maxUserGroups, upstream one of the configured ones.
func (r *remote) parse(data []byte) (result, error) {
	var a answer
	if err := json.Unmarshal(data, &a); err != nil {
		return result{}, fmt.Errorf("malformed answer: %v", err)
	}
	if a.Allow == nil {
		return result{}, errors.New("answer without \"allow\"")
	}
	if len(a.Groups) > maxUserGroups {
		return result{}, fmt.Errorf("answer with more than %d groups", maxUserGroups)
	}
	for _, g := range a.Groups {
		if err := match.CheckGroup(g); err != nil {
			return result{}, fmt.Errorf("answer group %q: %v", clip(g), err)
		}
	}
	if a.Upstream != "" && !r.upstreams[a.Upstream] {
		return result{}, fmt.Errorf("answer upstream %q is not in upstreams", clip(a.Upstream))
	}
	res := result{allow: *a.Allow, at: r.now()}
	if res.allow {
		res.groups = slices.Compact(slices.Sorted(slices.Values(a.Groups)))
		res.upstream = a.Upstream
	}
	return res, nil
}

// set reports whether any http setting is given.
func (h HTTPConfig) set() bool {
	return h.URL != "" || h.CAFile != "" || h.Timeout != nil || h.MaxConcurrent != nil || h.CacheTTL != nil ||
		h.NegativeCacheTTL != nil || h.OnBackendError != "" || h.GracePeriod != nil || len(h.Upstreams) > 0
}
