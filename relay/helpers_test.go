package relay

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// newTestParker returns a Parker closed when the test ends; it skips the
// test where parking is not supported (outside Linux).
func newTestParker(t *testing.T) *Parker {
	t.Helper()
	p, err := NewParker(20 * time.Millisecond)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("parking is Linux only")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// waitParked waits until n copies are parked.
func waitParked(t *testing.T, p *Parker, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for p.Parked() != n {
		if time.Now().After(deadline) {
			t.Fatalf("parked copies: %d, want %d", p.Parked(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exchange sends msg each way through a channel and checks it arrives.
func exchange(t *testing.T, client, target net.Conn, msg string) {
	t.Helper()
	for _, w := range []struct{ from, to net.Conn }{{client, target}, {target, client}} {
		if _, err := w.from.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(w.to, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != msg {
			t.Fatalf("got %q, want %q", got, msg)
		}
	}
}
