package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReloader(t *testing.T) {
	release := make(chan struct{})
	runs := 0
	r := &reloader{timeout: 100 * time.Millisecond, run: func() error {
		runs++
		<-release
		return errors.New("bad file")
	}}
	start := time.Now()
	err := r.reload()
	if err == nil || !strings.Contains(err.Error(), "still running after 100ms") {
		t.Fatalf("stuck reload: got %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stuck reload returned after %v, want about 100ms", d)
	}
	if err := r.reload(); !errors.Is(err, errReloadBusy) {
		t.Fatalf("second reload while the first runs: got %v, want errReloadBusy", err)
	}
	if r.wait(50 * time.Millisecond) {
		t.Fatal("wait: got true while a reload runs, want false")
	}
	close(release)
	if !r.wait(5 * time.Second) {
		t.Fatal("wait: got false after the reload ended, want true")
	}
	r.run = func() error { runs++; return nil }
	if err := r.reload(); err != nil {
		t.Fatalf("reload after the stuck one ended: got %v, want nil", err)
	}
	if runs != 2 {
		t.Fatalf("runs: got %d, want 2 (the refused reload must not run)", runs)
	}
}
