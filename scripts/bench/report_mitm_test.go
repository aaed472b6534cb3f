package main

import (
	"bytes"
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
		"| ferry | HTTPS HTTP/1.1 | 1 KiB | 8000 | 50% | 16000 | 60.0 |",
		// 16000 per core against 625: 25.6 times.
		"| requests/s per core ≥ 10× mitmdump's | HTTP/1.1 | 1 KiB | 25.60× | **met** |",
		"| CPU per request ≤ 2× plain HTTP's | HTTP/1.1 | 1 KiB | 1.50× | **met** |",
		// 8000 per core against 1000: 8 times.
		"| requests/s per core ≥ 10× mitmdump's | HTTP/2 | 1 KiB | 8.00× | **not met** |",
		"| CPU per request ≤ 2× plain HTTP's | HTTP/2 | 1 KiB | 2.25× | **not met** |",
		"| requests/s per core ≥ 10× mitmdump's | HTTP/1.1 | 64 KiB | — | no data |",
	} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("section lacks %q:\n%s", want, md.String())
		}
	}
}
