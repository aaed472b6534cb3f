// Package admin serves ferry's admin HTTP service: Prometheus metrics,
// health and readiness, the live channel list with a way to close one,
// configuration reload, the usage quotas keep (GET and DELETE /usage,
// usage.go) and, when enabled, pprof.
//
// It lives under server/ because all it serves is the server's state. It
// imports package server (an Admin is a server.Observer and reads the
// server's accessors); server never imports it.
//
//	a := admin.New(srv, cfg.Admin, reload, log)
//	srv.SetObserver(a) // before srv.Start
//	ln, _ := net.Listen("tcp", cfg.Admin.Listen)
//	go a.Serve(ln)
//	...
//	a.Shutdown(ctx)
//
// It keeps its metrics in its own prometheus.Registry, never the global
// one. It does not open the listener (the caller does) and does not move
// with a reload: admin settings apply at the next start.
//
// Browsers are kept out: without a token, only requests whose Host names
// the service by its own address (or localhost) are served, so a
// DNS-rebinding page cannot read it; and state-changing requests from
// another origin are refused whatever the token, so a page cannot POST
// /reload (CSRF). Timeouts and a header limit bound what a client can
// hold.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins/pkg/throttle"
	"ferry/server"
)

// Admin is the admin service. It is an http.Handler and a server.Observer.
type Admin struct {
	srv    *server.Server
	cfg    config.Admin
	reload ReloadFunc
	log    zerolog.Logger

	mux      *http.ServeMux
	handler  http.Handler
	reg      *prometheus.Registry
	stopping atomic.Bool

	// hsMu guards hs, made by the first of Serve and Shutdown: they run
	// on different goroutines, and a Shutdown that comes first must
	// still stop a later Serve.
	hsMu sync.Mutex
	hs   *http.Server

	// The http.Server limits Serve uses; New sets the defaults below and
	// tests shorten them.
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout time.Duration
	maxHeaderBytes                                            int
	// hostRefusals and originRefusals throttle the warnings about
	// refused browser requests.
	hostRefusals, originRefusals throttle.Gate

	accepted   *prometheus.CounterVec
	refused    *prometheus.CounterVec
	handshakes *prometheus.CounterVec
	dials      *prometheus.HistogramVec
	bytes      *prometheus.CounterVec
	closed     *prometheus.CounterVec
	// closedBy caches closed's counter of each reason (see closedCounter).
	closedBy   [256]atomic.Pointer[prometheus.Counter]
	rejections *prometheus.CounterVec
	reloads    *prometheus.CounterVec
	bytesUp    prometheus.Counter
	bytesDown  prometheus.Counter
}

var _ server.Observer = (*Admin)(nil)
var _ http.Handler = (*Admin)(nil)

// ReloadFunc re-reads and applies the configuration, and says why not
// when it could not: a *config.Error for a file with problems (POST
// /reload answers 400), any other error otherwise (500). It may be called
// from several goroutines at once. The admin service is handed one at
// construction (ferry run's) and calls nothing else of its caller.
type ReloadFunc func() error

// New builds the service for srv. reload re-reads and applies the
// configuration; POST /reload calls it, through Reload. A nil reload
// makes POST /reload answer 501.
func New(srv *server.Server, cfg config.Admin, reload ReloadFunc, log zerolog.Logger) *Admin {
	a := &Admin{srv: srv, cfg: cfg, reload: reload, log: log, reg: prometheus.NewRegistry(),
		readHeaderTimeout: readHeaderTimeout, readTimeout: readTimeout, idleTimeout: idleTimeout,
		maxHeaderBytes: maxHeaderBytes}
	a.hostRefusals.Period, a.originRefusals.Period = refusalLogPeriod, refusalLogPeriod
	if !cfg.Pprof {
		// /debug/pprof/profile and /trace answer after the time asked for
		// (30 s by default, any on request): no write timeout with them.
		a.writeTimeout = writeTimeout
	}
	a.registerMetrics()

	m := http.NewServeMux()
	m.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	m.HandleFunc("GET /healthz", a.healthz)
	m.HandleFunc("GET /readyz", a.readyz)
	m.HandleFunc("GET /channels", a.channels)
	m.HandleFunc("GET /upstreams", a.upstreams)
	m.HandleFunc("DELETE /channels/{id}", a.closeChannel)
	m.HandleFunc("POST /channels/{id}/close", a.closeChannel)
	m.HandleFunc("POST /reload", a.postReload)
	m.HandleFunc("GET /usage", a.usage)
	m.HandleFunc("DELETE /usage/{user}", a.resetUsage)
	m.HandleFunc("GET "+server.PACPath, a.pac)
	if cfg.Pprof {
		m.HandleFunc("/debug/pprof/", pprof.Index)
		m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		m.HandleFunc("/debug/pprof/profile", pprof.Profile)
		m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	a.mux = m
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(a.denyCrossOrigin))
	a.handler = a.checkHost(cop.Handler(a.authenticate(m)))
	return a
}

// Limits of the admin's http.Server. Its clients are operators, scripts
// and scrapers on a management network, sending small requests without
// bodies:
const (
	// readHeaderTimeout: a request head arrives within 10 s even over a
	// slow SSH tunnel; a client dribbling it (slowloris) is cut then.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds a whole request; no endpoint reads a body.
	readTimeout = 30 * time.Second
	// writeTimeout bounds writing an answer (/metrics, /channels) to a
	// client that does not read it. Not with pprof (see New).
	writeTimeout = time.Minute
	// idleTimeout closes a keep-alive connection idle this long: a
	// scraper every 15 s keeps its connection, one every minute opens a
	// new one, and idle connections cannot pile up.
	idleTimeout = 30 * time.Second
	// maxHeaderBytes bounds a request head: a bearer token and a few
	// headers need a few hundred bytes; net/http's default is 1 MiB.
	maxHeaderBytes = 16 << 10
	// refusalLogPeriod: at most one warning this often per kind of
	// refused request.
	refusalLogPeriod = 10 * time.Second
)

