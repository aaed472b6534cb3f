package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestReportHTTP checks the plain HTTP targets and tables from a few
// results: ferry without its access log is judged, its figure with the
// log shown beside.
func TestReportHTTP(t *testing.T) {
	lines := []string{
		`{"name":"ferry","proto":"http","mode":"http","object_bytes":1024,"requests":1000,"cpu_us_per_req":30,"reqs_per_s":9000,"concurrency":16}`,
		`{"name":"ferry","variant":"nolog","proto":"http","mode":"http","object_bytes":1024,"requests":1000,"cpu_us_per_req":24,"reqs_per_s":9500,"concurrency":16}`,
		`{"name":"squid","proto":"http","mode":"http","object_bytes":1024,"requests":1000,"cpu_us_per_req":40,"reqs_per_s":5000,"concurrency":16}`,
		`{"name":"haproxy","proto":"reverse","mode":"http","object_bytes":1024,"requests":1000,"cpu_us_per_req":15,"reqs_per_s":12000,"concurrency":16}`,
		`{"name":"tinyproxy","proto":"http","mode":"http","object_bytes":1024,"requests":1000,"cpu_us_per_req":90,"reqs_per_s":2000,"concurrency":16,"reopened":1000}`,
		`{"name":"ferry","variant":"nolog","proto":"http","mode":"http","object_bytes":65536,"requests":100,"cpu_us_per_req":50,"concurrency":16}`,
		`{"name":"haproxy","proto":"reverse","mode":"http","object_bytes":65536,"requests":100,"cpu_us_per_req":40,"concurrency":16}`,
		`{"name":"squid","proto":"http","mode":"http","object_bytes":65536,"requests":100,"errors":3,"cpu_us_per_req":60,"concurrency":16}`,
	}
	rs := loadLines(t, lines)
	got := wantTargets(t, rs, map[string]goal{
		"plain HTTP CPU-us per request, 1 KiB objects, ferry+nolog HTTP ≤ squid HTTP":                   {ratio: "0.60×", worst: "—", result: "**met**"},
		"plain HTTP CPU-us per request, 1 KiB objects, ferry+nolog HTTP ≤ haproxy mode http (reverse)":  {ratio: "1.60×", worst: "—", result: "**not met**"},
		"plain HTTP CPU-us per request, 64 KiB objects, ferry+nolog HTTP ≤ squid HTTP":                  {ratio: "—", worst: "—", result: "no data"},
		"plain HTTP CPU-us per request, 64 KiB objects, ferry+nolog HTTP ≤ haproxy mode http (reverse)": {ratio: "1.25×", worst: "—", result: "**not met**"},
	})
	if g := got["plain HTTP CPU-us per request, 1 KiB objects, ferry+nolog HTTP ≤ squid HTTP"]; !strings.Contains(g.ferry, "30.0 us with the access log, 0.75×") {
		t.Errorf("got ferry column %q, want the figure with the access log beside", g.ferry)
	}
	var md bytes.Buffer
	rs.markdown(&md, nil, "")
	for _, s := range []string{"### Plain HTTP, 1 KiB objects", "### Plain HTTP, 64 KiB objects", "| tinyproxy HTTP | 2000 | 90.0 |", "squid HTTP http (64 KiB objects): 3 errors"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("report lacks %q", s)
		}
	}
}

