package main

import (
	"bytes"
	"os"
	"path/filepath"
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
	file := filepath.Join(t.TempDir(), "results.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	rs := &results{ferry: "ferry", idleTarget: 9000, idx: map[string]*Result{}}
	if err := rs.load(file); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		ratio, result string
	}{
		"plain HTTP CPU-us per request, 1 KiB objects, ferry+nolog HTTP ≤ squid":                             {"0.60×", "**met**"},
		"plain HTTP CPU-us per request, 1 KiB objects, ferry+nolog HTTP ≤ 1.5× haproxy mode http (reverse)":  {"1.60×", "**not met**"},
		"plain HTTP CPU-us per request, 64 KiB objects, ferry+nolog HTTP ≤ squid":                            {"—", "no data"},
		"plain HTTP CPU-us per request, 64 KiB objects, ferry+nolog HTTP ≤ 1.5× haproxy mode http (reverse)": {"1.25×", "**met**"},
	}
	got := 0
	for _, g := range rs.targets() {
		w, ok := want[g.what]
		if !ok {
			continue
		}
		got++
		if g.ratio != w.ratio || g.result != w.result {
			t.Errorf("%s: got %s %s, want %s %s", g.what, g.ratio, g.result, w.ratio, w.result)
		}
		if strings.Contains(g.what, "1 KiB") && strings.Contains(g.what, "squid") && !strings.Contains(g.ferry, "30.0 us with the access log, 0.75×") {
			t.Errorf("got ferry column %q, want the figure with the access log beside", g.ferry)
		}
	}
	if got != len(want) {
		t.Errorf("got %d plain HTTP targets, want %d", got, len(want))
	}
	var md bytes.Buffer
	rs.markdown(&md, nil, "")
	for _, s := range []string{"### Plain HTTP, 1 KiB objects", "### Plain HTTP, 64 KiB objects", "| tinyproxy HTTP | 2000 | 90.0 |", "squid HTTP http (64 KiB objects): 3 errors"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("report lacks %q", s)
		}
	}
}
