package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// markdown writes the report: the introduction, the machine, the
// targets, the chart, a table per metric, the errors and the raw
// results.
func (rs *results) markdown(w io.Writer, meta []string, png string) {
	writeIntro(w, meta, rs.cpuFromCgroup())
	writeMachine(w, meta)
	rs.writeTargets(w)
	rs.writeSteadiness(w)
	rs.writeSetups(w)
	writeChart(w, png)
	writeResultsIntro(w)
	rs.writeRelayTables(w)
	rs.writeConnrateTables(w)
	rs.writePingpongTables(w)
	rs.writeIdleTables(w)
	rs.writeHTTPTables(w)
	rs.writeUDPTables(w)
	rs.writeProblems(w)
	rs.writeRaw(w)
}

// modeValue reads one figure of a single-run mode as a column getter.
func (rs *results) modeValue(mode string, f func(*Result) float64) func(subj) (float64, bool) {
	return func(s subj) (float64, bool) { return rs.value(s, mode, f) }
}

// cpuFromCgroup says every CPU figure was read from the proxy's cgroup.
func (rs *results) cpuFromCgroup() bool {
	n := 0
	for _, r := range rs.all {
		if r.CPUSec > 0 {
			if r.CPUFrom != "cgroup" {
				return false
			}
			n++
		}
	}
	return n > 0
}

// writeIntro writes the title and how the figures were measured,
// dated by the meta line "date" (today if none); cgroup says whether
// the CPU figures came from the proxy's cgroup.
func writeIntro(w io.Writer, meta []string, cgroup bool) {
	date := time.Now().UTC().Format("2006-01-02")
	for _, l := range meta {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "date") {
			date = strings.TrimSpace(v)
		}
	}
	fmt.Fprintf(w, "# Benchmarks\n\n")
	fmt.Fprintf(w, "Measured on %s by `scripts/bench.sh`, which writes this file (do not edit it by hand: run the script again). ", date)
	fmt.Fprintf(w, "ferry and its peers (Debian's proxies, gost and glider) each ran alone on CPU core 0 (`taskset -c 0`), on loopback, one at a time; ")
	fmt.Fprintf(w, "the load tool (`scripts/bench`) ran on core 1 with its own target server at the far end of each tunnel. ")
	if cgroup {
		fmt.Fprintf(w, "CPU figures are the proxy's own CPU time, read in nanoseconds from a cgroup it ran in alone (its child processes included), ")
		fmt.Fprintf(w, "so they do not depend on how fast the load tool is.\n\n")
		return
	}
	fmt.Fprintf(w, "CPU figures are the proxy's own user+system time from `/proc/PID/stat` (its child processes included), ")
	fmt.Fprintf(w, "so they do not depend on how fast the load tool is; the kernel counts it in clock ticks of %d ms, ", 1000/clockTicks)
	fmt.Fprintf(w, "so a run's CPU figure is exact to about two ticks (about 2%% for a run that keeps the proxy busy for a second).\n\n")
}

// writeMachine lists the meta lines, keys in bold.
func writeMachine(w io.Writer, meta []string) {
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
}

// writeTargets writes the targets table and how many were met.
func (rs *results) writeTargets(w io.Writer) {
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
	fmt.Fprintf(w, "## Targets\n\n%d of %d targets met (%d measured). Ratios are ferry's figure divided by the reference's; where runs were repeated, of the medians of each one's runs, which the verdict uses. ", met, len(ts), known)
	fmt.Fprintf(w, "The worst run is the largest ratio of one of ferry's runs over the reference's run of the same round (a round of `REPEATS` runs the setups a ratio compares one after the other, so a pair was measured a minute or two apart, not the whole run apart). ")
	fmt.Fprintf(w, "ferry is judged without its access log where that was measured (`ferry+nolog`), as every peer runs without per-connection logging; its figure with the log is shown beside.")
	if s := rs.steadiness(); s != "" {
		fmt.Fprintf(w, " %s", s)
	}
	fmt.Fprintf(w, "\n\n")
	fmt.Fprintf(w, "| target | ferry | reference | ratio | worst run | result |\n|---|---|---|---|---|---|\n")
	for _, t := range ts {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", t.what, t.ferry, t.ref, t.ratio, t.worst, t.result)
	}
	fmt.Fprintln(w)
}

