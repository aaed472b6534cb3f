// Command bench is ferry's load tool: it measures a proxy on loopback
// (ferry or another one) for throughput, new-tunnel rate, ping-pong
// latency, the cost of idle tunnels and plain HTTP requests, reading the
// proxy's CPU time, memory and file descriptors from /proc, and turns the
// results into a report with a chart.
//
//	bench -mode throughput|connrate|pingpong|idle -proxy ADDR -proto connect|socks5|tcp|h2 [-pid PID] [flags]
//	bench -mode http -proxy ADDR -proto http|reverse -origin ADDR [-objects 1KiB,64KiB] [-pid PID] [flags]
//	bench -mode mitm -proxy ADDR -proto h1|h2|http -origin-tls NAME:PORT -origin-ca FILE -origin ADDR [-objects ...] [-pid PID] [flags]
//	bench -mode udp -proxy ADDR -proto socks5 [-concurrency 32] [-duration 5s] [-pid PID] [flags]
//	bench report [-meta FILE] [-png FILE] results.jsonl > BENCHMARKS.md
//	bench report-mitm [-meta FILE] mitm.jsonl    (the "Intercepted HTTPS" section)
//	bench size 64KiB      (prints 65536)
//	bench tls-cert DIR    (a certificate for a TLS listener; see -tls-ca)
//	bench forward -listen ADDR -target ADDR   (the Go floor: a plain io.Copy forwarder)
//
// The tool runs its own target at the far end of the proxy (-target;
// with -proto tcp, configure the proxy to forward to that address). Every
// loop is bounded in count and in time, and the whole process exits after
// -max-time whatever happens. scripts/bench.sh runs it against ferry and
// Debian's proxies, the tool on one core and the proxy on the other.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

