package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/report.golden.md")

// goldenResults is a fixed set of results covering every mode, every
// setup bench.sh measures, some errors and a cut-short run, so the
// whole report is rendered from it.
func goldenResults(t *testing.T) []string {
	t.Helper()
	subjects := []struct{ name, variant, proto string }{
		{"ferry", "", "connect"}, {"ferry", "", "socks5"}, {"ferry", "", "tcp"},
		{"ferry", "hook", "connect"}, {"ferry", "hook", "socks5"}, {"ferry", "hook", "tcp"},
		{"haproxy", "", "tcp"}, {"tinyproxy", "", "connect"}, {"squid", "", "connect"},
		{"dante", "", "socks5"}, {"microsocks", "", "socks5"},
	}
	var out []string
	add := func(r Result) {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	for i, s := range subjects {
		f := float64(i + 1)
		base := Result{Time: "2026-01-02T03:04:05Z", Name: s.name, Variant: s.variant, Proto: s.proto, Seconds: 1 + f/10, ProxyCPU: 10 * f, ToolCPU: 90}
		if s.variant != "hook" {
			r := base
			r.Mode, r.Procs = "idle", 1+i%3
			r.Tunnels = 9000
			if i == 2 {
				r.Tunnels = 2000
			}
			r.RSSBaseKiB, r.RSSKiB = 4096*int64(i+1), 4096*int64(i+1)+9000*int64(i+2)
			r.RSSKiBPerTunnel, r.PSSKiBPerTunnel = 3.5+f, 2.25+f/3
			r.FDsBase, r.FDs, r.FDsPerTunnel = 10, 18010+int64(i), 2+f/9000
			r.IdleCPUms, r.HoldSeconds, r.CPUUsPerOpenConn = 0.5*f, 3, 12.5*f
			add(r)
			r = base
			r.Mode, r.Concurrency, r.Conns = "connrate", 32, 5000*int64(i+1)
			r.ConnsPerSec, r.CPUUsPerConn, r.ConnP50Us, r.ConnP99Us = 1234.5*f, 45.6/f, 800+f, 2500*f
			if i == 7 {
				r.Errors, r.FirstError = 2, "read: `connection reset`"
			}
			add(r)
		}
		if s.proto == "socks5" && s.variant == "" && s.name != "microsocks" {
			r := base
			r.Mode, r.Concurrency, r.Datagrams, r.Bytes = "udp", 32, 200000*int64(i+1), 140000000*int64(i+1)
			r.DgramsPerSec, r.MBps, r.CPUUsPerDgram, r.Lost = 70000/f, 49/f, 6*f, int64(i%2)
			add(r)
		}
		r := base
		r.Mode, r.Rounds, r.MsgBytes = "pingpong", 30000, 64
		r.P50Us, r.P99Us, r.MeanUs, r.CPUUsPerRound = 20+f, 55+2*f, 22.125+f, 7.5+f/4
		add(r)
		for _, streams := range []int{1, 8} {
			for _, dir := range []string{"up", "down"} {
				r := base
				r.Mode, r.Streams, r.Dir, r.Bytes = "throughput", streams, dir, 1<<32
				r.CPUSec = 0.3*f + float64(streams)/10
				r.CPUSecPerGB = r.CPUSec / (float64(r.Bytes) / 1e9)
				r.MBps = 3000/f + float64(streams)
				if i == 9 && streams == 8 && dir == "down" {
					r.Truncated = true
				}
				add(r)
			}
		}
	}
	http := []struct{ name, variant, proto string }{
		{"ferry", "", "http"}, {"ferry", "nolog", "http"}, {"squid", "", "http"},
		{"tinyproxy", "", "http"}, {"haproxy", "", "reverse"},
	}
	for _, size := range []int64{1024, 65536} {
		for i, s := range http {
			f := float64(i + 1)
			r := Result{Time: "2026-01-02T03:04:05Z", Name: s.name, Variant: s.variant, Proto: s.proto, Mode: "http", Seconds: 2, ProxyCPU: 50 + f, ToolCPU: 80,
				Concurrency: 16, ObjectBytes: size, Requests: 10000 * int64(i+1), ReqsPerSec: 9000 / f, CPUUsPerReq: 20 * f * float64(size/1024+1), ReqP50Us: 100 * f, ReqP99Us: 400 * f}
			if s.name == "tinyproxy" {
				r.Reopened = r.Requests
			}
			if s.name == "squid" && size == 65536 {
				r.Errors, r.FirstError = 3, "unexpected EOF"
			}
			add(r)
		}
	}
	return out
}

// TestReportGolden renders the whole report from goldenResults and
// compares it with testdata/report.golden.md; -update rewrites it.
func TestReportGolden(t *testing.T) {
	lines := goldenResults(t)
	cases := []struct {
		name  string
		lines []string
		meta  []string
		png   string
	}{
		{"report.golden.md", lines, []string{"date: 2026-01-02", "cpu: test", "a line without a key"}, "BENCHMARKS.png"},
		{"report-partial.golden.md", lines[:len(lines)/3], []string{"Date: 2026-01-03"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "results.jsonl")
			if err := os.WriteFile(file, []byte(strings.Join(c.lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			rs := &results{ferry: "ferry", idleTarget: 9000, idx: map[string]*Result{}}
			if err := rs.load(file); err != nil {
				t.Fatal(err)
			}
			var md bytes.Buffer
			rs.markdown(&md, c.meta, c.png)
			golden := filepath.Join("testdata", c.name)
			if *update {
				if err := os.WriteFile(golden, md.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(md.Bytes(), want) {
				t.Errorf("report differs from %s (run with -update after an intended change)", golden)
			}
		})
	}
}
