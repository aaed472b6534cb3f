package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCgroupCPU reads a cgroup's CPU time in nanoseconds from either
// hierarchy's file, and refuses what is not there.
func TestCgroupCPU(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    int64
		wantErr bool
	}{
		{"v1", map[string]string{"cpuacct.usage": "123456789\n"}, 123456789, false},
		{"v2", map[string]string{"cpu.stat": "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n"}, 2500000, false},
		{"v2 usage not first", map[string]string{"cpu.stat": "nr_periods 0\nusage_usec 7\n"}, 7000, false},
		{"v2 without usage", map[string]string{"cpu.stat": "user_usec 1\n"}, 0, true},
		{"v1 malformed", map[string]string{"cpuacct.usage": "lots\n"}, 0, true},
		{"neither", nil, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := cgroupCPU(dir)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("cgroupCPU = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestCPUSeconds takes the cgroup's nanoseconds when both samples have
// them, else the clock ticks.
func TestCPUSeconds(t *testing.T) {
	a := procSample{ticks: 100, cpuNs: 1_000_000_000, cgroup: true}
	b := procSample{ticks: 127, cpuNs: 1_271_500_000, cgroup: true}
	if got := cpuSeconds(a, b); got != 0.2715 {
		t.Errorf("with the cgroup: %v s, want 0.2715", got)
	}
	a.cgroup = false
	if got, want := cpuSeconds(a, b), 27/float64(clockTicks); got != want {
		t.Errorf("without: %v s, want %v", got, want)
	}
}

// TestInCgroup finds a pid among cgroup.procs' lines, not as a prefix.
func TestInCgroup(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("12\n345\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for pid, want := range map[int]bool{12: true, 345: true, 34: false, 1: false} {
		if err := inCgroup(dir, pid); (err == nil) != want {
			t.Errorf("inCgroup(%d) = %v, want in: %v", pid, err, want)
		}
	}
}