// ServeHTTP implements http.Handler.
func (a *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// Serve serves on ln until Shutdown; it returns nil after Shutdown,
// at once if Shutdown came first.
func (a *Admin) Serve(ln net.Listener) error {
	err := a.server().Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown marks the service not ready and stops serving, waiting for
// requests in flight until ctx ends.
func (a *Admin) Shutdown(ctx context.Context) error {
	a.stopping.Store(true)
	return a.server().Shutdown(ctx)
}

// server is the http.Server, made with the limits on the first call.
func (a *Admin) server() *http.Server {
	a.hsMu.Lock()
	defer a.hsMu.Unlock()
	if a.hs == nil {
		a.hs = &http.Server{
			Handler:           a,
			ReadHeaderTimeout: a.readHeaderTimeout,
			ReadTimeout:       a.readTimeout,
			WriteTimeout:      a.writeTimeout,
			IdleTimeout:       a.idleTimeout,
			MaxHeaderBytes:    a.maxHeaderBytes,
		}
	}
	return a.hs
}

// SetStopping makes /readyz answer 503 from now on: call it when the
// server starts shutting down.
func (a *Admin) SetStopping() { a.stopping.Store(true) }

// authenticate requires the bearer token, when one is set, on every path
// but the open ones (openPath).
func (a *Admin) authenticate(next http.Handler) http.Handler {
	if a.cfg.Token == "" {
		return next
	}
	want := []byte("Bearer " + a.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !openPath(r.URL.Path) && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ferry admin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// checkHost, without a token, serves only requests whose Host names this
// service (ownHost), so that a page whose name an attacker rebinds to
// 127.0.0.1 cannot read it: 421 otherwise. /healthz says nothing and
// stays open to any name, for probes. With a token a page cannot get in
// anyway, and any name (a Kubernetes service, say) may be used.
func (a *Admin) checkHost(next http.Handler) http.Handler {
	if a.cfg.Token != "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !openPath(r.URL.Path) && !a.ownHost(r) {
			a.warnRefused(&a.hostRefusals, r, "Host does not name the admin service (DNS rebinding?)")
			http.Error(w, fmt.Sprintf("misdirected request: Host %q is not this admin service; "+
				"use its address or localhost, or set [admin] token", r.Host), http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ownHost reports whether r's Host names the admin service: admin.listen
// as configured, or the address the request came in on, localhost,
// 127.0.0.1 or [::1], with the port it came in on. Browsers always send a
// Host; a request without one is not a browser's.
func (a *Admin) ownHost(r *http.Request) bool {
	if r.Host == "" || strings.EqualFold(r.Host, a.cfg.Listen) {
		return true
	}
	local, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	if !ok {
		return false
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil { // no port: the scheme's
		host, port = strings.TrimSuffix(strings.TrimPrefix(r.Host, "["), "]"), "80"
	}
	if port != strconv.Itoa(local.Port) {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	return ip.IsLoopback() || ip == local.AddrPort().Addr().Unmap().WithZone("")
}

// denyCrossOrigin answers a state-changing request that a browser sent
// from another origin (Sec-Fetch-Site, or Origin against Host).
func (a *Admin) denyCrossOrigin(w http.ResponseWriter, r *http.Request) {
	a.warnRefused(&a.originRefusals, r, "cross-origin request (CSRF?)")
	http.Error(w, "forbidden: cross-origin request to the admin service", http.StatusForbidden)
}

// warnRefused logs a refused browser request when g lets it through.
func (a *Admin) warnRefused(g *throttle.Gate, r *http.Request, why string) {
	if ok, suppressed := g.Pass(time.Now()); ok {
		a.log.Warn().Str("remote", r.RemoteAddr).Str("method", r.Method).Str("path", r.URL.Path).
			Str("host", r.Host).Str("origin", r.Header.Get("Origin")).Int("suppressed", suppressed).
			Msg("admin request refused: " + why)
	}
}

func (a *Admin) healthz(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintln(w, "ok")
}

func (a *Admin) readyz(w http.ResponseWriter, _ *http.Request) {
	if a.stopping.Load() || !a.srv.Ready() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

func (a *Admin) channels(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(a.srv.Channels())
}

func (a *Admin) upstreams(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(a.srv.Upstreams())
}

func (a *Admin) closeChannel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !a.srv.CloseChannel(id) {
		http.Error(w, fmt.Sprintf("no live channel %q", id), http.StatusNotFound)
		return
	}
	a.log.Info().Str("id", id).Str("remote", r.RemoteAddr).Msg("channel closed by admin")
	fmt.Fprintln(w, "closed")
}

func (a *Admin) postReload(w http.ResponseWriter, _ *http.Request) {
	if a.reload == nil {
		http.Error(w, "reload is not available", http.StatusNotImplemented)
		return
	}
	if err := a.Reload(); err != nil {
		status := http.StatusInternalServerError
		var ce *config.Error
		if errors.As(err, &ce) {
			status = http.StatusBadRequest
		}
		http.Error(w, err.Error(), status)
		return
	}
	fmt.Fprintln(w, "reloaded")
}

// Reload calls the ReloadFunc given to New and counts its result in
// ferry_reloads_total. ferry run calls it for SIGHUP, so that SIGHUP
// and POST /reload are counted alike.
func (a *Admin) Reload() error {
	err := a.reload()
	if err != nil {
		a.reloads.WithLabelValues("error").Inc()
	} else {
		a.reloads.WithLabelValues("ok").Inc()
	}
	return err
}