type config struct {
	mode, proxy, proto, target string
	pid                        int
	cgroup                     string
	name, variant              string
	repeat                     int
	json                       bool

	streams   []int
	dirs      []string
	bytes     int64
	duration  time.Duration
	count     int64
	conc      int
	rounds    int64
	msg       int
	warmup    int
	n         int
	openConc  int
	hold      time.Duration
	timeout   time.Duration
	dialTO    time.Duration
	settle    time.Duration
	maxTime   time.Duration
	echoBytes int
	waitClose bool // connrate: wait for the target's close to come through before closing
	origin    string
	objects   []int64
	post      int64 // http: POST bodies of this many bytes; 0: GETs
	tlsCA     string
	originTLS string // mitm: the origin's TLS name:port, intercepted by the proxy
	originCA  string // mitm: PEM CA the client trusts inside the tunnels (the proxy's)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "report" {
		os.Exit(runReport(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "report-mitm" {
		os.Exit(runReportMITM(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "tls-cert" {
		os.Exit(runTLSCert(os.Args[2:]))
	}
	// bench size 64KiB prints 65536: scripts/bench.sh names the
	// origin's objects so.
	if len(os.Args) == 3 && os.Args[1] == "size" {
		n, err := parseSize(os.Args[2])
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench size: %v\n", err)
			os.Exit(2)
		}
		fmt.Println(n)
		os.Exit(0)
	}
	if len(os.Args) > 1 && os.Args[1] == "forward" {
		os.Exit(runForward(os.Args[2:]))
	}
	os.Exit(runBench(os.Args[1:]))
}

func runBench(args []string) int {
	var c config
	var l benchLists
	fs := benchFlags(&c, &l)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
		return 2
	}
	if err := c.parseLists(l); err != nil {
		return fail("%v", err)
	}
	if err := c.check(); err != nil {
		return fail("%v", err)
	}

	// The hard stop: nothing the tool does outlives -max-time.
	time.AfterFunc(c.maxTime, func() {
		fmt.Fprintf(os.Stderr, "bench: -max-time %v reached, exiting\n", c.maxTime)
		os.Exit(3)
	})
	deadline := time.Now().Add(c.maxTime)

	once := 0
	if c.mode == "connrate" {
		once = c.echoBytes
	}
	tg, err := startTarget(c.target, c.mode == "throughput", once, deadline)
	if err != nil {
		return fail("target: %v", err)
	}
	defer tg.Close()
	ap, err := netip.ParseAddrPort(tg.Addr().String())
	if err != nil {
		return fail("target address: %v", err)
	}
	b := &bench{cfg: c, tg: tg, d: &dialer{proxy: c.proxy, proto: c.proto, target: ap, timeout: c.dialTO}}
	if c.tlsCA != "" {
		if b.d.tls, err = clientTLS(c.tlsCA, c.proxy); err != nil {
			return fail("%v", err)
		}
	}
	b.human, b.out = io.Writer(os.Stdout), io.Discard
	if c.json {
		b.human, b.out = os.Stderr, os.Stdout
	}
	fmt.Fprintf(b.human, "# %s: %s via %s (%s), target %s, proxy pid %d\n", c.mode, c.name, c.proxy, c.proto, ap, c.pid)
	if err := b.runModes(); err != nil {
		return fail("%v", err)
	}
	if b.failed {
		return 1
	}
	return 0
}

// benchLists are the comma-separated flags, parsed by parseLists.
type benchLists struct{ streams, dirs, size, objects string }

// benchFlags defines the tool's flags into c and l.
func benchFlags(c *config, l *benchLists) *flag.FlagSet {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.mode, "mode", "throughput", "throughput | connrate | pingpong | idle | http | udp | mitm")
	fs.StringVar(&c.proxy, "proxy", "127.0.0.1:8080", "the proxy's address")
	fs.StringVar(&c.proto, "proto", "connect", "connect (HTTP CONNECT) | socks5 | tcp (the proxy forwards to -target) | h2 (CONNECT streams of HTTP/2 connections: h2c, or ALPN h2 with -tls-ca); http mode: http (absolute-form requests to a forward proxy) | reverse (origin-form requests to a reverse proxy in front of -origin)")
	fs.StringVar(&c.target, "target", "127.0.0.1:0", "address of the tool's own target server (fixed, for -proto tcp)")
	fs.IntVar(&c.pid, "pid", 0, "the proxy's pid: its CPU time, RSS and fds (and those of its child processes) are read from /proc; 0: none")
	fs.StringVar(&c.cgroup, "cgroup", "", "a cgroup directory the proxy (and nothing else) runs in: its CPU time is read from the cgroup (cpuacct.usage, or cpu.stat on cgroup v2), exact, instead of /proc's clock ticks; \"\": /proc")
	fs.StringVar(&c.name, "name", "", "the proxy's name in the results (default: the command name of -pid)")
	fs.StringVar(&c.variant, "variant", "", "a variant of the proxy's setup, in the results (e.g. hook)")
	fs.IntVar(&c.repeat, "repeat", 0, "the round of repeated runs this one belongs to, in the results (bench.sh's REPEATS); 0: none")
	fs.BoolVar(&c.json, "json", false, "write one JSON line per result on stdout (the human lines go to stderr)")
	fs.StringVar(&l.streams, "streams", "1,8", "throughput: numbers of parallel streams, one run each")
	fs.StringVar(&l.dirs, "dirs", "up,down", "throughput: directions, one run each: up (client to target), down (target to client)")
	fs.StringVar(&l.size, "bytes", "1GiB", "throughput: bytes per run, split among the streams")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "connrate: how long to open tunnels; udp: how long to send datagrams")
	fs.Int64Var(&c.count, "count", 0, "connrate: stop after this many tunnels; http: after this many requests per object (0: -duration only)")
	fs.IntVar(&c.conc, "concurrency", 32, "connrate: parallel clients; http: keep-alive connections; udp: datagrams in flight")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "speak TLS to the proxy (a ferry TLS listener) first, trusting this PEM CA file; not in http mode")
	fs.StringVar(&c.origin, "origin", "", "http: the origin's address (host:port), which serves an object of n bytes at /n")
	fs.StringVar(&l.objects, "objects", "1KiB,64KiB", "http and mitm: object sizes, one run each")
	fs.Int64Var(&c.post, "post", 0, "http: send POSTs with a body of this many bytes, written with the head; 0: GETs (the origin must answer a POST with the object: bench.sh's nginx does)")
	fs.StringVar(&c.originTLS, "origin-tls", "", "mitm: the origin's HTTPS address as name:port, a name the proxy intercepts")
	fs.StringVar(&c.originCA, "origin-ca", "", "mitm: PEM file of the CA(s) the client trusts for the origin's name (the intercepting proxy's)")
	fs.BoolVar(&c.waitClose, "wait-close", true, "connrate: after the echo, wait for the target's close to come through the proxy before closing (false: close at once, for a proxy that holds a tunnel open after one side ends)")
	fs.IntVar(&c.echoBytes, "echo", 16, "connrate and idle: bytes echoed through each tunnel")
	fs.Int64Var(&c.rounds, "rounds", 20000, "pingpong: measured round trips")
	fs.IntVar(&c.msg, "msg", 64, "pingpong: message size in bytes")
	fs.IntVar(&c.warmup, "warmup", 500, "pingpong: round trips before measuring; http: requests before measuring, spread over the connections")
	fs.IntVar(&c.n, "n", 9000, "idle: tunnels to open and hold")
	fs.IntVar(&c.openConc, "open-concurrency", 32, "idle: parallel openers")
	fs.DurationVar(&c.hold, "hold", 3*time.Second, "idle: how long to hold the tunnels idle before reading memory and fds")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "time cap of each measured run (a throughput run, a ping-pong run, opening the idle tunnels)")
	fs.DurationVar(&c.dialTO, "dial-timeout", 10*time.Second, "connect + handshake timeout per tunnel")
	fs.DurationVar(&c.settle, "settle", 300*time.Millisecond, "pause before each /proc reading that starts or ends a measurement, so the proxy is done with what came before")
	fs.DurationVar(&c.maxTime, "max-time", 15*time.Minute, "the tool exits (status 3) after this long, whatever it is doing")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bench -mode MODE -proxy ADDR -proto PROTO [-pid PID] [flags]\n       bench report [-meta FILE] [-png FILE] results.jsonl\n\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseLists fills c's sizes, stream counts, directions and objects