// loadLines loads result lines into a fresh report.
func loadLines(t *testing.T, lines []string) *results {
	t.Helper()
	file := filepath.Join(t.TempDir(), "results.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	rs := newResults("ferry", 3000, 9000)
	if err := rs.load(file); err != nil {
		t.Fatal(err)
	}
	return rs
}

// wantTargets checks the targets of rs named in want (ratio, worst run,
// result) and returns them by name.
func wantTargets(t *testing.T, rs *results, want map[string]goal) map[string]goal {
	t.Helper()
	got := map[string]goal{}
	for _, g := range rs.targets() {
		w, ok := want[g.what]
		if !ok {
			continue
		}
		got[g.what] = g
		if g.ratio != w.ratio || g.worst != w.worst || g.result != w.result {
			t.Errorf("%s:\n got %s | %s | %s\nwant %s | %s | %s", g.what, g.ratio, g.worst, g.result, w.ratio, w.worst, w.result)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d of the %d targets", len(got), len(want))
	}
	return got
}

// TestMedianWorst checks the figures of repeated runs: the median (the
// mean of the middle two for an even count), the worst either way, and
// that runs with errors are left out.
func TestMedianWorst(t *testing.T) {
	run := func(rep int, cpu float64, errs int) string {
		return fmt.Sprintf(`{"name":"ferry","proto":"tcp","mode":"connrate","repeat":%d,"conns":100,"cpu_us_per_conn":%g,"conns_per_s":%g,"errors":%d}`, rep, cpu, 1000/cpu, errs)
	}
	tests := []struct {
		name            string
		lines           []string
		med, worst, low float64
	}{
		{"one", []string{run(1, 10, 0)}, 10, 10, 100},
		{"three", []string{run(1, 10, 0), run(2, 30, 0), run(3, 20, 0)}, 20, 30, 1000.0 / 30},
		{"even", []string{run(1, 10, 0), run(2, 40, 0), run(3, 20, 0), run(4, 30, 0)}, 25, 40, 25},
		{"no conns left out", []string{`{"name":"ferry","proto":"tcp","mode":"connrate","repeat":1,"errors":5}`, run(2, 12, 0)}, 12, 12, 1000.0 / 12},
	}
	cpu := func(r *Result) float64 { return r.CPUUsPerConn }
	rate := func(r *Result) float64 { return r.ConnsPerSec }
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := loadLines(t, tc.lines)
			k := rs.modeKey(subj{"ferry", "", "tcp"}, "connrate")
			if v, _ := rs.med(k, cpu); v != tc.med {
				t.Errorf("median %g, want %g", v, tc.med)
			}
			if v, _ := rs.worst(k, cpu, false); v != tc.worst {
				t.Errorf("worst CPU %g, want %g", v, tc.worst)
			}
			if v, _ := rs.worst(k, rate, true); math.Abs(v-tc.low) > 1e-9 {
				t.Errorf("worst rate %g, want %g", v, tc.low)
			}
		})
	}
}

