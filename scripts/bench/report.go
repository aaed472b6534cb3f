package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// runReport reads JSON result lines and writes BENCHMARKS.md to stdout
// (and, with -png, the chart).
func runReport(args []string) int {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	meta := fs.String("meta", "", `file of "key: value" lines describing the machine and the run, listed as they are`)
	png := fs.String("png", "", "write the chart to this PNG file")
	pngLink := fs.String("png-link", "", "how the Markdown links the chart (default: -png)")
	ferry := fs.String("ferry", "ferry", "the name of the proxy the others are compared with")
	idleTarget := fs.Int("idle-target", 9000, "idle tunnels the RSS and fd targets are stated for")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bench report [-meta FILE] [-png FILE] results.jsonl... > BENCHMARKS.md\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	rs := &results{ferry: *ferry, idleTarget: int64(*idleTarget), idx: map[string]*Result{}}
	for _, f := range fs.Args() {
		if err := rs.load(f); err != nil {
			fmt.Fprintf(os.Stderr, "bench report: %v\n", err)
			return 1
		}
	}
	var metaLines []string
	if *meta != "" {
		b, err := os.ReadFile(*meta)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench report: %v\n", err)
			return 1
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(l) != "" {
				metaLines = append(metaLines, l)
			}
		}
	}
	link := *pngLink
	if link == "" {
		link = *png
	}
	if *png != "" {
		if err := rs.chart(*png); err != nil {
			fmt.Fprintf(os.Stderr, "bench report: chart: %v\n", err)
			return 1
		}
	}
	w := bufio.NewWriter(os.Stdout)
	rs.markdown(w, metaLines, link)
	if err := w.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "bench report: %v\n", err)
		return 1
	}
	return 0
}

// subj is one proxy setup measured: name, variant, protocol.
type subj struct{ name, variant, proto string }

func (s subj) key() string { return s.name + "|" + s.variant + "|" + s.proto }

func (s subj) label() string {
	n := s.name
	if s.variant != "" {
		n += "+" + s.variant
	}
	return n + " " + protoLabel(s.proto)
}

func protoLabel(p string) string {
	switch p {
	case "connect":
		return "CONNECT"
	case "socks5":
		return "SOCKS5"
	case "http":
		return "HTTP"
	case "reverse":
		return "mode http (reverse)"
	}
	return p
}

type results struct {
	ferry      string
	idleTarget int64
	all        []*Result
	subjects   []subj
	idx        map[string]*Result // subject key + mode (+ streams/dir) -> last result
	raw        []string
}

func (rs *results) load(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	seen := map[string]bool{}
	for _, s := range rs.subjects {
		seen[s.key()] = true
	}
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(text), &r); err != nil || r.Mode == "" {
			fmt.Fprintf(os.Stderr, "bench report: %s:%d: not a result, skipped\n", file, line)
			continue
		}
		rs.raw = append(rs.raw, text)
		rs.all = append(rs.all, &r)
		s := subj{r.Name, r.Variant, r.Proto}
		if !seen[s.key()] {
			seen[s.key()] = true
			rs.subjects = append(rs.subjects, s)
		}
		rs.idx[resultKey(s, r.Mode, r.Streams, r.Dir+objectKey(r.ObjectBytes))] = &r
	}
	return sc.Err()
}

func resultKey(s subj, mode string, streams int, dir string) string {
	return fmt.Sprintf("%s|%s|%d|%s", s.key(), mode, streams, dir)
}

// objectKey tells the http runs of one subject apart, by object size.
func objectKey(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("object %d", n)
}

func (rs *results) get(s subj, mode string) *Result { return rs.idx[resultKey(s, mode, 0, "")] }

// httpRun is the http run of s for objects of size bytes.
func (rs *results) httpRun(s subj, size int64) *Result {
	return rs.idx[resultKey(s, "http", 0, objectKey(size))]
}

// objects are the object sizes of the http runs, in order.
func (rs *results) objects() []int64 {
	var out []int64
	seen := map[int64]bool{}
	for _, r := range rs.all {
		if r.Mode == "http" && !seen[r.ObjectBytes] {
			seen[r.ObjectBytes] = true
			out = append(out, r.ObjectBytes)
		}
	}
	return out
}