// from the comma-separated flags.
func (c *config) parseLists(l benchLists) error {
	var err error
	if c.bytes, err = parseSize(l.size); err != nil || c.bytes <= 0 {
		return fmt.Errorf("-bytes: %q", l.size)
	}
	for _, s := range strings.Split(l.streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 1024 {
			return fmt.Errorf("-streams: %q", s)
		}
		c.streams = append(c.streams, n)
	}
	for _, d := range strings.Split(l.dirs, ",") {
		d = strings.TrimSpace(d)
		if d != "up" && d != "down" {
			return fmt.Errorf("-dirs: %q, want up or down", d)
		}
		c.dirs = append(c.dirs, d)
	}
	for _, o := range strings.Split(l.objects, ",") {
		n, err := parseSize(o)
		if err != nil || n < 1 || n > 1<<30 {
			return fmt.Errorf("-objects: %q", o)
		}
		c.objects = append(c.objects, n)
	}
	return nil
}

// check rejects a bad protocol, origin or count, names the proxy and
// checks its pid can be read.
func (c *config) check() error {
	switch {
	case c.mode == "http" && (c.proto == "http" || c.proto == "reverse"):
		if _, err := netip.ParseAddrPort(c.origin); err != nil {
			return fmt.Errorf("-origin: %q, want IP:port", c.origin)
		}
	case c.mode == "http":
		return fmt.Errorf("-proto: %q, want http or reverse in http mode", c.proto)
	case c.mode == "mitm":
		if err := c.checkMITM(); err != nil {
			return err
		}
	case c.proto == "connect", c.proto == "socks5", c.proto == "tcp", c.proto == "h2":
	default:
		return fmt.Errorf("-proto: %q, want connect, socks5, tcp or h2", c.proto)
	}
	if (c.mode == "http" || c.mode == "mitm") && c.tlsCA != "" {
		return fmt.Errorf("-tls-ca: not in %s mode", c.mode)
	}
	if c.conc < 1 || c.openConc < 1 || c.n < 1 || c.rounds < 1 || c.msg < 1 || c.msg > 2048 || c.echoBytes < 1 || c.echoBytes > 2048 {
		return fmt.Errorf("-concurrency, -open-concurrency, -n, -rounds must be >= 1; -msg and -echo 1 to 2048")
	}
	if c.name == "" {
		c.name = "proxy"
		if c.pid > 0 {
			c.name = procName(c.pid)
		}
	}
	if c.pid > 0 {
		if _, err := sample(c.pid, c.cgroup, false); err != nil {
			return fmt.Errorf("-pid: %v", err)
		}
		if c.cgroup != "" {
			if err := inCgroup(c.cgroup, c.pid); err != nil {
				return fmt.Errorf("-cgroup: %v", err)
			}
		}
	}
	return nil
}