// TestIssue21Targets checks the targets of issue 21 from a few results:
// CPU per new tunnel against haproxy judged on the medians with the
// worst round beside, the no-op hook within 1.5x of the fast path, and
// idle RSS at two sizes against 2x haproxy.
func TestIssue21Targets(t *testing.T) {
	var lines []string
	add := func(format string, a ...any) { lines = append(lines, fmt.Sprintf(format, a...)) }
	for rep, x := range []float64{1, 1.3, 0.9} {
		add(`{"name":"haproxy","proto":"tcp","mode":"connrate","repeat":%d,"conns":100,"cpu_us_per_conn":80}`, rep+1)
		add(`{"name":"ferry","variant":"nolog","proto":"tcp","mode":"connrate","repeat":%d,"conns":100,"cpu_us_per_conn":%g}`, rep+1, 76*x)
		add(`{"name":"ferry","proto":"tcp","mode":"connrate","repeat":%d,"conns":100,"cpu_us_per_conn":%g}`, rep+1, 90*x)
		add(`{"name":"ferry","variant":"nolog","proto":"connect","mode":"connrate","repeat":%d,"conns":100,"cpu_us_per_conn":%g}`, rep+1, 100*x)
		add(`{"name":"gonet","proto":"tcp","mode":"connrate","repeat":%d,"conns":100,"cpu_us_per_conn":100}`, rep+1)
		for _, c := range []struct {
			streams int
			dir     string
		}{{1, "up"}, {1, "down"}, {8, "up"}, {8, "down"}} {
			add(`{"name":"ferry","proto":"tcp","mode":"throughput","repeat":%d,"streams":%d,"dir":%q,"bytes":1000000000,"cpu_s":0.2,"cpu_s_per_gb":0.2}`, rep+1, c.streams, c.dir)
			add(`{"name":"ferry","variant":"hook","proto":"tcp","mode":"throughput","repeat":%d,"streams":%d,"dir":%q,"bytes":1000000000,"cpu_s":%g,"cpu_s_per_gb":%g}`, rep+1, c.streams, c.dir, 0.28*x, 0.28*x)
			// SOCKS5: the worst round over 1.5x, the medians within.
			add(`{"name":"ferry","proto":"socks5","mode":"throughput","repeat":%d,"streams":%d,"dir":%q,"bytes":1000000000,"cpu_s":0.2,"cpu_s_per_gb":0.2}`, rep+1, c.streams, c.dir)
			add(`{"name":"ferry","variant":"hook","proto":"socks5","mode":"throughput","repeat":%d,"streams":%d,"dir":%q,"bytes":1000000000,"cpu_s":%g,"cpu_s_per_gb":%g}`, rep+1, c.streams, c.dir, 0.26+0.03*x*x, 0.26+0.03*x*x)
			// CONNECT: every round within 1.5x.
			add(`{"name":"ferry","proto":"connect","mode":"throughput","repeat":%d,"streams":%d,"dir":%q,"bytes":1000000000,"cpu_s":0.2,"cpu_s_per_gb":0.2}`, rep+1, c.streams, c.dir)
			add(`{"name":"ferry","variant":"hook","proto":"connect","mode":"throughput","repeat":%d,"streams":%d,"dir":%q,"bytes":1000000000,"cpu_s":%g,"cpu_s_per_gb":%g}`, rep+1, c.streams, c.dir, 0.25+0.02*x, 0.25+0.02*x)
		}
	}
	for _, n := range []int{3000, 9000} {
		add(`{"name":"haproxy","proto":"tcp","mode":"idle","asked":%d,"tunnels":%d,"rss_kib_per_tunnel":3.3,"fds_per_tunnel":2}`, n, n)
		add(`{"name":"ferry","variant":"nolog","proto":"tcp","mode":"idle","asked":%d,"tunnels":%d,"rss_kib_per_tunnel":%g,"fds_per_tunnel":2}`, n, n, 6.0+float64(n)/9000)
	}
	rs := loadLines(t, lines)
	got := wantTargets(t, rs, map[string]goal{
		"CPU-us per new tunnel, ferry+nolog tcp ≤ haproxy tcp":                                                                           {ratio: "0.95×", worst: "1.23×", result: "**met**"},
		"CPU-us per new tunnel, ferry+nolog CONNECT ≤ 1.2× haproxy tcp":                                                                  {ratio: "1.25×", worst: "1.62×", result: "**not met**"},
		"CPU-us per new tunnel, ferry SOCKS5 ≤ 1.2× haproxy tcp":                                                                         {ratio: "—", worst: "—", result: "no data"},
		"relay CPU-s/GB with a no-op data hook, ferry+hook tcp ≤ 1.5× the fast path in every run, each of 1 and 8 streams both ways":     {ratio: "1.40× at 1 stream ↑ (medians of 3 runs); 1.49× over all runs", worst: "1.82× (1 stream ↑)", result: "**not met**"},
		"relay CPU-s/GB with a no-op data hook, ferry+hook SOCKS5 ≤ 1.5× the fast path in every run, each of 1 and 8 streams both ways":  {ratio: "1.45× at 1 stream ↑ (medians of 3 runs); 1.48× over all runs", worst: "1.55× (1 stream ↑)", result: "**not met**"},
		"relay CPU-s/GB with a no-op data hook, ferry+hook CONNECT ≤ 1.5× the fast path in every run, each of 1 and 8 streams both ways": {ratio: "1.35× at 1 stream ↑ (medians of 3 runs); 1.36× over all runs", worst: "1.38× (1 stream ↑)", result: "**met**"},
		"RSS per idle tunnel, ferry+nolog tcp, 3000 open, ≤ 2× haproxy tcp":                                                              {ratio: "1.92×", worst: "—", result: "**met**"},
		"RSS per idle tunnel, ferry+nolog tcp, 9000 open, ≤ 2× haproxy tcp":                                                              {ratio: "2.12×", worst: "—", result: "**not met**"},
		"fds per idle tunnel, ferry+nolog tcp, 9000 open, ≤ 2 (up to 16 more in all allowed)":                                            {ratio: "1.00×", worst: "—", result: "**met**"},
	})
	if ref := got["CPU-us per new tunnel, ferry+nolog tcp ≤ haproxy tcp"].ref; !strings.Contains(ref, "the Go floor (gonet tcp): 100 us, 1.25×") {
		t.Errorf("tcp new-tunnel reference %q: want the Go floor at 100 us, 1.25×", ref)
	}
}

