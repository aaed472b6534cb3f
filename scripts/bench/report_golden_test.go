package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
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
		{"ferry", "nolog", "connect"}, {"ferry", "nolog", "socks5"}, {"ferry", "nolog", "tcp"},
		{"gost", "", "connect"}, {"gost", "", "socks5"}, {"glider", "", "connect"}, {"glider", "", "socks5"},
		{"ferry", "quota", "connect"}, {"ferry", "quota-redis", "connect"},
	}
	// Three rounds of the repeated modes: for ferry the first run is the
	// median and the second the worst; the peers vary the other way.
	rounds := []float64{1, 1.15, 0.95}
	round := func(name string, k int) float64 {
		if name == "ferry" {
			return rounds[k]
		}
		return rounds[(k+1)%3]
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
			for _, n := range []int64{3000, 9000} {
				r := base
				r.Mode, r.Procs, r.Asked = "idle", 1+i%3, n
				r.Tunnels = n
				if i == 2 && n == 9000 {
					r.Tunnels = 2000
				}
				g := float64(n) / 9000
				r.RSSBaseKiB, r.RSSKiB = 4096*int64(i+1), 4096*int64(i+1)+n*int64(i+2)
				r.RSSKiBPerTunnel, r.PSSKiBPerTunnel = 3.5+f/2+2*g, 2.25+f/3
				r.FDsBase, r.FDs, r.FDsPerTunnel = 10, 2*n+10+int64(i), 2+f/float64(n)
				r.IdleCPUms, r.HoldSeconds, r.CPUUsPerOpenConn = 0.5*f, 3, 12.5*f
				add(r)
			}
			for k := range rounds {
				x := round(s.name, k)
				r := base
				r.Mode, r.Concurrency, r.Conns, r.Repeat = "connrate", 32, 5000*int64(i+1), k+1
				r.ConnsPerSec, r.CPUUsPerConn, r.ConnP50Us, r.ConnP99Us = 1234.5*f/x, 45.6/f*x, 800+f, 2500*f
				if i == 7 && k == 0 {
					r.Errors, r.FirstError = 2, "read: `connection reset`"
				}
				add(r)
			}
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
		for k := range rounds {
			x := round(s.name, k)
			for _, streams := range []int{1, 8} {
				for _, dir := range []string{"up", "down"} {
					r := base
					r.Mode, r.Streams, r.Dir, r.Bytes, r.Repeat = "throughput", streams, dir, 1<<32, k+1
					r.CPUSec = (0.3*f + float64(streams)/10) * x
					r.CPUSecPerGB = r.CPUSec / (float64(r.Bytes) / 1e9)
					r.MBps = (3000/f + float64(streams)) / x
					if i == 9 && streams == 8 && dir == "down" && k == 2 {
						r.Truncated = true
					}
					add(r)
				}
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
		name   string
		lines  []string
		meta   []string
		png    string
		setups []setup
	}{
		{"report.golden.md", lines, []string{"date: 2026-01-02", "cpu: test", "a line without a key"}, "BENCHMARKS.png", []setup{
			{"haproxy, tcp", "haproxy -db -f $WORK/peer/haproxy.cfg", "global\n    nbthread 1\n# no log"},
			{"microsocks, SOCKS5", "microsocks -i 127.0.0.1 -p 24109 >/dev/null", ""},
		}},
		{"report-partial.golden.md", lines[:len(lines)/3], []string{"Date: 2026-01-03"}, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := loadLines(t, c.lines)
			rs.setups = c.setups
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
