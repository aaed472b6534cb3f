package testkit

import (
	"os"
	"testing"
)

func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	pid := os.Getpid()
	if n, err := CountFDs(pid); err != nil || n < 3 {
		t.Fatalf("CountFDs: got %d, %v, want at least 3", n, err)
	}
	if n, err := StatusKiB("/proc/self/status", "VmRSS"); err != nil || n <= 0 {
		t.Fatalf("StatusKiB VmRSS: got %d, %v, want > 0", n, err)
	}
	if _, err := StatusKiB("/proc/self/status", "NoSuchKey"); err == nil {
		t.Fatal("StatusKiB NoSuchKey: got no error")
	}
	if _, err := CPUTicks(pid); err != nil {
		t.Fatalf("CPUTicks: %v", err)
	}
	if ClockTicks <= 0 {
		t.Fatalf("ClockTicks: got %d", ClockTicks)
	}
}