// TestReadSetups checks the setup files: label, command, configuration,
// in the order of their names, and a file too large refused.
func TestReadSetups(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []setup
		err   bool
	}{
		{"ordered", map[string]string{"02": "dante, SOCKS5\ndanted -f d.conf\nlogoutput: x\nclientmethod: none\n", "01": "microsocks\nmicrosocks -q\n"},
			[]setup{{"microsocks", "microsocks -q", ""}, {"dante, SOCKS5", "danted -f d.conf", "logoutput: x\nclientmethod: none"}}, false},
		{"label only", map[string]string{"01": "haproxy"}, []setup{{"haproxy", "", ""}}, false},
		{"too large", map[string]string{"01": "x\ny\n" + strings.Repeat("z", maxSetupBytes)}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, body := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := readSetups(dir)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if !tc.err && !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			rs := newResults("ferry")
			rs.setups = got
			var md bytes.Buffer
			rs.writeSetups(&md)
			for _, s := range got {
				if !strings.Contains(md.String(), "### "+s.label+"\n") {
					t.Errorf("section lacks %q", s.label)
				}
			}
		})
	}
}

// TestIssue20Targets checks the quota's cost targets: CPU per GB within
// 1.2x of the listener without the plugin (embedded and Redis), CPU per
// new tunnel within 1.5x with Redis; a setup not measured has no line.
func TestIssue20Targets(t *testing.T) {
	var lines []string
	add := func(format string, a ...any) { lines = append(lines, fmt.Sprintf(format, a...)) }
	for rep, x := range []float64{1, 1.1, 0.95} {
		for _, v := range []struct {
			variant string
			perGB   float64
			perConn float64
		}{{"nolog", 0.2, 100}, {"quota", 0.23, 110}, {"quota-redis", 0.26, 140}} {
			add(`{"name":"ferry","variant":%q,"proto":"connect","mode":"connrate","repeat":%d,"conns":100,"cpu_us_per_conn":%g}`, v.variant, rep+1, v.perConn*x)
			for _, c := range []struct {
				streams int
				dir     string
			}{{1, "up"}, {1, "down"}, {8, "up"}, {8, "down"}} {
				add(`{"name":"ferry","variant":%q,"proto":"connect","mode":"throughput","repeat":%d,"streams":%d,"dir":%q,"bytes":1000000000,"cpu_s":%g,"cpu_s_per_gb":%g}`,
					v.variant, rep+1, c.streams, c.dir, v.perGB*x, v.perGB*x)
			}
		}
	}
	rs := loadLines(t, lines)
	wantTargets(t, rs, map[string]goal{
		"relay CPU-s/GB with the quota plugin, ferry+quota CONNECT ≤ 1.2× ferry+nolog CONNECT, each of 1 and 8 streams both ways":       {ratio: "1.15× at 1 stream ↑ (medians of 3 runs); 1.15× over all runs", worst: "1.15× (1 stream ↑)", result: "**met**"},
		"relay CPU-s/GB with the quota plugin, ferry+quota-redis CONNECT ≤ 1.2× ferry+nolog CONNECT, each of 1 and 8 streams both ways": {ratio: "1.30× at 1 stream ↑ (medians of 3 runs); 1.30× over all runs", worst: "1.30× (1 stream ↑)", result: "**not met**"},
		"CPU-us per new tunnel with the quota plugin, ferry+quota-redis CONNECT ≤ 1.5× ferry+nolog CONNECT":                             {ratio: "1.40×", worst: "1.40×", result: "**met**"},
	})
	for _, g := range rs.targets() {
		if strings.Contains(g.what, "per new tunnel with the quota plugin, ferry+quota CONNECT") {
			t.Errorf("target %q for the embedded store, want none", g.what)
		}
	}
}