// httpValue reads one figure of an http run; ok false when it did not
// run, served nothing or had errors.
func (rs *results) httpValue(s subj, size int64, f func(*Result) float64) (float64, bool) {
	r := rs.httpRun(s, size)
	if r == nil || r.Requests == 0 || r.Errors > 0 {
		return 0, false
	}
	return f(r), true
}

// httpFerry is the ferry setup the plain HTTP targets judge: without
// its access log when measured (the peers run with logging off), else
// with it.
func (rs *results) httpFerry() subj {
	if s := (subj{rs.ferry, "nolog", "http"}); rs.has(s) {
		return s
	}
	return rs.fast("http")
}

func (rs *results) tp(s subj, streams int, dir string) *Result {
	return rs.idx[resultKey(s, "throughput", streams, dir)]
}

// fast is ferry without a variant on proto.
func (rs *results) fast(proto string) subj { return subj{rs.ferry, "", proto} }

func (rs *results) has(s subj) bool {
	for _, x := range rs.subjects {
		if x == s {
			return true
		}
	}
	return false
}

// combos are the throughput runs the tables show, in order.
type combo struct {
	streams int
	dir     string
}

func (c combo) label() string {
	arrow := "↑"
	if c.dir == "down" {
		arrow = "↓"
	}
	if c.streams == 1 {
		return "1 stream " + arrow
	}
	return fmt.Sprintf("%d streams %s", c.streams, arrow)
}

