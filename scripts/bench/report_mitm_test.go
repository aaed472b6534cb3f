package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestReportMITM checks the Intercepted HTTPS section's targets: per-core
// rates (requests/s over the proxy's CPU share) against mitmdump's, CPU
// per request against plain HTTP's, and a missing peer as no data.
func TestReportMITM(t *testing.T) {
	lines := []string{
		`{"name":"ferry","proto":"h1","mode":"mitm","object_bytes":1024,"requests":1000,"cpu_us_per_req":60,"reqs_per_s":8000,"proxy_cpu_pct":50}`,
		`{"name":"ferry","proto":"h2","mode":"mitm","object_bytes":1024,"requests":1000,"cpu_us_per_req":90,"reqs_per_s":4000,"proxy_cpu_pct":50}`,
		`{"name":"ferry","proto":"http","mode":"mitm","object_bytes":1024,"requests":1000,"cpu_us_per_req":40,"reqs_per_s":9000,"proxy_cpu_pct":40}`,
		`{"name":"mitmdump","proto":"h1","mode":"mitm","object_bytes":1024,"requests":100,"cpu_us_per_req":1500,"reqs_per_s":500,"proxy_cpu_pct":80}`,
		`{"name":"mitmdump","proto":"h2","mode":"mitm","object_bytes":1024,"requests":100,"cpu_us_per_req":1500,"reqs_per_s":1000,"proxy_cpu_pct":100}`,
		`{"name":"ferry","proto":"h1","mode":"mitm","object_bytes":65536,"requests":100,"cpu_us_per_req":150,"reqs_per_s":2000,"proxy_cpu_pct":30}`,
	}
	rs := loadLines(t, lines)
	var md bytes.Buffer
	rs.mitmMarkdown(&md, []string{"Date: today"}, "mitmdump")
	for _, want := range []string{
		"## Intercepted HTTPS",
		"- Date: today",
		"| ferry | HTTPS HTTP/1.1 | 1 KiB | 1 | 8000 | 50% | 16000 | 60.0 |",
		// 16000 per core against 625: 25.6 times; one round, no worst run.
		"| requests/s per core ≥ 10× mitmdump's | HTTP/1.1 | 1 KiB | 16000 req/s/core | mitmdump: 625 req/s/core | 25.60× | — | **met** |",
		"| CPU per request ≤ 2× plain HTTP's | HTTP/1.1 | 1 KiB | 60.0 µs | ferry, plain HTTP: 40.0 µs | 1.50× | — | **met** |",
		// 8000 per core against 1000: 8 times.
		"| requests/s per core ≥ 10× mitmdump's | HTTP/2 | 1 KiB | 8000 req/s/core | mitmdump: 1000 req/s/core | 8.00× | — | **not met** |",
		"| CPU per request ≤ 2× plain HTTP's | HTTP/2 | 1 KiB | 90.0 µs | ferry, plain HTTP: 40.0 µs | 2.25× | — | **not met** |",
		"| requests/s per core ≥ 10× mitmdump's | HTTP/1.1 | 64 KiB | — | — | — | — | no data |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("section lacks %q:\n%s", want, md.String())
		}
	}
}

// TestReportMITMRounds checks the section over rounds: each figure the
// median of its runs, a target the ratio of the medians judged, the
// worst ratio of one round's runs beside it, and a run that measured no
// CPU left out.
func TestReportMITMRounds(t *testing.T) {
	run := func(name, proto string, round int, cpuUs, rate, cpuPct float64, errs int) string {
		return fmt.Sprintf(`{"name":%q,"proto":%q,"mode":"mitm","repeat":%d,"object_bytes":1024,"requests":1000,"errors":%d,"cpu_us_per_req":%g,"reqs_per_s":%g,"proxy_cpu_pct":%g}`,
			name, proto, round, errs, cpuUs, rate, cpuPct)
	}
	lines := []string{
		// Per core: ferry 10000, 12000, 8000 (median 10000); mitmdump
		// 1000, 1000, 1000 (median 1000, one run with 3 errors).
		run("ferry", "h1", 1, 100, 5000, 50, 0), run("mitmdump", "h1", 1, 1000, 800, 80, 0),
		run("ferry", "h1", 2, 80, 6000, 50, 0), run("mitmdump", "h1", 2, 1000, 900, 90, 3),
		run("ferry", "h1", 3, 120, 4000, 50, 0), run("mitmdump", "h1", 3, 1000, 1000, 100, 0),
		// ferry's plain HTTP: 50, 40, 40 µs a request (median 40); a
		// fourth run without CPU is not counted.
		run("ferry", "http", 1, 50, 9000, 45, 0), run("ferry", "http", 2, 40, 9000, 36, 0),
		run("ferry", "http", 3, 40, 9000, 36, 0), run("ferry", "http", 4, 1, 9000, 0, 0),
	}
	rs := loadLines(t, lines)
	var md bytes.Buffer
	rs.mitmMarkdown(&md, nil, "mitmdump")
	for _, want := range []string{
		"| ferry | HTTPS HTTP/1.1 | 1 KiB | 3 | 5000 | 50% | 10000 | 100 |",
		"| mitmdump | HTTPS HTTP/1.1 | 1 KiB | 3 | 900 | 90% | 1000 | 1000 | 0 | 0 | 3 |",
		"| ferry | plain HTTP | 1 KiB | 3 | 9000 | 36% | 25000 | 40.0 |",
		// 10000 against 1000; the worst round, the third, 8000 against 1000.
		"| requests/s per core ≥ 10× mitmdump's | HTTP/1.1 | 1 KiB | 10000 req/s/core, median of 3 | mitmdump: 1000 req/s/core | 10.00× | 8.00× | **met** |",
		// 100 against 40 µs: 2.5 times; the worst round, the third, 120
		// against 40.
		"| CPU per request ≤ 2× plain HTTP's | HTTP/1.1 | 1 KiB | 100 µs, median of 3 | ferry, plain HTTP: 40.0 µs | 2.50× | 3.00× | **not met** |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("section lacks %q:\n%s", want, md.String())
		}
	}
}