// writeChart links the chart, if there is one.
func writeChart(w io.Writer, png string) {
	if png != "" {
		fmt.Fprintf(w, "## Chart\n\n![main figures](%s)\n\n", png)
	}
}

// writeResultsIntro explains how to read the tables.
func writeResultsIntro(w io.Writer) {
	fmt.Fprintf(w, "## Results\n\n")
	fmt.Fprintf(w, "Each table has a row per proxy setup (**ferry** in bold; `+hook`: ferry with a no-op data plugin, which turns off the splice fast path; `+nolog`: ferry without its access log; `+tls`: through a TLS listener, the client's leg encrypted) ")
	fmt.Fprintf(w, "and, on the right, ferry's figure for the same metric on each of its protocols divided by the row's: ")
	fmt.Fprintf(w, "below 1 means ferry's figure is smaller (better for CPU, latency, memory; worse for rates).\n\n")
}

// writeRelayTables writes the throughput tables: CPU per GB (the median
// of each combination's runs, then the worst run) and MB/s.
func (rs *results) writeRelayTables(w io.Writer) {
	cs := rs.combos()
	var cpuCols, worstCols, mbCols []column
	for _, c := range cs {
		cpuCols = append(cpuCols, column{c.label(), func(s subj) (float64, bool) { return rs.cpuPerGB(s, c) }})
		worstCols = append(worstCols, column{c.label(), func(s subj) (float64, bool) { return rs.cpuPerGBWorst(s, c) }})
		mbCols = append(mbCols, column{c.label(), func(s subj) (float64, bool) { return rs.mbps(s, c) }})
	}
	allCPU := func(s subj) (float64, bool) { return rs.aggCPUPerGB(s, 0) }
	cpuCols = append(cpuCols, column{"all runs", allCPU})
	n := rs.maxRepeats("throughput")
	rs.table(w, "Relay CPU: proxy CPU-seconds per GB", fmt.Sprintf("CPU-seconds of the proxy per 10^9 bytes carried, %s; ↑ client to target, ↓ target to client; streams run at once and share the bytes; \"all runs\" is the CPU of all runs over their bytes, which the ratios use. Lower is better.", runsOf(n)),
		cpuCols, allCPU)
	if n > 1 {
		rs.table(w, "Relay CPU, worst run: proxy CPU-seconds per GB", fmt.Sprintf("The largest CPU per GB of the %d runs of each combination; the ratios on the right are of \"all runs\" as above. Lower is better.", n),
			worstCols, allCPU)
	}
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
	rs.table(w, "Throughput, MB/s", "10^6 bytes per second, all streams together, the median of the runs. The load tool and its target share one core, so fast proxies may be held back by the tool (see `tool_cpu_pct` in the raw results); the CPU figures above are not. Higher is better.",
		mbCols, meanMB)
}

// maxRepeats is the most usable runs any measurement of mode has.
func (rs *results) maxRepeats(mode string) int {
	n := 0
	for _, all := range rs.idx {
		if len(all) > 0 && all[0].Mode == mode {
			n = max(n, len(rs.runs(runKeyOf(all[0]))))
		}
	}
	return n
}

// runsOf says what a figure stands on: one run, or the median of n.
func runsOf(n int) string {
	if n <= 1 {
		return "one run each"
	}
	return fmt.Sprintf("the median of %d runs", n)
}

// writeConnrateTables writes the tunnel rate and CPU per tunnel.
func (rs *results) writeConnrateTables(w io.Writer) {
	get := rs.modeValue
	conc := 0
	for _, r := range rs.all {
		if r.Mode == "connrate" {
			conc = r.Concurrency
		}
	}
	n := rs.maxRepeats("connrate")
	rate := get("connrate", func(r *Result) float64 { return r.ConnsPerSec })
	rs.table(w, "New tunnels per second", fmt.Sprintf("%d clients at once, each: connect, handshake, %d-byte echo through the tunnel, close; %s. Higher is better.", conc, 16, runsOf(n)),
		[]column{{"tunnels/s", rate}, {"p50 ms", get("connrate", func(r *Result) float64 { return r.ConnP50Us / 1e3 })}, {"p99 ms", get("connrate", func(r *Result) float64 { return r.ConnP99Us / 1e3 })}}, rate)
	cpu := func(r *Result) float64 { return r.CPUUsPerConn }
	perConn := get("connrate", cpu)
	cols := []column{{"CPU-us/tunnel", perConn}}
	if n > 1 {
		cols = append(cols, column{"worst run", func(s subj) (float64, bool) { return rs.worst(rs.modeKey(s, "connrate"), cpu, false) }})
	}
	cols = append(cols, column{"proxy CPU %", get("connrate", func(r *Result) float64 { return r.ProxyCPU })})
	rs.table(w, "CPU per tunnel", fmt.Sprintf("Proxy CPU-microseconds per tunnel in the runs above (accept, handshake, dial, 16-byte echo, close, access log where there is one), %s. Lower is better.", runsOf(n)),
		cols, perConn)
}

