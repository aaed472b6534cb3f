package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// TestSteadiness checks which repeated figures count as the machine's
// drift: only haproxy's per-event ones, only when measured in two
// rounds or more, only their usable runs, and over 1.2x between rounds;
// the Go floor's and the bulk copies' are listed, not judged.
func TestSteadiness(t *testing.T) {
	conn := func(name string, rep int, cpu float64) string {
		return fmt.Sprintf(`{"name":%q,"proto":"tcp","mode":"connrate","repeat":%d,"conns":100,"cpu_us_per_conn":%g}`, name, rep, cpu)
	}
	http := func(rep int, cpu float64, errs int) string {
		return fmt.Sprintf(`{"name":"haproxy","proto":"reverse","mode":"http","repeat":%d,"object_bytes":1024,"requests":100,"cpu_us_per_req":%g,"errors":%d}`, rep, cpu, errs)
	}
	copyRun := func(rep int, perGB float64) string {
		return fmt.Sprintf(`{"name":"haproxy","proto":"tcp","mode":"throughput","repeat":%d,"streams":1,"dir":"up","bytes":1000,"cpu_s_per_gb":%g}`, rep, perGB)
	}
	tests := []struct {
		name   string
		lines  []string
		want   string // a part of the sentence; "" for none
		spread []string
	}{
		{"nothing repeated", []string{conn("haproxy", 1, 100), conn("gonet", 1, 200)}, "", nil},
		{"steady", []string{conn("haproxy", 1, 100), conn("haproxy", 2, 110), conn("haproxy", 3, 119)},
			"held steady: each of haproxy's 1 per-event", []string{"haproxy tcp, connrate 100-119"}},
		{"haproxy drifted", []string{conn("haproxy", 1, 100), conn("haproxy", 2, 121), http(1, 30, 0), http(2, 31, 0)},
			"**The machine drifted during this run**: 1 of haproxy's 2 per-event figures repeated in rounds moved", nil},
		{"ferry's own spread is not the machine's", []string{conn("ferry", 1, 100), conn("ferry", 2, 200), conn("haproxy", 1, 100), conn("haproxy", 2, 101)},
			"held steady", []string{"haproxy tcp, connrate 100-101"}},
		{"a failed run is left out", []string{http(1, 30, 0), http(2, 30.5, 0), http(3, 90, 4)},
			"held steady", []string{"haproxy mode http (reverse), http 1 KiB objects 30-30.5"}},
		{"the Go floor is shown, not judged", []string{conn("gonet", 1, 100), conn("gonet", 2, 150), conn("haproxy", 1, 100), conn("haproxy", 2, 101)},
			"held steady: each of haproxy's 1 per-event", []string{"gonet tcp, connrate 100-150", "haproxy tcp, connrate 100-101"}},
		{"only the Go floor: nothing judged", []string{conn("gonet", 1, 100), conn("gonet", 2, 150)}, "", []string{"gonet tcp, connrate 100-150"}},
		{"bulk copies are shown, not judged", []string{copyRun(1, 0.3), copyRun(2, 0.45), conn("haproxy", 1, 100), conn("haproxy", 2, 101)},
			"held steady", []string{"haproxy tcp, throughput 1 stream ↑ 0.3-0.45", "haproxy tcp, connrate 100-101"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := loadLines(t, tc.lines)
			got := rs.steadiness()
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("steadiness %q, want it to hold %q", got, tc.want)
			}
			var spreads []string
			for _, s := range rs.spreads() {
				spreads = append(spreads, fmt.Sprintf("%s %g-%g", s.what, s.min, s.max))
			}
			if tc.spread != nil && strings.Join(spreads, ";") != strings.Join(tc.spread, ";") {
				t.Errorf("spreads %q, want %q", spreads, tc.spread)
			}
			var md bytes.Buffer
			rs.writeSteadiness(&md)
			if (len(rs.spreads()) == 0) != (md.Len() == 0) {
				t.Errorf("section %q with spreads %v", md.String(), rs.spreads())
			}
			if bold := strings.Contains(md.String(), "**"); bold != strings.HasPrefix(got, "**") {
				t.Errorf("section flags a figure: %v; sentence %q", bold, got)
			}
		})
	}
}
