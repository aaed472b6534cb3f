package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
)

// runReportMITM reads the results of mitm mode and writes the
// "Intercepted HTTPS" section of BENCHMARKS.md to stdout:
//
//	bench report-mitm [-meta FILE] [-ferry ferry] [-peer mitmdump] mitm.jsonl
func runReportMITM(args []string) int {
	fs := flag.NewFlagSet("bench report-mitm", flag.ContinueOnError)
	meta := fs.String("meta", "", `file of "key: value" lines describing the machine and the run, listed as they are`)
	ferry := fs.String("ferry", "ferry", "the intercepting proxy under test")
	peer := fs.String("peer", "mitmdump", "the intercepting proxy it is compared with")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(fs.Output(), "usage: bench report-mitm [-meta FILE] mitm.jsonl...\n")
		return 2
	}
	rs := newResults(*ferry)
	for _, f := range fs.Args() {
		if err := rs.load(f); err != nil {
			fmt.Fprintf(os.Stderr, "bench report-mitm: %v\n", err)
			return 1
		}
	}
	metaLines, err := readMeta(*meta)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench report-mitm: %v\n", err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	rs.mitmMarkdown(w, metaLines, *peer)
	if err := w.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "bench report-mitm: %v\n", err)
		return 1
	}
	return 0
}

// mitmKey is the mitm-mode runs of name over proto for objects of size
// bytes: one a round.
func mitmKey(name, proto string, size int64) runKey {
	return runKey{s: subj{name, "", proto}, mode: "mitm", extra: objectKey(size)}
}

// perCore is requests per second per core of proxy CPU: the rate the
// proxy would reach with one core to itself, whatever share of a core
// it got (its client and origin share the other core).
func perCore(r *Result) float64 {
	if r == nil || r.ProxyCPU <= 0 {
		return math.NaN()
	}
	return r.ReqsPerSec / (r.ProxyCPU / 100)
}

func (rs *results) mitmMarkdown(w io.Writer, meta []string, peer string) {
	fmt.Fprint(w, `## Intercepted HTTPS

GET requests through an intercepting proxy (issue 18): the client
(Go's net/http in scripts/bench, mode mitm) sends CONNECT, then TLS to
the leaf the proxy makes for `+"`localhost`"+` with its own CA, then
requests; the proxy terminates that TLS, opens its own to the origin
(nginx, TLS 1.3, HTTP/2) and relays each request as an HTTP message.
HTTP/1.1: one keep-alive connection (one tunnel) per worker. HTTP/2:
every worker's requests multiplexed on one connection (one tunnel).
ferry runs the mitm plugin alone (no access log); mitmdump runs quiet
(`+"`-q`, `flow_detail=0`"+`, bodies streamed). "plain HTTP" is ferry
proxying `+"`http://`"+` requests for the same objects from the same
nginx, with the same client: what a request costs without TLS.
Requests per core divide the rate by the proxy's CPU (the proxy is
pinned to one core; client and origin share the other). Each proxy,
protocol and size runs once a round, on a fresh process, ferry's run and
mitmdump's of the same protocol one after the other; the table gives
each figure's median over the rounds, the targets the ratio of the
medians and the worst ratio of the runs of one round.

`)
	for _, l := range meta {
		fmt.Fprintf(w, "- %s\n", l)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| proxy | protocol | object | runs | requests/s | proxy CPU | requests/s per core | CPU-µs/request | p50 µs | p99 µs | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	sizes := rs.mitmSizes()
	for _, size := range sizes {
		for _, row := range []struct{ name, proto, label string }{
			{rs.ferry, "h1", "HTTPS HTTP/1.1"}, {rs.ferry, "h2", "HTTPS HTTP/2"},
			{peer, "h1", "HTTPS HTTP/1.1"}, {peer, "h2", "HTTPS HTTP/2"},
			{rs.ferry, "http", "plain HTTP"},
		} {
			k := mitmKey(row.name, row.proto, size)
			n := rs.repeats(k)
			if n == 0 {
				continue
			}
			med := func(f func(*Result) float64) float64 { v, _ := rs.med(k, f); return v }
			var errs int64
			for _, r := range rs.runs(k) {
				errs += r.Errors
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d | %s | %.0f%% | %s | %s | %s | %s | %d |\n", row.name, row.label, sizeString(size), n,
				num(med(func(r *Result) float64 { return r.ReqsPerSec })), med(func(r *Result) float64 { return r.ProxyCPU }),
				num(med(perCore)), num(med(func(r *Result) float64 { return r.CPUUsPerReq })),
				num(med(func(r *Result) float64 { return r.ReqP50Us })), num(med(func(r *Result) float64 { return r.ReqP99Us })), errs)
		}
	}
	fmt.Fprintln(w)
	rs.mitmTargets(w, sizes, peer)
}

// mitmTargets writes the two targets of issue 18 for each object size
// and protocol: ferry's requests per core at least 10 times mitmdump's,
// and its CPU per intercepted request at most twice a plain one's.
func (rs *results) mitmTargets(w io.Writer, sizes []int64, peer string) {
	fmt.Fprintln(w, "| target | protocol | object | ferry | reference | ratio | worst run | result |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	cpu := func(r *Result) float64 { return r.CPUUsPerReq }
	for _, size := range sizes {
		plain := mitmKey(rs.ferry, "http", size)
		for _, p := range []struct{ proto, label string }{{"h1", "HTTP/1.1"}, {"h2", "HTTP/2"}} {
			f := mitmKey(rs.ferry, p.proto, size)
			if rs.repeats(f) == 0 {
				continue
			}
			for _, t := range []struct {
				what     string
				ref      runKey
				refLabel string
				get      func(*Result) float64
				limit    float64
				atMost   bool
				unit     string
			}{
				{fmt.Sprintf("requests/s per core ≥ 10× %s's", peer), mitmKey(peer, p.proto, size), peer, perCore, 10, false, " req/s/core"},
				{"CPU per request ≤ 2× plain HTTP's", plain, "ferry, plain HTTP", cpu, 2, true, " µs"},
			} {
				g := rs.ratioTarget(t.what, f, t.ref, t.get, t.limit, t.atMost, t.unit)
				// The main report's labels name the proxy protocol
				// ("HTTP/2 CONNECT"); here the protocol has a column.
				if rv, ok := rs.med(t.ref, t.get); ok && g.ref != "—" {
					g.ref = fmt.Sprintf("%s: %s%s", t.refLabel, num(rv), t.unit)
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", g.what, p.label, sizeString(size), g.ferry, g.ref, g.ratio, g.worst, g.result)
			}
		}
	}
	fmt.Fprintln(w)
}

// mitmSizes are the object sizes of the mitm runs, in the order first
// seen.
func (rs *results) mitmSizes() []int64 {
	var out []int64
	for _, r := range rs.all {
		if r.Mode == "mitm" && !slices.Contains(out, r.ObjectBytes) {
			out = append(out, r.ObjectBytes)
		}
	}
	return out
}
