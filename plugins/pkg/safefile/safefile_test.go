package safefile

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// A read that blocks past the deadline returns an error, not a hang.
func TestReadAllDeadline(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	start := time.Now()
	_, err := readAll(r, 0, "slow", time.Now().Add(100*time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v, want about 100ms", d)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{12: "12 bytes", 1 << 20: "1 MiB", 64 << 20: "64 MiB", 1536: "1.5 KiB", 3 << 19: "1.5 MiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d): got %q, want %q", n, got, want)
		}
	}
}
