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
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
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
	var c config
	var longBytes string
	fs := soakFlags(&c, &longBytes)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "soak: "+format+"\n", a...)
		return 2
	}
	if err := c.check(longBytes); err != nil {
		return fail("%v", err)
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
	closeTargets, err := d.startTargets(&c, tdl)
	defer closeTargets()
	if err != nil {
		return fail("%v", err)
	}
	d.setPaths(c)

	// ferry answers, and stands still for a baseline.
	pr := newProber(c.pid, c.admin)
	base, err := baseline(pr)
	if err != nil {
		return fail("%v", err)
	}
	fmt.Printf("# soak: ferry pid %d; proxy %s, hook %s, forward %s, dead %s, admin %s; targets: stream %s, reset %s, http %s, closed %s\n",
		c.pid, c.proxy, orNone(c.hook), c.forward, orNone(c.dead), c.admin, d.target, d.resetAddr, d.httpTarget, d.closed)
	fmt.Printf("# load for %v: short tunnels %.0f/s, http requests %.0f/s, failures %.0f/s, %d long-transfer workers (%s x %d a tunnel, %v pauses), %d idle tunnels; samples every %v\n",
		c.duration, c.shortRate, c.httpRate, c.failRate, c.longWorkers, longBytes, c.longReuse, c.longPause, c.idle, c.interval)
	fmt.Println(base)

	s := &soak{cfg: c, d: d, pr: pr, base: base}
	s.runLoad()
	s.settle()
	return s.summary()
}

// soakFlags defines the driver's flags into c and longBytes.
func soakFlags(c *config, longBytes *string) *flag.FlagSet {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
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
	fs.StringVar(longBytes, "long-bytes", "32MiB", "bytes per long transfer")
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
	return fs
}

// check parses -long-bytes, rejects missing or bad flags and defaults
// -max-time.
func (c *config) check(longBytes string) error {
	var err error
	if c.longBytes, err = load.ParseSize(longBytes); err != nil || c.longBytes <= 0 {
		return fmt.Errorf("-long-bytes: %q", longBytes)
	}
	if c.pid <= 0 || c.admin == "" || c.proxy == "" || c.forward == "" {
		return fmt.Errorf("-pid, -admin, -proxy and -forward are required")
	}
	if c.duration <= 0 || c.interval <= 0 || c.warmup < 0 || c.warmup >= 1 || c.opTimeout <= 0 ||
		c.idleTimeout <= time.Second || c.handshakeTimeout <= time.Second || c.longReuse < 1 || c.httpConns < 1 {
		return fmt.Errorf("-duration, -interval, -op-timeout must be > 0; -warmup in [0, 1); -idle-timeout, -handshake-timeout > 1s; -long-reuse, -http-conns >= 1")
	}
	if c.maxTime <= 0 {
		c.maxTime = c.duration + 5*time.Minute
	}
	return nil
}

// startTargets starts the stream, reset and HTTP targets, whose
// connections end at tdl, and picks and checks the closed port
// (c.closed, a free one by default). The returned function closes the
// targets started, also after an error.
func (d *driver) startTargets(c *config, tdl time.Time) (func(), error) {
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	st, err := load.Listen(c.target, tdl, serveStream)
	if err != nil {
		return closeAll, fmt.Errorf("stream target: %v", err)
	}
	closers = append(closers, func() { st.Close() })
	rt, err := load.Listen("127.0.0.1:0", tdl, serveReset)
	if err != nil {
		return closeAll, fmt.Errorf("reset target: %v", err)
	}
	closers = append(closers, func() { rt.Close() })
	hln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return closeAll, fmt.Errorf("http target: %v", err)
	}
	hs := &http.Server{Handler: httpHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: c.maxTime}
	go hs.Serve(hln)
	closers = append(closers, func() { hs.Close() })
	d.target = netip.MustParseAddrPort(st.Addr().String())
	d.resetAddr = netip.MustParseAddrPort(rt.Addr().String())
	d.httpTarget = hln.Addr().String()
	if c.closed == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return closeAll, fmt.Errorf("closed port: %v", err)
		}
		c.closed = ln.Addr().String()
		ln.Close()
	}
	if d.closed, err = netip.ParseAddrPort(c.closed); err != nil {
		return closeAll, fmt.Errorf("-closed: %v", err)
	}
	if cn, err := net.DialTimeout("tcp", c.closed, time.Second); err == nil {
		cn.Close()
		return closeAll, fmt.Errorf("-closed %s: something listens there", c.closed)
	}
	return closeAll, nil
}

