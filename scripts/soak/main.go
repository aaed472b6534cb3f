// Command soak drives mixed load through a running ferry for a while and
// watches ferry for leaks: its memory, goroutines and file descriptors
// must stay flat under steady load and come back to their baseline when
// the load stops.
//
//	soak -duration 10m -pid PID -admin ADDR -proxy ADDR [-hook ADDR] -forward ADDR -target ADDR [-dead ADDR -closed ADDR] [flags]
//
// The driver runs its own targets (a stream target on -target, which the
// tcp listener -forward must forward to; a target that resets every
// connection; an HTTP server) and, for -duration, at once:
//
//   - short tunnels (CONNECT, SOCKS5, tcp): a small echo, then close;
//     some go straight to the target, a control for their latencies;
//   - plain http:// requests over keep-alive connections;
//   - a few long transfers of tens of MiB, several per tunnel;
//   - idle tunnels, left for ferry's idle timeout or abandoned;
//   - failures: tunnels to a closed port, targets that reset at once or
//     part way, clients that reset or stall in the handshake, malformed
//     requests, clients that go away in the middle of a transfer.
//
// Every -interval it prints ferry's RSS (/proc/PID/status), heap and
// goroutines (the admin /metrics), open fds (/proc/PID/fd), open
// connections, channels and parked copies, ferry's CPU, and its own
// counts: ok, failures that went as expected, unexpected outcomes. At the end it compares the first and
// last quarters of the samples after the warm-up, waits for ferry to
// settle and checks that goroutines and fds are back near the baseline.
// It exits 1 on any unexpected outcome or if ferry did not settle (with
// -strict, also when a quantity grew under load), 2 on bad flags and 3
// after -max-time. Every loop is bounded by the duration and by a count;
// everything is on loopback. scripts/soak.sh builds and starts ferry and
// runs this.
package main

import (
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"ferry/scripts/internal/load"
)