// writePingpongTables writes the round-trip latency and CPU.
func (rs *results) writePingpongTables(w io.Writer) {
	get := rs.modeValue
	p50 := get("pingpong", func(r *Result) float64 { return r.P50Us })
	p99 := get("pingpong", func(r *Result) float64 { return r.P99Us })
	rs.table(w, "Ping-pong latency p50, microseconds", "64-byte messages echoed by the target through one tunnel, one at a time. Lower is better.",
		[]column{{"p50 us", p50}, {"mean us", get("pingpong", func(r *Result) float64 { return r.MeanUs })}}, p50)
	rs.table(w, "Ping-pong latency p99, microseconds", "", []column{{"p99 us", p99}}, p99)
	perRound := get("pingpong", func(r *Result) float64 { return r.CPUUsPerRound })
	rs.table(w, "CPU per round trip", "Proxy CPU-microseconds per 64-byte round trip. Lower is better.", []column{{"CPU-us/round trip", perRound}}, perRound)
}

// writeIdleTables writes memory and fds per idle tunnel, a table of
// each for every number of tunnels held.
func (rs *results) writeIdleTables(w io.Writer) {
	for _, n := range rs.idleSizes() {
		get := func(f func(*Result) float64) func(subj) (float64, bool) {
			return func(s subj) (float64, bool) { return rs.med(idleRuns(s, n), f) }
		}
		rss := get(func(r *Result) float64 { return r.RSSKiBPerTunnel })
		rs.table(w, fmt.Sprintf("Memory per idle tunnel, %d open, KiB", n), fmt.Sprintf("%d tunnels opened (each echoed 16 bytes once) on a freshly started proxy and held idle; the proxy's RSS (and PSS, which splits pages shared between processes) after the hold minus before, over the tunnels. RSS sums every process of the proxy, so it counts shared pages once per process for proxies that fork (dante). Lower is better.", n),
			[]column{
				{"tunnels", get(func(r *Result) float64 { return float64(r.Tunnels) })},
				{"KiB RSS/tunnel", rss},
				{"KiB PSS/tunnel", get(func(r *Result) float64 { return r.PSSKiBPerTunnel })},
				{"RSS before MiB", get(func(r *Result) float64 { return float64(r.RSSBaseKiB) / 1024 })},
				{"RSS held MiB", get(func(r *Result) float64 { return float64(r.RSSKiB) / 1024 })},
				{"processes", get(func(r *Result) float64 { return float64(r.Procs) })},
			}, rss)
		fds := get(func(r *Result) float64 { return r.FDsPerTunnel })
		rs.table(w, fmt.Sprintf("File descriptors per idle tunnel, %d open", n), "Entries of /proc/PID/fd (all processes) after the hold minus before, over the tunnels: 2 is one socket each side. Lower is better.",
			[]column{{"fds/tunnel", fds}, {"idle CPU ms during hold", get(func(r *Result) float64 { return r.IdleCPUms })}, {"open CPU-us/tunnel", get(func(r *Result) float64 { return r.CPUUsPerOpenConn })}}, fds)
	}
}

// writeHTTPTables writes a plain HTTP table per object size.
func (rs *results) writeHTTPTables(w io.Writer) {
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
			"ferry+nolog is ferry without its access log; the peers run with logging off. Figures: %s. Ratios use CPU-us per request; lower is better.", conns, sizeString(size), runsOf(rs.maxRepeats("http")))
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
}

// writeProblems lists the runs with errors or cut short, if any.
func (rs *results) writeProblems(w io.Writer) {
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
}

// writeRaw writes every result line as read.
func (rs *results) writeRaw(w io.Writer) {
	fmt.Fprintf(w, "## Raw results\n\n<details><summary>%d JSON lines from <code>scripts/bench</code></summary>\n\n```json\n%s\n```\n\n</details>\n", len(rs.raw), strings.Join(rs.raw, "\n"))
}