// runModes runs the measurements of the mode, emitting each result.
func (b *bench) runModes() error {
	c := b.cfg
	switch c.mode {
	case "throughput":
		for _, s := range c.streams {
			for _, d := range c.dirs {
				b.emit(b.throughput(s, d))
			}
		}
	case "connrate":
		b.emit(b.connrate())
	case "pingpong":
		b.emit(b.pingpong())
	case "idle":
		b.emit(b.idle())
	case "http":
		for _, n := range c.objects {
			b.emit(b.httpLoad(n))
		}
	case "udp":
		b.emit(b.udpLoad())
	case "mitm":
		for _, n := range c.objects {
			b.emit(b.mitmLoad(n))
		}
	default:
		return fmt.Errorf("-mode: %q, want throughput, connrate, pingpong, idle, http, udp or mitm", c.mode)
	}
	return nil
}

type bench struct {
	cfg        config
	tg         *target
	d          *dialer
	human, out io.Writer
	failed     bool
}

func (b *bench) emit(r *Result) {
	r.stamp()
	r.Name, r.Variant, r.Proto, r.Mode = b.cfg.name, b.cfg.variant, b.cfg.proto, b.cfg.mode
	r.Repeat = b.cfg.repeat
	if b.cfg.pid > 0 {
		r.Process = procName(b.cfg.pid)
	}
	fmt.Fprintln(b.human, r.human())
	if err := writeJSON(b.out, r); err != nil {
		fmt.Fprintf(os.Stderr, "bench: write: %v\n", err)
		b.failed = true
	}
	if r.Errors > 0 && (r.Bytes == 0 && r.Conns == 0 && r.Rounds == 0 && r.Tunnels == 0 && r.Requests == 0) {
		b.failed = true
	}
}

// meter is the start of a measurement: the proxy's and the tool's CPU.
type meter struct {
	p    procSample
	self float64
	t    time.Time
}

func (b *bench) start() meter {
	p, _ := sample(b.cfg.pid, b.cfg.cgroup, false)
	return meter{p: p, self: selfCPU(), t: time.Now()}
}

// stop ends a measurement of elapsed wall time (the measured work, not
// the settle pauses around it) and fills the common fields.
func (b *bench) stop(m meter, elapsed time.Duration, r *Result) {
	p, err := sample(b.cfg.pid, b.cfg.cgroup, false)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	}
	r.Seconds = elapsed.Seconds()
	if b.cfg.pid > 0 && err == nil {
		r.CPUSec = cpuSeconds(m.p, p)
		if m.p.cgroup && p.cgroup {
			r.CPUFrom = "cgroup"
		}
		r.Procs = p.procs
	}
	if r.Seconds > 0 {
		r.ProxyCPU = 100 * r.CPUSec / r.Seconds
		r.ToolCPU = 100 * (selfCPU() - m.self) / time.Since(m.t).Seconds()
	}
}

func (r *Result) fail(err error) {
	if r.Errors == 0 {
		r.FirstError = err.Error()
	}
	r.Errors++
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