type config struct {
	duration, interval, settle, maxTime time.Duration
	warmup                              float64
	pid                                 int
	admin, proxy, hook, forward, dead   string
	target, closed                      string
	shortRate, httpRate, failRate       float64
	shortConc, httpConns, failConc      int
	longWorkers, longReuse, idle        int
	longBytes                           int64
	longPause, opTimeout                time.Duration
	idleTimeout, handshakeTimeout       time.Duration
	gorSlack, fdSlack                   int64
	strict                              bool
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	var c config
	fs.DurationVar(&c.duration, "duration", 10*time.Minute, "how long to drive the load")
	fs.DurationVar(&c.interval, "interval", 5*time.Second, "time between samples")
	fs.Float64Var(&c.warmup, "warmup", 0.2, "share of the run left out of the flatness comparison")
	fs.DurationVar(&c.settle, "settle", 30*time.Second, "after the load, how long ferry gets to come back to its baseline")
	fs.DurationVar(&c.maxTime, "max-time", 0, "exit (status 3) after this long whatever happens (default: -duration + 5m)")
	fs.IntVar(&c.pid, "pid", 0, "ferry's pid (required)")
	fs.StringVar(&c.admin, "admin", "", "ferry's admin listener (required)")
	fs.StringVar(&c.proxy, "proxy", "", "a listener speaking http and socks5, with the splice fast path (required)")
	fs.StringVar(&c.hook, "hook", "", "a listener speaking http and socks5 with a data plugin (optional)")
	fs.StringVar(&c.forward, "forward", "", "a tcp listener forwarding to -target (required)")
	fs.StringVar(&c.dead, "dead", "", "a tcp listener forwarding to -closed (optional)")
	fs.StringVar(&c.target, "target", "127.0.0.1:0", "address of the stream target")
	fs.StringVar(&c.closed, "closed", "", "a loopback address nothing listens on (default: a free port)")
	fs.Float64Var(&c.shortRate, "short-rate", 150, "short tunnels a second")
	fs.IntVar(&c.shortConc, "short-conc", 16, "short tunnels at once, at most")
	fs.Float64Var(&c.httpRate, "http-rate", 40, "plain http:// requests a second")
	fs.IntVar(&c.httpConns, "http-conns", 2, "keep-alive connections per listener for the http:// requests")
	fs.Float64Var(&c.failRate, "fail-rate", 10, "failure scenarios a second")
	fs.IntVar(&c.failConc, "fail-conc", 32, "failure scenarios at once, at most")
	fs.IntVar(&c.longWorkers, "long-workers", 2, "long-transfer workers")
	var longBytes string
	fs.StringVar(&longBytes, "long-bytes", "32MiB", "bytes per long transfer")
	fs.IntVar(&c.longReuse, "long-reuse", 3, "long transfers per tunnel")
	fs.DurationVar(&c.longPause, "long-pause", time.Second, "pause after each long transfer")
	fs.IntVar(&c.idle, "idle", 16, "idle tunnels held at once")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 15*time.Second, "ferry's idle_timeout (what idle tunnels expect)")
	fs.DurationVar(&c.handshakeTimeout, "handshake-timeout", 5*time.Second, "ferry's handshake_timeout (what stalled handshakes expect)")
	fs.DurationVar(&c.opTimeout, "op-timeout", 30*time.Second, "time cap of one operation (a tunnel, a transfer, a request)")
	fs.Int64Var(&c.gorSlack, "goroutine-slack", 10, "after the load, goroutines above the baseline that still pass")
	fs.Int64Var(&c.fdSlack, "fd-slack", 10, "after the load, fds above the baseline that still pass")
	fs.BoolVar(&c.strict, "strict", false, "also fail when RSS, heap, goroutines or fds grew under load")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: soak -duration D -pid PID -admin ADDR -proxy ADDR -forward ADDR -target ADDR [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "soak: "+format+"\n", a...)
		return 2
	}
	var err error
	if c.longBytes, err = load.ParseSize(longBytes); err != nil || c.longBytes <= 0 {
		return fail("-long-bytes: %q", longBytes)
	}
	if c.pid <= 0 || c.admin == "" || c.proxy == "" || c.forward == "" {
		return fail("-pid, -admin, -proxy and -forward are required")
	}
	if c.duration <= 0 || c.interval <= 0 || c.warmup < 0 || c.warmup >= 1 || c.opTimeout <= 0 ||
		c.idleTimeout <= time.Second || c.handshakeTimeout <= time.Second || c.longReuse < 1 || c.httpConns < 1 {
		return fail("-duration, -interval, -op-timeout must be > 0; -warmup in [0, 1); -idle-timeout, -handshake-timeout > 1s; -long-reuse, -http-conns >= 1")
	}
	if c.maxTime <= 0 {
		c.maxTime = c.duration + 5*time.Minute
	}
	// The hard stop: nothing the driver does outlives -max-time.
	time.AfterFunc(c.maxTime, func() {
		fmt.Fprintf(os.Stderr, "soak: -max-time %v reached, exiting\n", c.maxTime)
		os.Exit(3)
	})
	start := time.Now()
	// Targets' connections end at the latest well after the load and the
	// settle, so they never hide a channel ferry keeps open.
	tdl := start.Add(c.maxTime)

	d := &driver{cfg: c, stop: make(chan struct{}), byName: map[string]*counts{}, shortLat: map[string][]time.Duration{}}
	st, err := load.Listen(c.target, tdl, serveStream)
	if err != nil {
		return fail("stream target: %v", err)
	}
	defer st.Close()
	rt, err := load.Listen("127.0.0.1:0", tdl, serveReset)
	if err != nil {
		return fail("reset target: %v", err)
	}
	defer rt.Close()
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail("http target: %v", err)
	}
	hs := &http.Server{Handler: httpHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: c.maxTime}
	go hs.Serve(hln)
	defer hs.Close()
	d.target = netip.MustParseAddrPort(st.Addr().String())
	d.resetAddr = netip.MustParseAddrPort(rt.Addr().String())
	d.httpTarget = hln.Addr().String()
	if c.closed == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail("closed port: %v", err)
		}
		c.closed = ln.Addr().String()
		ln.Close()
	}
	if d.closed, err = netip.ParseAddrPort(c.closed); err != nil {
		return fail("-closed: %v", err)
	}
	if cn, err := net.DialTimeout("tcp", c.closed, time.Second); err == nil {
		cn.Close()
		return fail("-closed %s: something listens there", c.closed)
	}

	d.proxied = []path{{"connect", "connect", c.proxy}, {"socks5", "socks5", c.proxy}}
	proxies := []string{c.proxy}
	if c.hook != "" {
		d.proxied = append(d.proxied, path{"connect+hook", "connect", c.hook}, path{"socks5+hook", "socks5", c.hook})
		proxies = append(proxies, c.hook)
	}
	d.all = append(slices.Clone(d.proxied), path{"tcp", "tcp", c.forward})
	if c.dead != "" {
		d.dead = &path{"tcp-dead", "tcp", c.dead}
	}
	for _, px := range proxies {
		u := &url.URL{Scheme: "http", Host: px}
		tr := &http.Transport{Proxy: http.ProxyURL(u), MaxConnsPerHost: c.httpConns, MaxIdleConnsPerHost: c.httpConns,
			DisableCompression: true, ResponseHeaderTimeout: c.opTimeout}
		d.httpClients = append(d.httpClients, &http.Client{Transport: tr, Timeout: c.opTimeout})
	}

	// ferry answers, and stands still for a baseline.
	pr := newProber(c.pid, c.admin)
	var base sample
	for i := 0; ; i++ {
		if base, err = pr.read(); err == nil {
			break
		}
		if i >= 150 {
			return fail("ferry does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if base, err = pr.read(); err != nil {
		return fail("baseline: %v", err)
	}
	base.t, base.phase = 0, "base"
	fmt.Printf("# soak: ferry pid %d; proxy %s, hook %s, forward %s, dead %s, admin %s; targets: stream %s, reset %s, http %s, closed %s\n",
		c.pid, c.proxy, orNone(c.hook), c.forward, orNone(c.dead), c.admin, d.target, d.resetAddr, d.httpTarget, d.closed)
	fmt.Printf("# load for %v: short tunnels %.0f/s, http requests %.0f/s, failures %.0f/s, %d long-transfer workers (%s x %d a tunnel, %v pauses), %d idle tunnels; samples every %v\n",
		c.duration, c.shortRate, c.httpRate, c.failRate, c.longWorkers, longBytes, c.longReuse, c.longPause, c.idle, c.interval)
	fmt.Println(base)

	// The load, sampled every interval.
	loadStart := time.Now()
	d.loadEnd = loadStart.Add(c.duration)
	d.start()
	loadDone := make(chan struct{})
	go func() { d.wg.Wait(); close(loadDone) }()
	var load []sample
	var problems []string
	prev := base
	prev.t = -time.Since(loadStart) // base was read a moment ago
	snap := func(phase string, show bool) (sample, bool) {
		s, err := pr.read()
		if err != nil {
			problems = append(problems, err.Error())
			fmt.Fprintf(os.Stderr, "soak: %v\n", err)
			d.abort()
			return s, false
		}
		s.t, s.phase = time.Since(loadStart), phase
		s.ok, s.exp, s.unexp = d.nOK.Load(), d.nExpected.Load(), d.nUnexpected.Load()
		if dt := (s.t - prev.t).Seconds(); dt > 0 {
			s.cpu = 100 * float64(s.ticks-prev.ticks) / clockTick / dt
		}
		prev = s
		if show {
			fmt.Println(s)
		}
		return s, true
	}
	tick := time.NewTicker(c.interval)
	alive := true
	for alive && time.Now().Before(d.loadEnd) {
		select {
		case <-tick.C:
		case <-d.stop:
		}
		if !d.loading() {
			break
		}
		var s sample
		if s, alive = snap("load", true); alive {
			load = append(load, s)
		}
	}
	tick.Stop()

	// The operations in flight finish (each has a deadline); then the
	// keep-alive connections close and ferry settles.
	drainLimit := time.NewTimer(c.opTimeout + c.handshakeTimeout + 15*time.Second)
	select {
	case <-loadDone:
	case <-drainLimit.C:
		problems = append(problems, "driver operations still running after the load")
	}
	drainLimit.Stop()
	for _, hc := range d.httpClients {
		hc.CloseIdleConnections()
	}
	settled, settleTook := false, time.Duration(0)
	var last sample
	if alive {
		ended := time.Now()
		for i := 0; ; i++ {
			var s sample
			if s, alive = snap("settle", false); !alive {
				problems = append(problems, "ferry is gone after the load")
				break
			}
			last = s
			if s.gor <= base.gor+c.gorSlack && s.fds <= base.fds+c.fdSlack && s.active == 0 && s.channels == 0 {
				settled, settleTook = true, time.Since(ended)
				break
			}
			if time.Since(ended) >= c.settle || i >= 10000 {
				break
			}
			if i%10 == 0 {
				fmt.Println(s)
			}
			time.Sleep(500 * time.Millisecond)
		}
		last.phase = "after"
		fmt.Println(last)
	}

	// The summary.
	fmt.Printf("\n== summary: %v of load, %d samples every %v; the first %v are warm-up\n",
		c.duration, len(load), c.interval, fmtDur(time.Duration(c.warmup*float64(c.duration))))
	if len(load) > 0 {
		l := load[len(load)-1]
		sec := float64(l.ticks-base.ticks) / clockTick
		fmt.Printf("ferry CPU: %.1f s over %v of load, %.0f%% of a core on average; peak RSS %.1f MiB\n",
			sec, fmtDur(l.t), 100*sec/l.t.Seconds(), float64(peakRSS(load))/1024)
	}
	growing := []string{}
	if ts, ok := trends(load, time.Duration(c.warmup*float64(c.duration))); ok {
		t0 := ts[0]
		fmt.Printf("flatness: first quarter %s-%s against last quarter %s-%s (averages)\n",
			fmtDur(t0.fromT), fmtDur(t0.firstEnd), fmtDur(t0.lastFrom), fmtDur(t0.toT))
		fmt.Printf("  %-12s %10s %10s %10s %12s  %s\n", "", "baseline", "first q", "last q", "growth/min", "verdict")
		for _, t := range ts {
			verdict := "flat"
			if t.growing {
				verdict = "GROWING"
				growing = append(growing, t.s.name)
			}
			name := t.s.name
			if t.s.unit != "" {
				name += " " + t.s.unit
			}
			fmt.Printf("  %-12s %10.1f %10.1f %10.1f %+12.2f  %s\n", name, float64(t.s.get(base))/t.s.scale, t.first, t.last, t.perMin, verdict)
		}
	} else {
		fmt.Println("flatness: too few samples after the warm-up to compare quarters (run longer or sample more often)")
	}
	if alive {
		word := "settled"
		if !settled {
			word = "NOT SETTLED"
			problems = append(problems, fmt.Sprintf("ferry did not come back to its baseline within %v of the load's end", c.settle))
		}
		fmt.Printf("after the load: %s in %v: goroutines %d (baseline %d, slack %d), fds %d (baseline %d, slack %d), active %d, channels %d, rss %.1f MiB (baseline %.1f)\n",
			word, settleTook.Round(100*time.Millisecond), last.gor, base.gor, c.gorSlack, last.fds, base.fds, c.fdSlack,
			last.active, last.channels, float64(last.rssKiB)/1024, float64(base.rssKiB)/1024)
	}
	if alive && last.refused > base.refused {
		fmt.Printf("ferry refused %d connections at once (ferry_connections_refused_total: a [limits] cap or max_connections)\n", last.refused-base.refused)
	}
	d.mu.Lock()
	fmt.Printf("operations: %d ok, %d failed as expected, %d unexpected; %d paced starts skipped (all slots busy)\n",
		d.nOK.Load(), d.nExpected.Load(), d.nUnexpected.Load(), d.skipped.Load())
	if len(d.shortLat) > 0 {
		fmt.Printf("short tunnels (connect, handshake, echo, close) by path; direct is the control, without ferry:\n")
		fmt.Printf("  %-24s %8s %10s %10s %10s %10s\n", "path", "tunnels", "p50", "p99", "p99.9", "max")
		for _, p := range slices.Sorted(maps.Keys(d.shortLat)) {
			l := d.shortLat[p]
			slices.Sort(l)
			q := func(f float64) string {
				return l[min(len(l)-1, int(f*float64(len(l))))].Round(10 * time.Microsecond).String()
			}
			fmt.Printf("  %-24s %8d %10s %10s %10s %10s\n", p, len(l), q(0.5), q(0.99), q(0.999), q(1))
		}
	}
	// By scenario, then by path: names are "scenario path".
	byKind, byPath := map[string]*counts{}, map[string]*counts{}
	var kinds, paths []string
	add := func(m map[string]*counts, keys *[]string, k string, ct *counts) {
		if m[k] == nil {
			m[k] = &counts{}
			*keys = append(*keys, k)
		}
		m[k].ok += ct.ok
		m[k].expected += ct.expected
		m[k].unexpected += ct.unexpected
	}
	for _, n := range d.names {
		kind, p, found := strings.Cut(n, " ")
		if !found {
			kind, p = n, "http" // "http", "http+hook"
			if strings.HasSuffix(n, "+hook") {
				kind, p = "http", "http+hook"
			}
		}
		add(byKind, &kinds, kind, d.byName[n])
		add(byPath, &paths, p, d.byName[n])
	}
	slices.Sort(kinds)
	slices.Sort(paths)
	fmt.Printf("  %-24s %8s %8s %10s\n", "scenario", "ok", "expected", "unexpected")
	for _, k := range kinds {
		ct := byKind[k]
		fmt.Printf("  %-24s %8d %8d %10d\n", k, ct.ok, ct.expected, ct.unexpected)
	}
	fmt.Printf("  %-24s %8s %8s %10s\n", "path", "ok", "expected", "unexpected")
	for _, p := range paths {
		ct := byPath[p]
		fmt.Printf("  %-24s %8d %8d %10d\n", p, ct.ok, ct.expected, ct.unexpected)
	}
	if len(d.errs) > 0 {
		fmt.Println("first unexpected outcomes:")
		for _, e := range d.errs {
			fmt.Println("  " + e)
		}
	}
	d.mu.Unlock()
	if n := d.nUnexpected.Load(); n > 0 {
		problems = append(problems, fmt.Sprintf("%d unexpected outcomes", n))
	}
	if len(growing) > 0 {
		msg := "grew under load: " + strings.Join(growing, ", ")
		if c.strict {
			problems = append(problems, msg)
		} else {
			fmt.Println("warning: " + msg + " (not a failure without -strict)")
		}
	}
	if len(problems) > 0 {
		fmt.Println("result: FAIL: " + strings.Join(problems, "; "))
		return 1
	}
	fmt.Println("result: PASS")
	return 0
}

func peakRSS(ss []sample) int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.rssKiB)
	}
	return m
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