// setPaths sets the paths the load takes through ferry and the HTTP
// clients, one per listener speaking http.
func (d *driver) setPaths(c config) {
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
}

// baseline waits up to 15s for ferry to answer, lets it stand still
// for a second and reads the baseline sample.
func baseline(pr *prober) (sample, error) {
	var base sample
	var err error
	for i := 0; ; i++ {
		if base, err = pr.read(); err == nil {
			break
		}
		if i >= 150 {
			return base, fmt.Errorf("ferry does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if base, err = pr.read(); err != nil {
		return base, fmt.Errorf("baseline: %v", err)
	}
	base.t, base.phase = 0, "base"
	return base, nil
}

// soak is one run after the baseline: the load, the settle and what
// they found.
type soak struct {
	cfg       config
	d         *driver
	pr        *prober
	base      sample
	loadStart time.Time
	prev      sample   // the last sample read, for ferry's CPU
	load      []sample // under load, every interval
	problems  []string
	alive     bool // ferry answered every sample

	settled    bool
	settleTook time.Duration
	last       sample // the last sample of the settle
}

// snap reads a sample in phase, with the driver's counts and ferry's
// CPU since the previous one, and prints it if show. When ferry does
// not answer it records the problem, stops the load and returns false.
func (s *soak) snap(phase string, show bool) (sample, bool) {
	sm, err := s.pr.read()
	if err != nil {
		s.problems = append(s.problems, err.Error())
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		s.d.abort()
		return sm, false
	}
	sm.t, sm.phase = time.Since(s.loadStart), phase
	sm.ok, sm.exp, sm.unexp = s.d.nOK.Load(), s.d.nExpected.Load(), s.d.nUnexpected.Load()
	if dt := (sm.t - s.prev.t).Seconds(); dt > 0 {
		sm.cpu = 100 * float64(sm.ticks-s.prev.ticks) / clockTick / dt
	}
	s.prev = sm
	if show {
		fmt.Println(sm)
	}
	return sm, true
}

// runLoad drives the load for -duration, sampled every interval, then
// waits for the operations in flight and closes the keep-alive
// connections.
func (s *soak) runLoad() {
	c, d := s.cfg, s.d
	s.loadStart = time.Now()
	d.loadEnd = s.loadStart.Add(c.duration)
	d.start()
	loadDone := make(chan struct{})
	go func() { d.wg.Wait(); close(loadDone) }()
	s.prev = s.base
	s.prev.t = -time.Since(s.loadStart) // base was read a moment ago
	tick := time.NewTicker(c.interval)
	s.alive = true
	for s.alive && time.Now().Before(d.loadEnd) {
		select {
		case <-tick.C:
		case <-d.stop:
		}
		if !d.loading() {
			break
		}
		var sm sample
		if sm, s.alive = s.snap("load", true); s.alive {
			s.load = append(s.load, sm)
		}
	}
	tick.Stop()

	// The operations in flight finish (each has a deadline); then the
	// keep-alive connections close and ferry settles.
	drainLimit := time.NewTimer(c.opTimeout + c.handshakeTimeout + 15*time.Second)
	select {
	case <-loadDone:
	case <-drainLimit.C:
		s.problems = append(s.problems, "driver operations still running after the load")
	}
	drainLimit.Stop()
	for _, hc := range d.httpClients {
		hc.CloseIdleConnections()
	}
}

// settle samples ferry, if it is still there, until its goroutines and
// fds are back near the baseline with no connection or channel open,
// or -settle has passed.
func (s *soak) settle() {
	if !s.alive {
		return
	}
	c, base := s.cfg, s.base
	ended := time.Now()
	for i := 0; ; i++ {
		var sm sample
		if sm, s.alive = s.snap("settle", false); !s.alive {
			s.problems = append(s.problems, "ferry is gone after the load")
			break
		}
		s.last = sm
		if sm.gor <= base.gor+c.gorSlack && sm.fds <= base.fds+c.fdSlack && sm.active == 0 && sm.channels == 0 {
			s.settled, s.settleTook = true, time.Since(ended)
			break
		}
		if time.Since(ended) >= c.settle || i >= 10000 {
			break
		}
		if i%10 == 0 {
			fmt.Println(sm)
		}
		time.Sleep(500 * time.Millisecond)
	}
	s.last.phase = "after"
	fmt.Println(s.last)
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
