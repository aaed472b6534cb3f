package admin

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"ferry/plugins"
	"ferry/server"
)

// registerMetrics makes the counters the server reports to through
// Observer, and registers them, the collectors that read the server's
// state at scrape time, and Go's and the process's own in a.reg.
func (a *Admin) registerMetrics() {
	a.accepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_connections_accepted_total", Help: "TCP connections accepted, per listener."}, []string{"listener"})
	a.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_connections_refused_total", Help: "Connections closed at once, per listener and reason."}, []string{"listener", "reason"})
	a.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_handshakes_total", Help: "Client requests by protocol and outcome (ok, timeout, error, rejected, dial_failed)."}, []string{"protocol", "outcome"})
	a.dials = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ferry_dial_duration_seconds", Help: "Time to connect to a target, per upstream and result.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"upstream", "result"})
	a.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_bytes_total", Help: "Bytes delivered by finished sessions: up to upstreams, down to clients."}, []string{"direction"})
	a.closed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_channels_closed_total", Help: "Finished sessions (tunnels and plain HTTP requests) by close reason."}, []string{"reason"})
	a.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_plugin_rejections_total", Help: "Sessions a plugin refused, by plugin instance and code."}, []string{"plugin", "code"})
	a.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_reloads_total", Help: "Configuration reloads by result (ok, error)."}, []string{"result"})
	a.bytesUp, a.bytesDown = a.bytes.WithLabelValues("up"), a.bytes.WithLabelValues("down")
	a.reloads.WithLabelValues("ok")
	a.reloads.WithLabelValues("error")
	a.reg.MustRegister(a.accepted, a.refused, a.handshakes, a.dials, a.bytes, a.closed, a.rejections, a.reloads,
		activeCollector{a.srv}, upstreamCollector{a.srv}, parkedCollector{a.srv}, pluginCollector{a.srv}, usageCollector{a.srv},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// ConnAccepted implements server.Observer.
func (a *Admin) ConnAccepted(listener string) { a.accepted.WithLabelValues(listener).Inc() }

// ConnRefused implements server.Observer.
func (a *Admin) ConnRefused(listener, reason string) {
	a.refused.WithLabelValues(listener, reason).Inc()
}

// Handshake implements server.Observer.
func (a *Admin) Handshake(protocol, outcome string) {
	a.handshakes.WithLabelValues(protocol, outcome).Inc()
}

// Dialed implements server.Observer.
func (a *Admin) Dialed(upstream string, d time.Duration, result string) {
	a.dials.WithLabelValues(upstream, result).Observe(d.Seconds())
}

// ChannelClosed implements server.Observer.
func (a *Admin) ChannelClosed(e server.ChannelEnd) {
	a.bytesUp.Add(float64(e.Up))
	a.bytesDown.Add(float64(e.Down))
	a.closedCounter(e.Reason).Inc()
	if e.Plugin != "" {
		a.rejections.WithLabelValues(e.Plugin, label(e.Code.String())).Inc()
	}
}

// closedCounter returns the closed counter of reason r. Looked up once a
// reason: ChannelClosed runs at every channel's end, where a label's
// string and the vector's hash lookup cost 1 allocation and about 200 ns.
func (a *Admin) closedCounter(r plugins.CloseReason) prometheus.Counter {
	if c := a.closedBy[r].Load(); c != nil {
		return *c
	}
	c := a.closed.WithLabelValues(label(r.String()))
	a.closedBy[r].Store(&c) // a racing lookup stores the same counter
	return c
}

// label turns "client closed" into "client_closed".
func label(s string) string { return strings.ReplaceAll(s, " ", "_") }

// activeCollector reports each listener's open connections at scrape
// time, so listeners a reload adds or removes come and go.
type activeCollector struct{ srv *server.Server }

var activeDesc = prometheus.NewDesc("ferry_connections_active",
	"Open client connections, per listener.", []string{"listener"}, nil)

func (c activeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- activeDesc }

func (c activeCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{}
	for _, ls := range c.srv.ListenerStats() {
		if seen[ls.Name] {
			continue // two sockets cannot share a name, but a Desc must not repeat
		}
		seen[ls.Name] = true
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(ls.Active), ls.Name)
	}
}

// pluginCollector reports the events plugin instances count themselves
// (plugins.Counter), read at scrape time from the current configuration.
type pluginCollector struct{ srv *server.Server }

var pluginEventsDesc = prometheus.NewDesc("ferry_plugin_events_total",
	"Events plugin instances count themselves (auth: checks, failures, throttled, busy, lockouts), by instance and event.",
	[]string{"plugin", "event"}, nil)

func (c pluginCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pluginEventsDesc }

func (c pluginCollector) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.srv.PluginEvents() {
		ch <- prometheus.MustNewConstMetric(pluginEventsDesc, prometheus.CounterValue, float64(e.Value), e.Plugin, e.Event)
	}
}

// parkedCollector reports tunnel directions parked and the splice
// pipes open at scrape time.
type parkedCollector struct{ srv *server.Server }

var parkedDesc = prometheus.NewDesc("ferry_copies_parked",
	"Tunnel directions idle without a goroutine (their socket waits in ferry's epoll set).", nil, nil)

var pipesDesc = prometheus.NewDesc("ferry_splice_pipes",
	"Pipes of the splice path (two descriptors each), in use or kept empty; empty ones are closed after 5-10 s unused.", nil, nil)

func (c parkedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- parkedDesc
	ch <- pipesDesc
}

func (c parkedCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Stats()
	ch <- prometheus.MustNewConstMetric(parkedDesc, prometheus.GaugeValue, float64(st.Parked))
	ch <- prometheus.MustNewConstMetric(pipesDesc, prometheus.GaugeValue, float64(st.Pipes))
}

// upstreamCollector reports the current configuration's upstreams at
// scrape time, so upstreams a reload removes disappear.
type upstreamCollector struct{ srv *server.Server }

var (
	upstreamUpDesc = prometheus.NewDesc("ferry_upstream_up",
		"1 while the upstream is up, 0 while it is marked down (failed dials or health checks).", []string{"upstream"}, nil)
	upstreamActiveDesc = prometheus.NewDesc("ferry_upstream_active_connections",
		"Open connections that groups made through the upstream.", []string{"upstream"}, nil)
)

func (c upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- upstreamUpDesc
	ch <- upstreamActiveDesc
}

func (c upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c.srv.Upstreams() {
		up := 0.0
		if u.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(upstreamUpDesc, prometheus.GaugeValue, up, u.Name)
		ch <- prometheus.MustNewConstMetric(upstreamActiveDesc, prometheus.GaugeValue, float64(u.Active), u.Name)
	}
}