func (rs *results) combos() []combo {
	var out []combo
	seen := map[combo]bool{}
	for _, r := range rs.all {
		if r.Mode != "throughput" {
			continue
		}
		c := combo{r.Streams, r.Dir}
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// cpuPerGB of one throughput run; ok false when it did not run, moved
// nothing, or had no proxy pid.
func (rs *results) cpuPerGB(s subj, c combo) (float64, bool) {
	r := rs.tp(s, c.streams, c.dir)
	if r == nil || r.Bytes == 0 || r.Errors > 0 || r.CPUSecPerGB == 0 && r.CPUSec == 0 {
		return 0, false
	}
	return r.CPUSecPerGB, true
}

// aggCPUPerGB is CPU time over bytes of every throughput run of s with
// the given stream count (0: all).
func (rs *results) aggCPUPerGB(s subj, streams int) (float64, bool) {
	var cpu, bytes float64
	n := 0
	for _, c := range rs.combos() {
		if streams != 0 && c.streams != streams {
			continue
		}
		r := rs.tp(s, c.streams, c.dir)
		if r == nil || r.Bytes == 0 || r.Errors > 0 {
			return 0, false
		}
		cpu += r.CPUSec
		bytes += float64(r.Bytes)
		n++
	}
	if n == 0 || bytes == 0 {
		return 0, false
	}
	return cpu / (bytes / 1e9), true
}

func (rs *results) mbps(s subj, c combo) (float64, bool) {
	r := rs.tp(s, c.streams, c.dir)
	if r == nil || r.Bytes == 0 || r.Errors > 0 {
		return 0, false
	}
	return r.MBps, true
}

// value reads one figure of a single-run mode.
func (rs *results) value(s subj, mode string, f func(*Result) float64) (float64, bool) {
	r := rs.get(s, mode)
	if r == nil {
		return 0, false
	}
	switch mode {
	case "connrate":
		if r.Conns == 0 {
			return 0, false
		}
	case "pingpong":
		if r.Rounds == 0 {
			return 0, false
		}
	case "idle":
		if r.Tunnels == 0 {
			return 0, false
		}
	}
	return f(r), true
}

func num(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func ratio(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

// column of a metric table.
type column struct {
	head string
	get  func(subj) (float64, bool)
}

// countColumns are shown without decimals.
var countColumns = map[string]bool{"tunnels": true, "processes": true, "tunnels/s": true, "idle CPU ms during hold": true, "requests/s": true, "reopened": true}

// table writes one metric: a row per subject that has a figure, its
// figures, then ferry's figure (same metric, ratioBy) divided by the
// row's, for each of ferry's protocols.
func (rs *results) table(w io.Writer, title, note string, cols []column, ratioBy func(subj) (float64, bool)) {
	var rows []subj
	for _, s := range rs.subjects {
		for _, c := range cols {
			if _, ok := c.get(s); ok {
				rows = append(rows, s)
				break
			}
		}
	}
	fmt.Fprintf(w, "### %s\n\n", title)
	if note != "" {
		fmt.Fprintf(w, "%s\n\n", note)
	}
	if len(rows) == 0 {
		fmt.Fprintf(w, "No data.\n\n")
		return
	}
	var ferries []subj
	for _, f := range []subj{rs.fast("connect"), rs.fast("socks5"), rs.fast("tcp"), rs.fast("http"), {rs.ferry, "nolog", "http"}} {
		if _, ok := ratioBy(f); ok {
			ferries = append(ferries, f)
		}
	}
	fmt.Fprintf(w, "| proxy |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c.head)
	}
	for _, f := range ferries {
		fmt.Fprintf(w, " %s ÷ this |", f.label())
	}
	fmt.Fprintf(w, "\n|---|")
	for range len(cols) + len(ferries) {
		fmt.Fprintf(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, s := range rows {
		label := s.label()
		if s.name == rs.ferry {
			label = "**" + label + "**"
		}
		fmt.Fprintf(w, "| %s |", label)
		for _, c := range cols {
			if v, ok := c.get(s); ok && countColumns[c.head] {
				fmt.Fprintf(w, " %.0f |", v)
			} else if ok {
				fmt.Fprintf(w, " %s |", num(v))
			} else {
				fmt.Fprintf(w, " — |")
			}
		}
		mine, ok := ratioBy(s)
		for _, f := range ferries {
			fv, _ := ratioBy(f)
			if !ok || mine == 0 || f == s {
				fmt.Fprintf(w, " — |")
				continue
			}
			fmt.Fprintf(w, " %s |", ratio(fv/mine))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}

// goal is one line of the targets table.
type goal struct {
	what, ferry, ref, ratio, result string
	met                             bool
}

func (rs *results) targets() []goal {
	var out []goal
	haproxy := subj{"haproxy", "", "tcp"}
	tiny := subj{"tinyproxy", "", "connect"}
	nodata := func(what string) goal {
		return goal{what: what, ferry: "—", ref: "—", ratio: "—", result: "no data"}
	}
	verdict := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**not met**"
	}
	// Throughput: every combination must hold; the ratio shown is the worst.
	cpuTarget := func(what string, f, ref subj, limit float64) goal {
		worst, worstC := -1.0, combo{}
		for _, c := range rs.combos() {
			fv, ok1 := rs.cpuPerGB(f, c)
			rv, ok2 := rs.cpuPerGB(ref, c)
			if !ok1 || !ok2 || rv == 0 {
				return nodata(what)
			}
			if r := fv / rv; r > worst {
				worst, worstC = r, c
			}
		}
		fa, ok1 := rs.aggCPUPerGB(f, 0)
		ra, ok2 := rs.aggCPUPerGB(ref, 0)
		if worst < 0 || !ok1 || !ok2 {
			return nodata(what)
		}
		fw, _ := rs.cpuPerGB(f, worstC)
		rw, _ := rs.cpuPerGB(ref, worstC)
		ok := worst <= limit
		return goal{
			what:   what,
			ferry:  fmt.Sprintf("%s (all runs); %s at %s", num(fa), num(fw), worstC.label()),
			ref:    fmt.Sprintf("%s: %s (all runs); %s at %s", ref.label(), num(ra), num(rw), worstC.label()),
			ratio:  fmt.Sprintf("%s worst (%s); %s over all runs", ratio(worst), worstC.label(), ratio(fa/ra)),
			result: verdict(ok), met: ok,
		}
	}
	for _, p := range []string{"connect", "socks5", "tcp"} {
		out = append(out, cpuTarget(fmt.Sprintf("relay CPU-s/GB, ferry %s ≤ haproxy (tcp, splice), every run", protoLabel(p)), rs.fast(p), haproxy, 1))
	}
	for _, p := range []string{"connect", "socks5", "tcp"} {
		hook := subj{rs.ferry, "hook", p}
		if !rs.has(hook) {
			continue
		}
		t := cpuTarget(fmt.Sprintf("relay CPU-s/GB with a data hook (%s) ≤ 2× ferry's fast path, every run", protoLabel(p)), hook, rs.fast(p), 2)
		out = append(out, t)
	}
	simple := func(what string, f, ref subj, mode string, get func(*Result) float64, limit float64, atMost bool, unit string) goal {
		fv, ok1 := rs.value(f, mode, get)
		rv, ok2 := rs.value(ref, mode, get)
		if !ok1 || !ok2 || rv == 0 {
			return nodata(what)
		}
		r := fv / rv
		ok := r <= limit
		if !atMost {
			ok = r >= limit
		}
		return goal{what: what, ferry: num(fv) + unit, ref: fmt.Sprintf("%s: %s%s", ref.label(), num(rv), unit), ratio: ratio(r), result: verdict(ok), met: ok}
	}
	for _, p := range []string{"connect", "socks5"} {
		out = append(out, simple(fmt.Sprintf("new tunnels/s, ferry %s ≥ tinyproxy", protoLabel(p)), rs.fast(p), tiny, "connrate",
			func(r *Result) float64 { return r.ConnsPerSec }, 1, false, "/s"))
	}
	for _, p := range []string{"connect", "socks5"} {
		out = append(out, simple(fmt.Sprintf("CPU-us per tunnel, ferry %s ≤ tinyproxy", protoLabel(p)), rs.fast(p), tiny, "connrate",
			func(r *Result) float64 { return r.CPUUsPerConn }, 1, true, " us"))
	}
	// absolute compares an idle figure with a fixed limit per tunnel;
	// fixed is what the proxy may add once, whatever the number of
	// tunnels (a pooled pipe, a grown epoll set), in the figure's unit.
	absolute := func(what string, s subj, get func(*Result) float64, limit, fixed float64, unit string) goal {
		r := rs.get(s, "idle")
		v, ok := rs.value(s, "idle", get)
		if !ok {
			return nodata(what)
		}
		t := goal{what: what, ferry: fmt.Sprintf("%s%s with %d open", num(v), unit, r.Tunnels), ref: fmt.Sprintf("limit %s%s", num(limit), unit), ratio: ratio(v / limit)}
		n := float64(r.Tunnels)
		if extra := math.Round(v*n - limit*n); fixed > 0 && extra > 0 && extra <= fixed {
			t.ferry += fmt.Sprintf(" (%g per tunnel and %.0f more in all)", limit, extra)
		}
		switch {
		case r.Tunnels < rs.idleTarget:
			t.result = fmt.Sprintf("not measured at %d tunnels", rs.idleTarget)
		default:
			t.met = v*n <= limit*n+fixed+1e-6
			t.result = verdict(t.met)
		}
		return t
	}
	for _, p := range []string{"connect", "socks5", "tcp"} {
		out = append(out, absolute(fmt.Sprintf("RSS per idle tunnel, ferry %s, %d open, ≤ 8 KiB", protoLabel(p), rs.idleTarget), rs.fast(p),
			func(r *Result) float64 { return r.RSSKiBPerTunnel }, 8, 0, " KiB"))
	}
	for _, p := range []string{"connect", "socks5", "tcp"} {
		out = append(out, absolute(fmt.Sprintf("fds per idle tunnel, ferry %s, ≤ 2 (up to 16 more in all allowed)", protoLabel(p)), rs.fast(p),
			func(r *Result) float64 { return r.FDsPerTunnel }, 2, 16, ""))
	}
	for _, p := range []string{"connect", "socks5", "tcp"} {
		out = append(out, simple(fmt.Sprintf("ping-pong p50, ferry %s ≤ 1.1× haproxy", protoLabel(p)), rs.fast(p), haproxy, "pingpong",
			func(r *Result) float64 { return r.P50Us }, 1.1, true, " us"))
		out = append(out, simple(fmt.Sprintf("ping-pong p99, ferry %s ≤ 1.1× haproxy", protoLabel(p)), rs.fast(p), haproxy, "pingpong",
			func(r *Result) float64 { return r.P99Us }, 1.1, true, " us"))
		out = append(out, simple(fmt.Sprintf("CPU-us per round trip, ferry %s ≤ haproxy", protoLabel(p)), rs.fast(p), haproxy, "pingpong",
			func(r *Result) float64 { return r.CPUUsPerRound }, 1, true, " us"))
	}
	// Plain HTTP: CPU per request against squid (a forward proxy) and
	// haproxy in mode http (a reverse proxy, the L7 reference), per
	// object size; ferry without its access log when it was measured so,
	// as the peers run with logging off, and its figure with the log
	// beside it.
	hf, withLog := rs.httpFerry(), rs.fast("http")
	perReq := func(r *Result) float64 { return r.CPUUsPerReq }
	for _, size := range rs.objects() {
		for _, ref := range []struct {
			s     subj
			limit float64
		}{{subj{"squid", "", "http"}, 1}, {subj{"haproxy", "", "reverse"}, 1.5}} {
			what := fmt.Sprintf("plain HTTP CPU-us per request, %s objects, %s ≤ ", sizeString(size), hf.label())
			if ref.limit == 1 {
				what += ref.s.name
			} else {
				what += fmt.Sprintf("%g× %s", ref.limit, ref.s.label())
			}
			fv, ok1 := rs.httpValue(hf, size, perReq)
			rv, ok2 := rs.httpValue(ref.s, size, perReq)
			if !ok1 || !ok2 || rv == 0 {
				out = append(out, nodata(what))
				continue
			}
			ferry := num(fv) + " us"
			if lv, ok := rs.httpValue(withLog, size, perReq); ok && hf != withLog {
				ferry += fmt.Sprintf(" (%s us with the access log, %s)", num(lv), ratio(lv/rv))
			}
			ok := fv/rv <= ref.limit
			out = append(out, goal{what: what, ferry: ferry, ref: fmt.Sprintf("%s: %s us", ref.s.label(), num(rv)), ratio: ratio(fv / rv), result: verdict(ok), met: ok})
		}
	}
	return out
}

func (rs *results) markdown(w io.Writer, meta []string, png string) {
	date := time.Now().UTC().Format("2006-01-02")
	for _, l := range meta {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "date") {
			date = strings.TrimSpace(v)
		}
	}
	fmt.Fprintf(w, "# Benchmarks\n\n")
	fmt.Fprintf(w, "Measured on %s by `scripts/bench.sh`, which writes this file (do not edit it by hand: run the script again). ", date)
	fmt.Fprintf(w, "ferry and Debian's proxies each ran alone on CPU core 0 (`taskset -c 0`), on loopback, one at a time; ")
	fmt.Fprintf(w, "the load tool (`scripts/bench`) ran on core 1 with its own target server at the far end of each tunnel. ")
	fmt.Fprintf(w, "CPU figures are the proxy's own user+system time from `/proc/PID/stat` (its child processes included), ")
	fmt.Fprintf(w, "so they do not depend on how fast the load tool is; the kernel counts it in clock ticks of %d ms, ", 1000/clockTicks)
	fmt.Fprintf(w, "so a run's CPU figure is exact to about two ticks (about 2%% for a run that keeps the proxy busy for a second).\n\n")

	if len(meta) > 0 {
		fmt.Fprintf(w, "## Machine and run\n\n")
		for _, l := range meta {
			if k, v, ok := strings.Cut(l, ":"); ok {
				fmt.Fprintf(w, "- **%s**: %s\n", strings.TrimSpace(k), strings.TrimSpace(v))
			} else {
				fmt.Fprintf(w, "- %s\n", strings.TrimSpace(l))
			}
		}
		fmt.Fprintln(w)
	}

	ts := rs.targets()
	met, known := 0, 0
	for _, t := range ts {
		if t.result != "no data" {
			known++
		}
		if t.met {
			met++
		}
	}
	fmt.Fprintf(w, "## Targets\n\n%d of %d targets met (%d measured). Ratios are ferry's figure divided by the reference's.\n\n", met, len(ts), known)
	fmt.Fprintf(w, "| target | ferry | reference | ratio | result |\n|---|---|---|---|---|\n")
	for _, t := range ts {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", t.what, t.ferry, t.ref, t.ratio, t.result)
	}
	fmt.Fprintln(w)

	if png != "" {
		fmt.Fprintf(w, "## Chart\n\n![main figures](%s)\n\n", png)
	}

	fmt.Fprintf(w, "## Results\n\n")
	fmt.Fprintf(w, "Each table has a row per proxy setup (**ferry** in bold; `+hook`: ferry with a no-op data plugin, which turns off the splice fast path; `+nolog`: ferry without its access log) ")
	fmt.Fprintf(w, "and, on the right, ferry's figure for the same metric on each of its protocols divided by the row's: ")
	fmt.Fprintf(w, "below 1 means ferry's figure is smaller (better for CPU, latency, memory; worse for rates).\n\n")

	cs := rs.combos()
	var cpuCols, mbCols []column
	for _, c := range cs {
		cpuCols = append(cpuCols, column{c.label(), func(s subj) (float64, bool) { return rs.cpuPerGB(s, c) }})
		mbCols = append(mbCols, column{c.label(), func(s subj) (float64, bool) { return rs.mbps(s, c) }})
	}
	allCPU := func(s subj) (float64, bool) { return rs.aggCPUPerGB(s, 0) }
	cpuCols = append(cpuCols, column{"all runs", allCPU})
	rs.table(w, "Relay CPU: proxy CPU-seconds per GB", "CPU-seconds of the proxy per 10^9 bytes carried; ↑ client to target, ↓ target to client; streams run at once and share the bytes; \"all runs\" is the CPU of all runs over their bytes, which the ratios use. Lower is better.",
		cpuCols, allCPU)
	meanMB := func(s subj) (float64, bool) {
		var sum float64
		n := 0
		for _, c := range cs {
			v, ok := rs.mbps(s, c)
			if !ok {
				return 0, false
			}
			sum += v
			n++
		}
		return sum / float64(max(n, 1)), n > 0
	}
	mbCols = append(mbCols, column{"mean", meanMB})
	rs.table(w, "Throughput, MB/s", "10^6 bytes per second, all streams together. The load tool and its target share one core, so fast proxies may be held back by the tool (see `tool_cpu_pct` in the raw results); the CPU figures above are not. Higher is better.",
		mbCols, meanMB)

	get := func(mode string, f func(*Result) float64) func(subj) (float64, bool) {
		return func(s subj) (float64, bool) { return rs.value(s, mode, f) }
	}
	conc := 0
	for _, r := range rs.all {
		if r.Mode == "connrate" {
			conc = r.Concurrency
		}
	}
	rate := get("connrate", func(r *Result) float64 { return r.ConnsPerSec })
	rs.table(w, "New tunnels per second", fmt.Sprintf("%d clients at once, each: connect, handshake, %d-byte echo through the tunnel, close. Higher is better.", conc, 16),
		[]column{{"tunnels/s", rate}, {"p50 ms", get("connrate", func(r *Result) float64 { return r.ConnP50Us / 1e3 })}, {"p99 ms", get("connrate", func(r *Result) float64 { return r.ConnP99Us / 1e3 })}}, rate)
	perConn := get("connrate", func(r *Result) float64 { return r.CPUUsPerConn })
	rs.table(w, "CPU per tunnel", "Proxy CPU-microseconds per tunnel in the run above (accept, handshake, dial, 16-byte echo, close, access log). Lower is better.",
		[]column{{"CPU-us/tunnel", perConn}, {"proxy CPU %", get("connrate", func(r *Result) float64 { return r.ProxyCPU })}}, perConn)

	p50 := get("pingpong", func(r *Result) float64 { return r.P50Us })
	p99 := get("pingpong", func(r *Result) float64 { return r.P99Us })
	rs.table(w, "Ping-pong latency p50, microseconds", "64-byte messages echoed by the target through one tunnel, one at a time. Lower is better.",
		[]column{{"p50 us", p50}, {"mean us", get("pingpong", func(r *Result) float64 { return r.MeanUs })}}, p50)
	rs.table(w, "Ping-pong latency p99, microseconds", "", []column{{"p99 us", p99}}, p99)
	perRound := get("pingpong", func(r *Result) float64 { return r.CPUUsPerRound })
	rs.table(w, "CPU per round trip", "Proxy CPU-microseconds per 64-byte round trip. Lower is better.", []column{{"CPU-us/round trip", perRound}}, perRound)

	idleN := int64(0)
	for _, r := range rs.all {
		if r.Mode == "idle" {
			idleN = max(idleN, r.Tunnels)
		}
	}
	rss := get("idle", func(r *Result) float64 { return r.RSSKiBPerTunnel })
	rs.table(w, "Memory per idle tunnel, KiB", fmt.Sprintf("Up to %d tunnels opened (each echoed 16 bytes once) and held idle; the proxy's RSS (and PSS, which splits pages shared between processes) after the hold minus before, over the tunnels. RSS sums every process of the proxy, so it counts shared pages once per process for proxies that fork (dante). Lower is better.", idleN),
		[]column{
			{"tunnels", get("idle", func(r *Result) float64 { return float64(r.Tunnels) })},
			{"KiB RSS/tunnel", rss},
			{"KiB PSS/tunnel", get("idle", func(r *Result) float64 { return r.PSSKiBPerTunnel })},
			{"RSS before MiB", get("idle", func(r *Result) float64 { return float64(r.RSSBaseKiB) / 1024 })},
			{"RSS held MiB", get("idle", func(r *Result) float64 { return float64(r.RSSKiB) / 1024 })},
			{"processes", get("idle", func(r *Result) float64 { return float64(r.Procs) })},
		}, rss)
	fds := get("idle", func(r *Result) float64 { return r.FDsPerTunnel })
	rs.table(w, "File descriptors per idle tunnel", "Entries of /proc/PID/fd (all processes) after the hold minus before, over the tunnels: 2 is one socket each side. Lower is better.",
		[]column{{"fds/tunnel", fds}, {"idle CPU ms during hold", get("idle", func(r *Result) float64 { return r.IdleCPUms })}, {"open CPU-us/tunnel", get("idle", func(r *Result) float64 { return r.CPUUsPerOpenConn })}}, fds)

	for _, size := range rs.objects() {
		hv := func(f func(*Result) float64) func(subj) (float64, bool) {
			return func(s subj) (float64, bool) { return rs.httpValue(s, size, f) }
		}
		conns, reopened := 0, false
		for _, r := range rs.all {
			if r.Mode == "http" {
				conns = r.Concurrency
				reopened = reopened || r.Reopened > 0 && r.ObjectBytes == size
			}
		}
		note := fmt.Sprintf("%d keep-alive connections, each sending GET requests for a %s object one at a time and reading each response whole; the origin is nginx on the load tool's core. "+
			"HTTP: absolute-form requests to a forward proxy; mode http (reverse): origin-form requests to haproxy in `mode http` as a reverse proxy to the same origin, the L7 reference. "+
			"ferry+nolog is ferry without its access log; the peers run with logging off. Ratios use CPU-us per request; lower is better.", conns, sizeString(size))
		if reopened {
			note += " A proxy that closes the connection after a response is reconnected to: `reopened` counts those connections, whose cost is in its CPU figure."
		}
		perReq := hv(func(r *Result) float64 { return r.CPUUsPerReq })
		rs.table(w, fmt.Sprintf("Plain HTTP, %s objects", sizeString(size)), note,
			[]column{
				{"requests/s", hv(func(r *Result) float64 { return r.ReqsPerSec })},
				{"CPU-us/request", perReq},
				{"p50 us", hv(func(r *Result) float64 { return r.ReqP50Us })},
				{"p99 us", hv(func(r *Result) float64 { return r.ReqP99Us })},
				{"proxy CPU %", hv(func(r *Result) float64 { return r.ProxyCPU })},
				{"reopened", hv(func(r *Result) float64 { return float64(r.Reopened) })},
			}, perReq)
	}

	var problems []string
	for _, r := range rs.all {
		if r.Errors > 0 || r.Truncated {
			p := fmt.Sprintf("- %s %s", subj{r.Name, r.Variant, r.Proto}.label(), r.Mode)
			if r.Mode == "throughput" {
				p += fmt.Sprintf(" (%s)", combo{r.Streams, r.Dir}.label())
			}
			if r.Mode == "http" {
				p += fmt.Sprintf(" (%s objects)", sizeString(r.ObjectBytes))
			}
			if r.Errors > 0 {
				p += fmt.Sprintf(": %d errors, first: `%s`", r.Errors, strings.ReplaceAll(r.FirstError, "`", "'"))
			}
			if r.Truncated {
				p += ": stopped by the time cap before the planned amount"
			}
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		fmt.Fprintf(w, "## Errors and cut-short runs\n\n%s\n\n", strings.Join(problems, "\n"))
	}

	fmt.Fprintf(w, "## Raw results\n\n<details><summary>%d JSON lines from <code>scripts/bench</code></summary>\n\n```json\n%s\n```\n\n</details>\n", len(rs.raw), strings.Join(rs.raw, "\n"))
}
