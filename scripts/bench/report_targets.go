package main

import (
	"fmt"
	"math"
)

// goal is one line of the targets table.
type goal struct {
	what, ferry, ref, ratio, result string
	met                             bool
}

// targets are the lines of the targets table, in order: relay CPU,
// tunnel rate, idle tunnels, ping-pong, plain HTTP.
func (rs *results) targets() []goal {
	var out []goal
	out = append(out, rs.relayTargets()...)
	out = append(out, rs.connrateTargets()...)
	out = append(out, rs.idleTargets()...)
	out = append(out, rs.pingpongTargets()...)
	out = append(out, rs.httpTargets()...)
	return out
}

// haproxyTCP and tinyproxyConnect are the references of the targets.
var (
	haproxyTCP       = subj{"haproxy", "", "tcp"}
	tinyproxyConnect = subj{"tinyproxy", "", "connect"}
)

func nodata(what string) goal {
	return goal{what: what, ferry: "—", ref: "—", ratio: "—", result: "no data"}
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

// relayTargets compare ferry's relay CPU per GB with haproxy's, and
// ferry with a data hook with its fast path.
func (rs *results) relayTargets() []goal {
	var out []goal
	for _, p := range []string{"connect", "socks5", "tcp"} {
		out = append(out, rs.cpuTarget(fmt.Sprintf("relay CPU-s/GB, ferry %s ≤ haproxy (tcp, splice), every run", protoLabel(p)), rs.fast(p), haproxyTCP, 1))
	}
	for _, p := range []string{"connect", "socks5", "tcp"} {
		hook := subj{rs.ferry, "hook", p}
		if !rs.has(hook) {
			continue
		}
		t := rs.cpuTarget(fmt.Sprintf("relay CPU-s/GB with a data hook (%s) ≤ 2× ferry's fast path, every run", protoLabel(p)), hook, rs.fast(p), 2)
		out = append(out, t)
	}
	return out
}

// cpuTarget judges throughput CPU: every combination must hold; the
// ratio shown is the worst.
func (rs *results) cpuTarget(what string, f, ref subj, limit float64) goal {
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

// simpleTarget compares one figure of a single-run mode of f with
// ref's: at most limit times it, or (atMost false) at least.
func (rs *results) simpleTarget(what string, f, ref subj, mode string, get func(*Result) float64, limit float64, atMost bool, unit string) goal {
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

// connrateTargets compare ferry's tunnel rate and CPU per tunnel with
// tinyproxy's.
func (rs *results) connrateTargets() []goal {
	var out []goal
	for _, p := range []string{"connect", "socks5"} {
		out = append(out, rs.simpleTarget(fmt.Sprintf("new tunnels/s, ferry %s ≥ tinyproxy", protoLabel(p)), rs.fast(p), tinyproxyConnect, "connrate",
			func(r *Result) float64 { return r.ConnsPerSec }, 1, false, "/s"))
	}
	for _, p := range []string{"connect", "socks5"} {
		out = append(out, rs.simpleTarget(fmt.Sprintf("CPU-us per tunnel, ferry %s ≤ tinyproxy", protoLabel(p)), rs.fast(p), tinyproxyConnect, "connrate",
			func(r *Result) float64 { return r.CPUUsPerConn }, 1, true, " us"))
	}
	return out
}

// absoluteTarget compares an idle figure with a fixed limit per tunnel;
// fixed is what the proxy may add once, whatever the number of
// tunnels (a pooled pipe, a grown epoll set), in the figure's unit.
func (rs *results) absoluteTarget(what string, s subj, get func(*Result) float64, limit, fixed float64, unit string) goal {
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

// idleTargets hold ferry's memory and fds per idle tunnel to fixed
// limits.
func (rs *results) idleTargets() []goal {
	var out []goal
	for _, p := range []string{"connect", "socks5", "tcp"} {
		out = append(out, rs.absoluteTarget(fmt.Sprintf("RSS per idle tunnel, ferry %s, %d open, ≤ 8 KiB", protoLabel(p), rs.idleTarget), rs.fast(p),
			func(r *Result) float64 { return r.RSSKiBPerTunnel }, 8, 0, " KiB"))
	}
	for _, p := range []string{"connect", "socks5", "tcp"} {
		out = append(out, rs.absoluteTarget(fmt.Sprintf("fds per idle tunnel, ferry %s, ≤ 2 (up to 16 more in all allowed)", protoLabel(p)), rs.fast(p),
			func(r *Result) float64 { return r.FDsPerTunnel }, 2, 16, ""))
	}
	return out
}

// pingpongTargets compare ferry's round-trip latency and CPU with
// haproxy's.
func (rs *results) pingpongTargets() []goal {
	var out []goal
	for _, p := range []string{"connect", "socks5", "tcp"} {
		out = append(out, rs.simpleTarget(fmt.Sprintf("ping-pong p50, ferry %s ≤ 1.1× haproxy", protoLabel(p)), rs.fast(p), haproxyTCP, "pingpong",
			func(r *Result) float64 { return r.P50Us }, 1.1, true, " us"))
		out = append(out, rs.simpleTarget(fmt.Sprintf("ping-pong p99, ferry %s ≤ 1.1× haproxy", protoLabel(p)), rs.fast(p), haproxyTCP, "pingpong",
			func(r *Result) float64 { return r.P99Us }, 1.1, true, " us"))
		out = append(out, rs.simpleTarget(fmt.Sprintf("CPU-us per round trip, ferry %s ≤ haproxy", protoLabel(p)), rs.fast(p), haproxyTCP, "pingpong",
			func(r *Result) float64 { return r.CPUUsPerRound }, 1, true, " us"))
	}
	return out
}

// httpTargets judge plain HTTP: CPU per request against squid (a
// forward proxy) and haproxy in mode http (a reverse proxy, the L7
// reference), per object size; ferry without its access log when it
// was measured so, as the peers run with logging off, and its figure
// with the log beside it.
func (rs *results) httpTargets() []goal {
	var out []goal
	for _, size := range rs.objects() {
		for _, ref := range []struct {
			s     subj
			limit float64
		}{{subj{"squid", "", "http"}, 1}, {subj{"haproxy", "", "reverse"}, 1.5}} {
			out = append(out, rs.httpTarget(size, ref.s, ref.limit))
		}
	}
	return out
}

// httpTarget is the plain HTTP target for objects of size bytes
// against ref, at most limit times its CPU per request.
func (rs *results) httpTarget(size int64, ref subj, limit float64) goal {
	hf, withLog := rs.httpFerry(), rs.fast("http")
	perReq := func(r *Result) float64 { return r.CPUUsPerReq }
	what := fmt.Sprintf("plain HTTP CPU-us per request, %s objects, %s ≤ ", sizeString(size), hf.label())
	if limit == 1 {
		what += ref.name
	} else {
		what += fmt.Sprintf("%g× %s", limit, ref.label())
	}
	fv, ok1 := rs.httpValue(hf, size, perReq)
	rv, ok2 := rs.httpValue(ref, size, perReq)
	if !ok1 || !ok2 || rv == 0 {
		return nodata(what)
	}
	ferry := num(fv) + " us"
	if lv, ok := rs.httpValue(withLog, size, perReq); ok && hf != withLog {
		ferry += fmt.Sprintf(" (%s us with the access log, %s)", num(lv), ratio(lv/rv))
	}
	ok := fv/rv <= limit
	return goal{what: what, ferry: ferry, ref: fmt.Sprintf("%s: %s us", ref.label(), num(rv)), ratio: ratio(fv / rv), result: verdict(ok), met: ok}
}
