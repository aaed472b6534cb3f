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
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"time"

	"ferry/plugins"
)

// maxAnswer bounds the service's answer: a list of groups fits.
const maxAnswer = 64 << 10

// HTTPConfig are the settings of backend = "http": ferry asks a service
// the operator runs, by a JSON POST per login not in the cache.
type HTTPConfig struct {
	// URL is the service's endpoint: https://, or http:// to a loopback
	// IP address only (the password crosses it).
	URL string `toml:"url"`
	// CAFile holds the PEM certificates that sign the service's
	// certificate; default the system's roots.
	CAFile string `toml:"ca_file"`
}

// httpChecker asks the service by a JSON POST.
type httpChecker struct {
	url    string
	client *http.Client
}

// newHTTP builds an instance with backend = "http".
func newHTTP(env plugins.Env, cfg Config) (plugins.Plugin, error) {
	if err := checkURL(cfg.URL); err != nil {
		return nil, plugins.KeyErr("url", err)
	}
	tc, err := tlsConfig(env.Path(cfg.CAFile))
	if err != nil {
		return nil, plugins.KeyErr("ca_file", err)
	}
	n := defaultRemoteConcurrent
	if cfg.MaxConcurrent != nil {
		n = max(*cfg.MaxConcurrent, 1)
	}
	conns := &connSet{set: make(map[*setConn]struct{})}
	tr := &http.Transport{DialContext: conns.dial, TLSClientConfig: tc, MaxIdleConnsPerHost: n,
		IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}
	h := &httpChecker{url: cfg.URL, client: &http.Client{
		// No Proxy: the service is asked directly, never through the
		// environment's proxy; no redirects: a 3xx is a backend error.
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	r, err := newRemote(cfg, "http", h)
	if err != nil {
		return nil, err
	}
	r.stop = func() {
		tr.CloseIdleConnections()
		conns.close()
	}
	return newRemotePlugin(env, cfg, r)
}

// connSet holds every connection the HTTP backend's transport dialed,
// so that stopping closes them all: CloseIdleConnections leaves one
// whose answer is still being read, or that the transport has not yet
// put back in its pool, with the two goroutines that serve it.
type connSet struct {
	mu     sync.Mutex
	set    map[*setConn]struct{}
	closed bool
}

// dial is the transport's DialContext; once the set is closed it refuses.
func (s *connSet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &setConn{Conn: nc, s: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return nil, errors.New("auth backend stopped")
	}
	s.set[c] = struct{}{}
	return c, nil
}

// close closes every connection of the set and refuses new ones.
func (s *connSet) close() {
	s.mu.Lock()
	set := s.set
	s.set, s.closed = nil, true
	s.mu.Unlock()
	for c := range set {
		c.Conn.Close()
	}
}

// setConn leaves its set when the transport closes it.
type setConn struct {
	net.Conn
	s *connSet
}

func (c *setConn) Close() error {
	c.s.mu.Lock()
	delete(c.s.set, c)
	c.s.mu.Unlock()
	return c.Conn.Close()
}

// newRemotePlugin is the plugin around a remote backend, with what its
// answers may choose and a service that lets the backend's connections
// go when the server stops.
func newRemotePlugin(env plugins.Env, cfg Config, r *remote) (plugins.Plugin, error) {
	if err := r.allowLists(env, cfg.RemoteConfig); err != nil {
		return nil, err
	}
	th, _, err := limits(cfg)
	if err != nil {
		return nil, err
	}
	p := &Plugin{name: env.Name, realm: cfg.Realm, log: env.Log, cache: newCache(cacheSize),
		sleep: sleepCtx, throttle: th, remote: r, conf: settings{cfg: cfg, dir: env.ConfigDir}, now: time.Now}
	if env.Services != nil {
		if _, err := env.Services.Provide("auth-"+r.kind+":"+env.Name, func() (plugins.Service, error) {
			return stopRemote{r: r}, nil
		}); err != nil {
			return nil, err
		}
	}
	return remotePlugin{p}, nil
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

// answer is the JSON the service returns; unknown fields are ignored.
type answer struct {
	Allow         *bool    `json:"allow"`
	Groups        []string `json:"groups"`
	Upstream      string   `json:"upstream"`
	SourceAddress string   `json:"source_address"`
	// Rate is in bytes per second each way; a direction left out is
	// not limited.
	Rate *struct {
		Up   int64 `json:"up"`
		Down int64 `json:"down"`
	} `json:"rate"`
}

// result is the answer as remote checks and caches it; a deny's other
// fields are ignored.
func (a answer) result() (result, error) {
	if !*a.Allow {
		return result{}, nil
	}
	res := result{allow: true, groups: a.Groups, upstream: a.Upstream}
	if a.SourceAddress != "" {
		ip, err := netip.ParseAddr(a.SourceAddress)
		if err != nil {
			return result{}, fmt.Errorf("answer source_address %q is not an IP address", clip(a.SourceAddress))
		}
		res.source = ip.Unmap()
	}
	if a.Rate != nil {
		res.rate = &plugins.Rate{Up: a.Rate.Up, Down: a.Rate.Down}
	}
	return res, nil
}

// check implements checker: a POST of req, a 200 with an answer.
func (h *httpChecker) check(ctx context.Context, req request) (result, error) {
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return result{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(hr)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return result{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return result{}, fmt.Errorf("read answer: %v", err)
	}
	if len(data) > maxAnswer {
		return result{}, fmt.Errorf("answer over %d bytes", maxAnswer)
	}
	var a answer
	if err := json.Unmarshal(data, &a); err != nil {
		return result{}, fmt.Errorf("malformed answer: %v", err)
	}
	if a.Allow == nil {
		return result{}, errors.New("answer without \"allow\"")
	}
	return a.result()
}
