//go:build unix

package log

import (
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// An access log that is a FIFO nobody reads fails to start at once
// rather than blocking the start or reload that opens it.
func TestFileServiceFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- (&fileService{path: fifo}).Start(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, syscall.ENXIO) {
			t.Fatalf("got %v, want ENXIO", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start blocked on a FIFO without a reader")
	}
}
